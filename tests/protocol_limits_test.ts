/**
 * Every limit of src/options.ts hit on purpose, with its documented action observed.
 * Ours only: skipped under mosquitto.
 *
 * @module
 */
import assert from "node:assert/strict";
import { healthyClient, MOSQUITTO, startBroker, waitFor } from "./_harness.ts";
import type { RunningBroker } from "./_harness.ts";
import {
  concat,
  connect,
  disconnect,
  puback,
  publish,
  remainingLength,
  str,
  subscribe,
  TYPE,
} from "./_raw.ts";
import type { RawClient } from "./_raw.ts";

const ignore = MOSQUITTO;

/** Sends CONNECT and returns the CONNACK return code. */
async function tryConnect(
  b: RunningBroker,
  clientId: string,
  cleanSession = true,
): Promise<[RawClient, number]> {
  const c = await b.client(clientId);
  await c.send(connect({ clientId, cleanSession }));
  return [c, (await c.expectConnack()).returnCode];
}

Deno.test({
  name: "limits: maxConnections → CONNACK 0x03 then close; a slot frees when a client leaves",
  ignore,
  async fn() {
    await using b = await startBroker({ limits: { maxConnections: 2 } });
    const one = await b.connect({ clientId: "one" });
    await b.connect({ clientId: "two" });
    const [three, code] = await tryConnect(b, "three");
    assert.equal(code, 0x03);
    await three.expectClosed();
    await one.send(disconnect());
    await one.expectClosed();
    // The broker frees the slot once it has processed the close.
    await waitFor(async () => {
      const [c, rc] = await tryConnect(b, "four");
      if (rc !== 0) await c.expectClosed();
      return rc === 0;
    }, "a free connection slot");
  },
});

Deno.test({
  name: "limits: maxConnections counts connections that have not sent CONNECT yet",
  ignore,
  async fn() {
    await using b = await startBroker({ limits: { maxConnections: 2 } });
    await b.client("silent1");
    await b.client("silent2");
    const [third, code] = await tryConnect(b, "third");
    assert.equal(code, 0x03);
    await third.expectClosed();
  },
});

Deno.test({
  name: "limits: maxSessions → CONNACK 0x03 for a new session; existing sessions still reconnect",
  ignore,
  async fn() {
    await using b = await startBroker({ limits: { maxSessions: 2 } });
    const p = await b.connect({ clientId: "persist", cleanSession: false });
    await p.send(disconnect());
    await p.expectClosed(); // offline, still held
    const online = await b.connect({ clientId: "online" });
    const [extra, code] = await tryConnect(b, "extra");
    assert.equal(code, 0x03);
    await extra.expectClosed();
    // Reconnecting to a held session does not create one more.
    const back = await b.client("back");
    await back.send(connect({ clientId: "persist", cleanSession: false }));
    assert.deepEqual(await back.expectConnack(), { sessionPresent: true, returnCode: 0 });
    // A clean session ends with its connection and frees its slot.
    await back.send(disconnect());
    await back.expectClosed();
    await online.send(disconnect());
    await online.expectClosed();
    await waitFor(async () => {
      const [c, rc] = await tryConnect(b, "later");
      if (rc !== 0) await c.expectClosed();
      return rc === 0;
    }, "a free session slot");
  },
});

Deno.test({
  name:
    "limits: maxSubscriptionsPerSession → SUBACK 0x80 for filters past it; replacing does not count",
  ignore,
  async fn() {
    await using b = await startBroker({ limits: { maxSubscriptionsPerSession: 2 } });
    const c = await b.connect({ clientId: "subs" });
    assert.deepEqual(await c.subscribe(1, [["s/a", 0], ["s/b", 1], ["s/c", 2]]), [0, 1, 0x80]);
    assert.deepEqual(await c.subscribe(2, [["s/a", 2]]), [2], "replacing an existing filter");
    assert.deepEqual(await c.subscribe(3, [["s/d", 0]]), [0x80]);
    await c.unsubscribe(4, ["s/a"]);
    assert.deepEqual(await c.subscribe(5, [["s/d", 0]]), [0]);
  },
});

Deno.test({
  name:
    "limits: maxInflight → only N unacknowledged messages in flight, the rest after acks, in order",
  ignore,
  async fn() {
    await using b = await startBroker({ limits: { maxInflight: 2 } });
    const sub = await b.connect({ clientId: "sub" }, "sub");
    await sub.subscribe(1, [["if/t", 1]]);
    const pub = await b.connect({ clientId: "pub" }, "pub");
    for (let i = 0; i < 5; i++) {
      await pub.publish({ topic: "if/t", qos: 1, packetId: i + 1, payload: `${i}` });
    }
    const m0 = await sub.expectPublish();
    const m1 = await sub.expectPublish();
    assert.deepEqual([m0.text, m1.text], ["0", "1"]);
    await sub.expectNothing();
    await sub.send(puback(m0.packetId!));
    const m2 = await sub.expectPublish();
    assert.equal(m2.text, "2");
    await sub.expectNothing();
    await sub.send(puback(m1.packetId!));
    await sub.send(puback(m2.packetId!));
    const rest = [await sub.expectPublish(), await sub.expectPublish()];
    assert.deepEqual(rest.map((m) => m.text), ["3", "4"]);
    for (const m of rest) await sub.send(puback(m.packetId!));
    await sub.expectNothing();
  },
});

Deno.test({
  name: "limits: maxQueued (offline) → newest messages dropped and counted as queueFull",
  ignore,
  async fn() {
    await using b = await startBroker({ limits: { maxQueued: 2 } });
    let sub = await b.connect({ clientId: "q", cleanSession: false }, "sub1");
    await sub.subscribe(1, [["mq/t", 1]]);
    await sub.send(disconnect());
    await sub.expectClosed();
    const pub = await b.connect({ clientId: "pub" }, "pub");
    for (let i = 0; i < 5; i++) {
      await pub.publish({ topic: "mq/t", qos: 1, packetId: i + 1, payload: `${i}` });
    }
    await waitFor(() => b.broker!.stats().dropped.queueFull === 3, "queueFull === 3");
    sub = await b.connect({ clientId: "q", cleanSession: false }, "sub2");
    assert.deepEqual([(await sub.receive()).text, (await sub.receive()).text], ["0", "1"]);
    await sub.expectNothing();
  },
});

Deno.test({
  name: "limits: maxQueued (online, past maxInflight) → drops counted as queueFull",
  ignore,
  async fn() {
    await using b = await startBroker({ limits: { maxQueued: 2, maxInflight: 1 } });
    const sub = await b.connect({ clientId: "sub" }, "sub");
    await sub.subscribe(1, [["mqo/t", 1]]);
    const pub = await b.connect({ clientId: "pub" }, "pub");
    for (let i = 0; i < 6; i++) {
      await pub.publish({ topic: "mqo/t", qos: 1, packetId: i + 1, payload: `${i}` });
    }
    // 1 in flight + 2 queued; the other 3 dropped.
    await waitFor(() => b.broker!.stats().dropped.queueFull === 3, "queueFull === 3");
    const got = [];
    for (let i = 0; i < 3; i++) got.push((await sub.receive()).text);
    assert.deepEqual(got, ["0", "1", "2"]);
    await sub.expectNothing();
  },
});

Deno.test({
  name: "limits: maxQueuedBytes → a message that would exceed it is dropped as queueFull",
  ignore,
  async fn() {
    // topic "qb/t" (4 bytes) + 40 bytes payload = 44 per message: two fit in 100, a third not.
    await using b = await startBroker({ limits: { maxQueuedBytes: 100 } });
    let sub = await b.connect({ clientId: "qb", cleanSession: false }, "sub1");
    await sub.subscribe(1, [["qb/t", 1]]);
    await sub.send(disconnect());
    await sub.expectClosed();
    const pub = await b.connect({ clientId: "pub" }, "pub");
    for (let i = 0; i < 3; i++) {
      await pub.publish({ topic: "qb/t", qos: 1, packetId: i + 1, payload: `${i}`.repeat(40) });
    }
    await waitFor(() => b.broker!.stats().dropped.queueFull === 1, "queueFull === 1");
    sub = await b.connect({ clientId: "qb", cleanSession: false }, "sub2");
    assert.equal((await sub.receive()).text, "0".repeat(40));
    assert.equal((await sub.receive()).text, "1".repeat(40));
    await sub.expectNothing();
  },
});

Deno.test({
  name:
    "limits: maxRetained → a new retained topic past it is delivered but not stored (retainedFull)",
  ignore,
  async fn() {
    await using b = await startBroker({ limits: { maxRetained: 2 } });
    const live = await b.connect({ clientId: "live" }, "live");
    await live.subscribe(1, [["mr/#", 1]]);
    const pub = await b.connect({ clientId: "pub" }, "pub");
    for (const [i, t] of ["mr/1", "mr/2", "mr/3"].entries()) {
      await pub.publish({ topic: t, qos: 1, packetId: i + 1, retain: true, payload: t });
    }
    // Replacing a stored topic is not a new one.
    await pub.publish({ topic: "mr/1", qos: 1, packetId: 4, retain: true, payload: "mr/1 v2" });
    const delivered = [];
    for (let i = 0; i < 4; i++) delivered.push((await live.receive()).text);
    assert.deepEqual(delivered, ["mr/1", "mr/2", "mr/3", "mr/1 v2"]);
    await waitFor(() => b.broker!.stats().dropped.retainedFull === 1, "retainedFull === 1");
    const late = await b.connect({ clientId: "late" }, "late");
    await late.subscribe(1, [["mr/#", 1]]);
    const stored = [(await late.receive()).text, (await late.receive()).text].sort();
    assert.deepEqual(stored, ["mr/1 v2", "mr/2"]);
    await late.expectNothing();
  },
});

Deno.test({
  name:
    "limits: maxRetainedBytes → a retained message past it is delivered but not stored (retainedFull)",
  ignore,
  async fn() {
    // "rb/1" + 30 bytes = 34; a second one would make 68 > 50.
    await using b = await startBroker({ limits: { maxRetainedBytes: 50 } });
    const pub = await b.connect({ clientId: "pub" }, "pub");
    await pub.publish({
      topic: "rb/1",
      qos: 1,
      packetId: 1,
      retain: true,
      payload: "a".repeat(30),
    });
    await pub.publish({
      topic: "rb/2",
      qos: 1,
      packetId: 2,
      retain: true,
      payload: "b".repeat(30),
    });
    await waitFor(() => b.broker!.stats().dropped.retainedFull === 1, "retainedFull === 1");
    const late = await b.connect({ clientId: "late" }, "late");
    await late.subscribe(1, [["rb/#", 1]]);
    assert.equal((await late.receive()).topic, "rb/1");
    await late.expectNothing();
  },
});

/** A PUBLISH (QoS 0, topic "ps/t") whose whole encoded size is exactly `size` bytes. */
function publishOfSize(size: number): Uint8Array {
  // 1 byte header + 2 bytes remaining length (for 128..16383) + 2+4 topic.
  const p = publish({ topic: "ps/t", payload: "x".repeat(size - 1 - 2 - 6) });
  assert.equal(p.length, size);
  return p;
}

Deno.test({
  name: "limits: maxPacketSize → a packet of exactly the limit passes, one byte more closes",
  ignore,
  async fn() {
    await using b = await startBroker({ limits: { maxPacketSize: 1024 } });
    const healthy = await healthyClient(b);
    const sub = await b.connect({ clientId: "sub" }, "sub");
    await sub.subscribe(1, [["ps/t", 0]]);
    const pub = await b.connect({ clientId: "pub" }, "pub");
    await pub.send(publishOfSize(1024));
    assert.equal((await sub.expectPublish()).payload.length, 1024 - 9);
    await pub.send(publishOfSize(1025));
    await pub.expectClosed();
    await sub.expectNothing();
    await healthy.check();
  },
});

Deno.test({
  name: "limits: maxPacketSize is checked from the fixed header, before the body arrives",
  ignore,
  async fn() {
    await using b = await startBroker({ limits: { maxPacketSize: 1024 } });
    const pub = await b.connect({ clientId: "pub" }, "pub");
    await pub.send(concat([0x30], remainingLength(2000), str("ps/t")));
    await pub.expectClosed();
    // The same for a CONNECT.
    const c = await b.client("big-connect");
    await c.send(concat([0x10], remainingLength(2000), str("MQTT")));
    await c.expectClosed();
  },
});

Deno.test({
  name: "limits: maxTopicLevels → PUBLISH past it closes; SUBSCRIBE past it gets 0x80",
  ignore,
  async fn() {
    await using b = await startBroker({ limits: { maxTopicLevels: 3 } });
    const sub = await b.connect({ clientId: "sub" }, "sub");
    assert.deepEqual(
      await sub.subscribe(1, [["a/b/c", 0], ["a/b/c/d", 0], ["x/+/#", 0], ["x/+/c/#", 0]]),
      [0, 0x80, 0, 0x80],
    );
    const pub = await b.connect({ clientId: "pub" }, "pub");
    await pub.publish({ topic: "a/b/c", qos: 1, packetId: 1, payload: "ok" });
    assert.equal((await sub.expectPublish()).topic, "a/b/c");
    await pub.send(publish({ topic: "a/b/c/d", payload: "too deep" }));
    await pub.expectClosed();
  },
});

Deno.test({
  name: "limits: maxTopicLength → PUBLISH past it closes; SUBSCRIBE past it gets 0x80",
  ignore,
  async fn() {
    await using b = await startBroker({ limits: { maxTopicLength: 10 } });
    const sub = await b.connect({ clientId: "sub" }, "sub");
    assert.deepEqual(await sub.subscribe(1, [["0123456789", 1], ["0123456789a", 1]]), [1, 0x80]);
    const pub = await b.connect({ clientId: "pub" }, "pub");
    await pub.publish({ topic: "0123456789", qos: 1, packetId: 1, payload: "ok" });
    assert.equal((await sub.receive()).text, "ok");
    await pub.send(publish({ topic: "0123456789a", payload: "too long" }));
    await pub.expectClosed();
    await sub.expectNothing();
  },
});

Deno.test({
  name: "limits: maxTopicLength counts UTF-8 bytes, not characters",
  ignore,
  async fn() {
    await using b = await startBroker({ limits: { maxTopicLength: 10 } });
    const sub = await b.connect({ clientId: "sub" }, "sub");
    // 4 × "€" = 4 characters, 12 bytes.
    assert.deepEqual(await sub.subscribe(1, [["€€€€", 0], ["€€€", 0]]), [0x80, 0]);
  },
});

Deno.test({
  name: "limits: maxClientIdLength → CONNACK 0x02 then close; an id of exactly the limit passes",
  ignore,
  async fn() {
    await using b = await startBroker({ limits: { maxClientIdLength: 8 } });
    const [long, code] = await tryConnect(b, "123456789");
    assert.equal(code, 0x02);
    await long.expectClosed();
    const [ok, code2] = await tryConnect(b, "12345678");
    assert.equal(code2, 0);
    await ok.send(disconnect());
  },
});

Deno.test({
  name: "limits: connectTimeoutMs → closed without CONNECT; a timely CONNECT is not closed by it",
  ignore,
  async fn() {
    await using b = await startBroker({ limits: { connectTimeoutMs: 200 } });
    const idle = await b.client("idle");
    await idle.expectClosed();
    const ok = await b.connect({ clientId: "timely" });
    await ok.expectNothing(500); // the timer was cleared
  },
});

Deno.test({
  name: "limits: sessionExpiryMs → an offline persistent session is removed after it",
  ignore,
  async fn() {
    await using b = await startBroker({ limits: { sessionExpiryMs: 200 } });
    const c = await b.connect({ clientId: "exp", cleanSession: false });
    await c.subscribe(1, [["exp/t", 1]]);
    await c.send(disconnect());
    await c.expectClosed();
    assert.equal(b.broker!.stats().sessions, 1);
    await waitFor(() => b.broker!.stats().sessions === 0, "the session to expire");
    const back = await b.client("back");
    await back.send(connect({ clientId: "exp", cleanSession: false }));
    assert.deepEqual(await back.expectConnack(), { sessionPresent: false, returnCode: 0 });
  },
});

Deno.test({
  name:
    "limits: maxSocketBufferBytes → a subscriber that does not read gets its queue bounded (queueFull)",
  ignore,
  async fn() {
    await using b = await startBroker({ limits: { maxSocketBufferBytes: 1024, maxQueued: 5 } });
    const healthy = await healthyClient(b);
    // A raw connection that never reads after its CONNACK: the kernel buffers fill up.
    const stuck = await Deno.connect({ hostname: "127.0.0.1", port: b.port });
    try {
      await stuck.write(connect({ clientId: "stuck" }));
      await stuck.write(subscribe(1, [["sb/t", 0]]));
      const pub = await b.connect({ clientId: "pub" }, "pub");
      // Make sure the subscription exists before flooding.
      await pub.publish({ topic: "sb/sync", qos: 1, packetId: 1 });
      const chunk = publish({ topic: "sb/t", payload: new Uint8Array(64 * 1024) });
      // 32 MiB: more than loopback socket buffers hold.
      for (let i = 0; i < 512; i++) await pub.send(chunk);
      await pub.publish({ topic: "sb/sync", qos: 1, packetId: 2 });
      await waitFor(() => b.broker!.stats().dropped.queueFull > 0, "queueFull drops");
      await healthy.check();
    } finally {
      stuck.close();
    }
  },
});

/**
 * Sends `burst` QoS 1 PUBLISHes at once, takes their PUBACKs, then sends one more and takes its
 * PUBACK; returns the milliseconds from the first send to the last PUBACK. Whether a limiter
 * spreads the burst itself or lets one read through and then pauses for the deficit, the whole
 * exchange cannot finish before (burst + 1 - one second of budget) / rate.
 */
async function timeBurst(pub: RawClient, burst: number, payload: Uint8Array): Promise<number> {
  const start = Date.now();
  for (let i = 0; i < burst; i++) {
    await pub.send(publish({ topic: "rl/t", qos: 1, packetId: i + 1, payload }));
  }
  for (let i = 0; i < burst; i++) assert.equal(await pub.expectAck(TYPE.PUBACK, 10_000), i + 1);
  await pub.send(publish({ topic: "rl/t", qos: 1, packetId: burst + 1, payload }));
  assert.equal(await pub.expectAck(TYPE.PUBACK, 10_000), burst + 1);
  return Date.now() - start;
}

Deno.test({
  name: "limits: rateLimitMessages → a client over budget is slowed down, nothing lost",
  ignore,
  async fn() {
    await using b = await startBroker({ limits: { rateLimitMessages: 20 } });
    const pub = await b.connect({ clientId: "pub" }, "pub");
    // 61 messages at 20/s: at least 2 s even after a full second of burst; unthrottled they
    // take milliseconds. A loaded machine only makes this slower.
    const ms = await timeBurst(pub, 60, new Uint8Array(0));
    assert.ok(ms >= 1_000, `61 messages took ${ms} ms`);
  },
});

Deno.test({
  name: "limits: rateLimitBytes → a client over its byte budget is slowed down, nothing lost",
  ignore,
  async fn() {
    await using b = await startBroker({ limits: { rateLimitBytes: 4_000 } });
    const pub = await b.connect({ clientId: "pub" }, "pub");
    // 11 000 payload bytes at 4 000/s: at least 1.75 s even after a full second of burst.
    const ms = await timeBurst(pub, 10, new Uint8Array(1_000));
    assert.ok(ms >= 1_000, `11 kB took ${ms} ms`);
  },
});
