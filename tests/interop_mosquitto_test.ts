/**
 * Interoperability with Debian's `mosquitto_pub` and `mosquitto_sub` (package mosquitto-clients).
 * The broker runs in this process, so readiness is observed through its events, never by sleeping.
 */
import assert from "node:assert/strict";
import { Broker, type BrokerEventMap, type BrokerOptions } from "../mod.ts";
import { run, spawn, waitFor, which, withDeadline } from "./_util.ts";

const PUB = which("mosquitto_pub");
const SUB = which("mosquitto_sub");
const MISSING = PUB === undefined || SUB === undefined;
if (MISSING) {
  console.warn(
    "interop_mosquitto_test: mosquitto_pub/mosquitto_sub not found; install the Debian package mosquitto-clients",
  );
}

/** A test that is skipped, saying why, when mosquitto-clients is not installed. */
function test(name: string, fn: () => Promise<void>): void {
  Deno.test({
    name: MISSING ? `${name} (skipped: needs Debian package mosquitto-clients)` : name,
    ignore: MISSING,
    fn,
  });
}

async function start(options: BrokerOptions = {}) {
  const broker = new Broker({ logLevel: "silent", ...options });
  const { port } = await broker.listen({ hostname: "127.0.0.1", port: 0 });
  return { broker, port, net: ["-h", "127.0.0.1", "-p", String(port)] };
}

/** Resolves with the detail of the first `type` event for which `match` holds. */
function nextEvent<K extends keyof BrokerEventMap>(
  broker: Broker,
  type: K,
  match: (detail: BrokerEventMap[K]) => boolean,
  deadlineMs = 10_000,
): Promise<BrokerEventMap[K]> {
  let listener: ((e: CustomEvent<BrokerEventMap[K]>) => void) | undefined;
  const seen = new Promise<BrokerEventMap[K]>((resolve) => {
    listener = (e) => {
      if (match(e.detail)) resolve(e.detail);
    };
    broker.addEventListener(type, listener);
  });
  return withDeadline(seen, deadlineMs, `a ${type} event`).finally(() =>
    broker.removeEventListener(type, listener!)
  );
}

const subscribedBy = (broker: Broker, clientId: string) =>
  nextEvent(broker, "subscribe", (d) => d.client.clientId === clientId);

const lines = (s: string) => s.split("\n").filter((line) => line !== "");

async function pub(net: string[], args: string[]): Promise<void> {
  const result = await run(PUB!, [...net, ...args], { deadlineMs: 10_000 });
  assert.equal(result.code, 0, `mosquitto_pub ${args.join(" ")}: ${result.stderr}`);
}

test("mosquitto: QoS 0, 1 and 2 from mosquitto_pub reach mosquitto_sub at their QoS", async () => {
  const { broker, net } = await start();
  const published: [string | undefined, string, number][] = [];
  broker.addEventListener("publish", (e) => {
    published.push([e.detail.client?.clientId, e.detail.topic, e.detail.qos]);
  });
  try {
    const ready = subscribedBy(broker, "ms-sub");
    const sub = spawn(SUB!, [
      ...net,
      ...["-i", "ms-sub", "-q", "2", "-t", "mq/#", "-F", "%q %r %t %p", "-C", "3", "-W", "10"],
    ]);
    const subscribed = await ready;
    assert.deepEqual(subscribed.granted, [2]);
    for (const qos of [0, 1, 2]) {
      await pub(net, [
        "-i",
        `ms-pub-${qos}`,
        "-q",
        String(qos),
        "-t",
        `mq/${qos}`,
        "-m",
        `p${qos}`,
      ]);
    }
    const result = await sub.finished;
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(lines(result.stdout), ["0 0 mq/0 p0", "1 0 mq/1 p1", "2 0 mq/2 p2"]);
    assert.deepEqual(published, [
      ["ms-pub-0", "mq/0", 0],
      ["ms-pub-1", "mq/1", 1],
      ["ms-pub-2", "mq/2", 2],
    ]);
    await waitFor(() => broker.stats().inflight === 0, 5_000, "every acknowledgement");
  } finally {
    await broker.close();
  }
});

test("mosquitto: -r stores a retained message, -n -r clears it", async () => {
  const { broker, net } = await start();
  try {
    await pub(net, ["-i", "ret-pub", "-r", "-q", "1", "-t", "ms/ret", "-m", "kept"]);
    assert.equal(broker.stats().retained, 1);
    const got = await run(SUB!, [
      ...net,
      ...["-i", "ret-sub", "-q", "1", "-t", "ms/ret", "-F", "%r %q %t %p", "-C", "1", "-W", "10"],
    ]);
    assert.equal(got.code, 0, got.stderr);
    assert.deepEqual(lines(got.stdout), ["1 1 ms/ret kept"]);

    await pub(net, ["-i", "ret-clear", "-r", "-n", "-t", "ms/ret"]);
    assert.equal(broker.stats().retained, 0);
    // A new subscriber now gets only the live marker.
    const ready = subscribedBy(broker, "ret-sub2");
    const sub = spawn(SUB!, [
      ...net,
      ...["-i", "ret-sub2", "-q", "1", "-t", "ms/#", "-F", "%r %t %p", "-C", "1", "-W", "10"],
    ]);
    await ready;
    await pub(net, ["-i", "ret-marker", "-q", "1", "-t", "ms/marker", "-m", "m"]);
    const result = await sub.finished;
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(lines(result.stdout), ["0 ms/marker m"]);
  } finally {
    await broker.close();
  }
});

test("mosquitto: -C exits after N messages, -W after its deadline with a clean DISCONNECT", async () => {
  const { broker, net } = await start();
  try {
    const counted = subscribedBy(broker, "cw-count");
    const countDisconnect = nextEvent(
      broker,
      "disconnect",
      (d) => d.client.clientId === "cw-count",
    );
    const sub = spawn(SUB!, [...net, ...["-i", "cw-count", "-t", "cw/t", "-C", "2", "-W", "10"]]);
    await counted;
    for (const m of ["a", "b", "c"]) await broker.publish({ topic: "cw/t", payload: m });
    const result = await sub.finished;
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(lines(result.stdout), ["a", "b"]);
    // With a message still unread, mosquitto_sub closes without DISCONNECT (it does the same
    // against mosquitto), so only the end of the connection is checked here.
    await countDisconnect;

    const timedDisconnect = nextEvent(broker, "disconnect", (d) => d.client.clientId === "cw-time");
    const timed = await run(SUB!, [...net, ...["-i", "cw-time", "-t", "cw/none", "-W", "1"]]);
    assert.equal(timed.code, 27, `mosquitto_sub -W exits 27 on its deadline: ${timed.stderr}`);
    assert.equal(timed.stdout, "");
    const detail = await timedDisconnect;
    assert.equal(detail.reason, "disconnect");
    assert.equal(detail.willPublished, false);
  } finally {
    await broker.close();
  }
});

test("mosquitto: a 200 KB payload from a file (-f) arrives byte for byte", async () => {
  const { broker, net } = await start();
  const dir = await Deno.makeTempDir({ prefix: "interop_mosquitto_" });
  try {
    const payload = new Uint8Array(200 * 1024);
    for (let i = 0; i < payload.length; i += 65_536) {
      crypto.getRandomValues(payload.subarray(i, i + 65_536));
    }
    await Deno.writeFile(`${dir}/payload.bin`, payload);
    const ready = subscribedBy(broker, "big-sub");
    const sub = spawn(SUB!, [
      ...net,
      ...["-i", "big-sub", "-q", "2", "-t", "big/t", "-N", "-C", "1", "-W", "10"],
    ]);
    await ready;
    await pub(net, ["-i", "big-pub", "-q", "2", "-t", "big/t", "-f", `${dir}/payload.bin`]);
    const result = await sub.finished;
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdoutBytes.length, payload.length);
    assert.deepEqual(result.stdoutBytes, payload);
  } finally {
    await broker.close();
    await Deno.remove(dir, { recursive: true });
  }
});

test("mosquitto: --will-topic is published when mosquitto_sub is killed with SIGKILL", async () => {
  const { broker, net } = await start();
  try {
    const watching = subscribedBy(broker, "will-watch");
    const watcher = spawn(SUB!, [
      ...net,
      ...["-i", "will-watch", "-q", "1", "-t", "will/ms", "-F", "%q %t %p", "-C", "1", "-W", "10"],
    ]);
    await watching;
    const dying = subscribedBy(broker, "will-sub");
    const victim = spawn(SUB!, [
      ...net,
      ...["-i", "will-sub", "-t", "will/ignored", "--will-topic", "will/ms"],
      ...["--will-payload", "bye", "--will-qos", "1"],
    ]);
    await dying;
    const disconnect = nextEvent(broker, "disconnect", (d) => d.client.clientId === "will-sub");
    victim.kill("SIGKILL");
    const killed = await victim.finished;
    assert.equal(killed.signal, "SIGKILL");
    assert.equal((await disconnect).willPublished, true);
    const result = await watcher.finished;
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(lines(result.stdout), ["1 will/ms bye"]);
  } finally {
    await broker.close();
  }
});

test("mosquitto: a persistent session (-c -i ID -q 1) gets what was published while it was away", async () => {
  const { broker, net } = await start();
  try {
    const first = await run(SUB!, [
      ...net,
      ...["-c", "-i", "ms-persist", "-q", "1", "-t", "ps/#", "-E"],
    ]);
    assert.equal(first.code, 0, first.stderr);
    await waitFor(() => broker.stats().connections === 0, 5_000, "the first connection to end");
    assert.equal(broker.stats().sessions, 1);
    for (const n of [1, 2, 3]) {
      await pub(net, ["-i", `ps-pub-${n}`, "-q", "1", "-t", `ps/${n}`, "-m", `m${n}`]);
    }
    await pub(net, ["-i", "ps-pub-0", "-q", "0", "-t", "ps/0", "-m", "not queued"]);
    assert.equal(broker.stats().queued, 3);
    const connected = nextEvent(broker, "connect", (d) => d.client.clientId === "ms-persist");
    const resubscribed = subscribedBy(broker, "ms-persist");
    // -C 4 with a fourth, live message sent after its SUBACK: mosquitto_sub then exits with
    // nothing unread, so its last PUBACKs are not lost to a TCP reset (it closes without
    // DISCONNECT after -C, and a close with unread data resets the connection).
    const again = spawn(SUB!, [
      ...net,
      ...[
        "-c",
        "-i",
        "ms-persist",
        "-q",
        "1",
        "-t",
        "ps/#",
        "-F",
        "%q %t %p",
        "-C",
        "4",
        "-W",
        "10",
      ],
    ]);
    assert.equal((await connected).sessionPresent, true);
    await resubscribed;
    await broker.publish({ topic: "ps/4", payload: "m4", qos: 1 });
    const result = await again.finished;
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(lines(result.stdout), ["1 ps/1 m1", "1 ps/2 m2", "1 ps/3 m3", "1 ps/4 m4"]);
    await waitFor(
      () => broker.stats().queued === 0 && broker.stats().inflight === 0,
      5_000,
      "the queue to drain",
    );
  } finally {
    await broker.close();
  }
});

test("mosquitto: '#' does not match $SYS topics, an explicit $SYS filter does [MQTT-4.7.2-1]", async () => {
  // The first $SYS round is published (retained) at construction; the next one is far away.
  const { broker, net } = await start({ sysIntervalMs: 600_000 });
  try {
    const ready = subscribedBy(broker, "sys-sub");
    const sub = spawn(SUB!, [
      ...net,
      ...["-i", "sys-sub", "-t", "#", "-t", "$SYS/broker/version", "-v", "-C", "2", "-W", "10"],
    ]);
    await ready;
    await broker.publish({ topic: "plain/m", payload: "m" });
    const result = await sub.finished;
    assert.equal(result.code, 0, result.stderr);
    const got = lines(result.stdout);
    assert.equal(got.length, 2, result.stdout);
    assert.match(got[0], /^\$SYS\/broker\/version denomq /);
    assert.equal(got[1], "plain/m m");
  } finally {
    await broker.close();
  }
});
