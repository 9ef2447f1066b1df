import assert from "node:assert/strict";
import { isSysTopic, matchTopic, validateTopicFilter, validateTopicName } from "./topic.ts";
import { TopicTree } from "./topic_tree.ts";
import { TopicTrie } from "./topic_trie.ts";
import { mulberry32 } from "../_test_prng.ts";

const MAX = 65_535;
const LEVELS = 128;

/** A validation case: input, limits, and `undefined` (valid) or a fragment of the reason. */
interface Case {
  input: string;
  maxLength?: number;
  maxLevels?: number;
  reason: string | undefined;
}

function runCases(
  validate: (s: string, maxLength: number, maxLevels: number) => string | undefined,
  cases: Case[],
): void {
  for (const c of cases) {
    const got = validate(c.input, c.maxLength ?? MAX, c.maxLevels ?? LEVELS);
    const label = `${JSON.stringify(c.input)} (max ${c.maxLength ?? MAX} bytes, ` +
      `${c.maxLevels ?? LEVELS} levels)`;
    if (c.reason === undefined) {
      assert.equal(got, undefined, `${label} should be valid, got: ${got}`);
    } else {
      assert.ok(got !== undefined, `${label} should be rejected (${c.reason})`);
      assert.ok(got.includes(c.reason), `${label}: reason "${got}" should mention ${c.reason}`);
    }
  }
}

// ---- topic names -------------------------------------------------------------------------

Deno.test("validateTopicName accepts ordinary names, empty levels and '$' names", () => {
  runCases(validateTopicName, [
    { input: "a", reason: undefined },
    { input: "sport/tennis/player1", reason: undefined },
    { input: "/", reason: undefined },
    { input: "a//b", reason: undefined },
    { input: "/a", reason: undefined },
    { input: "a/", reason: undefined },
    { input: " ", reason: undefined },
    { input: "$SYS/broker/uptime", reason: undefined },
    { input: "a/$x", reason: undefined },
    { input: "ünïcödé/日本/😀", reason: undefined },
  ]);
});

Deno.test("validateTopicName rejects an empty name [MQTT-4.7.3-1]", () => {
  runCases(validateTopicName, [{ input: "", reason: "[MQTT-4.7.3-1]" }]);
});

Deno.test("validateTopicName rejects U+0000 [MQTT-4.7.3-2]", () => {
  runCases(validateTopicName, [
    { input: "\0", reason: "[MQTT-4.7.3-2]" },
    { input: "a/b\0", reason: "[MQTT-4.7.3-2]" },
    { input: "\0/a", reason: "[MQTT-4.7.3-2]" },
  ]);
});

Deno.test("validateTopicName rejects wildcards anywhere [MQTT-3.3.2-2]", () => {
  runCases(validateTopicName, [
    { input: "+", reason: "[MQTT-3.3.2-2]" },
    { input: "#", reason: "[MQTT-3.3.2-2]" },
    { input: "a/+/b", reason: "[MQTT-3.3.2-2]" },
    { input: "a/#", reason: "[MQTT-3.3.2-2]" },
    { input: "a+b", reason: "[MQTT-3.3.2-2]" },
    { input: "sport#", reason: "[MQTT-3.3.2-2]" },
  ]);
});

Deno.test("validateTopicName rejects unpaired surrogates [MQTT-1.5.3-1]", () => {
  runCases(validateTopicName, [
    { input: "a\ud800", reason: "[MQTT-1.5.3-1]" },
    { input: "\udc00b", reason: "[MQTT-1.5.3-1]" },
    { input: "\ud800\ud800", reason: "[MQTT-1.5.3-1]" },
    { input: "\ud83d\ude00", reason: undefined }, // a proper pair
  ]);
});

Deno.test("validateTopicName counts UTF-8 bytes against maxLength", () => {
  // "é" is 2 bytes, "日" 3, "😀" 4 (two UTF-16 units).
  assert.equal(new TextEncoder().encode("é日😀").length, 9);
  runCases(validateTopicName, [
    { input: "abcd", maxLength: 4, reason: undefined },
    { input: "abcde", maxLength: 4, reason: "longer than 4 bytes" },
    { input: "éé", maxLength: 4, reason: undefined },
    { input: "ééa", maxLength: 4, reason: "longer than 4 bytes" },
    { input: "日", maxLength: 3, reason: undefined },
    { input: "日", maxLength: 2, reason: "longer than 2 bytes" },
    { input: "😀", maxLength: 4, reason: undefined },
    { input: "😀", maxLength: 3, reason: "longer than 3 bytes" },
    { input: "é日😀", maxLength: 9, reason: undefined },
    { input: "é日😀", maxLength: 8, reason: "longer than 8 bytes" },
    // Short enough in UTF-16 units (6 <= 8) to pass a unit count; too long in bytes (12).
    { input: "日日日日", maxLength: 11, reason: "longer than 11 bytes" },
    { input: "日日日日", maxLength: 12, reason: undefined },
  ]);
});

Deno.test("validateTopicName agrees with TextEncoder on byte length", () => {
  const samples = ["a", "é", "日", "😀", "/", "ab/日é/😀😀", "x".repeat(100), "日".repeat(40)];
  for (const s of samples) {
    const bytes = new TextEncoder().encode(s).length;
    assert.equal(validateTopicName(s, bytes, LEVELS), undefined, s);
    assert.ok(validateTopicName(s, bytes - 1, LEVELS)?.includes("bytes"), s);
  }
});

Deno.test("validateTopicName limits the number of levels", () => {
  runCases(validateTopicName, [
    { input: "a", maxLevels: 1, reason: undefined },
    { input: "a/b", maxLevels: 1, reason: "more than 1 levels" },
    { input: "/", maxLevels: 1, reason: "more than 1 levels" },
    { input: "/", maxLevels: 2, reason: undefined },
    { input: "a/b/c", maxLevels: 3, reason: undefined },
    { input: "a/b/c/", maxLevels: 3, reason: "more than 3 levels" },
    { input: "a//b", maxLevels: 3, reason: undefined },
    { input: "a//b", maxLevels: 2, reason: "more than 2 levels" },
  ]);
});

// ---- topic filters -----------------------------------------------------------------------

Deno.test("validateTopicFilter accepts names and well-placed wildcards", () => {
  runCases(validateTopicFilter, [
    { input: "sport/tennis/player1", reason: undefined },
    { input: "#", reason: undefined },
    { input: "+", reason: undefined },
    { input: "sport/#", reason: undefined },
    { input: "sport/tennis/#", reason: undefined },
    { input: "+/tennis/#", reason: undefined },
    { input: "sport/+/player1", reason: undefined },
    { input: "+/+", reason: undefined },
    { input: "/+", reason: undefined },
    { input: "+/", reason: undefined },
    { input: "/#", reason: undefined },
    { input: "+/#", reason: undefined },
    { input: "//", reason: undefined },
    { input: "$SYS/#", reason: undefined },
    { input: "日本/+/😀", reason: undefined },
  ]);
});

Deno.test("validateTopicFilter rejects an empty filter [MQTT-4.7.3-1]", () => {
  runCases(validateTopicFilter, [{ input: "", reason: "[MQTT-4.7.3-1]" }]);
});

Deno.test("validateTopicFilter rejects U+0000 [MQTT-4.7.3-2]", () => {
  runCases(validateTopicFilter, [
    { input: "\0", reason: "[MQTT-4.7.3-2]" },
    { input: "a/\0/#", reason: "[MQTT-4.7.3-2]" },
  ]);
});

Deno.test("validateTopicFilter allows '#' only as the whole last level [MQTT-4.7.1-2]", () => {
  runCases(validateTopicFilter, [
    { input: "sport/tennis#", reason: "[MQTT-4.7.1-2]" },
    { input: "sport/tennis/#/ranking", reason: "[MQTT-4.7.1-2]" },
    { input: "#/", reason: "[MQTT-4.7.1-2]" },
    { input: "#/a", reason: "[MQTT-4.7.1-2]" },
    { input: "##", reason: "[MQTT-4.7.1-2]" },
    { input: "a/#b", reason: "[MQTT-4.7.1-2]" },
    { input: "a/b#", reason: "[MQTT-4.7.1-2]" },
    { input: "+#", reason: "[MQTT-4.7.1" }, // either rule: '+' not alone, '#' not alone
  ]);
});

Deno.test("validateTopicFilter allows '+' only as a whole level [MQTT-4.7.1-3]", () => {
  runCases(validateTopicFilter, [
    { input: "sport+", reason: "[MQTT-4.7.1-3]" },
    { input: "sport/+tennis", reason: "[MQTT-4.7.1-3]" },
    { input: "sport/ten+nis/x", reason: "[MQTT-4.7.1-3]" },
    { input: "++", reason: "[MQTT-4.7.1-3]" },
    { input: "+a", reason: "[MQTT-4.7.1-3]" },
    { input: "a+/b", reason: "[MQTT-4.7.1-3]" },
  ]);
});

Deno.test("validateTopicFilter rejects unpaired surrogates [MQTT-1.5.3-1]", () => {
  runCases(validateTopicFilter, [{ input: "a/\udfff/#", reason: "[MQTT-1.5.3-1]" }]);
});

Deno.test("validateTopicFilter counts UTF-8 bytes against maxLength", () => {
  runCases(validateTopicFilter, [
    { input: "a/#", maxLength: 3, reason: undefined },
    { input: "a/+/#", maxLength: 4, reason: "longer than 4 bytes" },
    { input: "é/#", maxLength: 4, reason: undefined },
    { input: "é/#", maxLength: 3, reason: "longer than 3 bytes" },
    { input: "日日/+", maxLength: 7, reason: "longer than 7 bytes" },
    { input: "日日/+", maxLength: 8, reason: undefined },
    { input: "😀/+", maxLength: 6, reason: undefined },
    { input: "😀/+", maxLength: 5, reason: "longer than 5 bytes" },
  ]);
});

Deno.test("validateTopicFilter limits the number of levels", () => {
  runCases(validateTopicFilter, [
    { input: "#", maxLevels: 1, reason: undefined },
    { input: "a/#", maxLevels: 1, reason: "more than 1 levels" },
    { input: "+/+/+", maxLevels: 3, reason: undefined },
    { input: "+/+/+/#", maxLevels: 3, reason: "more than 3 levels" },
  ]);
});

Deno.test("validateTopicFilter agrees with a split-based reference on random filters", () => {
  const alphabet = ["a", "b", "", "+", "#", "a+", "#b", "$x", "\0"];
  const rand = mulberry32(0x7091c);
  for (let n = 0; n < 5_000; n++) {
    const count = 1 + Math.floor(rand() * 5);
    const levels: string[] = [];
    for (let i = 0; i < count; i++) levels.push(alphabet[Math.floor(rand() * alphabet.length)]);
    const filter = levels.join("/");
    const ok = filter !== "" && !filter.includes("\0") &&
      levels.every((l, i) =>
        (l === "#" && i === levels.length - 1) || l === "+" ||
        (!l.includes("#") && !l.includes("+"))
      );
    const got = validateTopicFilter(filter, MAX, 4);
    if (!ok) assert.notEqual(got, undefined, JSON.stringify(filter));
    else if (levels.length > 4) assert.ok(got?.includes("levels"), JSON.stringify(filter));
    else assert.equal(got, undefined, JSON.stringify(filter));
    // A valid name is a valid filter without wildcards.
    const nameOk = filter !== "" && !/[\0+#]/.test(filter) && levels.length <= 4;
    assert.equal(validateTopicName(filter, MAX, 4) === undefined, nameOk, JSON.stringify(filter));
  }
});

// ---- $ topics and matching ---------------------------------------------------------------

Deno.test("isSysTopic is true for topics starting with '$' only [MQTT-4.7.2-1]", () => {
  assert.equal(isSysTopic("$SYS/broker"), true);
  assert.equal(isSysTopic("$"), true);
  assert.equal(isSysTopic("$x"), true);
  assert.equal(isSysTopic("SYS/$"), false);
  assert.equal(isSysTopic("/$SYS"), false);
  assert.equal(isSysTopic(""), false);
});

/** Section 4.7 of the standard, plus empty levels; shared with the trie and tree tests. */
const MATCH_TABLE: readonly (readonly [filter: string, topic: string, matches: boolean])[] = [
  // 4.7.1.2 multi-level wildcard [MQTT-4.7.1-2]
  ["sport/tennis/player1/#", "sport/tennis/player1", true],
  ["sport/tennis/player1/#", "sport/tennis/player1/ranking", true],
  ["sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true],
  ["sport/tennis/player1/#", "sport/tennis/player2", false],
  ["sport/tennis/player1/#", "sport/tennis", false],
  ["sport/#", "sport", true],
  ["sport/#", "sport/", true],
  ["sport/#", "sports", false],
  ["#", "sport", true],
  ["#", "/", true],
  ["#", "a/b/c", true],
  // 4.7.1.3 single-level wildcard [MQTT-4.7.1-3]
  ["sport/tennis/+", "sport/tennis/player1", true],
  ["sport/tennis/+", "sport/tennis/player2", true],
  ["sport/tennis/+", "sport/tennis/player1/ranking", false],
  ["sport/+", "sport", false],
  ["sport/+", "sport/", true],
  ["+/+", "/finance", true],
  ["/+", "/finance", true],
  ["+", "/finance", false],
  ["+", "finance", true],
  ["+/tennis/#", "sport/tennis", true],
  ["+/tennis/#", "sport/tennis/x/y", true],
  ["+/tennis/#", "sport/golf", false],
  // 4.7.2 topics beginning with $ [MQTT-4.7.2-1]
  ["$SYS/#", "$SYS/x", true],
  ["$SYS/#", "$SYS", true],
  ["$SYS/monitor/+", "$SYS/monitor/Clients", true],
  ["#", "$SYS/monitor/Clients", false],
  ["#", "$SYS", false],
  ["+/monitor/Clients", "$SYS/monitor/Clients", false],
  ["+", "$x", false],
  ["+/#", "$x/a", false],
  ["a/#", "a/$x", true],
  ["a/+", "a/$x", true],
  ["+/+", "a/$x", true],
  // exact and empty levels
  ["sport/tennis", "sport/tennis", true],
  ["sport/tennis", "sport/Tennis", false],
  ["a//b", "a//b", true],
  ["a/+/b", "a//b", true],
  ["a/b", "a//b", false],
  ["/a", "/a", true],
  ["/a", "a", false],
  ["+/a", "/a", true],
  ["a/", "a/", true],
  ["a/", "a", false],
  ["a/+", "a/", true],
  ["a/#", "a/", true],
  ["/", "/", true],
  ["+/+", "/", true],
  ["/#", "/", true],
  ["/#", "a", false],
];

Deno.test("matchTopic follows the examples of section 4.7 [MQTT-4.7.1-2] [MQTT-4.7.1-3] [MQTT-4.7.2-1]", () => {
  for (const [filter, topic, matches] of MATCH_TABLE) {
    assert.equal(matchTopic(filter, topic), matches, `${filter} vs ${topic}`);
  }
});

Deno.test("TopicTrie.match follows the examples of section 4.7 [MQTT-4.7.1-2] [MQTT-4.7.1-3] [MQTT-4.7.2-1]", () => {
  for (const [filter, topic, matches] of MATCH_TABLE) {
    const trie = new TopicTrie<string, number>();
    trie.add(filter, "k", 1);
    // Decoys that never match these topics, so the walk has other branches to skip.
    trie.add("decoy/+/#", "d", 0);
    trie.add("zz", "d", 0);
    const hits: string[] = [];
    trie.match(topic, (key, value, f) => {
      if (key === "k") hits.push(`${f}:${value}`);
    });
    assert.deepEqual(hits, matches ? [`${filter}:1`] : [], `${filter} vs ${topic}`);
  }
});

Deno.test("TopicTree.matchFilter follows the examples of section 4.7 [MQTT-4.7.1-2] [MQTT-4.7.1-3] [MQTT-4.7.2-1]", () => {
  for (const [filter, topic, matches] of MATCH_TABLE) {
    const tree = new TopicTree<number>();
    tree.set(topic, 7);
    tree.set("decoy/x", 0);
    const hits: string[] = [];
    tree.matchFilter(filter, (t, value) => {
      if (t === topic) hits.push(`${t}:${value}`);
    });
    assert.deepEqual(hits, matches ? [`${topic}:7`] : [], `${filter} vs ${topic}`);
  }
});
