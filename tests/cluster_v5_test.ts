/**
 * The cluster with MQTT 5.0: a takeover across nodes tells the old 5.0 connection DISCONNECT
 * 0x8E, a 5.0 Session Expiry Interval holds cluster-wide (also for a session whose node died
 * while it was connected), and `$share/{group}/{filter}` groups span nodes: each message goes to
 * exactly one member, wherever it was published.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { client, NATS_SERVER, startCluster } from "./_cluster.ts";
import { waitFor } from "./_util.ts";

const ignore = NATS_SERVER === undefined;

Deno.test({
  name: "cluster 5.0: a client id taken on another node closes the old 5.0 connection with " +
    "DISCONNECT 0x8E [MQTT-3.1.4-3]; its will is published",
  ignore,
  async fn() {
    await using cluster = await startCluster(["a", "b"]);
    const [a, b] = cluster.nodes;
    const watcher = await cluster.connect(b, { clientId: "watch", protocolVersion: 5 });
    await watcher.mqtt.subscribeAsync("will/#", { qos: 1 });
    const old = await cluster.connect(a, {
      clientId: "mover",
      protocolVersion: 5,
      will: { topic: "will/mover", payload: "gone", qos: 1, retain: false },
    });
    const disconnects: number[] = [];
    old.mqtt.on("disconnect", (packet) => disconnects.push(packet.reasonCode ?? -1));
    await cluster.connect(b, { clientId: "mover", protocolVersion: 5 });
    await waitFor(() => disconnects.length > 0, 10_000, "DISCONNECT on the old connection");
    assert.deepEqual(disconnects, [0x8e]);
    await waitFor(
      () => watcher.messages.some((m) => m.topic === "will/mover"),
      10_000,
      "the old connection's will",
    );
  },
});

Deno.test({
  name: "cluster 5.0: a client back on another node within its Will Delay Interval: the will " +
    "is not published [MQTT-3.1.3-9]",
  ignore,
  async fn() {
    await using cluster = await startCluster(["a", "b"], ["--log-level", "debug"]);
    const [a, b] = cluster.nodes;
    const watcher = await cluster.connect(a, { clientId: "wwatch", protocolVersion: 5 });
    await watcher.mqtt.subscribeAsync("will/#", { qos: 1 });
    const options = {
      clientId: "delayed",
      clean: false,
      protocolVersion: 5 as const,
      properties: { sessionExpiryInterval: 3600 },
      will: {
        topic: "will/delayed",
        payload: "gone",
        qos: 1 as const,
        retain: false,
        properties: { willDelayInterval: 60 },
      },
    };
    const first = await client(a.port, options);
    // Dropped without DISCONNECT: the will waits for its delay on a.
    first.mqtt.stream.destroy();
    await a.process.waitForOutput("stderr", `client "delayed" disconnected`, 10_000);
    await cluster.connect(b, { ...options, will: undefined });
    // Published on a after the move: the will, had a published it then, is before it.
    const marker = await cluster.connect(a, { clientId: "wmark", protocolVersion: 5 });
    await marker.mqtt.publishAsync("will/marker", "m", { qos: 1 });
    await waitFor(
      () => watcher.messages.some((m) => m.topic === "will/marker"),
      10_000,
      "the marker",
    );
    assert.deepEqual(watcher.messages.map((m) => m.topic), ["will/marker"]);
  },
});

Deno.test({
  name: "cluster 5.0: the Session Expiry Interval holds cluster-wide, also for a session whose " +
    "node died while it was connected",
  ignore,
  async fn() {
    // The broker's own expiry is an hour: only the clients' intervals can end these sessions.
    const flags = ["--session-expiry-ms", "3600000", "--log-level", "debug"];
    await using cluster = await startCluster(["a", "b", "c"], flags);
    const [a, b, c] = cluster.nodes;
    const v5 = (clientId: string, interval: number) => ({
      clientId,
      clean: false,
      protocolVersion: 5 as const,
      properties: { sessionExpiryInterval: interval },
    });
    // Expired by the node that holds it after the client's 1 s: gone for the others too.
    const s1 = await client(a.port, v5("short5", 1));
    await s1.mqtt.subscribeAsync("exp/#", { qos: 1 });
    await s1.end();
    await a.process.waitForOutput("stderr", `session "short5" expired`, 10_000);
    const back = await cluster.connect(b, v5("short5", 60));
    assert.equal(back.sessionPresent, false);
    // Connected on c when c dies: the record's interval counts, not the broker's hour.
    const orphan = await client(c.port, v5("orphan5", 1));
    await orphan.mqtt.subscribeAsync("exp/#", { qos: 1 });
    const kept = await client(c.port, v5("kept5", 3600));
    await kept.mqtt.subscribeAsync("exp/#", { qos: 1 });
    await c.stop("SIGKILL");
    await orphan.end().catch(() => {});
    await kept.end().catch(() => {});
    const due = Date.now() + 1_500;
    await waitFor(() => Date.now() > due, 5_000, "the expiry");
    const late = await cluster.connect(a, v5("orphan5", 60));
    assert.equal(late.sessionPresent, false, "orphan5's 1 s interval passed");
    const resumed = await cluster.connect(a, v5("kept5", 3600));
    assert.equal(resumed.sessionPresent, true, "kept5's hour has not");
  },
});

Deno.test({
  name: "cluster 5.0: $share/{group}/{filter} with members on two nodes: each message goes to " +
    "exactly one member, published on either node",
  ignore,
  async fn() {
    await using cluster = await startCluster(["a", "b"]);
    const [a, b] = cluster.nodes;
    const m1 = await cluster.connect(a, { clientId: "m1", protocolVersion: 5 });
    await m1.mqtt.subscribeAsync("$share/g/jobs/#", { qos: 1 });
    const m2 = await cluster.connect(b, { clientId: "m2" }); // 3.1.1 members share too
    await m2.mqtt.subscribeAsync("$share/g/jobs/#", { qos: 1 });
    const m3 = await cluster.connect(b, { clientId: "m3", protocolVersion: 5 });
    await m3.mqtt.subscribeAsync("$share/g/jobs/#", { qos: 1 });
    // A plain subscriber gets every message: the end of the run once it has them all.
    const all = await cluster.connect(b, { clientId: "all", protocolVersion: 5 });
    await all.mqtt.subscribeAsync("jobs/#", { qos: 1 });
    const pa = await cluster.connect(a, { clientId: "pa", protocolVersion: 5 });
    const pb = await cluster.connect(b, { clientId: "pb" });
    const n = 40;
    for (let i = 0; i < n; i++) {
      // Both nodes publish, at QoS 1 and 0: a node's own members get their share through NATS.
      const qos = i < n / 2 ? 1 : 0;
      await (i % 2 === 0 ? pa : pb).mqtt.publishAsync(`jobs/${i % 3}`, String(i), { qos });
    }
    const members = [m1, m2, m3];
    const shared = () => members.flatMap((m) => m.messages.map((g) => g.payload));
    await waitFor(() => all.messages.length === n, 15_000, "every message on the plain subscriber");
    await waitFor(() => shared().length >= n, 15_000, `${n} shared deliveries`);
    // One more, after which a late duplicate of the earlier ones would have had its chance.
    await pa.mqtt.publishAsync("jobs/end", "end", { qos: 1 });
    await waitFor(() => shared().includes("end"), 15_000, "the last shared message");
    const got = shared();
    assert.equal(got.length, n + 1, `each message once over the group: ${got.join(",")}`);
    assert.equal(new Set(got).size, n + 1);
    assert.ok(m1.messages.length + m2.messages.length + m3.messages.length === n + 1);
  },
});

Deno.test({
  name: "cluster 5.0: a message's properties and expiry cross nodes (QoS 0 and 1, retained)",
  ignore,
  async fn() {
    await using cluster = await startCluster(["a", "b"]);
    const [a, b] = cluster.nodes;
    const sub = await cluster.connect(b, { clientId: "psub", protocolVersion: 5 });
    const got: { payload: string; properties: Record<string, unknown> | undefined }[] = [];
    sub.mqtt.on("message", (_topic, payload, packet) => {
      got.push({ payload: payload.toString(), properties: packet.properties });
    });
    await sub.mqtt.subscribeAsync("props/#", { qos: 1 });
    const pub = await cluster.connect(a, { clientId: "ppub", protocolVersion: 5 });
    const properties = {
      contentType: "text/plain",
      responseTopic: "reply/here",
      correlationData: Buffer.from([1, 2, 255]),
      userProperties: { k: "v" },
      payloadFormatIndicator: true,
      messageExpiryInterval: 3600,
    };
    for (const qos of [0, 1] as const) {
      await pub.mqtt.publishAsync("props/t", `q${qos}`, { qos, properties });
    }
    await pub.mqtt.publishAsync("props/r", "kept", { qos: 1, retain: true, properties });
    await waitFor(() => got.length === 3, 15_000, "three messages on node b");
    // A later subscriber on b gets the retained one from b's copy of the retained stream.
    const late = await cluster.connect(b, { clientId: "plate", protocolVersion: 5 });
    late.mqtt.on("message", (_topic, payload, packet) => {
      got.push({ payload: payload.toString(), properties: packet.properties });
    });
    await late.mqtt.subscribeAsync("props/r", { qos: 1 });
    await waitFor(() => got.length === 4, 15_000, "the retained message");
    for (const m of got) {
      const p = m.properties ?? {};
      assert.equal(p.contentType, "text/plain", m.payload);
      assert.equal(p.responseTopic, "reply/here", m.payload);
      assert.deepEqual([...(p.correlationData as Uint8Array)], [1, 2, 255], m.payload);
      assert.deepEqual({ ...(p.userProperties as object) }, { k: "v" }, m.payload);
      assert.equal(p.payloadFormatIndicator, true, m.payload);
      const expiry = p.messageExpiryInterval as number;
      assert.ok(expiry > 3500 && expiry <= 3600, `${m.payload}: expiry ${expiry}`);
    }
  },
});

Deno.test({
  name: "cluster 5.0: messages queued for a session that moves to another node keep their " +
    "properties",
  ignore,
  async fn() {
    await using cluster = await startCluster(["a", "b"]);
    const [a, b] = cluster.nodes;
    const persistent = {
      clientId: "holder",
      clean: false,
      protocolVersion: 5 as const,
      properties: { sessionExpiryInterval: 3600 },
    };
    const first = await client(b.port, persistent);
    await first.mqtt.subscribeAsync("held/#", { qos: 1 });
    await first.end();
    const pub = await cluster.connect(a, { clientId: "hpub", protocolVersion: 5 });
    const properties = {
      contentType: "application/json",
      correlationData: Buffer.from([9, 8, 7]),
      userProperties: { from: "a" },
    };
    await pub.mqtt.publishAsync("held/x", "{}", { qos: 1, properties });
    // Queued on b for the offline session; the client comes back on a.
    const back = await cluster.connect(a, persistent);
    assert.equal(back.sessionPresent, true);
    await waitFor(() => back.messages.length === 1, 15_000, "the queued message");
    const got = back.messages.map((m) => m.properties ?? {});
    assert.equal(got[0].contentType, "application/json");
    assert.deepEqual([...(got[0].correlationData as Uint8Array)], [9, 8, 7]);
    assert.deepEqual({ ...(got[0].userProperties as object) }, { from: "a" });
  },
});

Deno.test({
  name: "cluster 5.0: a session rebuilt from the stream after its node died gets its messages " +
    "with their properties",
  ignore,
  async fn() {
    await using cluster = await startCluster(["a", "b"]);
    const [a, b] = cluster.nodes;
    const persistent = {
      clientId: "orphaned",
      clean: false,
      protocolVersion: 5 as const,
      properties: { sessionExpiryInterval: 3600 },
    };
    const first = await client(b.port, persistent);
    await first.mqtt.subscribeAsync("lost/#", { qos: 1 });
    await first.end();
    // A QoS 1 publish through b once the client has gone: its PUBACK waits for JetStream, which
    // b's NATS connection reaches after the session record of the disconnect.
    const probe = await cluster.connect(b, { clientId: "probe" });
    await probe.mqtt.publishAsync("probe/x", "p", { qos: 1 });
    await b.stop("SIGKILL");
    const pub = await cluster.connect(a, { clientId: "lpub", protocolVersion: 5 });
    await pub.mqtt.publishAsync("lost/x", "1", {
      qos: 1,
      properties: { contentType: "text/csv", userProperties: { n: "1" } },
    });
    const back = await cluster.connect(a, persistent);
    assert.equal(back.sessionPresent, true);
    await waitFor(() => back.messages.length === 1, 15_000, "the replayed message");
    const got = back.messages[0].properties ?? {};
    assert.equal(got.contentType, "text/csv");
    assert.deepEqual({ ...(got.userProperties as object) }, { n: "1" });
  },
});
