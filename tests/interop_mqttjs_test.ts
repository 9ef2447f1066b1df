/**
 * Interoperability with npm:mqtt (MQTT.js 5.x, MQTT 3.1.1): QoS round trips, retained messages,
 * wills, persistent sessions, wildcards and unsubscribe.
 */
import assert from "node:assert/strict";
// Inline and exactly versioned, like every dependency here (see tests/imports_test.ts).
// deno-lint-ignore no-import-prefix
import mqtt from "npm:mqtt@5.16.0";
import { Broker } from "../mod.ts";
import { waitFor } from "./_util.ts";

interface Received {
  topic: string;
  payload: Uint8Array;
  qos: number;
  retain: boolean;
  dup: boolean;
}

const text = (r: Received) => new TextDecoder().decode(r.payload);

async function start() {
  const broker = new Broker({ logLevel: "silent" });
  const { port } = await broker.listen({ hostname: "127.0.0.1", port: 0 });
  const clients: mqtt.MqttClient[] = [];
  return {
    broker,
    port,
    /** Connects and waits for CONNACK; returns the client, its messages and the CONNACK. */
    async connect(options: mqtt.IClientOptions) {
      const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
        protocolVersion: 4,
        reconnectPeriod: 0,
        ...options,
      });
      clients.push(client);
      const messages: Received[] = [];
      // Registered before CONNACK: queued messages may follow it at once.
      client.on("message", (topic, payload, packet) => {
        messages.push({
          topic,
          payload: new Uint8Array(payload),
          qos: packet.qos,
          retain: packet.retain,
          dup: packet.dup,
        });
      });
      const connack = await new Promise<mqtt.IConnackPacket>((resolve, reject) => {
        client.once("connect", resolve);
        client.once("error", reject);
      });
      return { client, messages, connack };
    },
    async [Symbol.asyncDispose]() {
      for (const client of clients) await client.endAsync(true);
      await broker.close();
    },
  };
}

Deno.test("mqtt.js: QoS 0, 1 and 2 round trips keep QoS and bytes; delivery is at min(published, granted)", async () => {
  await using env = await start();
  const sub2 = await env.connect({ clientId: "rt-sub2" });
  const sub1 = await env.connect({ clientId: "rt-sub1" });
  const pub = await env.connect({ clientId: "rt-pub" });
  const granted2 = await sub2.client.subscribeAsync("rt/#", { qos: 2 });
  const granted1 = await sub1.client.subscribeAsync("rt/#", { qos: 1 });
  assert.deepEqual(granted2.map((g) => g.qos), [2]);
  assert.deepEqual(granted1.map((g) => g.qos), [1]);
  const binary = crypto.getRandomValues(new Uint8Array(4096));
  await pub.client.publishAsync("rt/0", "zero", { qos: 0 });
  await pub.client.publishAsync("rt/1", "one", { qos: 1 });
  await pub.client.publishAsync("rt/2", new Uint8Array(binary) as never, { qos: 2 });
  await waitFor(() => sub2.messages.length === 3 && sub1.messages.length === 3, 5_000, "3 + 3");
  assert.deepEqual(sub2.messages.map((m) => [m.topic, m.qos, m.retain]), [
    ["rt/0", 0, false],
    ["rt/1", 1, false],
    ["rt/2", 2, false],
  ]);
  assert.deepEqual(sub1.messages.map((m) => [m.topic, m.qos]), [
    ["rt/0", 0],
    ["rt/1", 1],
    ["rt/2", 1],
  ]);
  assert.deepEqual(text(sub2.messages[0]), "zero");
  assert.deepEqual(sub2.messages[2].payload, binary);
  assert.deepEqual(sub1.messages[2].payload, binary);
  await waitFor(() => env.broker.stats().inflight === 0, 5_000, "every ack");
});

Deno.test("mqtt.js: retained messages go to new subscribers with retain=1, live ones with retain=0, an empty payload clears [MQTT-3.3.1-6] [MQTT-3.3.1-9] [MQTT-3.3.1-10]", async () => {
  await using env = await start();
  const pub = await env.connect({ clientId: "ret-pub" });
  await pub.client.publishAsync("ret/a", "kept a", { qos: 1, retain: true });
  await pub.client.publishAsync("ret/b", "kept b", { qos: 0, retain: true });
  const sub = await env.connect({ clientId: "ret-sub" });
  await sub.client.subscribeAsync("ret/+", { qos: 1 });
  await waitFor(() => sub.messages.length === 2, 5_000, "two retained messages");
  assert.deepEqual(
    sub.messages.map((m) => [m.topic, text(m), m.qos, m.retain]).sort(),
    [["ret/a", "kept a", 1, true], ["ret/b", "kept b", 0, true]],
  );
  // Retained and live: a live message is delivered with retain=0 to existing subscribers.
  await pub.client.publishAsync("ret/a", "replaced", { qos: 1, retain: true });
  await waitFor(() => sub.messages.length === 3, 5_000, "the live message");
  assert.deepEqual([sub.messages[2].topic, text(sub.messages[2]), sub.messages[2].retain], [
    "ret/a",
    "replaced",
    false,
  ]);
  // Clear ret/a; a new subscriber gets only ret/b, then a live marker.
  await pub.client.publishAsync("ret/a", "", { qos: 1, retain: true });
  const late = await env.connect({ clientId: "ret-late" });
  await late.client.subscribeAsync("ret/+", { qos: 1 });
  await pub.client.publishAsync("ret/marker", "m", { qos: 1 });
  await waitFor(() => late.messages.some((m) => m.topic === "ret/marker"), 5_000, "the marker");
  assert.deepEqual(late.messages.map((m) => [m.topic, text(m), m.retain]), [
    ["ret/b", "kept b", true],
    ["ret/marker", "m", false],
  ]);
  assert.equal(env.broker.stats().retained, 1);
});

Deno.test("mqtt.js: the will is published when the client's stream is destroyed, not after a clean end [MQTT-3.1.2-8] [MQTT-3.14.4-3]", async () => {
  await using env = await start();
  const watcher = await env.connect({ clientId: "will-watcher" });
  await watcher.client.subscribeAsync("will/#", { qos: 1 });

  const polite = await env.connect({
    clientId: "will-polite",
    will: { topic: "will/polite", payload: "should not appear" as never, qos: 1, retain: false },
  });
  await polite.client.endAsync();

  const abrupt = await env.connect({
    clientId: "will-abrupt",
    will: { topic: "will/abrupt", payload: "went away" as never, qos: 1, retain: true },
  });
  abrupt.client.stream.destroy();
  await waitFor(() => watcher.messages.length >= 1, 5_000, "the will");
  assert.deepEqual(watcher.messages.map((m) => [m.topic, text(m), m.qos]), [
    ["will/abrupt", "went away", 1],
  ]);
  // The will was retained too.
  const late = await env.connect({ clientId: "will-late" });
  await late.client.subscribeAsync("will/#", { qos: 1 });
  await waitFor(() => late.messages.length >= 1, 5_000, "the retained will");
  assert.deepEqual(late.messages.map((m) => [m.topic, m.retain]), [["will/abrupt", true]]);
});

Deno.test("mqtt.js: a persistent session gets the QoS 1 messages queued while offline, with sessionPresent [MQTT-3.1.2-4] [MQTT-3.2.2-2]", async () => {
  await using env = await start();
  const first = await env.connect({ clientId: "persist", clean: false });
  assert.equal(first.connack.sessionPresent, false);
  await first.client.subscribeAsync("p/#", { qos: 1 });
  await first.client.endAsync();
  await waitFor(() => env.broker.stats().connections === 0, 5_000, "the disconnect");

  const pub = await env.connect({ clientId: "persist-pub" });
  await pub.client.publishAsync("p/1", "one", { qos: 1 });
  await pub.client.publishAsync("p/0", "qos0 is not queued offline", { qos: 0 });
  await pub.client.publishAsync("p/2", "two", { qos: 1 });
  await pub.client.publishAsync("p/3", "three", { qos: 2 });
  assert.equal(env.broker.stats().queued, 3);
  assert.equal(env.broker.stats().dropped.offlineQos0, 1);

  const again = await env.connect({ clientId: "persist", clean: false });
  assert.equal(again.connack.sessionPresent, true);
  await waitFor(() => again.messages.length >= 3, 5_000, "three queued messages");
  assert.deepEqual(again.messages.map((m) => [m.topic, text(m), m.qos]), [
    ["p/1", "one", 1],
    ["p/2", "two", 1],
    ["p/3", "three", 1],
  ]);
  // The subscription survived too: a live message arrives without subscribing again.
  await pub.client.publishAsync("p/live", "live", { qos: 1 });
  await waitFor(() => again.messages.length === 4, 5_000, "the live message");
  await again.client.endAsync();
  await waitFor(() => env.broker.stats().connections === 1, 5_000, "the disconnect");

  // A clean session discards it [MQTT-3.1.2-6].
  const clean = await env.connect({ clientId: "persist", clean: true });
  assert.equal(clean.connack.sessionPresent, false);
  assert.equal(env.broker.stats().subscriptions, 0, "the old subscription is gone");
  await clean.client.subscribeAsync("p-marker", { qos: 1 });
  await pub.client.publishAsync("p/after", "nobody", { qos: 1 });
  await pub.client.publishAsync("p-marker", "m", { qos: 1 });
  await waitFor(() => clean.messages.length >= 1, 5_000, "the marker");
  assert.deepEqual(clean.messages.map((m) => m.topic), ["p-marker"]);
});

Deno.test("mqtt.js: + and # wildcards match as specified, overlapping filters deliver once [MQTT-4.7.1-2] [MQTT-4.7.1-3]", async () => {
  await using env = await start();
  const plus = await env.connect({ clientId: "w-plus" });
  const hash = await env.connect({ clientId: "w-hash" });
  const three = await env.connect({ clientId: "w-three" });
  const overlap = await env.connect({ clientId: "w-overlap" });
  const pub = await env.connect({ clientId: "w-pub" });
  await plus.client.subscribeAsync("w/+/temp", { qos: 1 });
  await hash.client.subscribeAsync("w/#", { qos: 1 });
  await three.client.subscribeAsync("+/+/+", { qos: 1 });
  await overlap.client.subscribeAsync({ "w/#": { qos: 0 }, "w/+/temp": { qos: 1 } });
  for (const topic of ["w/kitchen/temp", "w/kitchen/humidity", "w", "w/a/b/temp", "x/y/z"]) {
    await pub.client.publishAsync(topic, topic, { qos: 1 });
  }
  await pub.client.publishAsync("w/end/temp", "end", { qos: 1 });
  const ended = (r: { messages: Received[] }) => r.messages.some((m) => m.topic === "w/end/temp");
  await waitFor(() => [plus, hash, three, overlap].every(ended), 5_000, "the end marker");
  const topics = (r: { messages: Received[] }) => r.messages.map((m) => m.topic);
  assert.deepEqual(topics(plus), ["w/kitchen/temp", "w/end/temp"]);
  assert.deepEqual(topics(hash), [
    "w/kitchen/temp",
    "w/kitchen/humidity",
    "w",
    "w/a/b/temp",
    "w/end/temp",
  ]);
  assert.deepEqual(topics(three), ["w/kitchen/temp", "w/kitchen/humidity", "x/y/z", "w/end/temp"]);
  assert.deepEqual(topics(overlap), [
    "w/kitchen/temp",
    "w/kitchen/humidity",
    "w",
    "w/a/b/temp",
    "w/end/temp",
  ]);
  // Where both filters match, the higher granted QoS applies.
  assert.equal(overlap.messages[0].qos, 1);
  assert.equal(overlap.messages[1].qos, 0);
});

Deno.test("mqtt.js: after unsubscribe a filter no longer delivers; other filters still do [MQTT-3.10.4-1]", async () => {
  await using env = await start();
  const sub = await env.connect({ clientId: "u-sub" });
  const pub = await env.connect({ clientId: "u-pub" });
  await sub.client.subscribeAsync(["u/a", "u/b"], { qos: 1 });
  assert.equal(env.broker.stats().subscriptions, 2);
  await sub.client.unsubscribeAsync("u/a");
  assert.equal(env.broker.stats().subscriptions, 1);
  await pub.client.publishAsync("u/a", "gone", { qos: 1 });
  await pub.client.publishAsync("u/b", "still", { qos: 1 });
  await waitFor(() => sub.messages.length >= 1, 5_000, "u/b");
  assert.deepEqual(sub.messages.map((m) => m.topic), ["u/b"]);
  // Unsubscribing from a filter never subscribed is acknowledged too [MQTT-3.10.4-5].
  await sub.client.unsubscribeAsync("never/subscribed");
});
