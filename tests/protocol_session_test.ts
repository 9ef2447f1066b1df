/**
 * 05: clean and persistent sessions, offline queues, re-delivery on reconnect and takeover.
 *
 * @module
 */
import assert from "node:assert/strict";
import { startBroker } from "./_harness.ts";
import type { RunningBroker } from "./_harness.ts";
import { connect, disconnect, puback, pubcomp, publish, pubrec, pubrel, TYPE } from "./_raw.ts";
import type { RawClient } from "./_raw.ts";

/** Connects and returns the client plus its CONNACK's session present flag. */
async function open(
  b: RunningBroker,
  clientId: string,
  cleanSession: boolean,
  label = clientId,
): Promise<[RawClient, boolean]> {
  const c = await b.client(label);
  await c.send(connect({ clientId, cleanSession }));
  const ack = await c.expectConnack();
  assert.equal(ack.returnCode, 0);
  return [c, ack.sessionPresent];
}

/** DISCONNECT and wait for the broker to close: afterwards the session is offline for sure. */
async function goOffline(c: RawClient): Promise<void> {
  await c.send(disconnect());
  await c.expectClosed();
}

Deno.test("session: clean session discards the previous session and its own at the end [MQTT-3.1.2-6]", async () => {
  await using b = await startBroker();
  let [c, present] = await open(b, "cs", false, "persistent");
  assert.equal(present, false);
  await c.subscribe(1, [["cs/t", 1]]);
  await goOffline(c);

  [c, present] = await open(b, "cs", true, "clean");
  assert.equal(present, false, "a clean session starts without the stored state");
  const pub = await b.connect({ clientId: "pub" }, "pub");
  await pub.publish({ topic: "cs/t", payload: "x", qos: 1, packetId: 1 });
  await c.expectNothing(); // the old subscription is gone
  await goOffline(c);

  [c, present] = await open(b, "cs", false, "again");
  assert.equal(present, false, "nothing survives a clean session");
});

Deno.test(
  "session: a persistent session keeps subscriptions and queues QoS 1/2 (not QoS 0) while offline [MQTT-3.1.2-4] [MQTT-3.1.2-5]",
  async () => {
    await using b = await startBroker();
    let [sub, present] = await open(b, "ps", false, "sub1");
    await sub.subscribe(1, [["ps/#", 2]]);
    await goOffline(sub);

    const pub = await b.connect({ clientId: "pub" }, "pub");
    await pub.publish({ topic: "ps/0", payload: "q0", qos: 0 });
    await pub.publish({ topic: "ps/1", payload: "q1", qos: 1, packetId: 1 });
    await pub.publish({ topic: "ps/2", payload: "q2", qos: 2, packetId: 2 });
    await pub.publish({ topic: "ps/1", payload: "q1b", qos: 1, packetId: 3 });

    [sub, present] = await open(b, "ps", false, "sub2");
    assert.equal(present, true, "session present [MQTT-3.2.2-2]");
    const got = (await sub.receiveMany(3)).map((m) => [m.text, m.qos]);
    assert.deepEqual(got, [["q1", 1], ["q2", 2], ["q1b", 1]]);
    await sub.expectNothing();

    // The subscription is still there: live messages flow without a new SUBSCRIBE.
    await pub.publish({ topic: "ps/live", payload: "live", qos: 1, packetId: 4 });
    assert.equal((await sub.receive()).text, "live");
  },
);

Deno.test(
  "session: queued messages are delivered at min(published, granted) QoS [MQTT-3.8.4-6]",
  async () => {
    await using b = await startBroker();
    let [sub] = await open(b, "pq", false, "sub1");
    await sub.subscribe(1, [["pq/t", 1]]);
    await goOffline(sub);
    const pub = await b.connect({ clientId: "pub" }, "pub");
    await pub.publish({ topic: "pq/t", payload: "two", qos: 2, packetId: 1 });
    [sub] = await open(b, "pq", false, "sub2");
    const m = await sub.receive();
    assert.deepEqual([m.text, m.qos], ["two", 1]);
  },
);

Deno.test(
  "session: unacknowledged QoS 1/2 messages are re-sent with DUP=1, same ids, in order, on reconnect [MQTT-4.4.0-1] [MQTT-3.3.1-1]",
  async () => {
    await using b = await startBroker();
    let [sub] = await open(b, "rs", false, "sub1");
    await sub.subscribe(1, [["rs/#", 2]]);
    const pub = await b.connect({ clientId: "pub" }, "pub");
    await pub.publish({ topic: "rs/a", payload: "m1", qos: 1, packetId: 1 });
    await pub.publish({ topic: "rs/b", payload: "m2", qos: 2, packetId: 2 });
    await pub.publish({ topic: "rs/a", payload: "m3", qos: 1, packetId: 3 });
    const first = [];
    for (let i = 0; i < 3; i++) first.push(await sub.expectPublish());
    assert.deepEqual(first.map((m) => m.dup), [false, false, false]);
    // Vanish without acknowledging anything (no DISCONNECT).
    await sub.close();

    [sub] = await open(b, "rs", false, "sub2");
    const again = [];
    for (let i = 0; i < 3; i++) again.push(await sub.expectPublish());
    assert.deepEqual(again.map((m) => m.text), ["m1", "m2", "m3"]);
    assert.deepEqual(again.map((m) => m.dup), [true, true, true], "DUP=1 on re-delivery");
    assert.deepEqual(again.map((m) => m.qos), [1, 2, 1]);
    assert.deepEqual(again.map((m) => m.packetId), first.map((m) => m.packetId), "same ids");
    for (const m of again) {
      if (m.qos === 1) {
        await sub.send(puback(m.packetId!));
      } else {
        await sub.send(pubrec(m.packetId!));
        assert.equal(await sub.expectAck(TYPE.PUBREL), m.packetId);
        await sub.send(pubcomp(m.packetId!));
      }
    }
    await sub.expectNothing();
  },
);

Deno.test(
  "session: PUBREL is re-sent on reconnect for a message whose PUBREC arrived [MQTT-4.4.0-1]",
  async () => {
    await using b = await startBroker();
    let [sub] = await open(b, "rel", false, "sub1");
    await sub.subscribe(1, [["rel/t", 2]]);
    const pub = await b.connect({ clientId: "pub" }, "pub");
    await pub.publish({ topic: "rel/t", payload: "q2", qos: 2, packetId: 1 });
    const m = await sub.expectPublish();
    await sub.send(pubrec(m.packetId!));
    assert.equal(await sub.expectAck(TYPE.PUBREL), m.packetId);
    await sub.close(); // no PUBCOMP

    [sub] = await open(b, "rel", false, "sub2");
    // The PUBLISH is not sent again: only the PUBREL.
    assert.equal(await sub.expectAck(TYPE.PUBREL), m.packetId);
    await sub.send(pubcomp(m.packetId!));
    await sub.expectNothing();
  },
);

Deno.test(
  "session: inbound QoS 2 state survives a reconnect; delivered once [MQTT-4.3.3-2] [MQTT-4.4.0-1]",
  async () => {
    await using b = await startBroker();
    const sub = await b.connect({ clientId: "sub" }, "sub");
    await sub.subscribe(1, [["in2/t", 2]]);
    let [pub] = await open(b, "in2pub", false, "pub1");
    await pub.send(publish({ topic: "in2/t", payload: "once", qos: 2, packetId: 7 }));
    assert.equal(await pub.expectAck(TYPE.PUBREC), 7);
    await pub.close(); // vanish before PUBREL

    [pub] = await open(b, "in2pub", false, "pub2");
    // Re-sending the PUBLISH with DUP after a reconnect is allowed; the broker answers PUBREC
    // again without a second delivery, then PUBREL completes it.
    await pub.send(publish({ topic: "in2/t", payload: "once", qos: 2, packetId: 7, dup: true }));
    assert.equal(await pub.expectAck(TYPE.PUBREC), 7);
    await pub.send(pubrel(7));
    assert.equal(await pub.expectAck(TYPE.PUBCOMP), 7);
    assert.equal((await sub.receive()).text, "once");
    await sub.expectNothing();
  },
);

Deno.test(
  "session: takeover with clean session 0 keeps the session [MQTT-3.1.4-2] [MQTT-3.2.2-2]",
  async () => {
    await using b = await startBroker();
    const [older] = await open(b, "tk", false, "older");
    await older.subscribe(1, [["tk/t", 1]]);
    const [newer, present] = await open(b, "tk", false, "newer");
    assert.equal(present, true);
    await older.expectClosed();
    const pub = await b.connect({ clientId: "pub" }, "pub");
    await pub.publish({ topic: "tk/t", payload: "to newer", qos: 1, packetId: 1 });
    assert.equal((await newer.receive()).text, "to newer");
  },
);

Deno.test(
  "session: takeover with clean session 1 discards the old session [MQTT-3.1.4-2] [MQTT-3.1.2-6]",
  async () => {
    await using b = await startBroker();
    const [older] = await open(b, "tkc", false, "older");
    await older.subscribe(1, [["tkc/t", 1]]);
    const [newer, present] = await open(b, "tkc", true, "newer");
    assert.equal(present, false);
    await older.expectClosed();
    const pub = await b.connect({ clientId: "pub" }, "pub");
    await pub.publish({ topic: "tkc/t", payload: "nobody", qos: 1, packetId: 1 });
    await newer.expectNothing();
  },
);

Deno.test("session: offline messages keep publish order across many messages [MQTT-4.6.0-5]", async () => {
  await using b = await startBroker();
  let [sub] = await open(b, "ord", false, "sub1");
  await sub.subscribe(1, [["ord/t", 1]]);
  await goOffline(sub);
  const pub = await b.connect({ clientId: "pub" }, "pub");
  for (let i = 0; i < 15; i++) {
    await pub.publish({ topic: "ord/t", payload: `${i}`, qos: 1, packetId: i + 1 });
  }
  [sub] = await open(b, "ord", false, "sub2");
  const texts = [];
  for (let i = 0; i < 15; i++) texts.push((await sub.receive()).text);
  assert.deepEqual(texts, Array.from({ length: 15 }, (_, i) => `${i}`));
});
