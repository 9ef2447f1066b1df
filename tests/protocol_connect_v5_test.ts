/**
 * 01 (5.0): CONNECT and CONNACK properties, refusal reason codes, Server Keep Alive, on raw sockets.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  expectDisconnectOrMosquittoClose,
  KEEP_ALIVE_CLOSE_MS,
  MOSQUITTO,
  startBroker,
} from "./_harness.ts";
import { concat, connect, disconnect, hex, packet, PROP, publish, RC, TYPE } from "./_raw.ts";

Deno.test(
  "CONNECT 5.0: CONNACK 0x00 is the first packet, well formed, Session Present 0 on Clean Start [MQTT-3.2.0-1] [MQTT-3.2.2-1] [MQTT-3.2.2-2]",
  async () => {
    await using b = await startBroker();
    const c = await b.client();
    await c.send(connect({ version: 5, clientId: "first5" }));
    const ack = await c.expectConnack5(); // checks flags, reserved bits and the property block
    assert.equal(ack.reasonCode, 0);
    assert.equal(ack.sessionPresent, false);
    assert.ok(
      !ack.properties.has(PROP.ASSIGNED_CLIENT_IDENTIFIER),
      "no Assigned Client Identifier for a client that named itself",
    );
    assert.ok(
      !ack.properties.has(PROP.AUTHENTICATION_METHOD),
      "no Authentication Method without one in CONNECT [MQTT-4.12.0-6]",
    );
    for (const id of [PROP.RECEIVE_MAXIMUM, PROP.MAXIMUM_PACKET_SIZE]) {
      const v = ack.properties.get(id);
      if (v !== undefined) assert.ok((v as number) > 0, `property 0x${id.toString(16)} is not 0`);
    }
    await c.expectNothing(100); // exactly one CONNACK [MQTT-3.2.0-2]
  },
);

Deno.test(
  "CONNECT 5.0: an empty client id gets a unique Assigned Client Identifier, used as the session's id [MQTT-3.1.3-6] [MQTT-3.1.3-7] [MQTT-3.2.2-16]",
  async () => {
    await using b = await startBroker();
    const one = await b.connect5({
      clientId: "",
      properties: [[PROP.SESSION_EXPIRY_INTERVAL, 60]],
    });
    const two = await b.connect5({ clientId: "" }, "two");
    const id1 = one.connack.properties.get(PROP.ASSIGNED_CLIENT_IDENTIFIER);
    const id2 = two.connack.properties.get(PROP.ASSIGNED_CLIENT_IDENTIFIER);
    assert.equal(typeof id1, "string");
    assert.equal(typeof id2, "string");
    assert.ok((id1 as string).length > 0);
    assert.notEqual(id1, id2, "each client gets its own identifier");
    // The session lives under the assigned id: resuming it by that id finds it.
    await one.subscribe5(1, [["assigned/t", { qos: 1 }]]);
    await one.send(disconnect());
    await one.expectClosed();
    const back = await b.client("back");
    await back.send(connect({ version: 5, clientId: id1 as string, cleanSession: false }));
    const ack = await back.expectConnack5();
    assert.equal(ack.reasonCode, 0);
    assert.equal(ack.sessionPresent, true, "session present under the assigned id [MQTT-3.2.2-3]");
    assert.ok(!ack.properties.has(PROP.ASSIGNED_CLIENT_IDENTIFIER));
  },
);

Deno.test(
  "CONNECT 5.0: an empty client id with Clean Start 0 is accepted with an Assigned Client Identifier (3.1.1 refuses it with 0x02) [MQTT-3.2.2-16]",
  async () => {
    await using b = await startBroker();
    const c = await b.client();
    await c.send(connect({
      version: 5,
      clientId: "",
      cleanSession: false,
      properties: [[PROP.SESSION_EXPIRY_INTERVAL, 60]],
    }));
    const ack = await c.expectConnack5();
    assert.deepEqual([ack.reasonCode, ack.sessionPresent], [0, false]);
    const id = ack.properties.get(PROP.ASSIGNED_CLIENT_IDENTIFIER);
    assert.ok(typeof id === "string" && id.length > 0, `Assigned Client Identifier ${id}`);
  },
);

Deno.test(
  "CONNECT 5.0: keep alive above maxKeepAlive gets Server Keep Alive 60 [MQTT-3.2.2-21]",
  async () => {
    await using b = await startBroker({ v5: { maxKeepAlive: 60 } });
    const high = await b.connect5({ clientId: "ka-high", keepAlive: 600 });
    assert.equal(high.connack.properties.get(PROP.SERVER_KEEP_ALIVE), 60);
    const off = await b.connect5({ clientId: "ka-off", keepAlive: 0 }, "off");
    assert.equal(
      off.connack.properties.get(PROP.SERVER_KEEP_ALIVE),
      60,
      "keep alive 0 (none) is more than the maximum",
    );
    const low = await b.connect5({ clientId: "ka-low", keepAlive: 30 }, "low");
    const sent = low.connack.properties.get(PROP.SERVER_KEEP_ALIVE);
    assert.ok(sent === undefined || sent === 30, `Server Keep Alive ${sent} for keep alive 30`);
  },
);

Deno.test({
  // mosquitto's max_keepalive is at least 10 s; 1 s keeps this test short.
  name:
    "CONNECT 5.0: the Server Keep Alive is enforced: silence past 1.5 × it closes the connection with DISCONNECT 0x8D [MQTT-3.1.2-22] [MQTT-3.2.2-21] (ours)",
  ignore: MOSQUITTO,
  async fn() {
    await using b = await startBroker({ v5: { maxKeepAlive: 1 } });
    const c = await b.connect5({ clientId: "ka-enforced", keepAlive: 100 });
    assert.equal(c.connack.properties.get(PROP.SERVER_KEEP_ALIVE), 1);
    const start = Date.now();
    await c.expectDisconnect(RC.KEEP_ALIVE_TIMEOUT, KEEP_ALIVE_CLOSE_MS);
    assert.ok(Date.now() - start >= 1_000, `closed after ${Date.now() - start} ms`);
  },
});

for (const keepAlive of [100, 0]) {
  Deno.test(
    `CONNECT 3.1.1: keep alive ${keepAlive} (more than maxKeepAlive 60) is accepted, as mosquitto 2.0.11 does`,
    async () => {
      await using b = await startBroker({ v5: { maxKeepAlive: 60 } });
      await b.connect({ clientId: "ka-311", keepAlive });
    },
  );

  Deno.test({
    // mosquitto's max_keepalive is at least 10 s; 1 s keeps this test short.
    name:
      `CONNECT 3.1.1: keep alive ${keepAlive} (more than maxKeepAlive 1) is held to maxKeepAlive (ours)`,
    ignore: MOSQUITTO,
    async fn() {
      await using b = await startBroker({ v5: { maxKeepAlive: 1 } });
      const c = await b.connect({ clientId: "ka-311-held", keepAlive });
      const start = Date.now();
      await c.expectClosed(KEEP_ALIVE_CLOSE_MS);
      assert.ok(Date.now() - start >= 1_000, `closed after ${Date.now() - start} ms`);
    },
  });
}

Deno.test({
  name: "CONNECT 5.0: keep alive timeout sends DISCONNECT 0x8D before closing (ours)",
  ignore: MOSQUITTO,
  async fn() {
    await using b = await startBroker();
    const c = await b.connect5({ clientId: "ka-5", keepAlive: 1 });
    await c.expectDisconnect(RC.KEEP_ALIVE_TIMEOUT, KEEP_ALIVE_CLOSE_MS);
  },
});

Deno.test(
  "CONNECT 5.0: a second CONNECT is a protocol error: DISCONNECT 0x82, then close [MQTT-3.1.0-2]",
  async () => {
    await using b = await startBroker();
    const c = await b.connect5({ clientId: "twice5" });
    await c.send(connect({ version: 5, clientId: "twice5" }));
    await expectDisconnectOrMosquittoClose(c, RC.PROTOCOL_ERROR);
  },
);

/**
 * CONNECTs whose properties break a rule, with the reason code of the refusal
 * and whether mosquitto 2.0.11 accepts it anyway (then the case is ours only).
 */
const badConnects: [string, Parameters<typeof connect>[0], number, boolean?][] = [
  [
    "Receive Maximum 0 is a protocol error [MQTT-3.1.2-... 3.1.2.11.3]",
    { properties: [[PROP.RECEIVE_MAXIMUM, 0]] },
    RC.PROTOCOL_ERROR,
  ],
  [
    "Maximum Packet Size 0 is a protocol error (3.1.2.11.4)",
    { properties: [[PROP.MAXIMUM_PACKET_SIZE, 0]] },
    RC.PROTOCOL_ERROR,
  ],
  [
    "Session Expiry Interval twice is a protocol error (3.1.2.11.2)",
    { properties: [[PROP.SESSION_EXPIRY_INTERVAL, 1], [PROP.SESSION_EXPIRY_INTERVAL, 2]] },
    RC.PROTOCOL_ERROR,
  ],
  [
    "Request Problem Information 2 is a protocol error (3.1.2.11.7)",
    { properties: [[PROP.REQUEST_PROBLEM_INFORMATION, 2]] },
    RC.PROTOCOL_ERROR,
  ],
  [
    "Request Response Information 2 is a protocol error (3.1.2.11.6)",
    { properties: [[PROP.REQUEST_RESPONSE_INFORMATION, 2]] },
    RC.PROTOCOL_ERROR,
  ],
  [
    "Authentication Data without Authentication Method is a protocol error (3.1.2.11.10)",
    { properties: [[PROP.AUTHENTICATION_DATA, new Uint8Array([1, 2])]] },
    RC.PROTOCOL_ERROR,
    true,
  ],
  [
    "an unknown property id is malformed (2.2.2.2)",
    { properties: [Uint8Array.of(0x7f, 0x00)] },
    RC.MALFORMED_PACKET,
  ],
  [
    "a property not allowed in CONNECT (Topic Alias) is malformed (2.2.2.2)",
    { properties: [[PROP.TOPIC_ALIAS, 1]] },
    RC.MALFORMED_PACKET,
  ],
  [
    "a property not allowed in Will Properties (Session Expiry) is malformed (2.2.2.2)",
    {
      will: { topic: "w/t", payload: "x", properties: [[PROP.SESSION_EXPIRY_INTERVAL, 10]] },
    },
    RC.MALFORMED_PACKET,
  ],
  [
    "a property length past the end of the packet is malformed [MQTT-3.1.4-1]",
    { properties: [Uint8Array.of(0x11, 0x00, 0x00)] },
    RC.MALFORMED_PACKET,
  ],
];
for (const [name, o, code, mosquittoAccepts] of badConnects) {
  Deno.test({
    name: `CONNECT 5.0: ${name} → CONNACK ≥ 0x80 with Session Present 0, then close` +
      (mosquittoAccepts ? " (ours)" : ""),
    ignore: MOSQUITTO && mosquittoAccepts,
  }, async () => {
    await using b = await startBroker();
    const c = await b.client();
    await c.send(connect({ version: 5, clientId: "bad5", ...o }));
    // The server MAY answer a bad CONNECT with a CONNACK naming the reason [MQTT-4.13.1-1]; either
    // way the connection closes [MQTT-3.2.2-7].
    const p = await c.nextPacket().catch(() => undefined);
    if (p !== undefined) {
      assert.equal(p.type, TYPE.CONNACK, "only a CONNACK may precede the close");
      assert.equal(p.body[0], 0, "Session Present 0 on a refusal [MQTT-3.2.2-6]");
      if (!MOSQUITTO) assert.equal(hex(p.body[1]), hex(code));
      else assert.ok(p.body[1] >= 0x80, `reason ${hex(p.body[1])}`);
    }
    await c.expectClosed();
  });
}

Deno.test(
  "CONNECT 5.0: a refused CONNECT (not authorized) gets CONNACK 0x87, Session Present 0, then close [MQTT-3.2.2-6] [MQTT-3.2.2-7]",
  async () => {
    await using b = await startBroker({
      brokerOptions: { authenticate: () => false },
      mosquittoConfig: ["allow_anonymous false"],
    });
    const c = await b.client();
    await c.send(connect({ version: 5, clientId: "nope", cleanSession: false }));
    const ack = await c.expectConnack5();
    assert.equal(hex(ack.reasonCode), hex(RC.NOT_AUTHORIZED));
    assert.equal(ack.sessionPresent, false);
    await c.expectClosed();
  },
);

for (const version of [4, 5]) {
  Deno.test(
    `CONNECT ${
      version === 5 ? "5.0" : "3.1.1"
    }: packets sent after a refused CONNECT are not processed [MQTT-3.1.4-6]`,
    async () => {
      await using b = await startBroker({ v5: { maxQos: 1 } });
      const watcher = await b.connect5({ clientId: "watcher" }, "watcher");
      await watcher.subscribe5(1, [["after/#", { qos: 0 }]]);
      const c = await b.client("refused");
      // 5.0: a will QoS above Maximum QoS (0x9B); 3.1.1: an empty id without clean session (0x02).
      const refused = version === 5
        ? connect({ version, clientId: "refused", will: { topic: "after/will", qos: 2 } })
        : connect({ clientId: "", cleanSession: false });
      await c.send(concat(
        refused,
        publish({ version, topic: "after/refusal", payload: "x" }),
        packet(TYPE.PINGREQ, 0),
      ));
      const ack = await c.expectPacket(TYPE.CONNACK);
      assert.notEqual(ack.body[1], 0, "refused");
      await c.expectClosed(); // no PINGRESP, nothing else
      await watcher.expectNothing();
    },
  );
}

Deno.test({
  name: "CONNECT 5.0: a bad user name or password gets CONNACK 0x86, then close (ours)",
  ignore: MOSQUITTO,
  async fn() {
    await using b = await startBroker({ brokerOptions: { authenticate: () => 0x04 } });
    const c = await b.client();
    await c.send(connect({ version: 5, clientId: "badpw", username: "u", password: "p" }));
    assert.equal(hex((await c.expectConnack5()).reasonCode), hex(RC.BAD_USER_NAME_OR_PASSWORD));
    await c.expectClosed();
  },
});

Deno.test({
  name:
    "CONNECT 5.0: a client id past maxClientIdLength gets CONNACK 0x85, then close [MQTT-3.1.3-8] (ours)",
  ignore: MOSQUITTO,
  async fn() {
    await using b = await startBroker({ limits: { maxClientIdLength: 8 } });
    const c = await b.client();
    await c.send(connect({ version: 5, clientId: "far-too-long-id" }));
    assert.equal(hex((await c.expectConnack5()).reasonCode), hex(RC.CLIENT_IDENTIFIER_NOT_VALID));
    await c.expectClosed();
  },
});

Deno.test({
  name: "CONNECT 5.0: maxConnections reached gets CONNACK 0x89 (server busy), then close (ours)",
  ignore: MOSQUITTO,
  async fn() {
    await using b = await startBroker({ limits: { maxConnections: 1 } });
    await b.connect5({ clientId: "only" });
    const c = await b.client("second");
    await c.send(connect({ version: 5, clientId: "second" }));
    const rc = (await c.expectConnack5()).reasonCode;
    assert.equal(hex(rc), hex(RC.SERVER_BUSY));
    await c.expectClosed();
  },
});

Deno.test({
  name: "CONNECT 5.0: maxSessions reached gets CONNACK 0x97 (quota exceeded), then close (ours)",
  ignore: MOSQUITTO,
  async fn() {
    await using b = await startBroker({ limits: { maxSessions: 1 } });
    await b.connect5({ clientId: "only" });
    const c = await b.client("second");
    await c.send(connect({ version: 5, clientId: "second" }));
    const rc = (await c.expectConnack5()).reasonCode;
    assert.equal(hex(rc), hex(RC.QUOTA_EXCEEDED));
    await c.expectClosed();
  },
});

Deno.test({
  name: "CONNECT 5.0: a CONNECT larger than maxPacketSize gets CONNACK 0x95 or a close (ours)",
  ignore: MOSQUITTO,
  async fn() {
    await using b = await startBroker({ limits: { maxPacketSize: 128 } });
    const c = await b.client();
    await c.send(connect({ version: 5, clientId: "big", username: "u".repeat(200) }));
    const p = await c.nextPacket().catch(() => undefined);
    if (p !== undefined) {
      assert.equal(hex(parseConnackReason(p)), hex(RC.PACKET_TOO_LARGE));
    }
    await c.expectClosed();
  },
});

function parseConnackReason(p: { type: number; body: Uint8Array }): number {
  assert.equal(p.type, TYPE.CONNACK);
  return p.body[1];
}

Deno.test(
  "CONNACK 5.0: Maximum QoS 1 is advertised [MQTT-3.2.2-9]; SUBSCRIBE at QoS 2 is still accepted, granted 1 [MQTT-3.2.2-10]",
  async () => {
    await using b = await startBroker({ v5: { maxQos: 1 } });
    const c = await b.connect5({ clientId: "mq1" });
    assert.equal(c.connack.properties.get(PROP.MAXIMUM_QOS), 1);
    const ack = await c.subscribe5(1, [["mq/a", { qos: 2 }], ["mq/b", { qos: 0 }]]);
    assert.deepEqual(ack.reasonCodes, [1, 0]);
  },
);

Deno.test(
  "CONNECT 5.0: a will QoS above Maximum QoS gets CONNACK 0x9B, then close [MQTT-3.2.2-12]",
  async () => {
    await using b = await startBroker({ v5: { maxQos: 1 } });
    const c = await b.client();
    await c.send(connect({ version: 5, clientId: "willq2", will: { topic: "w", qos: 2 } }));
    const ack = await c.expectConnack5();
    assert.equal(hex(ack.reasonCode), hex(RC.QOS_NOT_SUPPORTED));
    await c.expectClosed();
  },
);

Deno.test(
  "PUBLISH 5.0: QoS above Maximum QoS gets DISCONNECT 0x9B (3.2.2.3.4)",
  async () => {
    await using b = await startBroker({ v5: { maxQos: 1 } });
    const c = await b.connect5({ clientId: "pubq2" });
    await c.send(publish({ version: 5, topic: "mq/x", qos: 2, packetId: 1, payload: "x" }));
    await c.expectDisconnect(RC.QOS_NOT_SUPPORTED);
  },
);

Deno.test(
  "CONNACK 5.0: Retain Available 0 is advertised; a will with retain gets CONNACK 0x9A [MQTT-3.2.2-13]",
  async () => {
    await using b = await startBroker({ v5: { retainAvailable: false } });
    const ok = await b.connect5({ clientId: "ra" });
    assert.equal(ok.connack.properties.get(PROP.RETAIN_AVAILABLE), 0);
    const c = await b.client("willretain");
    await c.send(connect({ version: 5, clientId: "wr", will: { topic: "w", retain: true } }));
    assert.equal(hex((await c.expectConnack5()).reasonCode), hex(RC.RETAIN_NOT_SUPPORTED));
    await c.expectClosed();
  },
);

Deno.test(
  "PUBLISH 5.0: RETAIN 1 when Retain Available is 0 gets DISCONNECT 0x9A (3.3.1.3)",
  async () => {
    await using b = await startBroker({ v5: { retainAvailable: false } });
    const c = await b.connect5({ clientId: "pubretain" });
    await c.send(publish({ version: 5, topic: "ra/x", retain: true, payload: "x" }));
    await c.expectDisconnect(RC.RETAIN_NOT_SUPPORTED);
  },
);

Deno.test(
  "CONNECT 5.0: Request Response Information 0 gets no Response Information [MQTT-3.1.2-28]",
  async () => {
    await using b = await startBroker({ v5: { responseInformation: "reply/" } });
    const c = await b.connect5({
      clientId: "rri0",
      properties: [[PROP.REQUEST_RESPONSE_INFORMATION, 0]],
    });
    assert.ok(!c.connack.properties.has(PROP.RESPONSE_INFORMATION));
  },
);

Deno.test({
  name:
    "CONNECT 5.0: Request Response Information 1 gets the configured Response Information (ours)",
  ignore: MOSQUITTO,
  async fn() {
    await using b = await startBroker({ v5: { responseInformation: "reply/" } });
    const c = await b.connect5({
      clientId: "rri1",
      properties: [[PROP.REQUEST_RESPONSE_INFORMATION, 1]],
    });
    const info = c.connack.properties.get(PROP.RESPONSE_INFORMATION);
    assert.equal(typeof info, "string");
    assert.ok((info as string).startsWith("reply/"), `Response Information ${info}`);
  },
});

Deno.test(
  "CONNECT 5.0: Request Problem Information 0: no Reason String or User Property on SUBACK, UNSUBACK, PUBACK [MQTT-3.1.2-29]",
  async () => {
    await using b = await startBroker();
    const c = await b.connect5({
      clientId: "rpi0",
      properties: [[PROP.REQUEST_PROBLEM_INFORMATION, 0]],
    });
    // Refusals and "no subscribers" are where a broker would add a reason string.
    const sub = await c.subscribe5(1, [["ok/t", { qos: 1 }]]);
    const unsub = await c.unsubscribe5(2, ["never/subscribed"]);
    const pub = await c.publish5({ topic: "nobody/here", qos: 1, packetId: 3, payload: "x" });
    for (
      const [what, props] of [["SUBACK", sub.properties], ["UNSUBACK", unsub.properties], [
        "PUBACK",
        pub!.properties,
      ]] as const
    ) {
      assert.ok(!props.has(PROP.REASON_STRING), `${what} has no Reason String`);
      assert.ok(!props.has(PROP.USER_PROPERTY), `${what} has no User Property`);
    }
  },
);

Deno.test({
  name:
    "CONNECT 5.0: Request Problem Information 0: refusals on SUBACK and PUBACK carry no Reason String or User Property [MQTT-3.1.2-29] (ours)",
  ignore: MOSQUITTO,
  async fn() {
    await using b = await startBroker({
      brokerOptions: {
        authorizeSubscribe: (_c, f) => f !== "deny/t",
        authorizePublish: (_c, t) => t !== "deny/t",
      },
    });
    for (const rpi of [0, 1]) {
      const c = await b.connect5({
        clientId: `rpi-deny-${rpi}`,
        properties: [[PROP.REQUEST_PROBLEM_INFORMATION, rpi]],
      }, `rpi${rpi}`);
      const sub = await c.subscribe5(1, [["deny/t", { qos: 1 }], ["bad/#/x", { qos: 0 }]]);
      assert.deepEqual(
        sub.reasonCodes.map(hex),
        [RC.NOT_AUTHORIZED, RC.TOPIC_FILTER_INVALID].map(hex),
      );
      const pub = await c.publish5({ topic: "deny/t", qos: 1, packetId: 2, payload: "x" });
      assert.equal(hex(pub!.reasonCode), hex(RC.NOT_AUTHORIZED));
      if (rpi === 0) {
        for (const props of [sub.properties, pub!.properties]) {
          assert.ok(!props.has(PROP.REASON_STRING), "no Reason String when RPI is 0");
          assert.ok(!props.has(PROP.USER_PROPERTY), "no User Property when RPI is 0");
        }
      }
    }
  },
});

Deno.test(
  "CONNACK 5.0: Session Present 0 and Clean Start 1 discards an existing session [MQTT-3.1.2-4] [MQTT-3.2.2-2]",
  async () => {
    await using b = await startBroker();
    const first = await b.connect5({
      clientId: "cs5",
      properties: [[PROP.SESSION_EXPIRY_INTERVAL, 300]],
    });
    await first.subscribe5(1, [["cs5/t", { qos: 1 }]]);
    await first.send(disconnect());
    await first.expectClosed();
    const second = await b.connect5({ clientId: "cs5", cleanSession: true }, "second");
    assert.equal(second.connack.sessionPresent, false);
    // The subscription went with the discarded session.
    const pub = await b.connect5({ clientId: "cs5-pub" }, "pub");
    await pub.publish5({ topic: "cs5/t", qos: 1, packetId: 1, payload: "x" });
    await second.expectNothing();
  },
);
