/**
 * Session state without sockets: a fake link records what the session sends.
 *
 * @module
 */
import assert from "node:assert/strict";
import { encodeAck, encodePublish } from "../codec/encoder.ts";
import type { QoS } from "../codec/packet.ts";
import type { AuthorizeForwardHook, ClientInfo } from "../hooks.ts";
import { Message } from "../message.ts";
import { type Limits, resolveLimits } from "../options.ts";
import { Counters } from "../stats.ts";
import { RELEASED, SENT, Session, type SessionContext, type SessionLink } from "./session.ts";
import { mulberry32 } from "../_test_prng.ts";

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();

/** One `sendPublish` call. */
interface SentPublish {
  bytes: Uint8Array;
  packetId: number;
  payloadLength: number;
}

/** Records every call; `writable` is set by the test. */
class FakeLink implements SessionLink {
  writable = true;
  receiveMaximum = 65_535;
  publishes: SentPublish[] = [];
  packets: Uint8Array[] = [];
  // What a 3.1.1 connection does: shared bytes patched with the id; a resend encoded with DUP.
  sendPublish(
    message: Message,
    qos: QoS,
    retain: boolean,
    packetId: number,
    _subscriptionIds: readonly number[] | undefined,
    dup: boolean,
  ): boolean {
    if (dup) {
      this.packets.push(encodePublish(message.topic, message.payload, qos, retain, true, packetId));
    } else {
      this.publishes.push({
        bytes: message.encoded(qos, retain),
        packetId,
        payloadLength: message.payload.length,
      });
    }
    return true;
  }
  sendPubrel(packetId: number): void {
    this.packets.push(encodeAck("pubrel", packetId));
  }
}

/** A PUBLISH read back by hand (deliberately not with our decoder). */
interface ParsedPublish {
  dup: boolean;
  qos: number;
  retain: boolean;
  topic: string;
  packetId: number;
  /** Offset of the packet id's two bytes, -1 for QoS 0. */
  packetIdOffset: number;
  payload: string;
}

function parsePublish(bytes: Uint8Array): ParsedPublish {
  assert.equal(bytes[0] >> 4, 3, "a PUBLISH");
  let p = 1;
  let remaining = 0;
  for (let shift = 0;; shift += 7) {
    const b = bytes[p++];
    remaining += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) break;
  }
  assert.equal(bytes.length, p + remaining, "remaining length covers the rest");
  const qos = (bytes[0] >> 1) & 3;
  const topicLength = (bytes[p] << 8) | bytes[p + 1];
  p += 2;
  const topic = utf8Decoder.decode(bytes.subarray(p, p + topicLength));
  p += topicLength;
  let packetId = 0;
  let packetIdOffset = -1;
  if (qos > 0) {
    packetIdOffset = p;
    packetId = (bytes[p] << 8) | bytes[p + 1];
    p += 2;
  }
  return {
    dup: (bytes[0] & 0x08) !== 0,
    qos,
    retain: (bytes[0] & 1) !== 0,
    topic,
    packetId,
    packetIdOffset,
    payload: utf8Decoder.decode(bytes.subarray(p)),
  };
}

/** What the connection does with a sendPublish: a copy with the packet id written in. */
function patched(sent: SentPublish): ParsedPublish {
  const copy = sent.bytes.slice();
  if (sent.packetId !== 0) {
    const at = copy.length - sent.payloadLength - 2;
    copy[at] = sent.packetId >> 8;
    copy[at + 1] = sent.packetId & 0xff;
  }
  return parsePublish(copy);
}

function payloads(link: FakeLink): string[] {
  return link.publishes.map((sent) => parsePublish(sent.bytes).payload);
}

function message(payload: string, qos: QoS = 1, topic = "t"): Message {
  return new Message(topic, utf8.encode(payload), qos, false);
}

const CLIENT: ClientInfo = { clientId: "c1" };

function context(
  limits: Partial<Limits> = {},
  authorizeForward?: AuthorizeForwardHook,
): SessionContext {
  return { limits: resolveLimits(limits), counters: new Counters(), authorizeForward };
}

function online(
  limits: Partial<Limits> = {},
): { session: Session; link: FakeLink; ctx: SessionContext } {
  const ctx = context(limits);
  const session = new Session("c1", false, CLIENT, ctx);
  const link = new FakeLink();
  session.link = link;
  return { session, link, ctx };
}

// ---- offline delivery ------------------------------------------------------------------------

Deno.test("session drops QoS 0 for an offline session and counts offlineQos0", () => {
  const ctx = context();
  const session = new Session("c1", false, CLIENT, ctx);
  session.deliver(message("a", 0), 0);
  session.deliver(message("b", 0), 0);
  assert.equal(session.queued, 0);
  assert.equal(ctx.counters.queued, 0);
  assert.equal(ctx.counters.dropped.offlineQos0, 2);
  // Attaching a link later sends nothing: the QoS 0 messages are gone.
  const link = new FakeLink();
  session.link = link;
  session.resume();
  assert.equal(link.publishes.length, 0);
});

Deno.test("session queues QoS 1/2 while offline and sends them in order on resume", () => {
  const ctx = context();
  const session = new Session("c1", false, CLIENT, ctx);
  const qos: QoS[] = [1, 2, 1, 2, 1];
  qos.forEach((q, i) => session.deliver(message(`m${i}`, q), q));
  assert.equal(session.queued, 5);
  assert.equal(ctx.counters.queued, 5);
  assert.equal(ctx.counters.inflight, 0);
  assert.equal(session.queuedBytes, 5 * (1 + 2), "topic+payload bytes");

  const link = new FakeLink();
  session.link = link;
  session.resume();
  assert.deepEqual(payloads(link), ["m0", "m1", "m2", "m3", "m4"]);
  assert.deepEqual(link.publishes.map((s) => parsePublish(s.bytes).qos), qos);
  assert.equal(link.packets.length, 0, "nothing was in flight to resend");
  assert.equal(session.queued, 0);
  assert.equal(session.queuedBytes, 0);
  assert.equal(ctx.counters.queued, 0);
  assert.equal(ctx.counters.inflight, 5);
  assert.deepEqual([...session.inflight.keys()], link.publishes.map((s) => s.packetId));
});

// ---- inflight window -------------------------------------------------------------------------

Deno.test("session keeps at most maxInflight in flight; each acknowledge sends one more", () => {
  const { session, link, ctx } = online({ maxInflight: 3 });
  for (let i = 0; i < 7; i++) session.deliver(message(`m${i}`), 1);
  assert.deepEqual(payloads(link), ["m0", "m1", "m2"]);
  assert.equal(session.inflight.size, 3);
  assert.equal(session.queued, 4);
  assert.equal(ctx.counters.inflight, 3);
  assert.equal(ctx.counters.queued, 4);

  for (let sent = 3; sent < 7; sent++) {
    const oldest = session.inflight.keys().next().value!;
    session.acknowledge(oldest);
    assert.equal(link.publishes.length, sent + 1, "one acknowledge, one more PUBLISH");
    assert.equal(session.inflight.size, 3);
    assert.equal(session.queued, 7 - sent - 1);
  }
  assert.deepEqual(payloads(link), ["m0", "m1", "m2", "m3", "m4", "m5", "m6"]);
  for (const id of [...session.inflight.keys()]) session.acknowledge(id);
  assert.equal(session.inflight.size, 0);
  assert.equal(ctx.counters.inflight, 0);
  assert.equal(ctx.counters.queued, 0);
});

Deno.test("session QoS 0 is not held back by a full inflight window but keeps its order", () => {
  const { session, link } = online({ maxInflight: 1 });
  session.deliver(message("q1"), 1);
  session.deliver(message("z1", 0), 0); // window has room for QoS 0: sent at once
  session.deliver(message("q2"), 1); // window full: queued
  session.deliver(message("z2", 0), 0); // queue not empty: waits behind q2
  assert.deepEqual(payloads(link), ["q1", "z1"]);
  assert.equal(session.queued, 2);
  session.acknowledge(link.publishes[0].packetId);
  assert.deepEqual(payloads(link), ["q1", "z1", "q2", "z2"]);
});

// ---- packet ids ------------------------------------------------------------------------------

Deno.test("session sendPublish gets (bytes, packetId, payloadLength) with the id slot at the end", () => {
  const { session, link } = online();
  const cases: { payload: string; qos: QoS; topic: string }[] = [
    { payload: "", qos: 1, topic: "a" },
    { payload: "hello", qos: 1, topic: "a/b" },
    { payload: "x".repeat(300), qos: 2, topic: "température/🌡" },
  ];
  for (const { payload, qos, topic } of cases) {
    session.deliver(message(payload, qos, topic), qos);
    const sent = link.publishes.at(-1)!;
    const parsed = parsePublish(sent.bytes);
    assert.equal(sent.payloadLength, utf8.encode(payload).length);
    assert.equal(parsed.packetIdOffset, sent.bytes.length - sent.payloadLength - 2);
    assert.notEqual(sent.packetId, 0, "[MQTT-2.3.1-1] non-zero packet id");
    const entry = session.inflight.get(sent.packetId);
    assert.ok(entry, "the id handed to the link is the inflight key");
    assert.equal(entry.packetId, sent.packetId);
    assert.equal(entry.state, SENT);
    const onWire = patched(sent);
    assert.deepEqual(
      [onWire.topic, onWire.payload, onWire.qos, onWire.packetId, onWire.dup],
      [topic, payload, qos, sent.packetId, false],
    );
  }
  // QoS 0: no packet id at all.
  session.deliver(message("zero", 0), 0);
  const sent = link.publishes.at(-1)!;
  assert.equal(sent.packetId, 0);
  assert.equal(parsePublish(sent.bytes).packetIdOffset, -1);
});

Deno.test("session packet ids run 1..65535 and wrap to 1, never 0 [MQTT-2.3.1-1]", () => {
  const { session, link } = online({ maxInflight: 1 });
  const m = message("p");
  let expected = 1;
  for (let i = 0; i < 65_535 + 3; i++) {
    session.deliver(m, 1);
    const id = link.publishes[0].packetId;
    link.publishes.length = 0;
    if (id !== expected) assert.fail(`delivery ${i}: packet id ${id}, expected ${expected}`);
    session.acknowledge(id);
    expected = expected === 65_535 ? 1 : expected + 1;
  }
  assert.equal(expected, 4, "wrapped past 65535 back to 1, 2, 3");
});

Deno.test("session never reuses a packet id still in flight, across the wrap [MQTT-2.3.1-2]", () => {
  const { session, link } = online({ maxInflight: 2 });
  session.deliver(message("held"), 1); // id 1, never acknowledged
  const held = link.publishes[0].packetId;
  assert.equal(held, 1);
  link.publishes.length = 0;
  const m = message("p");
  const seen: number[] = [];
  for (let i = 0; i < 65_536; i++) {
    session.deliver(m, 1);
    const id = link.publishes[0].packetId;
    link.publishes.length = 0;
    if (id === held || id === 0) assert.fail(`delivery ${i} reused id ${id}`);
    if (i < 2 || i >= 65_533) seen.push(id);
    session.acknowledge(id);
  }
  // 2, 3, …, 65535, then 1 is skipped: 2, 3
  assert.deepEqual(seen, [2, 3, 65_535, 2, 3]);
  assert.ok(session.inflight.has(held));
});

// ---- queue limits ----------------------------------------------------------------------------

Deno.test("session maxQueued drops the newest and counts queueFull", () => {
  const ctx = context({ maxQueued: 3 });
  const session = new Session("c1", false, CLIENT, ctx);
  for (let i = 0; i < 6; i++) session.deliver(message(`m${i}`), 1);
  assert.equal(session.queued, 3);
  assert.equal(ctx.counters.queued, 3);
  assert.equal(ctx.counters.dropped.queueFull, 3);
  const link = new FakeLink();
  session.link = link;
  session.resume();
  assert.deepEqual(payloads(link), ["m0", "m1", "m2"], "the oldest are kept");
});

Deno.test("session maxQueuedBytes counts topic+payload, drops what would pass it", () => {
  // Each message: topic "t" (1 byte) + 9 bytes of payload = 10.
  const ctx = context({ maxQueuedBytes: 25 });
  const session = new Session("c1", false, CLIENT, ctx);
  session.deliver(message("aaaaaaaaa"), 1);
  session.deliver(message("bbbbbbbbb"), 1);
  assert.equal(session.queuedBytes, 20);
  session.deliver(message("ccccccccc"), 1); // 30 > 25: dropped
  assert.equal(session.queued, 2);
  assert.equal(ctx.counters.dropped.queueFull, 1);
  session.deliver(message("dddd"), 1); // 20 + 5 = 25: fits exactly
  assert.equal(session.queued, 3);
  assert.equal(session.queuedBytes, 25);
  session.deliver(message("e"), 1); // 25 + 2 > 25
  assert.equal(ctx.counters.dropped.queueFull, 2);
  // A non-ASCII topic counts its UTF-8 bytes: "é" is 2 bytes, so 2 + 1 = 3 > 0 room.
  const wide = context({ maxQueuedBytes: 4 });
  const s2 = new Session("c2", false, CLIENT, wide);
  s2.deliver(message("x", 1, "é"), 1);
  assert.equal(s2.queuedBytes, 3);
  s2.deliver(message("x", 1, "é"), 1);
  assert.equal(s2.queued, 1);
  assert.equal(wide.counters.dropped.queueFull, 1);
});

// ---- backpressure ----------------------------------------------------------------------------

Deno.test("session queues QoS 0 (not drops) on a non-writable link; pump sends them in order", () => {
  const { session, link, ctx } = online();
  link.writable = false;
  const qos: QoS[] = [0, 1, 0, 2, 0];
  qos.forEach((q, i) => session.deliver(message(`m${i}`, q), q));
  assert.equal(link.publishes.length, 0);
  assert.equal(session.queued, 5);
  assert.equal(ctx.counters.dropped.offlineQos0, 0);
  session.pump();
  assert.equal(link.publishes.length, 0, "still not writable");
  link.writable = true;
  session.pump();
  assert.deepEqual(payloads(link), ["m0", "m1", "m2", "m3", "m4"]);
  assert.equal(session.queued, 0);
  assert.equal(ctx.counters.queued, 0);
  assert.equal(ctx.counters.inflight, 2);
});

Deno.test("session pump stops as soon as the link turns non-writable", () => {
  const { session, link } = online();
  link.writable = false;
  for (let i = 0; i < 4; i++) session.deliver(message(`m${i}`, 0), 0);
  link.writable = true;
  link.sendPublish = (...args) => {
    FakeLink.prototype.sendPublish.apply(link, args);
    if (link.publishes.length === 2) link.writable = false;
    return true;
  };
  session.pump();
  assert.deepEqual(payloads(link), ["m0", "m1"]);
  assert.equal(session.queued, 2);
  link.writable = true;
  session.pump();
  assert.deepEqual(payloads(link), ["m0", "m1", "m2", "m3"]);
});

// ---- resume ----------------------------------------------------------------------------------

Deno.test("session resume re-sends in-flight PUBLISH with DUP=1 and PUBREL for released, in order [MQTT-4.4.0-1]", () => {
  const { session, link, ctx } = online({ maxInflight: 4 });
  const qos: QoS[] = [1, 2, 2, 1, 1, 2];
  qos.forEach((q, i) => session.deliver(message(`m${i}`, q), q));
  const ids = link.publishes.map((s) => s.packetId);
  assert.equal(ids.length, 4);
  session.received(ids[1]); // m1: PUBREC in, now RELEASED
  assert.equal(session.inflight.get(ids[1])!.state, RELEASED);
  assert.equal(session.inflight.get(ids[2])!.state, SENT);

  // The connection drops; the session keeps its state.
  session.link = undefined;
  session.deliver(message("m6", 1), 1);
  session.deliver(message("m7", 0), 0); // offline QoS 0: dropped
  assert.equal(ctx.counters.dropped.offlineQos0, 1);

  const next = new FakeLink();
  session.link = next;
  session.resume();

  assert.equal(next.packets.length, 4, "every in-flight message resent once");
  const expected = [
    { kind: "publish", payload: "m0", qos: 1, id: ids[0] },
    { kind: "pubrel", id: ids[1] },
    { kind: "publish", payload: "m2", qos: 2, id: ids[2] },
    { kind: "publish", payload: "m3", qos: 1, id: ids[3] },
  ];
  next.packets.forEach((bytes, i) => {
    const want = expected[i];
    if (want.kind === "pubrel") {
      assert.deepEqual([...bytes], [0x62, 0x02, want.id! >> 8, want.id! & 0xff]);
      return;
    }
    assert.equal(bytes[0] & 0x08, 0x08, `packet ${i}: DUP bit set in the first byte`);
    const parsed = parsePublish(bytes);
    assert.deepEqual(
      [parsed.payload, parsed.qos, parsed.packetId, parsed.dup],
      [want.payload, want.qos, want.id, true],
    );
  });
  // Nothing was acknowledged: the window is still full and m4.. wait in the queue.
  assert.equal(next.publishes.length, 0);
  assert.equal(session.queued, 3);
  session.acknowledge(ids[0]);
  session.completed(ids[1]);
  assert.deepEqual(payloads(next), ["m4", "m5"]);
  for (const sent of next.publishes) assert.equal(parsePublish(sent.bytes).dup, false);
});

Deno.test("session resume after acknowledgements resends only what is still in flight", () => {
  const { session, link } = online({ maxInflight: 10 });
  for (let i = 0; i < 4; i++) session.deliver(message(`m${i}`), 1);
  const ids = link.publishes.map((s) => s.packetId);
  session.acknowledge(ids[0]);
  session.acknowledge(ids[2]);
  const next = new FakeLink();
  session.link = next;
  session.resume();
  assert.deepEqual(
    next.packets.map((b) => [parsePublish(b).payload, parsePublish(b).packetId]),
    [["m1", ids[1]], ["m3", ids[3]]],
  );
});

// ---- acknowledgements ------------------------------------------------------------------------

Deno.test("session QoS 2 outbound: received() then completed() frees the slot", () => {
  const { session, link, ctx } = online({ maxInflight: 1 });
  session.deliver(message("a", 2), 2);
  session.deliver(message("b", 2), 2);
  const id = link.publishes[0].packetId;
  session.received(id);
  assert.equal(session.inflight.get(id)!.state, RELEASED);
  assert.equal(link.publishes.length, 1, "PUBREC does not free the slot");
  session.received(id); // a duplicate PUBREC changes nothing
  assert.equal(session.inflight.get(id)!.state, RELEASED);
  session.completed(id);
  assert.equal(session.inflight.has(id), false);
  assert.deepEqual(payloads(link), ["a", "b"]);
  assert.equal(ctx.counters.inflight, 1);
});

Deno.test("session ignores acknowledge() of an unknown id or of a QoS 2 id", () => {
  const { session, link, ctx } = online({ maxInflight: 2 });
  session.deliver(message("q1", 1), 1);
  session.deliver(message("q2", 2), 2);
  session.deliver(message("q3", 1), 1); // queued
  const [id1, id2] = link.publishes.map((s) => s.packetId);
  const cases: { name: string; act: () => void }[] = [
    { name: "unknown id", act: () => session.acknowledge(999) },
    { name: "id 0", act: () => session.acknowledge(0) },
    { name: "PUBACK for a QoS 2 id", act: () => session.acknowledge(id2) },
    { name: "PUBCOMP for a QoS 1 id", act: () => session.completed(id1) },
    { name: "PUBREC for a QoS 1 id", act: () => session.received(id1) },
    { name: "PUBREC for an unknown id", act: () => session.received(999) },
    { name: "PUBCOMP for an unknown id", act: () => session.completed(999) },
  ];
  for (const { name, act } of cases) {
    act();
    assert.deepEqual([...session.inflight.keys()], [id1, id2], name);
    assert.equal(session.inflight.get(id1)!.state, SENT, name);
    assert.equal(session.inflight.get(id2)!.state, SENT, name);
    assert.equal(link.publishes.length, 2, name);
    assert.equal(session.queued, 1, name);
    assert.equal(ctx.counters.inflight, 2, name);
  }
  session.acknowledge(id1);
  session.acknowledge(id1); // a second PUBACK is ignored
  assert.deepEqual(payloads(link), ["q1", "q2", "q3"]);
  assert.equal(ctx.counters.inflight, 2);
});

// ---- discard, authorizeForward ---------------------------------------------------------------

Deno.test("session discard counts sessionDiscarded and zeroes queued/inflight", () => {
  const { session, link, ctx } = online({ maxInflight: 2 });
  for (let i = 0; i < 5; i++) session.deliver(message(`m${i}`), 1);
  session.addInboundQos2(7);
  assert.equal(ctx.counters.inflight, 2);
  assert.equal(ctx.counters.queued, 3);
  session.discard();
  assert.equal(ctx.counters.inflight, 0);
  assert.equal(ctx.counters.queued, 0);
  assert.equal(ctx.counters.dropped.sessionDiscarded, 5);
  assert.equal(session.queued, 0);
  assert.equal(session.queuedBytes, 0);
  assert.equal(session.inflight.size, 0);
  assert.equal(session.hasInboundQos2(7), false);
  assert.deepEqual([...session.outgoing()], []);
  // Late acknowledgements for the discarded ids are ignored; the session still works.
  session.acknowledge(link.publishes[0].packetId);
  assert.equal(ctx.counters.inflight, 0);
  session.deliver(message("after"), 1);
  assert.equal(ctx.counters.inflight, 1);
  assert.equal(payloads(link).at(-1), "after");
});

Deno.test("session authorizeForward false: not delivered, counted forwardDenied", () => {
  const asked: [string, string][] = [];
  const ctx = context({}, (client, topic) => {
    asked.push([client.clientId, topic]);
    return !topic.startsWith("secret/");
  });
  const session = new Session("c1", false, CLIENT, ctx);
  const link = new FakeLink();
  session.link = link;
  const cases: { topic: string; qos: QoS; delivered: boolean }[] = [
    { topic: "secret/a", qos: 0, delivered: false },
    { topic: "public/a", qos: 0, delivered: true },
    { topic: "secret/b", qos: 1, delivered: false },
    { topic: "public/b", qos: 2, delivered: true },
  ];
  for (const { topic, qos } of cases) session.deliver(message(topic, qos, topic), qos);
  assert.deepEqual(payloads(link), cases.filter((c) => c.delivered).map((c) => c.topic));
  assert.equal(ctx.counters.dropped.forwardDenied, 2);
  assert.equal(session.inflight.size, 1);
  assert.deepEqual(asked, cases.map((c) => ["c1", c.topic]));
  // Offline too: a denied message is neither queued nor counted as offline QoS 0.
  session.link = undefined;
  session.deliver(message("x", 1, "secret/c"), 1);
  session.deliver(message("x", 0, "secret/d"), 0);
  assert.equal(session.queued, 0);
  assert.equal(ctx.counters.dropped.forwardDenied, 4);
  assert.equal(ctx.counters.dropped.offlineQos0, 0);
});

// ---- property test ---------------------------------------------------------------------------

/** The reference model of one session: a FIFO queue, an ordered inflight list, what was sent. */
interface ModelEntry {
  tag: string;
  qos: QoS;
  size: number;
  state: "sent" | "released";
  id: number;
}

interface Model {
  session: Session;
  link: FakeLink | undefined;
  queue: { tag: string; qos: QoS; size: number }[];
  inflight: ModelEntry[];
  /** Tags in the order they should have reached sendPublish, over all links. */
  sent: string[];
  /** What sendPublish actually got, over all links. */
  seen: { tag: string; id: number }[];
}

Deno.test("session counters stay consistent with a model through random operations", () => {
  const limits = { maxInflight: 3, maxQueued: 6, maxQueuedBytes: 60 };
  for (const seed of [1, 2, 3, 42, 2024]) {
    const random = mulberry32(seed);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
    const ctx = context(limits);
    const dropped = { offlineQos0: 0, queueFull: 0, sessionDiscarded: 0 };
    const models: Model[] = [0, 1, 2].map((i) => ({
      session: new Session(`c${i}`, false, { clientId: `c${i}` }, ctx),
      link: undefined,
      queue: [],
      inflight: [],
      sent: [],
      seen: [],
    }));
    let tagCounter = 0;

    const modelSend = (m: Model, item: { tag: string; qos: QoS; size: number }) => {
      m.sent.push(item.tag);
      const sent = m.seen[m.sent.length - 1];
      assert.equal(sent?.tag, item.tag, `seed ${seed}: sent in order`);
      if (item.qos > 0) {
        // The id is whatever the session picked; the model checks it is fresh and non-zero.
        assert.notEqual(sent.id, 0);
        assert.ok(!m.inflight.some((e) => e.id === sent.id), "id not in flight [MQTT-2.3.1-2]");
        m.inflight.push({ ...item, state: "sent", id: sent.id });
      }
    };
    const modelPump = (m: Model) => {
      while (m.link !== undefined && m.link.writable && m.queue.length > 0) {
        const head = m.queue[0];
        if (head.qos > 0 && m.inflight.length >= limits.maxInflight) break;
        m.queue.shift();
        modelSend(m, head);
      }
    };
    // The real session runs first and the model then follows, reading the id it chose.
    const instrument = (m: Model, link: FakeLink) => {
      link.sendPublish = (...args) => {
        FakeLink.prototype.sendPublish.apply(link, args);
        const [message, qos, retain, packetId, , dup] = args;
        if (!dup) {
          m.seen.push({ tag: parsePublish(message.encoded(qos, retain)).payload, id: packetId });
        }
        return true;
      };
    };
    const ops: ((m: Model) => void)[] = [
      // deliver, weighted
      ...Array.from({ length: 6 }, () => (m: Model) => {
        const qos = pick([0, 1, 2] as const);
        const tag = `${tagCounter++}`.padStart(1 + Math.floor(random() * 12), "x");
        const size = 1 + tag.length;
        const seenBefore = m.seen.length;
        m.session.deliver(message(tag, qos), qos);
        const idle = m.queue.length === 0;
        const item = { tag, qos, size };
        if (qos === 0 && m.link === undefined) dropped.offlineQos0++;
        else if (
          m.link !== undefined && idle && m.link.writable &&
          (qos === 0 || m.inflight.length < limits.maxInflight)
        ) {
          assert.equal(m.seen.length, seenBefore + 1, `seed ${seed}: sent at once`);
          modelSend(m, item);
        } else if (
          m.queue.length >= limits.maxQueued ||
          m.queue.reduce((n, e) => n + e.size, 0) + size > limits.maxQueuedBytes
        ) dropped.queueFull++;
        else m.queue.push(item);
      }),
      (m) => { // PUBACK for something in flight, or a bogus id
        const picked = m.inflight.length > 0 && random() < 0.9 ? pick(m.inflight) : undefined;
        const id = picked?.id ?? 1 + Math.floor(random() * 65535);
        m.session.acknowledge(id);
        const entry = m.inflight.find((e) => e.id === id);
        if (entry?.qos === 1) {
          m.inflight.splice(m.inflight.indexOf(entry), 1);
          modelPump(m);
        }
      },
      (m) => { // PUBREC
        const entry = m.inflight.length > 0 ? pick(m.inflight) : undefined;
        if (entry === undefined) return;
        m.session.received(entry.id);
        if (entry.qos === 2 && entry.state === "sent") entry.state = "released";
      },
      (m) => { // PUBCOMP
        const entry = m.inflight.length > 0 ? pick(m.inflight) : undefined;
        if (entry === undefined) return;
        // PUBCOMP before PUBREL is a violation the connection closes for: nothing changes here.
        m.session.completed(entry.id);
        if (entry.qos === 2 && entry.state === "released") {
          m.inflight.splice(m.inflight.indexOf(entry), 1);
          modelPump(m);
        }
      },
      (m) => { // the socket fills or drains
        if (m.link === undefined) return;
        m.link.writable = !m.link.writable;
        if (m.link.writable) {
          m.session.pump();
          modelPump(m);
        }
      },
      (m) => { // disconnect
        m.session.link = m.link = undefined;
      },
      (m) => { // reconnect (if offline) and resume
        if (m.link !== undefined) return;
        const link = new FakeLink();
        link.writable = random() < 0.8;
        instrument(m, link);
        m.session.link = m.link = link;
        m.session.resume();
        const expected = m.inflight.map((e) => e.state === "released" ? `rel:${e.id}` : e.tag);
        const actual = link.packets.map((b) =>
          b[0] === 0x62 ? `rel:${(b[2] << 8) | b[3]}` : parsePublish(b).payload
        );
        assert.deepEqual(actual, expected, `seed ${seed}: resent in order`);
        modelPump(m);
      },
      (m) => { // rarely: the session ends
        if (random() > 0.15) return;
        m.session.discard();
        dropped.sessionDiscarded += m.queue.length + m.inflight.length;
        m.queue = [];
        m.inflight = [];
      },
    ];

    for (let step = 0; step < 1500; step++) {
      const m = pick(models);
      pick(ops)(m);
      const where = `seed ${seed}, step ${step}`;
      let queued = 0;
      let inflight = 0;
      for (const model of models) {
        const s = model.session;
        assert.equal(s.queued, model.queue.length, `${where}: queued`);
        assert.equal(
          s.queuedBytes,
          model.queue.reduce((n, e) => n + e.size, 0),
          `${where}: queuedBytes`,
        );
        assert.deepEqual(
          [...s.inflight.values()].map((e) => [e.packetId, e.state]),
          model.inflight.map((e) => [e.id, e.state === "sent" ? SENT : RELEASED]),
          `${where}: inflight`,
        );
        assert.deepEqual(model.seen.map((e) => e.tag), model.sent, `${where}: sent in order`);
        assert.ok(s.inflight.size <= limits.maxInflight, `${where}: window`);
        queued += s.queued;
        inflight += s.inflight.size;
      }
      assert.equal(ctx.counters.queued, queued, `${where}: counters.queued`);
      assert.equal(ctx.counters.inflight, inflight, `${where}: counters.inflight`);
      assert.deepEqual(
        {
          offlineQos0: ctx.counters.dropped.offlineQos0,
          queueFull: ctx.counters.dropped.queueFull,
          sessionDiscarded: ctx.counters.dropped.sessionDiscarded,
        },
        dropped,
        `${where}: drop counters`,
      );
    }
    // The run exercised every path it is meant to.
    assert.ok(dropped.queueFull > 0 && dropped.offlineQos0 > 0 && dropped.sessionDiscarded > 0);
    assert.ok(models.every((m) => m.sent.length > 20), `seed ${seed}: messages flowed`);
  }
});

Deno.test("session pump survives a link that acknowledges inside sendPublish (re-entered pump)", () => {
  const { session, link, ctx } = online({ maxInflight: 1 });
  link.writable = false;
  for (const p of ["a", "b", "c"]) session.deliver(message(p), 1);
  assert.equal(session.queued, 3);
  // Each PUBLISH is acknowledged at once, which completes it and pumps again from inside pump().
  const sent: string[] = [];
  link.sendPublish = (message, qos, retain, packetId) => {
    sent.push(parsePublish(message.encoded(qos, retain)).payload);
    session.acknowledge(packetId);
    return true;
  };
  link.writable = true;
  session.pump();
  assert.deepEqual(sent, ["a", "b", "c"]);
  assert.equal(session.queued, 0);
  assert.equal(session.inflight.size, 0);
  assert.equal(ctx.counters.queued, 0);
  assert.equal(ctx.counters.inflight, 0);
});
