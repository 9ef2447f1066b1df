/**
 * A client's PUBLISH payload reaches the router as a view of the connection's read buffer and is
 * copied only by what keeps it (src/message.ts). These tests publish hundreds of distinct payloads
 * in one write, so that the broker reads many packets per read and reuses its buffer, and check
 * every byte wherever a message can be kept: a subscriber reading at once (3.1.1 and 5.0), a QoS 1
 * window that makes a queue, an offline persistent session, the retained store, the "publish"
 * event, a payload spanning reads. A keeper that forgot to copy would hold bytes of later
 * packets.
 *
 * Ours only (an embedded broker): skipped under mosquitto.
 *
 * @module
 */
import assert from "node:assert/strict";
import { Broker, type PublishEventDetail } from "../mod.ts";
import { MOSQUITTO } from "./_harness.ts";
import {
  concat,
  connect,
  PacketSplitter,
  parsePublish,
  parsePublish5,
  pingreq,
  publish,
  RawClient,
  subscribe,
  subscribe5,
  TYPE,
} from "./_raw.ts";

const ignore = MOSQUITTO;
// Around SHARED_PAYLOAD_BYTES (256: sent as it is) and the 64 KiB read buffer.
const SIZES = [8, 100, 255, 256, 300, 3000, 70_000];
const COUNT = 210;

/** Payload `i`: its index in the first 4 bytes, then bytes that depend on index and position. */
function payload(i: number): Uint8Array {
  const p = new Uint8Array(SIZES[i % SIZES.length]);
  new DataView(p.buffer).setUint32(0, i);
  for (let j = 4; j < p.length; j++) p[j] = (i * 31 + j * 7) & 0xff;
  return p;
}

/** Asserts that `got` is payload number (its first 4 bytes), byte for byte. */
function assertIntact(got: Uint8Array, who: string): number {
  assert.ok(got.length >= 4, `${who}: a payload of ${got.length} bytes`);
  const i = new DataView(got.buffer, got.byteOffset).getUint32(0);
  assert.ok(i < COUNT, `${who}: payload index ${i}`);
  assert.deepEqual(got, payload(i), `${who}: payload ${i} (${got.length} bytes) as published`);
  return i;
}

/** Every PUBLISH of the test, in one buffer: QoS 1 for even indices, retained every 5th. */
function allPublishes(topic: (i: number) => string): Uint8Array {
  const packets: Uint8Array[] = [];
  for (let i = 0; i < COUNT; i++) {
    const qos = i % 2 === 0 ? 1 : 0;
    packets.push(publish({
      topic: topic(i),
      payload: payload(i),
      qos,
      packetId: qos ? 1 + i : undefined,
      retain: i % 5 === 0,
    }));
  }
  return concat(...packets);
}

const topic = (i: number) => `lend/${i % SIZES.length}`;

/** Publishes every message of the test in one write; returns once the broker has read them all. */
async function flood(port: number): Promise<void> {
  await using publisher = await RawClient.connect(port, "publisher");
  await publisher.handshake({ clientId: "publisher" });
  await publisher.send(allPublishes(topic));
  // The last PUBLISH is QoS 0: a PINGREQ's answer says that everything before it was read.
  await publisher.send(pingreq());
  while ((await publisher.nextPacket(10_000)).type !== TYPE.PINGRESP) {
    // PUBACKs of the QoS 1 half
  }
}

/** A fresh broker with `limits` on a free port. */
async function start(limits = {}) {
  const broker = new Broker({ logLevel: "silent", limits });
  const { port } = await broker.listen({ hostname: "127.0.0.1", port: 0 });
  return { broker, port };
}

/** Every index once, whatever the order. */
function assertAll(indices: number[], who: string, expected = COUNT): void {
  assert.equal(indices.length, expected, `${who}: ${expected} messages`);
  assert.equal(new Set(indices).size, expected, `${who}: each once`);
}

// Each keeper alone: another subscriber's copy would hide a missing one.

Deno.test({
  name: "lent payloads: a 3.1.1 subscriber that reads at once gets the published bytes",
  ignore,
  async fn() {
    const { broker, port } = await start();
    await using _ = broker;
    await using sub = await RawClient.connect(port, "3.1.1");
    await sub.handshake({ clientId: "v311" });
    await sub.subscribe(1, [["lend/#", 1]]);
    await flood(port);
    assertAll(
      (await sub.receiveMany(COUNT, 10_000)).map((m) => assertIntact(m.payload, "3.1.1")),
      "3.1.1",
    );
  },
});

Deno.test({
  name: "lent payloads: a 5.0 subscriber gets the published bytes",
  ignore,
  async fn() {
    const { broker, port } = await start();
    await using _ = broker;
    await using sub = await RawClient.connect(port, "5.0");
    await sub.handshake5({ clientId: "v5" });
    await sub.subscribe5(1, [["lend/#", { qos: 1 }]]);
    await flood(port);
    assertAll(
      (await sub.receiveMany5(COUNT, 10_000)).map((m) => assertIntact(m.payload, "5.0")),
      "5.0",
    );
  },
});

Deno.test({
  name: "lent payloads: a queue behind a QoS 1 window of 2 keeps the published bytes",
  ignore,
  async fn() {
    const { broker, port } = await start({ maxInflight: 2 });
    await using _ = broker;
    await using sub = await RawClient.connect(port, "windowed");
    await sub.handshake({ clientId: "windowed" });
    await sub.subscribe(1, [["lend/#", 1]]);
    await flood(port);
    const got = await sub.receiveMany(COUNT, 10_000);
    assertAll(got.map((m) => assertIntact(m.payload, "windowed")), "windowed");
  },
});

Deno.test({
  name: "lent payloads: an offline session's queue and an unacknowledged window keep the bytes",
  ignore,
  async fn() {
    const { broker, port } = await start({ maxInflight: 5 });
    await using _ = broker;
    // Online during the flood: it takes 5 QoS 1 messages without acknowledging them (its window),
    // the rest waits in its queue; then it goes.
    const taker = await RawClient.connect(port, "taker");
    await taker.handshake({ clientId: "persistent", cleanSession: false });
    await taker.subscribe(1, [["lend/#", 1]]);
    await flood(port);
    await taker.close();
    // Back: the window again (DUP), then the queue; nothing may hold bytes of later packets.
    await using back = await RawClient.connect(port, "back");
    await back.handshake({ clientId: "persistent", cleanSession: false });
    const indices: number[] = [];
    let dups = 0;
    while (true) {
      let m;
      try {
        m = await back.receive(500);
      } catch {
        break; // quiet for 500 ms: all is in
      }
      indices.push(assertIntact(m.payload, m.dup ? "resent window" : "queue"));
      if (m.dup) dups++;
    }
    assert.equal(dups, 5, "the unacknowledged window is resent with DUP");
    const qos1 = indices.filter((i) => i % 2 === 0);
    assertAll(qos1, "QoS 1 messages", COUNT / 2);
  },
});

/**
 * A subscriber that reads nothing until the flood is over: what is written to it waits behind a
 * write the kernel has not taken, long after the broker has read on.
 */
async function slowReader(port: number, version: 4 | 5): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const sub = version === 5
    ? subscribe5(1, [["lend/#", { qos: 0 }]])
    : subscribe(1, [["lend/#", 0]]);
  await conn.write(concat(connect({ clientId: `slow${version}`, version }), sub));
  // CONNACK and SUBACK: 4 + 5 bytes (3.1.1), 5 + 6 or more (5.0 CONNACK has properties).
  const splitter = new PacketSplitter();
  const buf = new Uint8Array(1024);
  let seen = 0;
  while (seen < 2) {
    const n = await conn.read(buf);
    assert.ok(n !== null, "the broker closed the slow reader");
    seen += splitter.push(buf.subarray(0, n)).length;
  }
  return conn;
}

/** Reads until 500 ms pass without a byte; returns the payloads of the PUBLISHes. */
async function readAll(conn: Deno.TcpConn, version: 4 | 5): Promise<Uint8Array[]> {
  const splitter = new PacketSplitter();
  const buf = new Uint8Array(256 * 1024);
  const out: Uint8Array[] = [];
  while (true) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const n = await Promise.race([
      conn.read(buf),
      new Promise<"quiet">((resolve) => timer = setTimeout(() => resolve("quiet"), 500)),
    ]);
    clearTimeout(timer);
    if (n === "quiet" || n === null) break;
    for (const p of splitter.push(buf.subarray(0, n))) {
      if (p.type === TYPE.PUBLISH) {
        out.push(version === 5 ? parsePublish5(p).payload : parsePublish(p).payload);
      }
    }
  }
  return out;
}

for (const version of [4, 5] as const) {
  Deno.test({
    name: `lent payloads: writes still waiting for a ${
      version === 5 ? "5.0" : "3.1.1"
    } subscriber's socket hold the published bytes`,
    ignore,
    async fn() {
      const { broker, port } = await start();
      await using _ = broker;
      const conn = await slowReader(port, version);
      try {
        // About 6 MB: more than the kernel buffers between us and the reader take.
        for (let round = 0; round < 3; round++) await flood(port);
        const payloads = await readAll(conn, version);
        for (const p of payloads) assertIntact(p, "slow reader");
        assert.ok(payloads.length >= COUNT, `slow reader: ${payloads.length} messages`);
      } finally {
        conn.close();
      }
    },
  });
}

Deno.test({
  name: "lent payloads: the retained store keeps the published bytes",
  ignore,
  async fn() {
    const { broker, port } = await start();
    await using _ = broker;
    await flood(port);
    await using late = await RawClient.connect(port, "late");
    await late.handshake({ clientId: "late" });
    await late.subscribe(1, [["lend/#", 0]]);
    const retained = await late.receiveMany(SIZES.length, 5_000);
    for (const m of retained) {
      const i = assertIntact(m.payload, "retained");
      const last = Array.from({ length: COUNT }, (_, k) => k)
        .filter((k) => k % 5 === 0 && topic(k) === m.topic).at(-1);
      assert.equal(i, last, `retained ${m.topic}: the last retained PUBLISH`);
    }
    assert.equal(new Set(retained.map((m) => m.topic)).size, SIZES.length);
  },
});

Deno.test({
  name: "lent payloads: a publish event listener gets bytes it may keep",
  ignore,
  async fn() {
    const { broker, port } = await start();
    await using _ = broker;
    const events: Uint8Array[] = [];
    broker.addEventListener("publish", (e: CustomEvent<PublishEventDetail>) => {
      events.push(e.detail.payload);
    });
    await flood(port);
    assertAll(events.map((p) => assertIntact(p, "publish event")), "publish event");
  },
});
