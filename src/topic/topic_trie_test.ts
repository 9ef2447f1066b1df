import assert from "node:assert/strict";
import { matchTopic, validateTopicFilter, validateTopicName } from "./topic.ts";
import { TopicTree } from "./topic_tree.ts";
import { TopicTrie } from "./topic_trie.ts";
import { mulberry32 } from "../_test_prng.ts";

function collect<K, V>(trie: TopicTrie<K, V>, topic: string): string[] {
  const out: string[] = [];
  trie.match(topic, (key, value, filter) => out.push(`${filter}|${key}|${value}`));
  return out.sort();
}

function collectTree<V>(tree: TopicTree<V>, filter: string): string[] {
  const out: string[] = [];
  tree.matchFilter(filter, (topic, value) => out.push(`${topic}|${value}`));
  return out.sort();
}

// ---- TopicTrie ---------------------------------------------------------------------------

Deno.test("TopicTrie.add reports new entries, replaces values and counts filters", () => {
  const trie = new TopicTrie<string, number>();
  assert.equal(trie.add("a/b", "s1", 0), true);
  assert.equal(trie.add("a/b", "s2", 1), true);
  assert.equal(trie.add("a/+", "s1", 2), true);
  assert.equal(trie.size, 3);
  assert.equal(trie.filterCount, 2);
  assert.equal(trie.add("a/b", "s1", 2), false, "same (filter, key) replaces");
  assert.equal(trie.size, 3);
  assert.equal(trie.filterCount, 2);
  assert.deepEqual(collect(trie, "a/b"), ["a/+|s1|2", "a/b|s1|2", "a/b|s2|1"]);
  assert.deepEqual(collect(trie, "a/c"), ["a/+|s1|2"]);
  assert.deepEqual(collect(trie, "a"), []);
});

Deno.test("TopicTrie.remove reports presence, keeps other entries and prunes empty nodes", () => {
  const trie = new TopicTrie<string, number>();
  trie.add("a/b/c", "s1", 0);
  trie.add("a/b", "s1", 0);
  trie.add("a/+/#", "s2", 1);
  trie.add("#", "s3", 1);
  const nodes = trie.nodeCount;
  assert.equal(nodes, 6); // a, a/b, a/b/c, a/+, a/+/#, #
  assert.equal(trie.remove("a/b/c", "s2"), false, "wrong key");
  assert.equal(trie.remove("a/b/d", "s1"), false, "unknown filter");
  assert.equal(trie.remove("a", "s1"), false, "inner node without subscribers");
  assert.equal(trie.nodeCount, nodes, "failed removals create nothing");
  assert.equal(trie.remove("a/b/c", "s1"), true);
  assert.equal(trie.remove("a/b/c", "s1"), false, "already removed");
  assert.equal(trie.nodeCount, 5);
  assert.deepEqual(collect(trie, "a/b"), ["#|s3|1", "a/+/#|s2|1", "a/b|s1|0"]);
  assert.equal(trie.remove("a/b", "s1"), true);
  assert.equal(trie.nodeCount, 4, "a/b pruned, a/+ and a/+/# stay");
  assert.equal(trie.remove("a/+/#", "s2"), true);
  assert.equal(trie.nodeCount, 1, "a, a/+ and a/+/# pruned");
  assert.equal(trie.remove("#", "s3"), true);
  assert.equal(trie.nodeCount, 0);
  assert.equal(trie.size, 0);
  assert.equal(trie.filterCount, 0);
  assert.deepEqual(collect(trie, "a/b"), []);
});

Deno.test("TopicTrie visits a key once per matching filter; the caller deduplicates", () => {
  const trie = new TopicTrie<string, number>();
  trie.add("a/b", "s", 0);
  trie.add("a/+", "s", 1);
  trie.add("#", "s", 2);
  trie.add("a/#", "s", 1);
  assert.deepEqual(collect(trie, "a/b"), ["#|s|2", "a/#|s|1", "a/+|s|1", "a/b|s|0"]);
});

Deno.test("TopicTrie with 10 000 keys on one filter visits each exactly once", () => {
  const trie = new TopicTrie<number, number>();
  for (let i = 0; i < 10_000; i++) trie.add("sensors/+/temp", i, i % 3);
  for (let i = 0; i < 10_000; i += 2) assert.equal(trie.remove("sensors/+/temp", i), true);
  const seen = new Set<number>();
  let visits = 0;
  trie.match("sensors/42/temp", (key, value, filter) => {
    visits++;
    seen.add(key);
    assert.equal(value, key % 3);
    assert.equal(filter, "sensors/+/temp");
  });
  assert.equal(visits, 5_000);
  assert.equal(seen.size, 5_000);
  for (const key of seen) assert.equal(key % 2, 1);
  assert.equal(trie.filterCount, 1);
});

Deno.test("TopicTrie.match tolerates a visitor that removes and adds subscriptions", () => {
  const trie = new TopicTrie<number, number>();
  for (let i = 0; i < 10; i++) trie.add("t", i, i);
  trie.add("+", 100, 0);
  const visited: number[] = [];
  trie.match("t", (key) => {
    visited.push(key);
    if (visited.length === 1) {
      // Shrink the subscriber list below the visit position, remove the entry being visited
      // and a whole other filter, and add one.
      for (const k of [2, 3, 4, 5, 6, key]) assert.equal(trie.remove("t", k), true);
      assert.equal(trie.remove("+", 100), true);
      trie.add("t", 50, 0);
    }
  });
  const first = visited[0];
  const removed = [2, 3, 4, 5, 6].filter((k) => k !== first);
  for (const key of visited) {
    assert.equal(typeof key, "number");
    assert.ok(!removed.includes(key) && key !== 100, `${key} was removed before it was reached`);
  }
  for (const key of [0, 1, 7, 8, 9]) assert.ok(visited.includes(key), `key ${key} visited`);
  assert.equal(trie.size, 5); // 10 - 6 + 1, and "+" gone
  assert.equal(trie.filterCount, 1);
});

Deno.test("TopicTrie.match may be called again from a visitor, and survives a throwing one", () => {
  const trie = new TopicTrie<string, number>();
  // "+/q" waits on the work stack while "a/#" is visited: the nested call must not clobber it.
  trie.add("+/q", "x", 1);
  trie.add("a/#", "y", 2);
  trie.add("b", "z", 3);
  const outer: string[] = [];
  const inner: string[] = [];
  trie.match("a/q", (key) => {
    outer.push(key);
    trie.match("b", (k) => inner.push(k));
  });
  assert.deepEqual(outer.sort(), ["x", "y"]);
  assert.deepEqual(inner, ["z", "z"]);
  assert.throws(() =>
    trie.match("a/q", () => {
      throw new Error("boom");
    }), /boom/);
  assert.deepEqual(collect(trie, "a/q"), ["+/q|x|1", "a/#|y|2"]);
});

Deno.test("TopicTrie handles a topic and filter of 60 000 levels without recursion", () => {
  const trie = new TopicTrie<string, number>();
  const filter = Array(60_000).fill("+").join("/");
  const topic = Array(60_000).fill("x").join("/");
  trie.add(filter, "deep", 1);
  trie.add("x/#", "shallow", 1);
  assert.deepEqual(collect(trie, topic).map((s) => s.split("|")[1]), ["deep", "shallow"]);
  assert.equal(trie.remove(filter, "deep"), true);
  assert.equal(trie.nodeCount, 2);
});

// ---- TopicTree ---------------------------------------------------------------------------

Deno.test("TopicTree set/get/delete return previous values and prune empty nodes", () => {
  const tree = new TopicTree<string | undefined>();
  assert.equal(tree.set("a/b", "1"), undefined);
  assert.equal(tree.set("a/b", "2"), "1");
  assert.equal(tree.set("a", "3"), undefined);
  assert.equal(tree.set("a//c", undefined), undefined);
  assert.equal(tree.size, 3);
  assert.equal(tree.get("a/b"), "2");
  assert.equal(tree.get("a"), "3");
  assert.equal(tree.get("a/"), undefined);
  assert.equal(tree.get("a/b/c"), undefined);
  assert.equal(tree.nodeCount, 4); // a, a/b, a/, a//c
  assert.deepEqual(collectTree(tree, "a/#"), ["a/b|2", "a//c|undefined", "a|3"].sort());
  assert.equal(tree.delete("a/"), undefined, "inner node, not a topic");
  assert.equal(tree.size, 3);
  assert.equal(tree.delete("a//c"), undefined, "stored value was undefined");
  assert.equal(tree.size, 2);
  assert.equal(tree.nodeCount, 2, "a/ and a//c pruned");
  assert.equal(tree.delete("a"), "3");
  assert.equal(tree.nodeCount, 2, "a still leads to a/b");
  assert.equal(tree.delete("a/b"), "2");
  assert.equal(tree.delete("a/b"), undefined);
  assert.equal(tree.size, 0);
  assert.equal(tree.nodeCount, 0);
  assert.deepEqual([...tree.entries()], []);
});

Deno.test("TopicTree.entries lists every topic once", () => {
  const tree = new TopicTree<number>();
  const topics = ["a", "a/b", "/", "$SYS/x", "a//", "b/c/d"];
  topics.forEach((t, i) => tree.set(t, i));
  const got = [...tree.entries()].sort((x, y) => x[1] - y[1]);
  assert.deepEqual(got, topics.map((t, i) => [t, i]));
});

Deno.test("TopicTree.matchFilter applies the $ rule at the first level only [MQTT-4.7.2-1]", () => {
  const tree = new TopicTree<number>();
  for (const t of ["$SYS/a", "$SYS", "a/$x", "a", "$"]) tree.set(t, 0);
  assert.deepEqual(collectTree(tree, "#"), ["a/$x|0", "a|0"]);
  assert.deepEqual(collectTree(tree, "+"), ["a|0"]);
  assert.deepEqual(collectTree(tree, "+/+"), ["a/$x|0"]);
  assert.deepEqual(collectTree(tree, "$SYS/#"), ["$SYS/a|0", "$SYS|0"]);
  assert.deepEqual(collectTree(tree, "$"), ["$|0"]);
});

Deno.test("TopicTree.matchFilter tolerates a visitor that deletes topics", () => {
  const tree = new TopicTree<number>();
  for (let i = 0; i < 20; i++) tree.set(`r/${i}`, i);
  const seen: string[] = [];
  tree.matchFilter("r/#", (topic) => {
    seen.push(topic);
    tree.delete(topic);
  });
  assert.equal(seen.length, 20);
  assert.equal(tree.size, 0);
  assert.equal(tree.nodeCount, 0);
});

// ---- randomized agreement with matchTopic ------------------------------------------------

const LEVELS = ["a", "b", "", "$x"];

function randomTopic(rand: () => number): string {
  const n = 1 + Math.floor(rand() * 4);
  const levels: string[] = [];
  for (let i = 0; i < n; i++) levels.push(LEVELS[Math.floor(rand() * LEVELS.length)]);
  const topic = levels.join("/");
  return topic === "" ? randomTopic(rand) : topic; // [MQTT-4.7.3-1]
}

function randomFilter(rand: () => number): string {
  const n = 1 + Math.floor(rand() * 4);
  const levels: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = rand();
    if (r < 0.25) levels.push("+");
    else if (r < 0.4 && i === n - 1) levels.push("#");
    else levels.push(LEVELS[Math.floor(rand() * LEVELS.length)]);
  }
  const filter = levels.join("/");
  return filter === "" ? randomFilter(rand) : filter; // [MQTT-4.7.3-1]
}

Deno.test("TopicTrie.match and TopicTree.matchFilter agree with matchTopic on random input [MQTT-4.7.1-2] [MQTT-4.7.1-3] [MQTT-4.7.2-1]", () => {
  const rand = mulberry32(0xb10c);
  for (let round = 0; round < 20; round++) {
    const trie = new TopicTrie<number, string>();
    const subs: [string, number][] = [];
    for (let i = 0; i < 60; i++) {
      const filter = randomFilter(rand);
      assert.equal(validateTopicFilter(filter, 100, 10), undefined, filter);
      const key = Math.floor(rand() * 5);
      if (trie.add(filter, key, filter)) subs.push([filter, key]);
    }
    const tree = new TopicTree<string>();
    const topics = new Set<string>();
    for (let i = 0; i < 60; i++) {
      const topic = randomTopic(rand);
      assert.equal(validateTopicName(topic, 100, 10), undefined, topic);
      tree.set(topic, topic);
      topics.add(topic);
    }
    assert.equal(tree.size, topics.size);

    for (let i = 0; i < 60; i++) {
      const topic = randomTopic(rand);
      const expected = subs.filter(([f]) => matchTopic(f, topic)).map(([f, k]) => `${f}|${k}|${f}`)
        .sort();
      assert.deepEqual(collect(trie, topic), expected, `topic ${JSON.stringify(topic)}`);
    }
    for (let i = 0; i < 60; i++) {
      const filter = randomFilter(rand);
      const expected = [...topics].filter((t) => matchTopic(filter, t)).map((t) => `${t}|${t}`)
        .sort();
      assert.deepEqual(collectTree(tree, filter), expected, `filter ${JSON.stringify(filter)}`);
    }
  }
});

Deno.test("TopicTrie and TopicTree stay consistent under random churn and prune to an empty root", () => {
  const rand = mulberry32(0xc4a2e);
  const trie = new TopicTrie<number, number>();
  const model = new Map<string, Map<number, number>>();
  const tree = new TopicTree<number>();
  const treeModel = new Map<string, number>();
  for (let step = 0; step < 20_000; step++) {
    const filter = randomFilter(rand);
    const key = Math.floor(rand() * 4);
    const value = step;
    if (rand() < 0.55) {
      const isNew = !(model.get(filter)?.has(key) ?? false);
      assert.equal(trie.add(filter, key, value), isNew);
      let keys = model.get(filter);
      if (keys === undefined) model.set(filter, keys = new Map());
      keys.set(key, value);
    } else {
      const was = model.get(filter)?.has(key) ?? false;
      assert.equal(trie.remove(filter, key), was);
      model.get(filter)?.delete(key);
      if (model.get(filter)?.size === 0) model.delete(filter);
    }
    const topic = randomTopic(rand);
    if (rand() < 0.55) {
      assert.equal(tree.set(topic, step), treeModel.get(topic));
      treeModel.set(topic, step);
    } else {
      assert.equal(tree.delete(topic), treeModel.get(topic));
      treeModel.delete(topic);
    }
    if (step % 500 === 0) {
      let size = 0;
      for (const keys of model.values()) size += keys.size;
      assert.equal(trie.size, size);
      assert.equal(trie.filterCount, model.size);
      assert.equal(tree.size, treeModel.size);
      const expected: string[] = [];
      for (const [f, keys] of model) {
        if (!matchTopic(f, topic)) continue;
        for (const [k, v] of keys) expected.push(`${f}|${k}|${v}`);
      }
      assert.deepEqual(collect(trie, topic), expected.sort());
      assert.deepEqual(
        [...tree.entries()].sort(),
        [...treeModel.entries()].sort(),
      );
    }
  }
  assert.ok(trie.size > 0 && tree.size > 0, "churn should leave something to remove");
  for (const [filter, keys] of model) {
    for (const key of keys.keys()) assert.equal(trie.remove(filter, key), true);
  }
  for (const topic of treeModel.keys()) assert.notEqual(tree.delete(topic), undefined);
  assert.equal(trie.size, 0);
  assert.equal(trie.filterCount, 0);
  assert.equal(trie.nodeCount, 0, "trie pruned to an empty root");
  assert.equal(tree.size, 0);
  assert.equal(tree.nodeCount, 0, "tree pruned to an empty root");
  assert.deepEqual(collect(trie, "a"), []);
});
