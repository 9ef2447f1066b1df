/**
 * 02: SUBSCRIBE, UNSUBSCRIBE and plain QoS 0 delivery, on raw sockets.
 *
 * @module
 */
import assert from "node:assert/strict";
import { MOSQUITTO, startBroker } from "./_harness.ts";
import { pingreq, publish, subscribe, TYPE, unsubscribe } from "./_raw.ts";

Deno.test(
  "SUBSCRIBE: several filters get one SUBACK return code each, in order [MQTT-3.8.4-5] [MQTT-3.9.3-1]",
  async () => {
    await using b = await startBroker();
    const c = await b.connect({ clientId: "multi" });
    const codes = await c.subscribe(0x1234, [["a/b", 0], ["c/+", 1], ["d/#", 2], ["e", 1], [
      "f",
      0,
    ]]);
    assert.deepEqual(codes, [0, 1, 2, 1, 0]);
  },
);

Deno.test("SUBSCRIBE: granted QoS is the requested QoS (server maximum 2) [MQTT-3.8.4-6]", async () => {
  await using b = await startBroker();
  const c = await b.connect({ clientId: "granted" });
  for (const qos of [0, 1, 2]) {
    assert.deepEqual(await c.subscribe(qos + 1, [[`g/${qos}`, qos]]), [qos]);
  }
});

Deno.test("SUBSCRIBE/UNSUBSCRIBE: acks carry the request's packet id [MQTT-3.8.4-2] [MQTT-3.10.4-4]", async () => {
  await using b = await startBroker();
  const c = await b.connect({ clientId: "ids" });
  // RawClient.subscribe/unsubscribe assert that the ack's packet id matches.
  for (const id of [1, 0x00ff, 0x0100, 0x7fff, 0xffff]) {
    await c.subscribe(id, [[`ids/${id}`, 1]]);
    await c.unsubscribe(id, [`ids/${id}`]);
  }
});

Deno.test({
  // mosquitto closes the connection on an invalid filter; [MQTT-4.7.3] leaves the action open
  // and we answer 0x80 for that filter only, keeping the connection and the other filters.
  name:
    "SUBSCRIBE: an invalid filter gets 0x80 for that filter only (ours) [MQTT-4.7.1-2] [MQTT-4.7.1-3]",
  ignore: MOSQUITTO,
  async fn() {
    await using b = await startBroker();
    const c = await b.connect({ clientId: "invalid" });
    const codes = await c.subscribe(9, [
      ["ok/1", 1],
      ["a/#/b", 1],
      ["a+", 0],
      ["ok/2", 2],
      ["a/b#", 0],
      ["#/", 1],
      ["+a", 1],
      ["", 0],
      ["ok/3", 0],
    ]);
    assert.deepEqual(codes, [1, 0x80, 0x80, 2, 0x80, 0x80, 0x80, 0x80, 0]);
    // The connection stays usable and the valid filters work.
    const pub = await b.connect({ clientId: "pub" });
    await pub.send(publish({ topic: "ok/2", payload: "valid" }));
    assert.equal((await c.expectPublish()).text, "valid");
  },
});

Deno.test(
  "SUBSCRIBE: a repeated filter replaces the subscription and re-sends retained messages [MQTT-3.8.4-3]",
  async () => {
    await using b = await startBroker();
    const pub = await b.connect({ clientId: "pub" }, "pub");
    await pub.publish({ topic: "re/t", payload: "kept", qos: 1, retain: true, packetId: 1 });
    const sub = await b.connect({ clientId: "sub" }, "sub");
    assert.deepEqual(await sub.subscribe(1, [["re/t", 0]]), [0]);
    let m = await sub.expectPublish();
    assert.deepEqual([m.text, m.qos, m.retain], ["kept", 0, true]);
    assert.deepEqual(await sub.subscribe(2, [["re/t", 1]]), [1]);
    m = await sub.receive();
    assert.deepEqual([m.text, m.qos, m.retain], ["kept", 1, true]);
    // Replaced, not added: one delivery at the new QoS.
    await pub.publish({ topic: "re/t", payload: "live", qos: 1, packetId: 2 });
    m = await sub.receive();
    assert.deepEqual([m.text, m.qos, m.retain], ["live", 1, false]);
    await sub.expectNothing();
  },
);

Deno.test("UNSUBSCRIBE: an unknown filter still gets UNSUBACK [MQTT-3.10.4-5]", async () => {
  await using b = await startBroker();
  const c = await b.connect({ clientId: "unknown" });
  await c.unsubscribe(3, ["never/subscribed"]);
  await c.unsubscribe(4, ["x/#", "+/y"]);
});

Deno.test(
  "UNSUBSCRIBE: no more deliveries for the removed filter, others unaffected [MQTT-3.10.4-1] [MQTT-3.10.4-6]",
  async () => {
    await using b = await startBroker();
    const sub = await b.connect({ clientId: "sub" }, "sub");
    await sub.subscribe(1, [["u/a", 1], ["u/b", 1], ["u/c", 1]]);
    await sub.unsubscribe(2, ["u/a", "u/c"]); // one UNSUBACK for several filters
    const pub = await b.connect({ clientId: "pub" }, "pub");
    await pub.send(publish({ topic: "u/a", payload: "a" }));
    await pub.send(publish({ topic: "u/c", payload: "c" }));
    await pub.send(publish({ topic: "u/b", payload: "b" }));
    assert.equal((await sub.expectPublish()).topic, "u/b");
    await sub.expectNothing();
  },
);

Deno.test(
  "UNSUBSCRIBE: filters are compared character by character, not matched [MQTT-3.10.4-1]",
  async () => {
    await using b = await startBroker();
    const sub = await b.connect({ clientId: "sub" }, "sub");
    await sub.subscribe(1, [["cmp/a", 0]]);
    await sub.unsubscribe(2, ["cmp/+", "cmp/#", "CMP/a"]);
    const pub = await b.connect({ clientId: "pub" }, "pub");
    await pub.send(publish({ topic: "cmp/a", payload: "still" }));
    assert.equal((await sub.expectPublish()).text, "still");
  },
);

Deno.test("PUBLISH: QoS 0 is delivered with topic and payload intact [MQTT-3.3.2-1]", async () => {
  await using b = await startBroker();
  const sub = await b.connect({ clientId: "sub" }, "sub");
  await sub.subscribe(1, [["#", 0]]);
  const pub = await b.connect({ clientId: "pub" }, "pub");
  const binary = Uint8Array.from({ length: 256 }, (_, i) => i);
  const cases: [string, Uint8Array][] = [
    ["plain/topic", new TextEncoder().encode("hello")],
    ["binary", binary],
    ["empty/payload", new Uint8Array(0)],
    ["sp ace/ünï/€/𝄞", new TextEncoder().encode("utf8 topic")],
    ["/leading", new TextEncoder().encode("x")],
    ["trailing/", new TextEncoder().encode("y")],
  ];
  for (const [topic, payload] of cases) {
    await pub.send(publish({ topic, payload }));
    const m = await sub.expectPublish();
    assert.equal(m.topic, topic);
    assert.deepEqual(m.payload, payload);
    assert.equal(m.qos, 0);
    assert.equal(m.dup, false, "DUP must be 0 for QoS 0 [MQTT-3.3.1-2]");
    assert.equal(m.packetId, undefined);
  }
});

Deno.test("PUBLISH: a client receives its own publications (no local-suppression in 3.1.1)", async () => {
  await using b = await startBroker();
  const c = await b.connect({ clientId: "self" });
  await c.subscribe(1, [["self/t", 0]]);
  await c.send(publish({ topic: "self/t", payload: "me" }));
  assert.equal((await c.expectPublish()).text, "me");
});

Deno.test("PUBLISH: every matching subscriber of several clients gets a copy", async () => {
  await using b = await startBroker();
  const subs = [];
  for (let i = 0; i < 4; i++) {
    const s = await b.connect({ clientId: `s${i}` }, `s${i}`);
    await s.subscribe(1, [[i % 2 ? "fan/+" : "fan/#", 0]]);
    subs.push(s);
  }
  const pub = await b.connect({ clientId: "pub" }, "pub");
  await pub.send(publish({ topic: "fan/out", payload: "all" }));
  for (const s of subs) assert.equal((await s.expectPublish()).text, "all");
  for (const s of subs) await s.expectNothing(50);
});

Deno.test("SUBSCRIBE then PINGREQ: packets are answered in order on one connection", async () => {
  await using b = await startBroker();
  const c = await b.connect({ clientId: "order" });
  await c.send(subscribe(5, [["o/1", 0]]));
  await c.send(pingreq());
  await c.send(unsubscribe(6, ["o/1"]));
  await c.expectPacket(TYPE.SUBACK);
  await c.expectPacket(TYPE.PINGRESP);
  assert.equal(await c.expectAck(TYPE.UNSUBACK), 6);
});
