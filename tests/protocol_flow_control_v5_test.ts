/**
 * 05 (5.0): flow control and packet sizes both ways: the client's Receive Maximum and Maximum
 * Packet Size honoured outbound, the broker's enforced inbound (DISCONNECT 0x93 / 0x95).
 *
 * @module
 */
import assert from "node:assert/strict";
import { expectDisconnectOrMosquittoClose, MOSQUITTO, startBroker } from "./_harness.ts";
import {
  ackId,
  connect,
  describe,
  parseAck5,
  parsePublish5,
  parseSuback5,
  pingreq,
  PROP,
  puback,
  pubcomp,
  publish,
  pubrec,
  RC,
  subscribe5,
  TYPE,
  wireSize,
} from "./_raw.ts";
import type { Publish5 } from "./_raw.ts";

// mosquitto 2.0.11 honours a client's Receive Maximum only until the first acknowledgements:
// with Receive Maximum 2 it then sent 4 unacknowledged QoS 1 PUBLISHes (seen while validating).
// With an oversized QoS > 0 message for a client it never frees the slot (its QoS > 0 traffic
// to that client stops). Both tests are therefore ours only.

Deno.test({
  name:
    "flow control: never more unacknowledged QoS 1 PUBLISHes than the client's Receive Maximum [MQTT-3.3.4-9] [MQTT-4.9.0-2] (ours)",
  ignore: MOSQUITTO,
  async fn() {
    await using b = await startBroker();
    const sub = await b.connect5({
      clientId: "rm-sub",
      properties: [[PROP.RECEIVE_MAXIMUM, 2]],
    }, "sub");
    await sub.subscribe5(1, [["rm/t", { qos: 1 }]]);
    const pub = await b.connect5({ clientId: "rm-pub" }, "pub");
    const n = 8;
    for (let i = 0; i < n; i++) {
      await pub.publish5({ topic: "rm/t", qos: 1, packetId: i + 1, payload: String(i) });
    }
    const got: string[] = [];
    while (got.length < n) {
      const first = await sub.expectPublish5();
      const second = got.length + 1 < n ? await sub.expectPublish5() : undefined;
      // The window is full: nothing more until an acknowledgement.
      await sub.expectNothing(150);
      // Other packets are not held back [MQTT-3.3.4-10] [MQTT-4.9.0-3].
      await sub.send(pingreq());
      await sub.expectPacket(TYPE.PINGRESP);
      for (const m of [first, second]) {
        if (m === undefined) continue;
        got.push(m.text);
        await sub.send(puback(m.packetId!));
      }
    }
    assert.deepEqual(got, Array.from({ length: n }, (_, i) => String(i)));
  },
});

Deno.test(
  "flow control: a QoS 2 PUBLISH counts against Receive Maximum until PUBCOMP; a PUBREC ≥ 0x80 frees the slot [MQTT-4.9.0-2] [MQTT-4.3.3-4]",
  async () => {
    await using b = await startBroker();
    const sub = await b.connect5({
      clientId: "rm2-sub",
      properties: [[PROP.RECEIVE_MAXIMUM, 1]],
    }, "sub");
    await sub.subscribe5(1, [["rm2/t", { qos: 2 }]]);
    const pub = await b.connect5({ clientId: "rm2-pub" }, "pub");
    for (let i = 0; i < 3; i++) {
      await pub.publish5({ topic: "rm2/t", qos: 2, packetId: i + 1, payload: String(i) });
    }
    const m0 = await sub.expectPublish5();
    await sub.expectNothing(150);
    await sub.send(pubrec(m0.packetId!));
    assert.equal((await sub.expectAck5(TYPE.PUBREL)).packetId, m0.packetId);
    await sub.expectNothing(150); // PUBREC < 0x80 does not free the slot: PUBCOMP does
    await sub.send(pubcomp(m0.packetId!));
    const m1 = await sub.expectPublish5();
    assert.equal(m1.text, "1");
    await sub.send(pubrec(m1.packetId!, RC.UNSPECIFIED_ERROR)); // refused: exchange over, no PUBREL
    const m2 = await sub.expectPublish5();
    assert.equal(m2.text, "2", "the refused message freed its slot");
    await sub.send(pubrec(m2.packetId!));
    await sub.expectAck5(TYPE.PUBREL);
    await sub.send(pubcomp(m2.packetId!));
    await sub.expectNothing();
  },
);

Deno.test(
  "flow control: CONNACK advertises the broker's Receive Maximum; one more unacknowledged QoS 2 PUBLISH gets DISCONNECT 0x93 (3.3.4)",
  async () => {
    await using b = await startBroker({ v5: { receiveMaximum: 2 } });
    const c = await b.connect5({ clientId: "rm-in" });
    assert.equal(c.connack.properties.get(PROP.RECEIVE_MAXIMUM), 2);
    // QoS 2 stays unacknowledged until PUBCOMP, so never sending PUBREL keeps the slots taken.
    for (let id = 1; id <= 2; id++) {
      await c.send(publish({ version: 5, topic: "rmin/t", qos: 2, packetId: id, payload: "x" }));
      assert.equal((await c.expectAck5(TYPE.PUBREC)).packetId, id);
    }
    await c.send(publish({ version: 5, topic: "rmin/t", qos: 2, packetId: 3, payload: "x" }));
    if (MOSQUITTO) {
      // mosquitto 2.0.11 refuses the message (PUBREC 0x97 quota exceeded) and keeps the connection.
      const rec = await c.expectAck5(TYPE.PUBREC);
      assert.deepEqual([rec.packetId, rec.reasonCode], [3, RC.QUOTA_EXCEEDED]);
    } else await c.expectDisconnect(RC.RECEIVE_MAXIMUM_EXCEEDED);
  },
);

Deno.test(
  "packet size: a message larger than the client's Maximum Packet Size is not sent to it, the next ones are [MQTT-3.1.2-24] [MQTT-3.1.2-25]",
  async () => {
    await using b = await startBroker();
    const small = await b.connect5({
      clientId: "mps-small",
      properties: [[PROP.MAXIMUM_PACKET_SIZE, 128]],
    }, "small");
    await small.subscribe5(1, [["mps/t", { qos: 1 }]]);
    const big = await b.connect5({ clientId: "mps-big" }, "big");
    await big.subscribe5(1, [["mps/t", { qos: 1 }]]);
    const pub = await b.connect5({ clientId: "mps-pub" }, "pub");
    await pub.publish5({ topic: "mps/t", qos: 1, packetId: 1, payload: "a".repeat(200) });
    await pub.publish5({ topic: "mps/t", qos: 1, packetId: 2, payload: "fits" });
    assert.equal((await big.receive5()).text.length, 200, "others get the large message");
    assert.equal((await big.receive5()).text, "fits");
    assert.equal((await small.receive5()).text, "fits", "discarded as if sent, then the next one");
    await small.expectNothing();
    assert.ok(small.received.largestPacket <= 128, `largest ${small.received.largestPacket}`);
  },
);

Deno.test(
  "packet size: a PUBLISH whose properties push it past the client's Maximum Packet Size is not sent either [MQTT-3.1.2-24]",
  async () => {
    await using b = await startBroker();
    const small = await b.connect5({
      clientId: "mpsp",
      properties: [[PROP.MAXIMUM_PACKET_SIZE, 100]],
    }, "small");
    await small.subscribe5(1, [["mpsp/t", { qos: 0 }]]);
    const pub = await b.connect5({ clientId: "mpsp-pub" }, "pub");
    // 20-byte payload, 100 bytes of user properties.
    await pub.publish5({
      topic: "mpsp/t",
      qos: 1,
      packetId: 1,
      payload: "p".repeat(20),
      properties: [[PROP.USER_PROPERTY, ["k", "v".repeat(100)]]],
    });
    await pub.publish5({ topic: "mpsp/t", qos: 1, packetId: 2, payload: "ok" });
    assert.equal((await small.expectPublish5()).text, "ok");
    assert.ok(small.received.largestPacket <= 100);
  },
);

Deno.test(
  "packet size: CONNACK advertises the broker's Maximum Packet Size; a larger PUBLISH gets DISCONNECT 0x95",
  async () => {
    await using b = await startBroker({ v5: { maxPacketSize: 1000 } });
    const c = await b.connect5({ clientId: "mps-in" });
    assert.equal(c.connack.properties.get(PROP.MAXIMUM_PACKET_SIZE), 1000);
    await c.send(publish({ version: 5, topic: "mps/in", qos: 1, payload: "x".repeat(1200) }));
    await expectDisconnectOrMosquittoClose(c, RC.PACKET_TOO_LARGE);
  },
);

Deno.test({
  name:
    "flow control: a client with Maximum Packet Size 256 and Receive Maximum 1 never gets a larger packet or a second unacknowledged PUBLISH, while 64 KB messages go to others (ours)",
  ignore: MOSQUITTO,
  async fn() {
    await using b = await startBroker();
    const tiny = await b.connect5({
      clientId: "tiny",
      properties: [[PROP.MAXIMUM_PACKET_SIZE, 256], [PROP.RECEIVE_MAXIMUM, 1]],
    }, "tiny");
    assert.ok(tiny.received.largestPacket <= 256, "CONNACK fits too [MQTT-3.2.2-19]");
    await tiny.send(subscribe5(1, [["tiny/#", { qos: 2 }]]));
    await tiny.expectPacket(TYPE.SUBACK);
    const other = await b.connect5({ clientId: "other" }, "other");
    await other.subscribe5(1, [["tiny/#", { qos: 2 }]]);
    const pub = await b.connect5({ clientId: "tiny-pub" }, "pub");
    const big = "B".repeat(64 * 1024);
    const sent: { topic: string; payload: string; qos: number }[] = [];
    for (let i = 0; i < 24; i++) {
      const qos = (i % 3) as 0 | 1 | 2;
      const payload = i % 4 === 1 ? big : `small-${i}`;
      const topic = `tiny/${i % 2 === 0 ? "a" : "b"}`;
      sent.push({ topic, payload, qos });
      await pub.publish5({ topic, qos, packetId: i + 1, payload });
    }
    const expected = sent.filter((m) => m.payload !== big);
    // The tiny client, packet by packet: at most one QoS > 0 PUBLISH unacknowledged at a time.
    const got: Publish5[] = [];
    let inFlight: number | undefined; // packet id of the QoS > 0 PUBLISH not yet acknowledged
    let awaitingRel: number | undefined;
    while (got.length < expected.length || inFlight !== undefined || awaitingRel !== undefined) {
      const p = await tiny.nextPacket();
      if (p.type === TYPE.PUBLISH) {
        const m = parsePublish5(p);
        if (m.qos > 0) {
          assert.equal(inFlight, undefined, `second unacknowledged PUBLISH: ${describe(p)}`);
          inFlight = m.packetId;
        }
        got.push(m);
        if (m.qos > 0) {
          // Hold the acknowledgement a little: anything sent meanwhile would be a violation.
          const extra = await tiny.nextPacket(100).catch(() => undefined);
          assert.ok(
            extra === undefined || extra.type !== TYPE.PUBLISH || parsePublish5(extra).qos === 0,
            `PUBLISH beyond Receive Maximum 1: ${extra && describe(extra)}`,
          );
          if (extra !== undefined) got.push(parsePublish5(extra));
          if (m.qos === 1) {
            await tiny.send(puback(m.packetId!));
            inFlight = undefined;
          } else {
            await tiny.send(pubrec(m.packetId!));
            awaitingRel = m.packetId;
          }
        }
      } else if (p.type === TYPE.PUBREL) {
        assert.equal(ackId(p), awaitingRel);
        await tiny.send(pubcomp(awaitingRel!));
        awaitingRel = undefined;
        inFlight = undefined;
      } else {
        assert.fail(`tiny: unexpected ${describe(p)}`);
      }
    }
    assert.deepEqual(
      got.map((m) => [m.topic, m.text, m.qos]),
      expected.map((m) => [m.topic, m.payload, m.qos]),
    );
    await tiny.expectNothing();
    const r = tiny.received;
    assert.ok(r.largestPacket <= 256, `largest packet to tiny: ${r.largestPacket} bytes`);
    assert.equal(r.inPackets, r.bytes, "every byte read belongs to a whole packet");
    // The others got everything, the 64 KB messages included.
    const all = await other.receiveMany5(sent.length);
    assert.deepEqual(
      all.map((m) => [m.topic, m.text.length]),
      sent.map((m) => [m.topic, m.payload.length]),
    );
  },
});

Deno.test(
  "packet size: a refusing CONNACK fits the client's Maximum Packet Size (no Reason String past it) [MQTT-3.2.2-19] [MQTT-3.2.2-20]",
  async () => {
    await using b = await startBroker({
      brokerOptions: { authenticate: () => false },
      mosquittoConfig: ["allow_anonymous false"],
    });
    const c = await b.client();
    await c.send(connect({
      version: 5,
      clientId: "tinyrefused",
      properties: [[PROP.MAXIMUM_PACKET_SIZE, 8], [PROP.REQUEST_PROBLEM_INFORMATION, 1]],
    }));
    assert.equal((await c.expectConnack5()).reasonCode, RC.NOT_AUTHORIZED);
    await c.expectClosed();
    assert.ok(c.received.largestPacket <= 8, `CONNACK of ${c.received.largestPacket} bytes`);
  },
);

Deno.test(
  "packet size: the broker's DISCONNECT fits the client's Maximum Packet Size [MQTT-3.14.2-3] [MQTT-3.14.2-4]",
  async () => {
    await using b = await startBroker();
    const c = await b.connect5({
      clientId: "tinydisc",
      properties: [[PROP.MAXIMUM_PACKET_SIZE, 64], [PROP.REQUEST_PROBLEM_INFORMATION, 1]],
    });
    const before = c.received.largestPacket;
    await c.send(connect({ version: 5, clientId: "tinydisc" })); // a second CONNECT
    await expectDisconnectOrMosquittoClose(c, RC.PROTOCOL_ERROR);
    assert.ok(before <= 64 && c.received.largestPacket <= 64, `${c.received.largestPacket} bytes`);
  },
);

Deno.test({
  name:
    "packet size: SUBACK and PUBACK refusals fit a small Maximum Packet Size (Reason String dropped) [MQTT-3.9.2-1] [MQTT-3.4.2-2] (ours)",
  ignore: MOSQUITTO,
  async fn() {
    await using b = await startBroker({
      brokerOptions: {
        authorizeSubscribe: (_c, f) => f !== "no/t",
        authorizePublish: (_c, t) => t !== "no/t",
      },
    });
    const c = await b.connect5({
      clientId: "tinyacks",
      properties: [[PROP.MAXIMUM_PACKET_SIZE, 7], [PROP.REQUEST_PROBLEM_INFORMATION, 1]],
    });
    // (The CONNACK's own properties are not droppable in the same way; only the acks are checked.)
    await c.send(subscribe5(1, [["no/t", { qos: 1 }]]));
    const suback = await c.expectPacket(TYPE.SUBACK);
    assert.equal(parseSuback5(suback).reasonCodes[0], RC.NOT_AUTHORIZED);
    assert.ok(wireSize(suback) <= 7, `SUBACK of ${wireSize(suback)} bytes`);
    await c.send(publish({ version: 5, topic: "no/t", qos: 1, packetId: 2, payload: "x" }));
    const puback = await c.expectPacket(TYPE.PUBACK);
    assert.equal(parseAck5(puback).reasonCode, RC.NOT_AUTHORIZED);
    assert.ok(wireSize(puback) <= 7, `PUBACK of ${wireSize(puback)} bytes`);
  },
});

Deno.test({
  // mosquitto 2.0.11: see the Receive Maximum note above.
  name:
    "flow control: an embedded-style client (Maximum Packet Size 256, Receive Maximum 1, Session Expiry 60) resumes its session: redelivery first, then the queue, one at a time, nothing too large (ours)",
  ignore: MOSQUITTO,
  async fn() {
    await using b = await startBroker();
    const props = [
      [PROP.MAXIMUM_PACKET_SIZE, 256],
      [PROP.RECEIVE_MAXIMUM, 1],
      [PROP.SESSION_EXPIRY_INTERVAL, 60],
    ] as [number, number][];
    const first = await b.connect5({ clientId: "embedded", properties: props }, "first");
    await first.subscribe5(1, [["emb/#", { qos: 1 }]]);
    const pub = await b.connect5({ clientId: "emb-pub" }, "pub");
    await pub.publish5({ topic: "emb/t", qos: 1, packetId: 1, payload: "in flight" });
    const inflight = await first.expectPublish5();
    await first.close(); // gone without PUBACK, like a device losing power
    const big = "B".repeat(64 * 1024);
    const queued = ["q1", big, "q2", big, "q3"];
    for (const [i, payload] of queued.entries()) {
      await pub.publish5({ topic: "emb/t", qos: 1, packetId: i + 2, payload });
    }
    const back = await b.client("back");
    await back.send(
      connect({ version: 5, clientId: "embedded", cleanSession: false, properties: props }),
    );
    assert.equal((await back.expectConnack5()).sessionPresent, true);
    const got: string[] = [];
    for (let i = 0; i < 4; i++) {
      const m = await back.expectPublish5();
      if (i === 0) {
        assert.deepEqual(
          [m.packetId, m.dup],
          [inflight.packetId, true],
          "redelivered first [MQTT-4.4.0-1]",
        );
      }
      await back.expectNothing(100); // Receive Maximum 1: nothing more until the PUBACK
      got.push(m.text);
      await back.send(puback(m.packetId!));
    }
    assert.deepEqual(got, ["in flight", "q1", "q2", "q3"]);
    await back.expectNothing();
    assert.ok(back.received.largestPacket <= 256, `largest ${back.received.largestPacket}`);
  },
});

for (const [maxInflight, receiveMaximum] of [[2, 5], [5, 2]]) {
  Deno.test({
    name:
      `flow control: with maxInflight ${maxInflight} and a client Receive Maximum ${receiveMaximum}, the smaller one bounds the unacknowledged PUBLISHes (ours)`,
    ignore: MOSQUITTO,
    async fn() {
      await using b = await startBroker({ limits: { maxInflight } });
      const sub = await b.connect5({
        clientId: "window",
        properties: [[PROP.RECEIVE_MAXIMUM, receiveMaximum]],
      }, "sub");
      await sub.subscribe5(1, [["win/t", { qos: 1 }]]);
      const pub = await b.connect5({ clientId: "window-pub" }, "pub");
      for (let i = 0; i < 6; i++) {
        await pub.publish5({ topic: "win/t", qos: 1, packetId: i + 1, payload: String(i) });
      }
      const window = Math.min(maxInflight, receiveMaximum);
      const first = [];
      for (let i = 0; i < window; i++) first.push(await sub.expectPublish5());
      await sub.expectNothing(150);
      for (const m of first) await sub.send(puback(m.packetId!));
      const rest = await sub.receiveMany5(6 - window);
      assert.deepEqual(
        [...first, ...rest].map((m) => m.text),
        ["0", "1", "2", "3", "4", "5"],
      );
    },
  });
}
