import assert from "node:assert/strict";
import { mulberry32 } from "../_test_prng.ts";
import { matchTopic, validateTopicFilter, validateTopicName } from "../topic/topic.ts";
import {
  decodeLevel,
  encodeLevel,
  filterToSubjects,
  subjectMatches,
  subjectToTopic,
  topicToSubject,
} from "./subject.ts";

const P = "dmq.0";

Deno.test("topic levels map to single non-wildcard NATS tokens", () => {
  const cases: [string, string][] = [
    ["", "~"],
    ["abc-_09", "abc-_09"],
    ["a.b", "a~2Eb"],
    ["*", "~2A"],
    [">", "~3E"],
    ["a b", "a~20b"],
    ["~", "~7E"],
    ["é", "~C3~A9"],
    ["$SYS", "~24SYS"],
  ];
  for (const [level, token] of cases) {
    assert.equal(encodeLevel(level), token, level);
    assert.equal(decodeLevel(token), level, token);
  }
});

Deno.test("topic and filter subjects keep the $-topic rule [MQTT-4.7.2-1] and a/# matching a [MQTT-4.7.1-2]", () => {
  assert.equal(topicToSubject(P, "a/b"), "dmq.0.n.a.b");
  assert.equal(topicToSubject(P, "$SYS/x"), "dmq.0.d.~24SYS.x");
  assert.equal(topicToSubject(P, "/"), "dmq.0.n.~.~");
  assert.deepEqual(filterToSubjects(P, "#"), ["dmq.0.n.>"]);
  assert.deepEqual(filterToSubjects(P, "+/x"), ["dmq.0.n.*.x"]);
  assert.deepEqual(filterToSubjects(P, "a/#"), ["dmq.0.n.a", "dmq.0.n.a.>"]);
  assert.deepEqual(filterToSubjects(P, "$SYS/#"), ["dmq.0.d.~24SYS", "dmq.0.d.~24SYS.>"]);
  assert.equal(subjectToTopic(P, "dmq.0.d.~24SYS.x"), "$SYS/x");
});

const ALPHABET = ["a", "b", "", ".", "*", ">", " ", "~", "$", "é", "日", "😀", "~2E", "-", "_"];

function randomLevel(rnd: () => number): string {
  const n = Math.floor(rnd() * 3);
  let s = "";
  for (let i = 0; i < n; i++) s += ALPHABET[Math.floor(rnd() * ALPHABET.length)];
  return s;
}

function randomTopic(rnd: () => number): string {
  const n = 1 + Math.floor(rnd() * 4);
  const levels = [];
  for (let i = 0; i < n; i++) levels.push(randomLevel(rnd));
  return levels.join("/");
}

// A filter derived from a topic (so it matches often) or random, with wildcards put in.
function randomFilter(rnd: () => number, near: string): string {
  const levels = (rnd() < 0.6 ? near : randomTopic(rnd)).split("/");
  const out: string[] = [];
  for (let i = 0; i < levels.length; i++) {
    const r = rnd();
    if (r < 0.15) {
      out.push("#");
      break;
    }
    out.push(r < 0.4 ? "+" : r < 0.5 ? randomLevel(rnd) : levels[i]);
  }
  if (rnd() < 0.1) out.push("#");
  return out.join("/");
}

Deno.test("property: mapped NATS matching agrees with the MQTT matcher on random topics and filters", () => {
  const rnd = mulberry32(12);
  let matched = 0;
  let checked = 0;
  for (let i = 0; i < 20_000; i++) {
    const topic = randomTopic(rnd);
    if (validateTopicName(topic, 65535, 128) !== undefined) continue;
    const filter = randomFilter(rnd, rnd() < 0.5 ? topic : randomTopic(rnd));
    if (validateTopicFilter(filter, 65535, 128) !== undefined) continue;
    const subject = topicToSubject(P, topic);
    assert.equal(subjectToTopic(P, subject), topic, "round trip");
    for (const token of subject.split(".")) {
      assert.ok(token.length > 0 && token !== "*" && token !== ">" && !/\s/.test(token), subject);
    }
    const expected = matchTopic(filter, topic);
    const got = filterToSubjects(P, filter).some((f) => subjectMatches(f, subject));
    assert.equal(got, expected, `filter ${JSON.stringify(filter)} topic ${JSON.stringify(topic)}`);
    checked++;
    if (expected) matched++;
  }
  // The generator must exercise both outcomes, or the test proves nothing.
  assert.ok(
    checked > 10_000 && matched > 1_000 && checked - matched > 1_000,
    `${matched}/${checked}`,
  );
});
