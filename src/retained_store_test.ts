/**
 * Retained store: one message per topic, bounded by count and bytes.
 *
 * @module
 */
import assert from "node:assert/strict";
import { Message } from "./message.ts";
import { type Limits, resolveLimits } from "./options.ts";
import { RetainedStore } from "./retained_store.ts";
import { Counters } from "./stats.ts";

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();

function retained(topic: string, payload: string): Message {
  return new Message(topic, utf8.encode(payload), 1, true);
}

function store(limits: Partial<Limits> = {}): { store: RetainedStore; counters: Counters } {
  const counters = new Counters();
  return { store: new RetainedStore(resolveLimits(limits), counters), counters };
}

/** `topic=payload` of every retained message matching `filter`, sorted. */
function matching(s: RetainedStore, filter: string): string[] {
  const out: string[] = [];
  s.match(filter, (m) => out.push(`${m.topic}=${utf8Decoder.decode(m.payload)}`));
  return out.sort();
}

Deno.test("retained store stores, replaces and clears by empty payload [MQTT-3.3.1-5] [MQTT-3.3.1-10] [MQTT-3.3.1-11]", () => {
  const { store: s, counters } = store();
  const steps: { topic: string; payload: string; result: string; size: number; bytes: number }[] = [
    { topic: "a/b", payload: "one", result: "stored", size: 1, bytes: 6 },
    { topic: "a/b", payload: "two!", result: "replaced", size: 1, bytes: 7 },
    { topic: "a/c", payload: "x", result: "stored", size: 2, bytes: 11 },
    // [MQTT-3.3.1-10] an empty payload removes the retained message of its topic
    { topic: "a/b", payload: "", result: "cleared", size: 1, bytes: 4 },
    // [MQTT-3.3.1-11] and is never stored itself
    { topic: "a/b", payload: "", result: "none", size: 1, bytes: 4 },
    { topic: "new", payload: "", result: "none", size: 1, bytes: 4 },
    { topic: "a/c", payload: "", result: "cleared", size: 0, bytes: 0 },
  ];
  for (const { topic, payload, result, size, bytes } of steps) {
    const name = `${topic}=${JSON.stringify(payload)}`;
    assert.equal(s.set(retained(topic, payload)), result, name);
    assert.equal(s.size, size, name);
    assert.equal(s.bytes, bytes, name);
  }
  assert.deepEqual(matching(s, "#"), []);
  assert.equal(counters.dropped.retainedFull, 0);
});

Deno.test("retained store keeps the latest message of a topic [MQTT-3.3.1-5]", () => {
  const { store: s } = store();
  s.set(retained("t", "1"));
  s.set(retained("t", "2"));
  s.set(retained("u", "3"));
  assert.deepEqual(matching(s, "t"), ["t=2"]);
  assert.deepEqual([...s.values()].map((m) => m.topic).sort(), ["t", "u"]);
});

Deno.test("retained store maxRetained refuses a new topic but allows replacing one", () => {
  const { store: s, counters } = store({ maxRetained: 2 });
  assert.equal(s.set(retained("a", "1")), "stored");
  assert.equal(s.set(retained("b", "1")), "stored");
  assert.equal(s.set(retained("c", "1")), "full");
  assert.equal(counters.dropped.retainedFull, 1);
  assert.equal(s.size, 2);
  assert.deepEqual(matching(s, "c"), []);
  assert.equal(s.set(retained("a", "2")), "replaced", "replacing does not add a topic");
  assert.deepEqual(matching(s, "#"), ["a=2", "b=1"]);
  assert.equal(counters.dropped.retainedFull, 1);
  // Clearing makes room again.
  assert.equal(s.set(retained("b", "")), "cleared");
  assert.equal(s.set(retained("c", "1")), "stored");
  assert.deepEqual(matching(s, "#"), ["a=2", "c=1"]);

  const none = store({ maxRetained: 0 });
  assert.equal(none.store.set(retained("a", "1")), "full");
  assert.equal(none.store.set(retained("a", "")), "none", "clearing nothing is not refused");
  assert.equal(none.counters.dropped.retainedFull, 1);
});

Deno.test("retained store maxRetainedBytes counts UTF-8 topic bytes + payload", () => {
  // "température/🌡": 12 UTF-16 units + 2 for the emoji = 14 units, but 13 + 4 = 17 UTF-8 bytes.
  const topic = "température/🌡";
  assert.equal(topic.length, 14);
  assert.equal(utf8.encode(topic).length, 17);
  const { store: s, counters } = store({ maxRetainedBytes: 20 });

  assert.equal(s.set(retained(topic, "abc")), "stored"); // 17 + 3 = 20: exactly the limit
  assert.equal(s.bytes, 20);
  assert.equal(s.set(retained(topic, "abcd")), "full", "21 bytes is past the limit");
  assert.equal(counters.dropped.retainedFull, 1);
  assert.deepEqual(matching(s, "température/+"), [`${topic}=abc`], "the old value is kept");
  assert.equal(s.bytes, 20);

  assert.equal(s.set(retained("é", "")), "none");
  assert.equal(s.set(retained("é", "x")), "full", "any new topic is past the limit now");
  assert.equal(counters.dropped.retainedFull, 2);

  // A smaller replacement frees bytes for another topic ("é" is 2 bytes).
  assert.equal(s.set(retained(topic, "a")), "replaced");
  assert.equal(s.bytes, 18);
  assert.equal(s.set(retained("é", "")), "none");
  assert.equal(s.set(retained("é", "x")), "full", "2 + 1 = 3 would make 21");
  assert.equal(s.set(retained("é", "")), "none");
  assert.equal(s.set(retained(topic, "")), "cleared");
  assert.equal(s.bytes, 0);
  assert.equal(s.set(retained("é", "x")), "stored");
  assert.equal(s.bytes, 3);
  assert.equal(counters.dropped.retainedFull, 3);
});

Deno.test("retained store match() applies wildcards and the $ rule [MQTT-4.7.1-2] [MQTT-4.7.2-1]", () => {
  const { store: s } = store();
  for (const topic of ["a", "a/b", "a/c", "a/b/c", "b/b", "/lead", "$SYS/x", "$SYS/y/z", "a/$x"]) {
    s.set(retained(topic, "v"));
  }
  const cases: { filter: string; topics: string[] }[] = [
    { filter: "a/b", topics: ["a/b"] },
    { filter: "a/+", topics: ["a/$x", "a/b", "a/c"] },
    // [MQTT-4.7.1-2] "#" also matches the parent level
    { filter: "a/#", topics: ["a", "a/$x", "a/b", "a/b/c", "a/c"] },
    { filter: "+/b", topics: ["a/b", "b/b"] },
    { filter: "+/+/c", topics: ["a/b/c"] },
    { filter: "+", topics: ["a"] },
    { filter: "+/lead", topics: ["/lead"] },
    // [MQTT-4.7.2-1] wildcards at the first level do not match $-topics
    { filter: "#", topics: ["/lead", "a", "a/$x", "a/b", "a/b/c", "a/c", "b/b"] },
    { filter: "+/x", topics: [] },
    { filter: "+/#", topics: ["/lead", "a", "a/$x", "a/b", "a/b/c", "a/c", "b/b"] },
    { filter: "$SYS/#", topics: ["$SYS/x", "$SYS/y/z"] },
    { filter: "$SYS/+", topics: ["$SYS/x"] },
    { filter: "$SYS/x", topics: ["$SYS/x"] },
    { filter: "nothing/#", topics: [] },
  ];
  for (const { filter, topics } of cases) {
    assert.deepEqual(matching(s, filter), topics.map((t) => `${t}=v`).sort(), filter);
  }
});

function expiring(topic: string, payload: string, expiresAt: number): Message {
  return new Message(topic, utf8.encode(payload), 1, true, undefined, expiresAt);
}

Deno.test("retained store: an expired message is not delivered and is removed, with its bytes; the others stay [MQTT-3.3.2-5]", () => {
  const { store: s } = store();
  const removed: string[] = [];
  s.onExpired = (m) => removed.push(m.topic);
  const t0 = 1_000_000;
  s.set(expiring("e/soon", "a", t0 + 10));
  s.set(expiring("e/later", "bb", t0 + 1_000));
  s.set(retained("e/never", "ccc"));
  assert.equal(s.size, 3);
  const seen = (now: number, filter = "e/#") => {
    const out: string[] = [];
    s.match(filter, (m) => out.push(`${m.topic} ${m.remainingExpiryS(now) ?? "-"}`), now);
    return out.sort();
  };
  assert.deepEqual(seen(t0), ["e/later 1", "e/never -", "e/soon 1"]);
  assert.deepEqual(removed, []);
  // At t0 + 10 "e/soon" has expired: not visited, removed, and its bytes freed.
  assert.deepEqual(seen(t0 + 10), ["e/later 1", "e/never -"]);
  assert.deepEqual(removed, ["e/soon"]);
  assert.equal(s.size, 2);
  assert.equal(s.bytes, "e/later".length + 2 + "e/never".length + 3);
  // The remaining lifetime shrinks, rounded up to whole seconds [MQTT-3.3.2-6].
  assert.deepEqual(seen(t0 + 400), ["e/later 1", "e/never -"]);
  assert.equal(s.get("e/later", t0 + 999)?.remainingExpiryS(t0 + 999), 1);
  assert.equal(s.get("e/later", t0 + 1_000), undefined, "get removes it too");
  assert.deepEqual(removed, ["e/soon", "e/later"]);
  assert.deepEqual([...s.values(t0 + 5_000)].map((m) => m.topic), ["e/never"]);
  assert.equal(s.size, 1);
});

Deno.test("retained store: removeExpired sweeps expired messages nobody asked for; a replaced one is not reported", () => {
  const { store: s } = store({ maxRetained: 2 });
  const removed: string[] = [];
  s.onExpired = (m) => removed.push(m.topic);
  s.set(expiring("a", "1", 100));
  s.set(expiring("b", "2", 200));
  assert.equal(s.set(retained("c", "3")), "full", "two topics at most");
  assert.equal(s.set(expiring("a", "1b", 300)), "replaced");
  assert.deepEqual([...s.values(250)].map((m) => m.topic), ["a"], "values() skips expired ones");
  assert.equal(s.removeExpired(250), 1);
  assert.deepEqual(removed, ["b"]);
  assert.equal(s.set(retained("c", "3")), "stored", "the expired one's room is free again");
  assert.equal(s.removeExpired(250), 0);
  const left: string[] = [];
  s.match("#", (m) => left.push(m.topic), 250);
  assert.deepEqual(left.sort(), ["a", "c"]);
});
