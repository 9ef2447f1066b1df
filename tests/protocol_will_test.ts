/**
 * 07: the will message — when it is published, with which QoS and retain, and when it is not.
 *
 * @module
 */
import assert from "node:assert/strict";
import { KEEP_ALIVE_CLOSE_MS, MOSQUITTO, startBroker } from "./_harness.ts";
import type { RunningBroker } from "./_harness.ts";
import { connect, packet, publish, sendThenReset, subscribe, TYPE } from "./_raw.ts";
import type { RawClient, RawWill } from "./_raw.ts";

/** A watcher subscribed to `will/#` at QoS 2. */
async function watcher(b: RunningBroker): Promise<RawClient> {
  const w = await b.connect({ clientId: "watcher" }, "watcher");
  await w.subscribe(1, [["will/#", 2]]);
  return w;
}

async function willClient(b: RunningBroker, will: RawWill, keepAlive = 0): Promise<RawClient> {
  return await b.connect({ clientId: "testament", will, keepAlive }, "testament");
}

for (const qos of [0, 1, 2]) {
  Deno.test(
    `will: published at its QoS ${qos} when the network connection closes without DISCONNECT [MQTT-3.1.2-8] [MQTT-3.1.2-9]`,
    async () => {
      await using b = await startBroker();
      const w = await watcher(b);
      const c = await willClient(b, { topic: "will/q", payload: `bye${qos}`, qos });
      await c.close();
      const m = await w.receive();
      assert.deepEqual([m.topic, m.text, m.qos], ["will/q", `bye${qos}`, qos]);
      await w.expectNothing();
    },
  );
}

Deno.test(
  "will: with will retain 1 it is published as retained [MQTT-3.1.2-17] [MQTT-3.3.1-9]",
  async () => {
    await using b = await startBroker();
    const w = await watcher(b);
    const c = await willClient(b, { topic: "will/r", payload: "kept", qos: 1, retain: true });
    await c.close();
    const live = await w.receive();
    assert.deepEqual([live.text, live.retain], ["kept", false], "existing subscribers: RETAIN=0");
    const late = await b.connect({ clientId: "late" }, "late");
    await late.subscribe(1, [["will/r", 1]]);
    const stored = await late.receive();
    assert.deepEqual([stored.text, stored.qos, stored.retain], ["kept", 1, true]);
  },
);

Deno.test("will: with will retain 0 it is not stored [MQTT-3.1.2-16]", async () => {
  await using b = await startBroker();
  const w = await watcher(b);
  const c = await willClient(b, { topic: "will/nr", payload: "fleeting", qos: 1 });
  await c.close();
  assert.equal((await w.receive()).text, "fleeting");
  const late = await b.connect({ clientId: "late" }, "late");
  await late.subscribe(1, [["will/nr", 1]]);
  await late.expectNothing();
});

Deno.test("will: delivered at min(will QoS, granted QoS) [MQTT-3.8.4-6]", async () => {
  await using b = await startBroker();
  const w = await b.connect({ clientId: "low" }, "low");
  await w.subscribe(1, [["will/min", 1]]);
  const c = await willClient(b, { topic: "will/min", payload: "x", qos: 2 });
  await c.close();
  assert.equal((await w.receive()).qos, 1);
});

Deno.test("will: an empty will payload is published as an empty message", async () => {
  await using b = await startBroker();
  const w = await watcher(b);
  const c = await willClient(b, { topic: "will/empty", payload: "", qos: 0 });
  await c.close();
  const m = await w.expectPublish();
  assert.deepEqual([m.topic, m.payload.length], ["will/empty", 0]);
});

Deno.test("will: published when the keep alive expires [MQTT-3.1.2-8] [MQTT-3.1.2-24]", async () => {
  await using b = await startBroker();
  const w = await watcher(b);
  const c = await willClient(b, { topic: "will/ka", payload: "silent", qos: 1 }, 1);
  await c.expectClosed(KEEP_ALIVE_CLOSE_MS);
  assert.equal((await w.receive()).text, "silent");
});

Deno.test("will: published when the connection is reset (RST) [MQTT-3.1.2-8]", async () => {
  await using b = await startBroker();
  const w = await watcher(b);
  const connack = await sendThenReset(
    b.port,
    connect({ clientId: "reset", will: { topic: "will/rst", payload: "reset", qos: 1 } }),
    4,
  );
  assert.deepEqual(Array.from(connack), [0x20, 2, 0, 0]);
  assert.equal((await w.receive()).text, "reset");
});

const violations: [string, Uint8Array][] = [
  ["a second CONNECT [MQTT-3.1.0-2]", connect({ clientId: "again" })],
  ["PUBLISH with QoS 3 [MQTT-3.3.1-4]", packet(TYPE.PUBLISH, 0x06, [0, 1, 0x61, 0, 1])],
  ["PUBLISH to a wildcard topic [MQTT-3.3.2-2]", publish({ topic: "will/#", payload: "x" })],
  ["SUBSCRIBE with wrong flags [MQTT-3.8.1-1]", subscribe(1, [["a", 0]], 0)],
  ["a reserved packet type", Uint8Array.of(0xf0, 0)],
];
for (const [name, bytes] of violations) {
  Deno.test({
    name: `will: published when the broker closes the connection for ${name} [MQTT-3.1.2-8]`,
    // mosquitto 2.0.11 drops the will when it closes for a second CONNECT; the standard lists
    // "the Server closes the Network Connection because of a protocol error" among the cases.
    ignore: MOSQUITTO && name.startsWith("a second CONNECT"),
    async fn() {
      await using b = await startBroker();
      const w = await watcher(b);
      const c = await willClient(b, { topic: "will/bad", payload: "violated", qos: 1 });
      await c.send(bytes);
      await c.expectClosed();
      assert.equal((await w.receive()).text, "violated");
    },
  });
}

Deno.test("will: without the will flag nothing is published on a network close [MQTT-3.1.2-12]", async () => {
  await using b = await startBroker();
  const w = await b.connect({ clientId: "all" }, "all");
  await w.subscribe(1, [["#", 2]]);
  const c = await b.connect({ clientId: "nowill" }, "nowill");
  await c.close();
  await w.expectNothing();
});

Deno.test("will: published once, not again when the same client id reconnects [MQTT-3.1.2-10]", async () => {
  await using b = await startBroker();
  const w = await watcher(b);
  const c = await b.connect(
    { clientId: "once", cleanSession: false, will: { topic: "will/once", payload: "1", qos: 1 } },
    "once1",
  );
  await c.close();
  assert.equal((await w.receive()).text, "1");
  const again = await b.connect({ clientId: "once", cleanSession: false }, "once2");
  await again.close();
  await w.expectNothing();
});
