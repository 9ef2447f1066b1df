/**
 * Interoperability with npm:mqtt (MQTT.js 5.x) in MQTT 5.0 mode (`protocolVersion: 5`): user
 * properties, topic aliases, request/response, shared subscriptions, message expiry, flow
 * control. Runs against ours, or mosquitto with `MQTT_TEST_BROKER=mosquitto`.
 *
 * @module
 */
import assert from "node:assert/strict";
// Inline and exactly versioned, like every dependency here (see tests/imports_test.ts).
// deno-lint-ignore no-import-prefix
import mqtt from "npm:mqtt@5.16.0";
import { MOSQUITTO, startBroker, TEST_AUTH_METHOD, waitFor } from "./_harness.ts";
import type { StartOptions } from "./_harness.ts";

interface Received {
  topic: string;
  text: string;
  qos: number;
  retain: boolean;
  properties: mqtt.IPublishPacket["properties"];
}

async function start(options: StartOptions = {}) {
  const b = await startBroker(options);
  const clients: mqtt.MqttClient[] = [];
  return {
    b,
    port: b.port,
    /** Connects in 5.0 and waits for CONNACK; returns the client, its messages and the CONNACK. */
    async connect(options: mqtt.IClientOptions) {
      const client = mqtt.connect(`mqtt://127.0.0.1:${b.port}`, {
        protocolVersion: 5,
        reconnectPeriod: 0,
        ...options,
      });
      clients.push(client);
      const messages: Received[] = [];
      client.on("message", (topic, payload, packet) => {
        messages.push({
          topic,
          text: new TextDecoder().decode(payload),
          qos: packet.qos,
          retain: packet.retain,
          properties: packet.properties,
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
      await b.close();
    },
  };
}

Deno.test("mqtt.js v5: CONNACK properties and user properties forwarded in order", async () => {
  await using s = await start();
  const sub = await s.connect({ clientId: "js5-sub" });
  assert.equal(sub.connack.reasonCode, 0);
  await sub.client.subscribeAsync("js5/up", { qos: 1 });
  const pub = await s.connect({ clientId: "js5-pub" });
  await pub.client.publishAsync("js5/up", "hi", {
    qos: 1,
    properties: { userProperties: { b: "2", a: ["1", "3"] }, contentType: "text/plain" },
  });
  await waitFor(() => sub.messages.length === 1, "the message");
  const [m] = sub.messages;
  assert.equal(m.text, "hi");
  assert.equal(m.properties?.contentType, "text/plain");
  // MQTT.js groups repeated keys into arrays; key order shows the wire order.
  assert.equal(
    JSON.stringify(m.properties?.userProperties),
    JSON.stringify({ b: "2", a: ["1", "3"] }),
  );
});

Deno.test("mqtt.js v5: topic aliases from the client resolve on the broker", async () => {
  await using s = await start({ v5: { topicAliasMaximum: 10 } });
  const raw = await s.b.connect5({ clientId: "alias-raw" }, "raw");
  await raw.subscribe5(1, [["js5/alias/#", { qos: 1 }]]);
  const pub = await s.connect({ clientId: "js5-alias", autoAssignTopicAlias: true });
  assert.ok((pub.connack.properties?.topicAliasMaximum ?? 0) >= 1);
  for (let i = 0; i < 3; i++) {
    await pub.client.publishAsync("js5/alias/long/topic/name", String(i), { qos: 1 });
  }
  await pub.client.publishAsync("js5/alias/other", "x", { qos: 1, properties: { topicAlias: 2 } });
  await pub.client.publishAsync("", "y", { qos: 1, properties: { topicAlias: 2 } });
  const got = [];
  for (let i = 0; i < 5; i++) got.push(await raw.receive5());
  assert.deepEqual(got.map((m) => [m.topic, m.text]), [
    ["js5/alias/long/topic/name", "0"],
    ["js5/alias/long/topic/name", "1"],
    ["js5/alias/long/topic/name", "2"],
    ["js5/alias/other", "x"],
    ["js5/alias/other", "y"],
  ]);
});

Deno.test("mqtt.js v5: a subscriber that allows topic aliases gets every topic right", async () => {
  await using s = await start();
  const sub = await s.connect({
    clientId: "js5-alias-sub",
    properties: { topicAliasMaximum: 3 },
  });
  await sub.client.subscribeAsync("js5/ta/#", { qos: 1 });
  const pub = await s.connect({ clientId: "js5-alias-pub2" });
  const topics = ["js5/ta/a", "js5/ta/b", "js5/ta/a", "js5/ta/c", "js5/ta/d", "js5/ta/a"];
  for (const [i, t] of topics.entries()) await pub.client.publishAsync(t, String(i), { qos: 1 });
  await waitFor(() => sub.messages.length === topics.length, "all messages");
  assert.deepEqual(sub.messages.map((m) => m.topic), topics);
});

Deno.test("mqtt.js v5: request/response with responseTopic and correlationData", async () => {
  await using s = await start();
  const responder = await s.connect({ clientId: "js5-responder" });
  await responder.client.subscribeAsync("js5/svc", { qos: 1 });
  responder.client.on("message", (_topic, payload, packet) => {
    const p = packet.properties;
    if (p?.responseTopic === undefined) return;
    responder.client.publish(p.responseTopic, `re:${payload}`, {
      qos: 1,
      properties: { correlationData: p.correlationData },
    });
  });
  const requester = await s.connect({ clientId: "js5-requester" });
  await requester.client.subscribeAsync("js5/replies/me", { qos: 1 });
  for (const id of ["a1", "b2"]) {
    await requester.client.publishAsync("js5/svc", `q-${id}`, {
      qos: 1,
      properties: { responseTopic: "js5/replies/me", correlationData: Buffer.from(id) },
    });
  }
  await waitFor(() => requester.messages.length === 2, "both responses");
  assert.deepEqual(
    requester.messages.map((m) => [m.text, String(m.properties?.correlationData)]),
    [["re:q-a1", "a1"], ["re:q-b2", "b2"]],
  );
});

Deno.test("mqtt.js v5: a shared subscription gives each message to exactly one member", async () => {
  await using s = await start();
  const one = await s.connect({ clientId: "js5-share-1" });
  const two = await s.connect({ clientId: "js5-share-2" });
  await one.client.subscribeAsync("$share/grp/js5/work", { qos: 1 });
  await two.client.subscribeAsync("$share/grp/js5/work", { qos: 1 });
  const pub = await s.connect({ clientId: "js5-share-pub" });
  const n = 20;
  for (let i = 0; i < n; i++) await pub.client.publishAsync("js5/work", String(i), { qos: 1 });
  await waitFor(() => one.messages.length + two.messages.length === n, "every message once");
  const all = [...one.messages, ...two.messages].map((m) => Number(m.text)).sort((a, b) => a - b);
  assert.deepEqual(all, Array.from({ length: n }, (_, i) => i));
  assert.ok(one.messages.length > 0 && two.messages.length > 0, "both members take some");
  for (const m of [...one.messages, ...two.messages]) assert.equal(m.topic, "js5/work");
});

Deno.test("mqtt.js v5: message expiry: the remaining lifetime is forwarded, an expired message is dropped", async () => {
  await using s = await start();
  const away = await s.connect({
    clientId: "js5-exp",
    clean: false,
    properties: { sessionExpiryInterval: 120 },
  });
  await away.client.subscribeAsync("js5/exp/#", { qos: 1 });
  await away.client.endAsync();
  const pub = await s.connect({ clientId: "js5-exp-pub" });
  await pub.client.publishAsync("js5/exp/short", "short", {
    qos: 1,
    properties: { messageExpiryInterval: 1 },
  });
  await pub.client.publishAsync("js5/exp/long", "long", {
    qos: 1,
    properties: { messageExpiryInterval: 100 },
  });
  const sent = Date.now();
  await waitFor(() => Date.now() - sent >= 2_200, "the short expiry to pass", 5_000);
  const back = await s.connect({
    clientId: "js5-exp",
    clean: false,
    properties: { sessionExpiryInterval: 120 },
  });
  assert.equal(back.connack.sessionPresent, true);
  await waitFor(() => back.messages.length >= 1, "the long-lived message");
  await back.client.subscribeAsync("js5/exp/none", { qos: 0 }); // a round trip after the queue
  assert.deepEqual(back.messages.map((m) => m.text), ["long"]);
  const left = back.messages[0].properties?.messageExpiryInterval ?? 0;
  assert.ok(left <= 98 && left >= 90, `remaining ${left}`);
});

Deno.test("mqtt.js v5: flow control: Receive Maximum 1 subscriber gets every QoS 1 and 2 message, in order per QoS [MQTT-4.6.0-5]", async () => {
  await using s = await start();
  const sub = await s.connect({ clientId: "js5-rm", properties: { receiveMaximum: 1 } });
  await sub.client.subscribeAsync("js5/rm", { qos: 2 });
  const pub = await s.connect({ clientId: "js5-rm-pub" });
  // The broker's own Receive Maximum, as MQTT.js read it from CONNACK.
  const serverMax = pub.connack.properties?.receiveMaximum ?? 65_535;
  assert.ok(serverMax >= 1);
  const n = 30;
  await Promise.all(
    Array.from(
      { length: n },
      (_, i) => pub.client.publishAsync("js5/rm", String(i), { qos: i % 2 === 0 ? 1 : 2 }),
    ),
  );
  await waitFor(() => sub.messages.length === n, "every message", 10_000);
  for (const qos of [1, 2]) {
    assert.deepEqual(
      sub.messages.filter((m) => m.qos === qos).map((m) => m.text),
      Array.from({ length: n }, (_, i) => i).filter((i) => i % 2 === qos - 1).map(String),
    );
  }
});

Deno.test({
  name: "mqtt.js v5: enhanced authentication through handleAuth against the broker's hook (ours)",
  ignore: MOSQUITTO,
  async fn() {
    await using s = await start({ v5: { challengeAuth: true } });
    const client = mqtt.connect(`mqtt://127.0.0.1:${s.port}`, {
      protocolVersion: 5,
      reconnectPeriod: 0,
      clientId: "js5-auth",
      properties: {
        authenticationMethod: TEST_AUTH_METHOD,
        authenticationData: Buffer.from("hello"),
      },
    });
    const challenges: string[] = [];
    client.handleAuth = (packet, callback) => {
      const data = String(packet.properties?.authenticationData ?? "");
      challenges.push(data);
      callback(undefined, {
        cmd: "auth",
        reasonCode: 0x18,
        properties: {
          authenticationMethod: TEST_AUTH_METHOD,
          authenticationData: Buffer.from([...data].reverse().join("")),
        },
      });
    };
    try {
      const connack = await new Promise<mqtt.IConnackPacket>((resolve, reject) => {
        client.once("connect", resolve);
        client.once("error", reject);
      });
      assert.equal(connack.reasonCode, 0);
      assert.deepEqual(challenges, ["challenge"]);
      assert.equal(String(connack.properties?.authenticationData), "welcome");
      await client.subscribeAsync("js5/authed", { qos: 1 });
      await client.publishAsync("js5/authed", "in", { qos: 1 });
    } finally {
      await client.endAsync(true);
    }
  },
});
