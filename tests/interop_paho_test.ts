/**
 * Interoperability with Eclipse Paho for Python (Debian package python3-paho-mqtt), driven
 * through tests/_paho_client.py.
 */
import assert from "node:assert/strict";
import { Broker, type DisconnectEventDetail, type PublishEventDetail } from "../mod.ts";
import { spawn, waitFor, which } from "./_util.ts";

const SCRIPT = new URL("./_paho_client.py", import.meta.url).pathname;

/** A python3 that can import paho.mqtt (Debian's, even when another python3 comes first on PATH). */
function findPython(): string | undefined {
  const candidates = [which("python3"), "/usr/bin/python3"].filter((p) => p !== undefined);
  for (const python of new Set(candidates)) {
    try {
      const { success } = new Deno.Command(python!, {
        args: ["-c", "import paho.mqtt.client"],
        stdout: "null",
        stderr: "null",
      }).outputSync();
      if (success) return python;
    } catch {
      // Not runnable.
    }
  }
  return undefined;
}

const PYTHON = findPython();
if (PYTHON === undefined) {
  console.warn(
    "interop_paho_test: no python3 with paho.mqtt; install the Debian package python3-paho-mqtt",
  );
}

function test(name: string, fn: () => Promise<void>): void {
  Deno.test({
    name: PYTHON === undefined ? `${name} (skipped: needs Debian package python3-paho-mqtt)` : name,
    ignore: PYTHON === undefined,
    fn,
  });
}

interface PahoResult {
  version: string;
  connack?: number;
  sessionPresent?: boolean;
  granted?: number[];
  published?: boolean[];
  messages: { topic: string; payload: string; qos: number; retain: boolean }[];
  error?: string;
}

function parseResult(stdout: string): PahoResult {
  const line = stdout.split("\n").filter((l) => l.startsWith("{")).at(-1);
  assert.ok(line !== undefined, `no JSON line from the paho script: ${stdout}`);
  return JSON.parse(line);
}

test("paho: connect, subscribe at QoS 2, publish at QoS 1 and 2, receive at the right QoS", async () => {
  await using broker = new Broker({ logLevel: "silent" });
  const { port } = await broker.listen({ hostname: "127.0.0.1", port: 0 });
  const published: PublishEventDetail[] = [];
  const disconnects: DisconnectEventDetail[] = [];
  broker.addEventListener("publish", (e) => published.push(e.detail));
  broker.addEventListener("disconnect", (e) => disconnects.push(e.detail));
  const paho = spawn(PYTHON!, [SCRIPT, String(port), "paho-1"], { deadlineMs: 20_000 });
  try {
    await paho.waitForOutput("stdout", "READY");
    await broker.publish({ topic: "paho/from-broker", payload: "three", qos: 2 });
    const result = await paho.finished;
    assert.equal(result.code, 0, `paho script: ${result.stdout} ${result.stderr}`);
    const r = parseResult(result.stdout);
    assert.equal(r.error, undefined);
    assert.equal(r.connack, 0);
    assert.equal(r.sessionPresent, false);
    assert.deepEqual(r.granted, [2]);
    assert.deepEqual(r.published, [true, true], "PUBACK and PUBCOMP came back");
    const byTopic = [...r.messages].sort((a, b) => a.topic.localeCompare(b.topic));
    assert.deepEqual(byTopic, [
      { topic: "paho/from-broker", payload: "three", qos: 2, retain: false },
      { topic: "paho/q1", payload: "one", qos: 1, retain: false },
      { topic: "paho/q2", payload: "two", qos: 2, retain: false },
    ]);
    const fromPaho = published.filter((p) => p.client?.clientId === "paho-1");
    assert.deepEqual(fromPaho.map((p) => [p.topic, p.qos]).sort(), [["paho/q1", 1], [
      "paho/q2",
      2,
    ]]);
    await waitFor(() => disconnects.length === 1, 5_000, "paho's disconnect");
    assert.equal(disconnects[0].reason, "disconnect");
    const stats = broker.stats();
    assert.equal(stats.inflight, 0, "every outbound QoS 1/2 exchange completed");
    assert.equal(stats.sessions, 0);
  } finally {
    paho.kill("SIGKILL");
    await paho.finished;
  }
});

test("paho: the authenticate hook sees paho's user name and password and can refuse with 0x04", async () => {
  await using broker = new Broker({
    logLevel: "silent",
    authenticate: ({ username, password }) =>
      username === "paho" && new TextDecoder().decode(password) === "right" ? true : 4,
  });
  const { port } = await broker.listen({ hostname: "127.0.0.1", port: 0 });
  const refused = await spawn(PYTHON!, [SCRIPT, String(port), "paho-2", "paho", "wrong"]).finished;
  assert.equal(refused.code, 0, refused.stderr);
  assert.equal(parseResult(refused.stdout).connack, 4);

  const accepted = spawn(PYTHON!, [SCRIPT, String(port), "paho-3", "paho", "right"]);
  try {
    await accepted.waitForOutput("stdout", "READY");
    await broker.publish({ topic: "paho/x", payload: "x", qos: 1 });
    const result = await accepted.finished;
    assert.equal(result.code, 0, result.stderr);
    const r = parseResult(result.stdout);
    assert.equal(r.connack, 0);
    assert.equal(r.messages.length, 3);
  } finally {
    accepted.kill("SIGKILL");
    await accepted.finished;
  }
});
