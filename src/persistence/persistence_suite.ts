/**
 * The test suite every {@linkcode Persistence} backend runs. Each backend's test file calls
 * {@linkcode persistenceSuite} once per configuration.
 *
 * @module
 */
import assert from "node:assert/strict";
import { setImmediate } from "node:timers";
import type {
  LoadLimits,
  LoadResult,
  OutboundRecord,
  Persistence,
  SessionRecord,
  StoredMessage,
  StoredProperties,
  StoredSubscription,
  StoredWill,
} from "./persistence.ts";

/** What a backend's factory hands to the suite for one test. */
export interface StoreFixture {
  /** An opened, empty store. */
  store: Persistence;
  /** Returns an opened store over the same data; call it after closing the previous one. */
  reopen: () => Promise<Persistence>;
  /** Closes whatever is still open and removes the data. Called even when a test fails. */
  cleanup: () => Promise<void>;
}

const BIG: LoadLimits = {
  maxSessions: 1_000_000,
  maxRetained: 1_000_000,
  maxRetainedBytes: 2 ** 40,
  maxQueued: 1_000_000,
};

const bytes = (...values: number[]): Uint8Array => new Uint8Array(values);
const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function message(topic: string, payload: Uint8Array, qos: 0 | 1 | 2 = 1): StoredMessage {
  return { topic, payload, qos, retain: false };
}

function out(
  clientId: string,
  seq: number,
  state: OutboundRecord["state"] = "queued",
  packetId = 0,
): OutboundRecord {
  return {
    clientId,
    seq,
    packetId,
    state,
    message: message(`t/${seq}`, bytes(seq & 0xff, 0, 255)),
  };
}

function session(clientId: string, expiresAt = 0): SessionRecord {
  return { clientId, subscriptions: [{ topicFilter: "t/#", qos: 1 }], expiresAt };
}

const seqs = (state: LoadResult, clientId: string): number[] =>
  state.sessions.find((s) => s.clientId === clientId)?.outbound.map((r) => r.seq) ?? [];

/**
 * Registers the shared `Deno.test` cases for one backend. `makeStore` is called once per test and
 * must return a fresh, opened, empty store.
 *
 * What every backend must do, as tested here: round-trip every record kind across close and
 * reopen; replace a retained topic and delete it with an empty payload; keep outbound records in
 * `seq` order through their state transitions; delete a session's messages with it; load within
 * limits, count what it skipped and delete it; write all changes of one event-loop turn as one
 * batch (`commits` goes up by one); reject `commit()` after `close()` and ignore changes made
 * while closed; capture records at call time. And the 5.0 state: subscription options and
 * identifiers, shared subscription filters, the Session Expiry Interval, a delayed will (removed
 * by saving the session without one), message properties (User Properties in order, binary
 * Correlation Data), outbound Subscription Identifiers; message expiry as a wall-clock deadline
 * (a queued or retained message past it is not loaded and is deleted, an in-flight one is kept);
 * the will of a session that expired while stored comes back once in `expiredWills`.
 *
 * @example Run the suite against the in-memory store
 * ```ts
 * import { persistenceSuite } from "./persistence_suite.ts";
 * import { MemoryPersistence } from "./memory.ts";
 *
 * persistenceSuite("memory", async () => {
 *   const store = new MemoryPersistence();
 *   await store.open();
 *   return {
 *     store,
 *     reopen: async () => (await store.open(), store),
 *     cleanup: () => store.close(),
 *   };
 * });
 * ```
 */
export function persistenceSuite(name: string, makeStore: () => Promise<StoreFixture>): void {
  const test = (title: string, fn: (fixture: StoreFixture) => Promise<void>) =>
    Deno.test(`persistence (${name}): ${title}`, async () => {
      const fixture = await makeStore();
      try {
        await fn(fixture);
      } finally {
        await fixture.cleanup();
      }
    });

  test("every record kind round-trips across close and reopen", async ({ store, reopen }) => {
    const empty = store.load(BIG);
    assert.deepEqual(empty.retained, []);
    assert.deepEqual(empty.sessions, []);

    const expiresAt = Date.now() + 3_600_000;
    store.setRetained({ topic: "r/0", payload: bytes(0, 1, 2, 255), qos: 0, retain: true });
    store.setRetained({ topic: "r/ü/日本", payload: text("é"), qos: 2, retain: true });
    store.saveSession({
      clientId: "zeta",
      subscriptions: [{ topicFilter: "a/+/c", qos: 2 }, { topicFilter: "#", qos: 0 }],
      expiresAt,
    });
    store.saveSession({ clientId: "älpha", subscriptions: [], expiresAt: 0 });
    const records: OutboundRecord[] = [
      out("zeta", 1, "pubrel", 7),
      out("zeta", 2, "sent", 65535),
      { ...out("zeta", 3), message: { topic: "x", payload: bytes(), qos: 0, retain: true } },
      {
        ...out("zeta", 4),
        message: { topic: "y", payload: new Uint8Array(70_000).fill(9), qos: 2, retain: false },
      },
    ];
    for (const r of records) store.addOutbound(r);
    store.addInboundQos2("zeta", 300);
    store.addInboundQos2("zeta", 2);
    store.addInboundQos2("älpha", 1);
    await store.commit();
    await store.close();

    const again = await reopen();
    const loaded = again.load(BIG);
    assert.deepEqual(loaded.retained, [
      { topic: "r/0", payload: bytes(0, 1, 2, 255), qos: 0, retain: true },
      { topic: "r/ü/日本", payload: text("é"), qos: 2, retain: true },
    ]);
    // Sessions come ordered by client identifier.
    assert.deepEqual(loaded.sessions.map((s) => s.clientId), ["zeta", "älpha"]);
    assert.deepEqual(loaded.sessions[0], {
      clientId: "zeta",
      subscriptions: [{ topicFilter: "a/+/c", qos: 2 }, { topicFilter: "#", qos: 0 }],
      expiresAt,
      outbound: records,
      inboundQos2: [2, 300],
    });
    assert.deepEqual(loaded.sessions[1], {
      clientId: "älpha",
      subscriptions: [],
      expiresAt: 0,
      outbound: [],
      inboundQos2: [1],
    });
    assert.deepEqual(loaded.skipped, {
      sessions: 0,
      expiredSessions: 0,
      retained: 0,
      messages: 0,
      expiredMessages: 0,
    });
  });

  test("a retained topic is replaced, and deleted by an empty payload", async ({ store, reopen }) => {
    store.load(BIG);
    store.setRetained({ topic: "a", payload: bytes(1), qos: 1, retain: true });
    store.setRetained({ topic: "b", payload: bytes(2), qos: 1, retain: true });
    store.setRetained({ topic: "c", payload: bytes(3), qos: 1, retain: true });
    await store.commit();
    store.setRetained({ topic: "a", payload: bytes(4, 4), qos: 2, retain: true });
    store.setRetained({ topic: "b", payload: bytes(), qos: 0, retain: true });
    // Set and deleted within one batch.
    store.setRetained({ topic: "d", payload: bytes(5), qos: 0, retain: true });
    store.setRetained({ topic: "d", payload: bytes(), qos: 0, retain: true });
    await store.commit();
    await store.close();

    const again = await reopen();
    assert.deepEqual(again.load(BIG).retained, [
      { topic: "a", payload: bytes(4, 4), qos: 2, retain: true },
      { topic: "c", payload: bytes(3), qos: 1, retain: true },
    ]);
  });

  test("outbound records keep seq order through their state transitions", async ({ store, reopen }) => {
    store.load(BIG);
    store.saveSession(session("c"));
    for (const seq of [5, 1, 3, 8, 2]) store.addOutbound(out("c", seq));
    await store.commit();
    store.updateOutbound("c", 1, 10, "sent");
    store.updateOutbound("c", 2, 11, "sent");
    await store.commit();
    store.updateOutbound("c", 1, 10, "pubrel");
    store.deleteOutbound("c", 2); // PUBACK
    store.deleteOutbound("c", 5);
    store.updateOutbound("c", 99, 12, "sent"); // no such record: no-op
    // Added, sent and acknowledged within one batch.
    store.addOutbound(out("c", 9));
    store.updateOutbound("c", 9, 13, "sent");
    store.deleteOutbound("c", 9);
    // Added and sent within one batch.
    store.addOutbound(out("c", 10));
    store.updateOutbound("c", 10, 14, "sent");
    await store.commit();
    await store.close();

    const again = await reopen();
    const loaded = again.load(BIG);
    assert.deepEqual(loaded.sessions[0].outbound, [
      out("c", 1, "pubrel", 10),
      out("c", 3),
      out("c", 8),
      out("c", 10, "sent", 14),
    ]);
    // A replaced record (same seq) keeps one row.
    again.addOutbound(out("c", 3, "sent", 20));
    again.deleteOutbound("c", 1);
    await again.commit();
    assert.deepEqual(seqs(again.load(BIG), "c"), [3, 8, 10]);
    assert.deepEqual(again.load(BIG).sessions[0].outbound[0], out("c", 3, "sent", 20));
  });

  test("deleteSession deletes its outbound and inbound records", async ({ store, reopen }) => {
    store.load(BIG);
    for (const id of ["a", "b"]) {
      store.saveSession(session(id));
      store.addOutbound(out(id, 1));
      store.addOutbound(out(id, 2, "sent", 5));
      store.addInboundQos2(id, 9);
    }
    await store.commit();
    store.deleteSession("a");
    await store.commit();
    await store.close();

    const again = await reopen();
    const loaded = again.load(BIG);
    assert.deepEqual(loaded.sessions.map((s) => s.clientId), ["b"]);
    assert.deepEqual(seqs(loaded, "b"), [1, 2]);
    assert.deepEqual(loaded.sessions[0].inboundQos2, [9]);
    assert.equal(loaded.skipped.messages, 0);
    // A new session with the same client identifier starts without the old messages.
    again.saveSession(session("a"));
    await again.commit();
    const fresh = again.load(BIG).sessions.find((s) => s.clientId === "a");
    assert.deepEqual(fresh?.outbound, []);
    assert.deepEqual(fresh?.inboundQos2, []);
  });

  test("inbound QoS 2 packet ids are added and removed", async ({ store, reopen }) => {
    store.load(BIG);
    store.saveSession(session("c"));
    for (const id of [5, 1, 65535, 3]) store.addInboundQos2("c", id);
    store.addInboundQos2("c", 5); // a retransmission: no duplicate
    await store.commit();
    store.deleteInboundQos2("c", 1);
    store.deleteInboundQos2("c", 42); // unknown: no-op
    await store.commit();
    await store.close();
    const again = await reopen();
    assert.deepEqual(again.load(BIG).sessions[0].inboundQos2, [3, 5, 65535]);
  });

  test("load honours the limits, counts what it skipped and deletes it", async ({ store, reopen }) => {
    store.load(BIG);
    const now = Date.now();
    store.saveSession(session("s1"));
    store.saveSession(session("s2", now - 1)); // expired
    store.saveSession(session("s3", now + 60_000));
    store.saveSession(session("s4"));
    store.saveSession(session("s5"));
    // s1: two in flight and four queued; maxQueued 2 keeps the in-flight ones and two queued.
    store.addOutbound(out("s1", 1, "pubrel", 1));
    store.addOutbound(out("s1", 2, "sent", 2));
    for (const seq of [3, 4, 5, 6]) store.addOutbound(out("s1", seq));
    store.addOutbound(out("s2", 1)); // with the expired session
    store.addOutbound(out("s4", 1)); // with a session over maxSessions
    store.addOutbound(out("s5", 1));
    store.addOutbound(out("s5", 2));
    store.addOutbound(out("nobody", 1)); // without a session at all
    store.addInboundQos2("nobody", 1);
    // Retained: "r/a" 3+10 bytes, "r/b" 3+10, "r/c" 3+30 (too big), "r/d" 3+1, "r/e" 3+1 (over count).
    store.setRetained({ topic: "r/a", payload: new Uint8Array(10), qos: 0, retain: true });
    store.setRetained({ topic: "r/b", payload: new Uint8Array(10), qos: 0, retain: true });
    store.setRetained({ topic: "r/c", payload: new Uint8Array(30), qos: 0, retain: true });
    store.setRetained({ topic: "r/d", payload: new Uint8Array(1), qos: 0, retain: true });
    store.setRetained({ topic: "r/e", payload: new Uint8Array(1), qos: 0, retain: true });
    await store.commit();
    await store.close();

    const limited = await reopen();
    const loaded = limited.load({
      maxSessions: 2,
      maxRetained: 3,
      maxRetainedBytes: 30,
      maxQueued: 2,
      now,
    });
    assert.deepEqual(loaded.sessions.map((s) => s.clientId), ["s1", "s3"]);
    assert.deepEqual(seqs(loaded, "s1"), [1, 2, 3, 4]);
    assert.deepEqual(loaded.retained.map((r) => r.topic), ["r/a", "r/b", "r/d"]);
    assert.deepEqual(loaded.skipped, {
      sessions: 2, // s4, s5
      expiredSessions: 1, // s2
      retained: 2, // r/c (bytes), r/e (count)
      messages: 2 + 1 + 1 + 2 + 1, // s1 over maxQueued, s2, s4, s5, nobody
      expiredMessages: 0,
    });
    await limited.commit();
    await limited.close();

    // What was skipped is gone: the store mirrors what the broker loaded.
    const again = await reopen();
    const all = again.load({ ...BIG, now });
    assert.deepEqual(all.sessions.map((s) => s.clientId), ["s1", "s3"]);
    assert.deepEqual(seqs(all, "s1"), [1, 2, 3, 4]);
    assert.deepEqual(all.retained.map((r) => r.topic), ["r/a", "r/b", "r/d"]);
    assert.deepEqual(all.skipped, {
      sessions: 0,
      expiredSessions: 0,
      retained: 0,
      messages: 0,
      expiredMessages: 0,
    });
  });

  test("5.0 state round-trips: subscription options and ids, session expiry interval, delayed will, message properties and deadlines", async ({ store, reopen }) => {
    store.load(BIG);
    const later = Date.now() + 3_600_000;
    const properties: StoredProperties = {
      payloadFormatIndicator: true,
      contentType: "application/json; charset=utf-8",
      responseTopic: "reply/ü",
      correlationData: bytes(0, 255, 7, 0),
      // Order kept, names may repeat.
      userProperties: [["b", "2"], ["a", "1"], ["b", "3"], ["", ""]],
    };
    const subscriptions: StoredSubscription[] = [
      { topicFilter: "plain/#", qos: 1 },
      { topicFilter: "nl/+", qos: 2, noLocal: true, subscriptionId: 1 },
      { topicFilter: "rap", qos: 0, retainAsPublished: true, retainHandling: 2 },
      { topicFilter: "rh1", qos: 1, retainHandling: 1, subscriptionId: 268_435_455 },
      { topicFilter: "$share/g1/s/#", qos: 1 },
      { topicFilter: "$share/g2/s/#", qos: 2, retainAsPublished: true, subscriptionId: 42 },
    ];
    const will: StoredWill = {
      topic: "will/t",
      payload: bytes(1, 2, 3),
      qos: 2,
      retain: true,
      properties: { contentType: "text/plain", userProperties: [["k", "v"]] },
      messageExpiryS: 30,
      publishAt: later,
    };
    store.saveSession({
      clientId: "v5",
      subscriptions,
      expiresAt: later,
      expiryIntervalS: 3600,
      will,
    });
    store.saveSession({
      clientId: "v5-never",
      subscriptions: [],
      expiresAt: 0,
      expiryIntervalS: 0xffff_ffff,
      will: { topic: "w", payload: bytes(), qos: 0, retain: false, publishAt: later },
    });
    store.setRetained({
      topic: "r/props",
      payload: text("{}"),
      qos: 1,
      retain: true,
      properties,
      expiresAt: later,
    });
    store.setRetained({
      topic: "r/none",
      payload: text("x"),
      qos: 0,
      retain: true,
      properties: {},
    });
    const records: OutboundRecord[] = [
      {
        ...out("v5", 1, "sent", 1),
        message: { ...message("o/1", bytes(1)), properties },
        subscriptionIds: [3, 268_435_455],
      },
      { ...out("v5", 2), message: { ...message("o/2", bytes(2), 2), expiresAt: later } },
      {
        ...out("v5", 3),
        message: {
          ...message("o/3", bytes(3)),
          properties: { correlationData: bytes() },
          expiresAt: later + 1,
        },
      },
    ];
    for (const r of records) store.addOutbound(r);
    await store.commit();
    await store.close();

    const loaded = (await reopen()).load(BIG);
    assert.deepEqual(loaded.retained, [
      { topic: "r/none", payload: text("x"), qos: 0, retain: true },
      {
        topic: "r/props",
        payload: text("{}"),
        qos: 1,
        retain: true,
        properties,
        expiresAt: later,
      },
    ]);
    assert.deepEqual(loaded.sessions[0], {
      clientId: "v5",
      subscriptions,
      expiresAt: later,
      expiryIntervalS: 3600,
      will,
      outbound: records,
      inboundQos2: [],
    });
    assert.deepEqual(loaded.sessions[1], {
      clientId: "v5-never",
      subscriptions: [],
      expiresAt: 0,
      expiryIntervalS: 0xffff_ffff,
      will: { topic: "w", payload: bytes(), qos: 0, retain: false, publishAt: later },
      outbound: [],
      inboundQos2: [],
    });
    assert.deepEqual(loaded.expiredWills, []);
  });

  test("saving a session without a will removes its stored will", async ({ store, reopen }) => {
    store.load(BIG);
    const will = { topic: "w", payload: bytes(1), qos: 1 as const, retain: false, publishAt: 5 };
    store.saveSession({ clientId: "c", subscriptions: [], expiresAt: 0, will });
    await store.commit();
    store.saveSession({ clientId: "c", subscriptions: [], expiresAt: 0 });
    await store.commit();
    await store.close();
    assert.deepEqual((await reopen()).load(BIG).sessions[0], {
      clientId: "c",
      subscriptions: [],
      expiresAt: 0,
      outbound: [],
      inboundQos2: [],
    });
  });

  test("message expiry is a wall-clock deadline: what passed it while stored is not loaded and is deleted; in-flight messages stay [MQTT-3.3.2-5]", async ({ store, reopen }) => {
    store.load(BIG);
    const t0 = Date.now();
    store.saveSession(session("c"));
    store.addOutbound({
      ...out("c", 1, "sent", 1),
      message: { ...message("a", bytes(1)), expiresAt: t0 + 10 },
    });
    store.addOutbound({
      ...out("c", 2, "pubrel", 2),
      message: { ...message("b", bytes(2), 2), expiresAt: t0 + 10 },
    });
    store.addOutbound({
      ...out("c", 3),
      message: { ...message("c", bytes(3)), expiresAt: t0 + 10 },
    });
    store.addOutbound({
      ...out("c", 4),
      message: { ...message("d", bytes(4)), expiresAt: t0 + 20 },
    });
    store.addOutbound({ ...out("c", 5), message: message("e", bytes(5)) });
    store.setRetained({
      topic: "r/old",
      payload: bytes(1),
      qos: 1,
      retain: true,
      expiresAt: t0 + 10,
    });
    store.setRetained({
      topic: "r/new",
      payload: bytes(2),
      qos: 1,
      retain: true,
      expiresAt: t0 + 20,
    });
    await store.commit();
    await store.close();

    // The broker comes back at t0 + 15 (it was down in between): the deadlines of t0 + 10 passed.
    const s1 = await reopen();
    const first = s1.load({ ...BIG, now: t0 + 15 });
    assert.deepEqual(seqs(first, "c"), [1, 2, 4, 5]);
    assert.deepEqual(first.retained.map((r) => [r.topic, r.expiresAt]), [["r/new", t0 + 20]]);
    assert.equal(first.skipped.expiredMessages, 2);
    assert.equal(first.skipped.messages, 0);
    assert.equal(first.sessions[0].outbound[2].message.expiresAt, t0 + 20, "deadline kept as is");
    await s1.commit();
    await s1.close();
    const second = (await reopen()).load({ ...BIG, now: t0 + 15 });
    assert.deepEqual(seqs(second, "c"), [1, 2, 4, 5], "the expired rows were deleted");
    assert.equal(second.skipped.expiredMessages, 0);
  });

  test("the will of a session that expired while stored is returned as due, and the session is deleted", async ({ store, reopen }) => {
    store.load(BIG);
    const t0 = Date.now();
    const will: StoredWill = {
      topic: "will/late",
      payload: text("bye"),
      qos: 1,
      retain: false,
      properties: { userProperties: [["why", "expired"]] },
      publishAt: t0 + 50, // the will delay is longer than the session's remaining life
    };
    store.saveSession({ ...session("gone", t0 + 10), expiryIntervalS: 1, will });
    store.saveSession({
      ...session("kept", t0 + 100),
      expiryIntervalS: 1,
      will: { ...will, topic: "will/kept" },
    });
    await store.commit();
    await store.close();
    const s1 = await reopen();
    const loaded = s1.load({ ...BIG, now: t0 + 20 });
    assert.deepEqual(loaded.sessions.map((s) => s.clientId), ["kept"]);
    assert.equal(loaded.sessions[0].will?.topic, "will/kept");
    assert.deepEqual(loaded.expiredWills, [{ clientId: "gone", will }]);
    assert.equal(loaded.skipped.expiredSessions, 1);
    await s1.commit();
    await s1.close();
    const again = (await reopen()).load({ ...BIG, now: t0 + 20 });
    assert.deepEqual(again.expiredWills, [], "reported once: the session is gone");
  });

  test("all changes of one turn share one batch (group commit)", async ({ store }) => {
    store.load(BIG);
    await store.commit();
    await nextTurn();
    const before = store.commits;
    assert.equal(store.pending, false);
    await store.commit(); // nothing pending: resolves without a batch

    // The broker's pattern: one mutation, one awaited commit, per packet, many packets per turn.
    const commits: Promise<void>[] = [];
    for (let i = 1; i <= 200; i++) {
      store.saveSession(session(`c${i % 10}`));
      store.addOutbound(out(`c${i % 10}`, i));
      commits.push(store.commit());
    }
    assert.equal(store.pending, true);
    await Promise.all(commits);
    await nextTurn();
    assert.equal(store.pending, false);
    assert.equal(store.commits, before + 1);

    // The next turn is the next batch.
    for (let i = 201; i <= 210; i++) store.addOutbound(out("c1", i));
    await store.commit();
    await nextTurn();
    assert.equal(store.commits, before + 2);
    assert.equal(store.load(BIG).sessions.reduce((n, s) => n + s.outbound.length, 0), 210);
  });

  test("commit() after close() rejects; changes made while closed are ignored", async ({ store, reopen }) => {
    store.load(BIG);
    store.setRetained({ topic: "kept", payload: bytes(1), qos: 0, retain: true });
    const pending = store.commit(); // made before close: close() writes it
    await store.close();
    await pending;
    await store.close(); // idempotent
    await assert.rejects(store.commit(), /closed/);
    store.setRetained({ topic: "lost", payload: bytes(1), qos: 0, retain: true });
    store.saveSession(session("lost"));
    store.addOutbound(out("lost", 1));
    await assert.rejects(store.commit(), /closed/);

    const again = await reopen();
    const loaded = again.load(BIG);
    assert.deepEqual(loaded.retained.map((r) => r.topic), ["kept"]);
    assert.deepEqual(loaded.sessions, []);
  });

  test("records are captured when the call is made", async ({ store, reopen }) => {
    store.load(BIG);
    const record = session("c");
    store.saveSession(record);
    const o = out("c", 1);
    store.addOutbound(o);
    // The broker keeps mutating its own objects after the call.
    record.subscriptions.push({ topicFilter: "later", qos: 0 });
    record.expiresAt = 5;
    o.state = "sent";
    o.packetId = 3;
    await store.commit();
    await store.close();
    const again = await reopen();
    const loaded = again.load(BIG);
    assert.deepEqual(loaded.sessions[0].subscriptions, session("c").subscriptions);
    assert.equal(loaded.sessions[0].expiresAt, 0);
    assert.deepEqual(loaded.sessions[0].outbound, [out("c", 1)]);
    // And loaded objects are the caller's to change.
    loaded.sessions[0].subscriptions.length = 0;
    assert.equal(again.load(BIG).sessions[0].subscriptions.length, 1);
  });
}
