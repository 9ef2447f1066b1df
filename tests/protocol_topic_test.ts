/**
 * Topic names, topic filters, wildcard matching, the `$` rule and `$SYS`.
 *
 * @module
 */
import assert from "node:assert/strict";
import { MOSQUITTO, startBroker } from "./_harness.ts";
import { publish, subscribe } from "./_raw.ts";
import type { RawClient } from "./_raw.ts";

const TOPICS = [
  "sport",
  "sport/",
  "sport/tennis",
  "sport/tennis/player1",
  "sport/tennis/player1/ranking",
  "sport/tennis/player1/score/wimbledon",
  "/finance",
  "finance",
  "Accounts",
  "ACCOUNTS",
  "a//b",
  "$foo/bar",
  "$foo",
];

/** Filter → the topics of TOPICS it must match (examples of section 4.7 of the standard). */
const MATCHES: [string, string[], string][] = [
  [
    "sport/tennis/player1/#",
    [
      "sport/tennis/player1",
      "sport/tennis/player1/ranking",
      "sport/tennis/player1/score/wimbledon",
    ],
    "[MQTT-4.7.1-2]",
  ],
  ["sport/#", [
    "sport",
    "sport/",
    "sport/tennis",
    "sport/tennis/player1",
    "sport/tennis/player1/ranking",
    "sport/tennis/player1/score/wimbledon",
  ], "[MQTT-4.7.1-2]"],
  ["sport/tennis/+", ["sport/tennis/player1"], "[MQTT-4.7.1-3]"],
  ["sport/+", ["sport/", "sport/tennis"], "[MQTT-4.7.1-3]"],
  ["+", ["sport", "finance", "Accounts", "ACCOUNTS"], "[MQTT-4.7.1-3]"],
  ["+/+", ["sport/", "sport/tennis", "/finance"], "[MQTT-4.7.1-3]"],
  ["/+", ["/finance"], "[MQTT-4.7.1-3]"],
  ["a/+/b", ["a//b"], "[MQTT-4.7.1-3]"],
  ["Accounts", ["Accounts"], "[MQTT-4.7.3-4]"],
  [
    "#",
    TOPICS.filter((t) => !t.startsWith("$")),
    "[MQTT-4.7.1-2] [MQTT-4.7.2-1]",
  ],
  ["+/bar", [], "[MQTT-4.7.2-1]"],
  ["+/+/+/+", ["sport/tennis/player1/ranking"], "[MQTT-4.7.2-1]"],
  ["$foo/#", ["$foo/bar", "$foo"], "[MQTT-4.7.2-1]"],
  ["$foo/+", ["$foo/bar"], "[MQTT-4.7.2-1]"],
];

Deno.test("topics: wildcard matching follows section 4.7, case-sensitive, $ not matched by wildcards [MQTT-4.7.1-2] [MQTT-4.7.1-3] [MQTT-4.7.2-1] [MQTT-4.7.3-4]", async () => {
  await using b = await startBroker();
  const subs: [RawClient, string, string[]][] = [];
  for (const [i, [filter, expected]] of MATCHES.entries()) {
    const c = await b.connect({ clientId: `f${i}` }, `filter ${filter}`);
    assert.deepEqual(await c.subscribe(1, [[filter, 0]]), [0]);
    subs.push([c, filter, expected]);
  }
  const pub = await b.connect({ clientId: "pub" }, "pub");
  for (const topic of TOPICS) await pub.send(publish({ topic, payload: topic }));
  for (const [c, filter, expected] of subs) {
    const got = [];
    for (let i = 0; i < expected.length; i++) got.push((await c.expectPublish()).topic);
    assert.deepEqual(got.sort(), [...expected].sort(), `filter ${filter}`);
  }
  // One bounded window for all the "nothing else" checks.
  await Promise.all(subs.map(([c]) => c.expectNothing()));
});

Deno.test("topics: # and +/… do not receive $ topics published by clients [MQTT-4.7.2-1]", async () => {
  await using b = await startBroker();
  const hash = await b.connect({ clientId: "hash" }, "hash");
  await hash.subscribe(1, [["#", 1]]);
  const plus = await b.connect({ clientId: "plus" }, "plus");
  await plus.subscribe(1, [["+/x", 1], ["+", 1]]);
  const dollar = await b.connect({ clientId: "dollar" }, "dollar");
  await dollar.subscribe(1, [["$app/#", 1]]);
  const pub = await b.connect({ clientId: "pub" }, "pub");
  await pub.publish({ topic: "$app/x", payload: "d", qos: 1, packetId: 1 });
  await pub.publish({ topic: "$app", payload: "d2", qos: 1, packetId: 2 });
  assert.equal((await dollar.receive()).topic, "$app/x");
  assert.equal((await dollar.receive()).topic, "$app");
  await Promise.all([hash.expectNothing(), plus.expectNothing()]);
});

Deno.test("topics: $SYS/# receives $SYS messages, # does not [MQTT-4.7.2-1]", async () => {
  await using b = await startBroker();
  const hash = await b.connect({ clientId: "hash" }, "hash");
  await hash.subscribe(1, [["#", 0]]);
  const sys = await b.connect({ clientId: "sys" }, "sys");
  await sys.subscribe(1, [["$SYS/#", 0]]);
  if (b.broker) {
    await b.broker.publish({ topic: "$SYS/test/probe", payload: "server side" });
    let m = await sys.expectPublish();
    // Our broker may also publish its own $SYS statistics; skip any of those.
    while (m.topic !== "$SYS/test/probe") m = await sys.expectPublish();
    assert.equal(m.text, "server side");
  } else {
    // mosquitto sends its retained $SYS/broker/version on subscribe.
    const m = await sys.expectPublish();
    assert.ok(m.topic.startsWith("$SYS/"), m.topic);
  }
  await hash.expectNothing();
});

Deno.test("topics: $SYS messages are not sent to a # subscriber as retained either [MQTT-4.7.2-1]", async () => {
  await using b = await startBroker();
  if (b.broker) {
    await b.broker.publish({ topic: "$SYS/test/retained", payload: "r", retain: true });
  }
  const hash = await b.connect({ clientId: "hash" }, "hash");
  await hash.subscribe(1, [["#", 0], ["+/test/#", 0]]);
  await hash.expectNothing();
});

Deno.test("topics: valid filters are granted [MQTT-4.7.1-2] [MQTT-4.7.1-3]", async () => {
  await using b = await startBroker();
  const c = await b.connect({ clientId: "valid" });
  const filters = ["+", "#", "+/+/#", "/", "//", "a//b", "+/#", "/#", "a/+/+/b/#", " ", "ü/€"];
  const codes = await c.subscribe(1, filters.map((f) => [f, 1]));
  assert.deepEqual(codes, filters.map(() => 1));
});

Deno.test({
  // mosquitto closes the connection on an invalid filter; we refuse that filter with 0x80.
  name: "topics: invalid filters get 0x80 (ours) [MQTT-4.7.1-2] [MQTT-4.7.1-3] [MQTT-4.7.3-1]",
  ignore: MOSQUITTO,
  async fn() {
    await using b = await startBroker();
    const c = await b.connect({ clientId: "invalid" });
    const bad = ["a/#/b", "#/a", "a#", "a/b#", "+a", "a+/b", "a/+b", "++", "##", ""];
    const codes = await c.subscribe(1, bad.map((f) => [f, 0]));
    assert.deepEqual(codes, bad.map(() => 0x80));
  },
});

Deno.test({
  name: "topics: an invalid filter closes the connection under mosquitto (reference behaviour)",
  ignore: !MOSQUITTO,
  async fn() {
    await using b = await startBroker();
    const c = await b.connect({ clientId: "invalid" });
    await c.send(subscribe(1, [["a/#/b", 0]]));
    await c.expectClosed();
  },
});

Deno.test("topics: an empty topic name in PUBLISH closes the connection [MQTT-4.7.3-1]", async () => {
  await using b = await startBroker();
  const c = await b.connect({ clientId: "empty" });
  await c.send(publish({ topic: "", payload: "x" }));
  await c.expectClosed();
});
