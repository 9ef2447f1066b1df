/**
 * 04: retained messages.
 *
 * @module
 */
import assert from "node:assert/strict";
import { MOSQUITTO, startBroker } from "./_harness.ts";
import { publish } from "./_raw.ts";

Deno.test(
  "retain: a retained message is stored and sent with RETAIN=1 to a new subscriber [MQTT-3.3.1-5] [MQTT-3.3.1-6] [MQTT-3.3.1-8]",
  async () => {
    await using b = await startBroker();
    const pub = await b.connect({ clientId: "pub" }, "pub");
    await pub.publish({ topic: "ret/a", payload: "stored", qos: 1, retain: true, packetId: 1 });
    const sub = await b.connect({ clientId: "sub" }, "sub");
    await sub.subscribe(1, [["ret/a", 1]]);
    const m = await sub.receive();
    assert.deepEqual([m.topic, m.text, m.qos, m.retain], ["ret/a", "stored", 1, true]);
    await sub.expectNothing();
  },
);

Deno.test("retain: a newer retained message replaces the stored one [MQTT-3.3.1-7]", async () => {
  await using b = await startBroker();
  const pub = await b.connect({ clientId: "pub" }, "pub");
  await pub.publish({ topic: "ret/r", payload: "v1", qos: 1, retain: true, packetId: 1 });
  await pub.publish({ topic: "ret/r", payload: "v2", qos: 1, retain: true, packetId: 2 });
  // A QoS 0 retained message replaces too (storing it is a SHOULD that both brokers follow).
  await pub.publish({ topic: "ret/r", payload: "v3", qos: 0, retain: true });
  await pub.publish({ topic: "ret/sync", payload: "s", qos: 1, retain: true, packetId: 3 });
  const sub = await b.connect({ clientId: "sub" }, "sub");
  await sub.subscribe(1, [["ret/r", 2]]);
  const m = await sub.receive();
  assert.deepEqual([m.text, m.qos, m.retain], ["v3", 0, true]);
  await sub.expectNothing();
});

Deno.test(
  "retain: an empty retained payload is delivered to subscribers, clears the topic and is not stored [MQTT-3.3.1-10] [MQTT-3.3.1-11]",
  async () => {
    await using b = await startBroker();
    const pub = await b.connect({ clientId: "pub" }, "pub");
    await pub.publish({ topic: "ret/c", payload: "doomed", qos: 1, retain: true, packetId: 1 });
    const live = await b.connect({ clientId: "live" }, "live");
    await live.subscribe(1, [["ret/c", 1]]);
    assert.equal((await live.receive()).text, "doomed");
    await pub.publish({ topic: "ret/c", payload: "", qos: 1, retain: true, packetId: 2 });
    const cleared = await live.receive();
    assert.equal(cleared.payload.length, 0, "processed as normal and sent [MQTT-3.3.1-10]");
    assert.equal(cleared.retain, false);
    const late = await b.connect({ clientId: "late" }, "late");
    await late.subscribe(1, [["ret/c", 1], ["ret/#", 1]]);
    await late.expectNothing();
  },
);

Deno.test(
  "retain: forwarded with RETAIN=0 to subscribers that already exist [MQTT-3.3.1-9]",
  async () => {
    await using b = await startBroker();
    const sub = await b.connect({ clientId: "sub" }, "sub");
    await sub.subscribe(1, [["ret/f", 1]]);
    const pub = await b.connect({ clientId: "pub" }, "pub");
    await pub.publish({ topic: "ret/f", payload: "now", qos: 1, retain: true, packetId: 1 });
    const m = await sub.receive();
    assert.deepEqual([m.text, m.retain], ["now", false]);
  },
);

Deno.test(
  "retain: a non-retained PUBLISH neither stores nor replaces the retained message [MQTT-3.3.1-12]",
  async () => {
    await using b = await startBroker();
    const pub = await b.connect({ clientId: "pub" }, "pub");
    await pub.publish({ topic: "ret/n", payload: "keep", qos: 1, retain: true, packetId: 1 });
    await pub.publish({ topic: "ret/n", payload: "live", qos: 1, packetId: 2 });
    await pub.publish({ topic: "ret/other", payload: "not stored", qos: 1, packetId: 3 });
    const sub = await b.connect({ clientId: "sub" }, "sub");
    await sub.subscribe(1, [["ret/#", 1]]);
    const m = await sub.receive();
    assert.deepEqual([m.topic, m.text, m.retain], ["ret/n", "keep", true]);
    await sub.expectNothing();
  },
);

const qosCases: [stored: number, granted: number][] = [[2, 1], [2, 0], [0, 2], [1, 2], [2, 2]];
for (const [stored, granted] of qosCases) {
  Deno.test(
    `retain: stored at QoS ${stored}, subscribed at QoS ${granted}, sent at QoS ${
      Math.min(stored, granted)
    } [MQTT-3.8.4-6]`,
    async () => {
      await using b = await startBroker();
      const pub = await b.connect({ clientId: "pub" }, "pub");
      await pub.publish({ topic: "ret/q", payload: "q", qos: stored, retain: true, packetId: 1 });
      if (stored === 0) {
        // QoS 0 has no ack; a QoS 1 publish on the same connection after it orders the two.
        await pub.publish({ topic: "ret/sync", payload: "", qos: 1, packetId: 2 });
      }
      const sub = await b.connect({ clientId: "sub" }, "sub");
      await sub.subscribe(1, [["ret/q", granted]]);
      const m = await sub.receive();
      assert.deepEqual([m.qos, m.retain], [Math.min(stored, granted), true]);
    },
  );
}

Deno.test("retain: a wildcard subscription gets every matching retained message", async () => {
  await using b = await startBroker();
  const pub = await b.connect({ clientId: "pub" }, "pub");
  const topics = ["w/1", "w/2", "w/x/y", "w", "other/1", "ww/1"];
  for (const [i, topic] of topics.entries()) {
    await pub.publish({ topic, payload: topic, qos: 1, retain: true, packetId: i + 1 });
  }
  const sub = await b.connect({ clientId: "sub" }, "sub");
  await sub.subscribe(1, [["w/#", 1]]);
  const got = [];
  for (let i = 0; i < 4; i++) got.push((await sub.receive()).topic);
  assert.deepEqual(got.sort(), ["w", "w/1", "w/2", "w/x/y"]);
  await sub.expectNothing();
  const plus = await b.connect({ clientId: "plus" }, "plus");
  await plus.subscribe(1, [["+/1", 0]]);
  const got2 = [];
  for (let i = 0; i < 3; i++) got2.push((await plus.expectPublish()).topic);
  assert.deepEqual(got2.sort(), ["other/1", "w/1", "ww/1"]);
  await plus.expectNothing();
});

Deno.test("retain: QoS 0 retained message without any subscriber is still stored", async () => {
  await using b = await startBroker();
  const pub = await b.connect({ clientId: "pub" }, "pub");
  await pub.send(publish({ topic: "ret/z", payload: "zero", retain: true }));
  await pub.publish({ topic: "ret/sync", payload: "", qos: 1, packetId: 1 });
  const sub = await b.connect({ clientId: "sub" }, "sub");
  await sub.subscribe(1, [["ret/z", 0]]);
  const m = await sub.expectPublish();
  assert.deepEqual([m.text, m.retain, m.qos], ["zero", true, 0]);
});

Deno.test({
  name: "retain: broker.publish with retain stores the message (ours)",
  ignore: MOSQUITTO,
  async fn() {
    await using b = await startBroker();
    await b.broker!.publish({ topic: "ret/api", payload: "from api", qos: 1, retain: true });
    const sub = await b.connect({ clientId: "sub" }, "sub");
    await sub.subscribe(1, [["ret/api", 1]]);
    const m = await sub.receive();
    assert.deepEqual([m.text, m.retain, m.qos], ["from api", true, 1]);
  },
});
