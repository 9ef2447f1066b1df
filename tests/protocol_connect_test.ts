/**
 * 01: CONNECT, CONNACK, keep alive, PINGREQ, DISCONNECT and takeover, on raw sockets.
 *
 * @module
 */
import assert from "node:assert/strict";
import { KEEP_ALIVE_CLOSE_MS, MOSQUITTO, startBroker } from "./_harness.ts";
import {
  connect,
  disconnect,
  packet,
  pingreq,
  publish,
  str,
  subscribe,
  TYPE,
  u16,
  unsubscribe,
} from "./_raw.ts";

const notFirst: [string, Uint8Array][] = [
  ["PINGREQ", pingreq()],
  ["PUBLISH", publish({ topic: "a", payload: "x" })],
  ["SUBSCRIBE", subscribe(1, [["a", 0]])],
  ["UNSUBSCRIBE", unsubscribe(1, ["a"])],
  ["DISCONNECT", disconnect()],
];
for (const [name, bytes] of notFirst) {
  Deno.test(`CONNECT: a first packet ${name} closes the connection [MQTT-3.1.0-1]`, async () => {
    await using b = await startBroker();
    const c = await b.client();
    await c.send(bytes);
    await c.expectClosed();
  });
}

Deno.test("CONNECT: a second CONNECT closes the connection [MQTT-3.1.0-2]", async () => {
  await using b = await startBroker();
  const c = await b.connect({ clientId: "twice" });
  await c.send(connect({ clientId: "twice" }));
  await c.expectClosed();
});

Deno.test("CONNECT: CONNACK is the first packet and is well formed [MQTT-3.2.0-1]", async () => {
  await using b = await startBroker();
  const c = await b.client();
  await c.send(connect({ clientId: "first" }));
  const ack = await c.expectConnack(); // parseConnack checks flags, length and reserved bits
  assert.deepEqual(ack, { sessionPresent: false, returnCode: 0 });
});

const badLevels: [string, number][] = [["MQTT", 3], ["MQTT", 6], ["MQTT", 0], ["MQIsdp", 4]];
for (const [name, level] of badLevels) {
  Deno.test(
    `CONNECT: protocol ${name} level ${level} gets CONNACK 0x01, then close [MQTT-3.1.2-2] [MQTT-3.2.2-4]`,
    async () => {
      await using b = await startBroker();
      const c = await b.client();
      await c.send(connect({ clientId: "lvl", protocolName: name, protocolLevel: level }));
      assert.deepEqual(await c.expectConnack(), { sessionPresent: false, returnCode: 0x01 });
      await c.expectClosed();
    },
  );
}

Deno.test({
  // [MQTT-3.1.2-1] lets a server simply close on an unknown protocol name; mosquitto does, we
  // answer CONNACK 0x01 first (our choice, documented in src/codec/packet.ts).
  name: "CONNECT: unknown protocol name gets CONNACK 0x01, then close [MQTT-3.1.2-1] (ours)",
  ignore: MOSQUITTO,
  async fn() {
    await using b = await startBroker();
    const c = await b.client();
    await c.send(connect({ clientId: "name", protocolName: "FOO", protocolLevel: 4 }));
    assert.deepEqual(await c.expectConnack(), { sessionPresent: false, returnCode: 0x01 });
    await c.expectClosed();
  },
});

Deno.test("CONNECT: MQIsdp level 3 (MQTT 3.1) is accepted", async () => {
  await using b = await startBroker();
  const c = await b.client();
  await c.send(connect({ clientId: "v31", protocolName: "MQIsdp", protocolLevel: 3 }));
  assert.equal((await c.expectConnack()).returnCode, 0);
});

Deno.test("CONNECT: the reserved connect flag set closes the connection [MQTT-3.1.2-3]", async () => {
  await using b = await startBroker();
  const c = await b.client();
  await c.send(connect({ clientId: "reserved", flagsOverride: 0x02 | 0x01 }));
  await c.expectClosed();
});

const willFlagViolations: [string, number, boolean][] = [
  // [name, flags, include will topic+message in payload]
  ["will QoS 1 without will flag [MQTT-3.1.2-11] [MQTT-3.1.2-13]", 0x02 | 0x08, false],
  ["will QoS 2 without will flag [MQTT-3.1.2-13]", 0x02 | 0x10, false],
  ["will retain without will flag [MQTT-3.1.2-15]", 0x02 | 0x20, false],
  ["will QoS 3 [MQTT-3.1.2-14]", 0x02 | 0x04 | 0x18, true],
  ["will flag without will topic and message [MQTT-3.1.2-9]", 0x02 | 0x04, false],
];
for (const [name, flags, withWill] of willFlagViolations) {
  Deno.test(`CONNECT: ${name} closes the connection`, async () => {
    await using b = await startBroker();
    const c = await b.client();
    const bytes = packet(
      TYPE.CONNECT,
      0,
      str("MQTT"),
      [4, flags],
      u16(0),
      str("willbad"),
      ...(withWill ? [str("w/t"), str("m")] : []),
    );
    await c.send(bytes);
    await c.expectClosed();
  });
}

for (const qos of [0, 1, 2]) {
  Deno.test(`CONNECT: will flag with will QoS ${qos} is accepted [MQTT-3.1.2-14]`, async () => {
    await using b = await startBroker();
    const c = await b.client();
    await c.send(connect({ clientId: `will${qos}`, will: { topic: "w/t", payload: "x", qos } }));
    assert.equal((await c.expectConnack()).returnCode, 0);
  });
}

Deno.test(
  "CONNECT: password flag without user name flag closes the connection [MQTT-3.1.2-22]",
  async () => {
    await using b = await startBroker();
    const c = await b.client();
    await c.send(connect({ clientId: "pw", password: "secret" }));
    await c.expectClosed();
  },
);

Deno.test(
  "CONNECT: user name flag without a user name in the payload closes the connection [MQTT-3.1.2-19]",
  async () => {
    await using b = await startBroker();
    const c = await b.client();
    await c.send(connect({ clientId: "nouser", flagsOverride: 0x82 }));
    await c.expectClosed();
  },
);

Deno.test("CONNECT: user name and password are accepted when anonymous is allowed", async () => {
  await using b = await startBroker();
  const c = await b.client();
  await c.send(connect({ clientId: "up", username: "u", password: "p" }));
  assert.equal((await c.expectConnack()).returnCode, 0);
});

Deno.test("CONNECT: a 23 character [0-9a-zA-Z] client id is accepted [MQTT-3.1.3-5]", async () => {
  await using b = await startBroker();
  const c = await b.client();
  await c.send(connect({ clientId: "abcdefghijKLMNOPQRST012" }));
  assert.equal((await c.expectConnack()).returnCode, 0);
});

Deno.test(
  "CONNECT: an empty client id with clean session is accepted, each gets its own id [MQTT-3.1.3-6]",
  async () => {
    await using b = await startBroker();
    const one = await b.connect({ clientId: "" }, "one");
    const two = await b.connect({ clientId: "" }, "two");
    // Had both been given the same id, the second would have taken over the first.
    await one.subscribe(1, [["anon/one", 0]]);
    await two.subscribe(1, [["anon/two", 0]]);
    await two.send(publish({ topic: "anon/one", payload: "hi" }));
    assert.equal((await one.expectPublish()).text, "hi");
  },
);

Deno.test(
  "CONNECT: an empty client id without clean session gets CONNACK 0x02, then close [MQTT-3.1.3-8]",
  async () => {
    await using b = await startBroker();
    const c = await b.client();
    await c.send(connect({ clientId: "", cleanSession: false }));
    assert.deepEqual(await c.expectConnack(), { sessionPresent: false, returnCode: 0x02 });
    await c.expectClosed();
  },
);

Deno.test(
  "CONNACK: session present is 0 without a stored session [MQTT-3.2.2-3], 1 with one [MQTT-3.2.2-2]",
  async () => {
    await using b = await startBroker();
    const first = await b.client("first");
    await first.send(connect({ clientId: "sp", cleanSession: false }));
    assert.deepEqual(await first.expectConnack(), { sessionPresent: false, returnCode: 0 });
    await first.send(disconnect());
    await first.expectClosed();
    const second = await b.client("second");
    await second.send(connect({ clientId: "sp", cleanSession: false }));
    assert.deepEqual(await second.expectConnack(), { sessionPresent: true, returnCode: 0 });
  },
);

Deno.test(
  "CONNACK: session present is 0 with clean session even when a session was stored [MQTT-3.2.2-1]",
  async () => {
    await using b = await startBroker();
    const first = await b.connect({ clientId: "sp1", cleanSession: false }, "first");
    await first.subscribe(1, [["x", 1]]);
    await first.send(disconnect());
    await first.expectClosed();
    const second = await b.client("second");
    await second.send(connect({ clientId: "sp1", cleanSession: true }));
    assert.deepEqual(await second.expectConnack(), { sessionPresent: false, returnCode: 0 });
  },
);

Deno.test({
  name: "CONNECT: no CONNECT within connectTimeoutMs closes the connection (ours)",
  ignore: MOSQUITTO,
  async fn() {
    await using b = await startBroker({ limits: { connectTimeoutMs: 200 } });
    const idle = await b.client("idle");
    await idle.expectClosed(3_000);
    // A half-sent CONNECT does not stop the clock either.
    const partial = await b.client("partial");
    await partial.send(connect({ clientId: "slow" }).subarray(0, 5));
    await partial.expectClosed(3_000);
  },
});

Deno.test(
  "CONNECT: a client id already connected closes the older connection (takeover) [MQTT-3.1.4-2]",
  async () => {
    await using b = await startBroker();
    const older = await b.connect({ clientId: "same" }, "older");
    const newer = await b.connect({ clientId: "same" }, "newer");
    await older.expectClosed();
    await newer.send(pingreq());
    await newer.expectPacket(TYPE.PINGRESP);
  },
);

Deno.test(
  "keep alive: no packet within 1.5 × keep alive closes the connection [MQTT-3.1.2-24]",
  async () => {
    await using b = await startBroker();
    const c = await b.connect({ clientId: "ka", keepAlive: 1 });
    const start = Date.now();
    await c.expectClosed(KEEP_ALIVE_CLOSE_MS);
    // The client may legitimately stay silent for the whole keep alive period.
    assert.ok(Date.now() - start >= 1_000, `closed after ${Date.now() - start} ms`);
  },
);

Deno.test("keep alive: PINGREQs within the keep alive keep the connection open", async () => {
  await using b = await startBroker();
  const c = await b.connect({ clientId: "ka2", keepAlive: 1 });
  // 3 × 700 ms covers more than 1.5 × keep alive; each wait fails if the socket closes.
  for (let i = 0; i < 3; i++) {
    await c.send(pingreq());
    await c.expectPacket(TYPE.PINGRESP);
    await c.expectNothing(700);
  }
});

Deno.test("PINGREQ: the broker answers PINGRESP [MQTT-3.12.4-1]", async () => {
  await using b = await startBroker();
  const c = await b.connect({ clientId: "ping" });
  for (let i = 0; i < 3; i++) {
    await c.send(pingreq());
    const p = await c.expectPacket(TYPE.PINGRESP);
    assert.equal(p.flags, 0);
    assert.equal(p.body.length, 0);
  }
});

Deno.test(
  "DISCONNECT: the broker closes the connection and does not send the will [MQTT-3.14.4-3] [MQTT-3.1.2-10]",
  async () => {
    await using b = await startBroker();
    const watcher = await b.connect({ clientId: "watcher" }, "watcher");
    await watcher.subscribe(1, [["will/#", 2]]);
    const c = await b.connect({
      clientId: "leaver",
      will: { topic: "will/leaver", payload: "gone", qos: 1 },
    });
    await c.send(disconnect());
    await c.expectClosed();
    await watcher.expectNothing();
  },
);
