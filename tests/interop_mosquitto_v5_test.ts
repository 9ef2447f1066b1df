/**
 * Interoperability in MQTT 5.0 mode with Debian's `mosquitto_pub`, `mosquitto_sub` and
 * `mosquitto_rr` (package mosquitto-clients): `-V mqttv5`, properties through `-D`, session expiry
 * through `-x`. Runs against ours, or mosquitto with `MQTT_TEST_BROKER=mosquitto`; readiness is
 * seen on the clients' debug output ("received SUBACK"), never by sleeping.
 *
 * @module
 */
import assert from "node:assert/strict";
import { startBroker, waitFor } from "./_harness.ts";
import { PROP } from "./_raw.ts";
import { run, spawn, which } from "./_util.ts";
import type { Spawned } from "./_util.ts";

const PUB = which("mosquitto_pub");
const SUB = which("mosquitto_sub");
const RR = which("mosquitto_rr");
// mosquitto_sub's stdout is block-buffered on a pipe: stdbuf (coreutils) makes the debug line that
// says it got its SUBACK visible at once.
const STDBUF = which("stdbuf");
const MISSING = PUB === undefined || SUB === undefined || RR === undefined || STDBUF === undefined;

function test(name: string, fn: () => Promise<void>): void {
  Deno.test({
    name: MISSING ? `${name} (skipped: needs Debian package mosquitto-clients)` : name,
    ignore: MISSING,
    fn,
  });
}

const V5 = ["-V", "mqttv5"];
const net = (port: number) => ["-h", "127.0.0.1", "-p", String(port)];

/** Output lines that are not debug lines. */
const output = (s: string) =>
  s.split("\n").filter((l) => l !== "" && !l.startsWith("Client ") && !l.startsWith("Subscribed"));

async function pub(port: number, args: string[]): Promise<void> {
  const r = await run(PUB!, [...net(port), ...V5, ...args], { deadlineMs: 10_000 });
  assert.equal(r.code, 0, `mosquitto_pub ${args.join(" ")}: ${r.stderr}`);
}

/** Starts mosquitto_sub -d and waits for its SUBACK. */
async function sub(port: number, args: string[]): Promise<Spawned> {
  const s = spawn(STDBUF!, ["-oL", SUB!, ...net(port), ...V5, "-d", ...args], {
    deadlineMs: 15_000,
  });
  await s.waitForOutput("stdout", "received SUBACK");
  return s;
}

test("mosquitto v5: -D user properties, content type, response topic, correlation data and expiry reach mosquitto_sub and a raw subscriber", async () => {
  await using b = await startBroker();
  const raw = await b.connect5({ clientId: "raw-sub" }, "raw");
  await raw.subscribe5(1, [["v5/props", { qos: 1 }]]);
  const s = await sub(b.port, [
    ...["-i", "ms5-sub", "-q", "1", "-t", "v5/props", "-C", "1", "-W", "10"],
    ...["-F", "%t|%p|%P|%C|%R|%D|%F|%E"],
  ]);
  await pub(b.port, [
    ...["-i", "ms5-pub", "-q", "1", "-t", "v5/props", "-m", "hello"],
    ...["-D", "PUBLISH", "user-property", "k1", "v1"],
    ...["-D", "PUBLISH", "user-property", "k2", "v2"],
    ...["-D", "PUBLISH", "content-type", "text/plain"],
    ...["-D", "PUBLISH", "response-topic", "v5/reply"],
    ...["-D", "PUBLISH", "correlation-data", "c0ffee"],
    ...["-D", "PUBLISH", "payload-format-indicator", "1"],
    ...["-D", "PUBLISH", "message-expiry-interval", "60"],
  ]);
  const r = await s.finished;
  assert.equal(r.code, 0, r.stderr);
  const [line] = output(r.stdout);
  const [topic, payload, user, contentType, responseTopic, corr, pfi, expiry] = line.split("|");
  assert.deepEqual([topic, payload, contentType, responseTopic, corr, pfi], [
    "v5/props",
    "hello",
    "text/plain",
    "v5/reply",
    "c0ffee",
    "1",
  ]);
  assert.match(user, /k1.*v1.*k2.*v2/);
  assert.ok(Number(expiry) > 0 && Number(expiry) <= 60, `expiry ${expiry}`);
  const m = await raw.receive5();
  assert.deepEqual(m.properties.user, [["k1", "v1"], ["k2", "v2"]]);
  assert.deepEqual(m.properties.get(PROP.CORRELATION_DATA), new TextEncoder().encode("c0ffee"));
});

test("mosquitto v5: -x session expiry keeps a session: a QoS 1 message published while away arrives on return", async () => {
  await using b = await startBroker();
  const first = await run(SUB!, [
    ...net(b.port),
    ...V5,
    ...["-i", "ms5-persist", "-c", "-x", "120", "-q", "1", "-t", "v5/persist", "-E"],
  ], { deadlineMs: 10_000 });
  assert.equal(first.code, 0, first.stderr);
  await pub(b.port, ["-i", "ms5-away", "-q", "1", "-t", "v5/persist", "-m", "while away"]);
  const back = await run(SUB!, [
    ...net(b.port),
    ...V5,
    ...["-i", "ms5-persist", "-c", "-x", "120", "-q", "1", "-t", "v5/persist"],
    ...["-C", "1", "-W", "10", "-F", "%q %t %p"],
  ], { deadlineMs: 15_000 });
  assert.equal(back.code, 0, back.stderr);
  assert.deepEqual(output(back.stdout), ["1 v5/persist while away"]);
});

test("mosquitto v5: -x 0 (no session expiry) loses the session at disconnect", async () => {
  await using b = await startBroker();
  const first = await run(SUB!, [
    ...net(b.port),
    ...V5,
    ...["-i", "ms5-gone", "-x", "0", "-q", "1", "-t", "v5/gone", "-E"],
  ], { deadlineMs: 10_000 });
  assert.equal(first.code, 0, first.stderr);
  await pub(b.port, ["-i", "ms5-gone-pub", "-q", "1", "-t", "v5/gone", "-m", "lost"]);
  const back = await run(SUB!, [
    ...net(b.port),
    ...V5,
    ...["-i", "ms5-gone", "-c", "-x", "60", "-q", "1", "-t", "v5/none", "-W", "1"],
  ], { deadlineMs: 15_000 });
  assert.equal(back.code, 27, `-W ends it: ${back.stderr}`);
  assert.deepEqual(output(back.stdout), []);
});

test("mosquitto v5: a SUBSCRIBE subscription identifier (-D SUBSCRIBE) comes back on each message (%S)", async () => {
  await using b = await startBroker();
  const s = await sub(b.port, [
    ...["-i", "ms5-sid", "-q", "1", "-t", "v5/sid/#", "-C", "2", "-W", "10", "-F", "%S %t"],
    ...["-D", "SUBSCRIBE", "subscription-identifier", "42"],
  ]);
  await pub(b.port, ["-i", "sid-pub1", "-q", "1", "-t", "v5/sid/a", "-m", "1"]);
  await pub(b.port, ["-i", "sid-pub2", "-q", "0", "-t", "v5/sid/b", "-m", "2"]);
  const r = await s.finished;
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(output(r.stdout), ["42 v5/sid/a", "42 v5/sid/b"]);
});

test("mosquitto v5: a will with -D WILL user-property and will-delay-interval is published after the delay on SIGKILL", async () => {
  await using b = await startBroker();
  const watcher = await b.connect5({ clientId: "will-watch" }, "watcher");
  await watcher.subscribe5(1, [["v5/will", { qos: 1 }]]);
  const victim = await sub(b.port, [
    ...["-i", "ms5-victim", "-x", "60", "-t", "v5/none", "-W", "14"],
    ...["--will-topic", "v5/will", "--will-payload", "died", "--will-qos", "1"],
    ...["-D", "WILL", "user-property", "why", "sigkill"],
    ...["-D", "WILL", "will-delay-interval", "1"],
  ]);
  victim.kill("SIGKILL");
  await victim.finished;
  const killed = Date.now();
  const m = await watcher.receive5(6_000);
  assert.equal(m.text, "died");
  assert.deepEqual(m.properties.user, [["why", "sigkill"]]);
  assert.ok(Date.now() - killed >= 900, `published ${Date.now() - killed} ms after the kill`);
});

test("mosquitto v5: mosquitto_rr's request carries its response topic; the response gets back to it", async () => {
  await using b = await startBroker();
  const responder = await b.connect5({ clientId: "responder" }, "responder");
  await responder.subscribe5(1, [["v5/rr/req", { qos: 1 }]]);
  const rr = spawn(RR!, [
    ...net(b.port),
    ...["-i", "ms5-rr", "-q", "1", "-t", "v5/rr/req", "-e", "v5/rr/resp", "-m", "ping"],
    ...["-D", "PUBLISH", "correlation-data", "id-7", "-W", "10"],
  ], { deadlineMs: 15_000 });
  const req = await responder.receive5(8_000);
  assert.equal(req.text, "ping");
  const topic = req.properties.get(PROP.RESPONSE_TOPIC) as string;
  assert.equal(topic, "v5/rr/resp");
  const corr = req.properties.get(PROP.CORRELATION_DATA) as Uint8Array;
  assert.equal(new TextDecoder().decode(corr), "id-7");
  await responder.publish5({
    topic,
    qos: 1,
    packetId: 1,
    payload: "pong",
    properties: [[PROP.CORRELATION_DATA, corr]],
  });
  const r = await rr.finished;
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(output(r.stdout), ["pong"]);
});

test("mosquitto v5: two mosquitto_sub in one shared subscription group get each message once between them", async () => {
  await using b = await startBroker();
  const args = (id: string) => [
    ...["-i", id, "-q", "1", "-t", "$share/grp/v5/shared", "-W", "10", "-F", "%p"],
  ];
  const one = await sub(b.port, args("ms5-share-1"));
  const two = await sub(b.port, args("ms5-share-2"));
  const n = 10;
  const pubber = await b.connect5({ clientId: "share-pub" }, "pub");
  for (let i = 0; i < n; i++) {
    await pubber.publish5({ topic: "v5/shared", qos: 1, packetId: i + 1, payload: String(i) });
  }
  // Everything published is acknowledged; the subscribers stop at their -W deadline or are killed.
  const seen = () => [...output(one.stdout()), ...output(two.stdout())];
  await waitFor(() => seen().length >= n, "every shared message", 10_000);
  one.kill();
  two.kill();
  await Promise.all([one.finished, two.finished]);
  const all = seen().map(Number).sort((x, y) => x - y);
  assert.deepEqual(all, Array.from({ length: n }, (_, i) => i), "each message exactly once");
  assert.ok(output(one.stdout()).length > 0 && output(two.stdout()).length > 0, "both took some");
});

test("mosquitto v5: -D message-expiry-interval: an expired message is not delivered to a returning -x session, a live one is with its remaining lifetime (%E)", async () => {
  await using b = await startBroker();
  const first = await run(SUB!, [
    ...net(b.port),
    ...V5,
    ...["-i", "ms5-exp", "-c", "-x", "120", "-q", "1", "-t", "v5/exp/#", "-E"],
  ], { deadlineMs: 10_000 });
  assert.equal(first.code, 0, first.stderr);
  await pub(b.port, [
    ...["-i", "exp-short", "-q", "1", "-t", "v5/exp/short", "-m", "short"],
    ...["-D", "PUBLISH", "message-expiry-interval", "1"],
  ]);
  await pub(b.port, [
    ...["-i", "exp-long", "-q", "1", "-t", "v5/exp/long", "-m", "long"],
    ...["-D", "PUBLISH", "message-expiry-interval", "100"],
  ]);
  const sent = Date.now();
  await waitFor(() => Date.now() - sent >= 2_200, "the short expiry to pass", 5_000);
  const back = await run(SUB!, [
    ...net(b.port),
    ...V5,
    ...["-i", "ms5-exp", "-c", "-x", "120", "-q", "1", "-t", "v5/exp/#"],
    ...["-C", "1", "-W", "10", "-F", "%t %p %E"],
  ], { deadlineMs: 15_000 });
  assert.equal(back.code, 0, back.stderr);
  const [line] = output(back.stdout);
  const [topic, payload, left] = line.split(" ");
  assert.deepEqual([topic, payload], ["v5/exp/long", "long"]);
  assert.ok(Number(left) <= 98 && Number(left) >= 90, `remaining ${left}`);
});
