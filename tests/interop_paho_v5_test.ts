/**
 * Interoperability with Eclipse Paho for Python (python3-paho-mqtt) in MQTT 5.0 mode, driven
 * through tests/_paho_v5_client.py. Runs against ours, or mosquitto with
 * `MQTT_TEST_BROKER=mosquitto`.
 *
 * @module
 */
import assert from "node:assert/strict";
import { startBroker } from "./_harness.ts";
import { PROP } from "./_raw.ts";
import { spawn, which } from "./_util.ts";

const SCRIPT = new URL("./_paho_v5_client.py", import.meta.url).pathname;

function findPython(): string | undefined {
  const candidates = [which("python3"), "/usr/bin/python3"].filter((p) => p !== undefined);
  for (const python of new Set(candidates)) {
    try {
      const { success } = new Deno.Command(python!, {
        args: ["-c", "import paho.mqtt.client, paho.mqtt.properties"],
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

interface PahoMessage {
  topic: string;
  payload: string;
  qos: number;
  properties: Record<string, unknown>;
}

Deno.test({
  name: PYTHON === undefined
    ? "paho v5: ... (skipped: needs Debian package python3-paho-mqtt)"
    : "paho v5: CONNECT/CONNACK properties, subscription identifier, user properties in order, QoS 1 and 2 both ways",
  ignore: PYTHON === undefined,
  async fn() {
    await using b = await startBroker();
    const raw = await b.connect5({ clientId: "paho5-raw" }, "raw");
    await raw.subscribe5(1, [["paho5/q1", { qos: 1 }]]);
    const paho = spawn(PYTHON!, [SCRIPT, String(b.port), "paho5-1"], { deadlineMs: 20_000 });
    try {
      await paho.waitForOutput("stdout", "READY");
      const rawPub = await b.connect5({ clientId: "paho5-raw-pub" }, "raw-pub");
      await rawPub.publish5({
        topic: "paho5/from-raw",
        qos: 2,
        packetId: 1,
        payload: "three",
        properties: [[PROP.USER_PROPERTY, ["from", "raw"]]],
      });
      // paho's own QoS 1 message, as a raw 5.0 subscriber sees it.
      const seen = await raw.receive5();
      assert.deepEqual(seen.properties.user, [["z", "1"], ["a", "2"], ["z", "3"]]);
      assert.equal(seen.properties.get(PROP.RESPONSE_TOPIC), "paho5/reply");
      const result = await paho.finished;
      assert.equal(result.code, 0, `paho script: ${result.stdout} ${result.stderr}`);
      const line = result.stdout.split("\n").filter((l) => l.startsWith("{")).at(-1)!;
      const r = JSON.parse(line) as {
        connack: number;
        sessionPresent: boolean;
        granted: number[];
        published: boolean[];
        messages: PahoMessage[];
        error?: string;
        connackProperties: Record<string, unknown>;
      };
      assert.equal(r.error, undefined);
      assert.equal(r.connack, 0);
      assert.equal(r.sessionPresent, false);
      assert.deepEqual(r.granted, [2]);
      assert.deepEqual(r.published, [true, true]);
      const byTopic = new Map(r.messages.map((m) => [m.topic, m]));
      const q1 = byTopic.get("paho5/q1")!;
      assert.equal(q1.payload, "one");
      assert.equal(q1.qos, 1);
      assert.deepEqual(q1.properties.UserProperty, [["z", "1"], ["a", "2"], ["z", "3"]]);
      assert.equal(q1.properties.ContentType, "text/plain");
      assert.equal(q1.properties.ResponseTopic, "paho5/reply");
      assert.equal(q1.properties.CorrelationData, "0102");
      assert.ok((q1.properties.MessageExpiryInterval as number) <= 60);
      assert.deepEqual(q1.properties.SubscriptionIdentifier, [7]);
      assert.equal(byTopic.get("paho5/q2")?.qos, 2);
      const fromRaw = byTopic.get("paho5/from-raw")!;
      assert.deepEqual([fromRaw.payload, fromRaw.qos], ["three", 2]);
      assert.deepEqual(fromRaw.properties.UserProperty, [["from", "raw"]]);
    } finally {
      paho.kill("SIGKILL");
      await paho.finished;
    }
  },
});

Deno.test({
  name: PYTHON === undefined
    ? "paho v5: session resume (skipped: needs Debian package python3-paho-mqtt)"
    : "paho v5: Session Expiry Interval keeps paho's session; Clean Start 0 resumes it with the message queued while away",
  ignore: PYTHON === undefined,
  async fn() {
    await using b = await startBroker();
    const leave = await spawn(PYTHON!, [SCRIPT, String(b.port), "paho5-r", "leave"], {
      deadlineMs: 20_000,
    }).finished;
    assert.equal(leave.code, 0, `${leave.stdout} ${leave.stderr}`);
    const pub = await b.connect5({ clientId: "paho5-r-pub" }, "pub");
    await pub.publish5({
      topic: "paho5r/t",
      qos: 1,
      packetId: 1,
      payload: "while away",
      properties: [[PROP.USER_PROPERTY, ["q", "1"]]],
    });
    const resume = await spawn(PYTHON!, [SCRIPT, String(b.port), "paho5-r", "resume"], {
      deadlineMs: 20_000,
    }).finished;
    assert.equal(resume.code, 0, `${resume.stdout} ${resume.stderr}`);
    const line = resume.stdout.split("\n").filter((l) => l.startsWith("{")).at(-1)!;
    const r = JSON.parse(line) as { sessionPresent: boolean; messages: PahoMessage[] };
    assert.equal(r.sessionPresent, true);
    assert.deepEqual(r.messages.map((m) => [m.topic, m.payload, m.qos]), [[
      "paho5r/t",
      "while away",
      1,
    ]]);
    assert.deepEqual(r.messages[0].properties.UserProperty, [["q", "1"]]);
  },
});
