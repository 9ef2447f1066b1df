/**
 * `GET /metrics`, `/healthz` and `/readyz`: the reference Prometheus parser (Debian
 * python3-prometheus-client) accepts the exposition, and the values follow real traffic from
 * real clients (npm:mqtt, and raw sockets for what a client library would not send).
 */
import assert from "node:assert/strict";
import {
  Broker,
  createHttpHandler,
  MemoryPersistence,
  registerMetricFamily,
  registerReadinessCheck,
  SqlitePersistence,
} from "../mod.ts";
import { connectMqtt } from "./_mqttjs.ts";
import { type ParsedSample, parsePrometheus, sampleValue, scrape, serveOps } from "./_ops.ts";
import { RawSocket, waitFor } from "./_util.ts";

/** Every family the operations issue asks for, by the name the parser reports. */
const FAMILIES = [
  "denomq_connections",
  "denomq_clients_connected",
  "denomq_connections_accepted",
  "denomq_connections_refused",
  "denomq_sessions",
  "denomq_subscriptions",
  "denomq_retained_messages",
  "denomq_retained_bytes",
  "denomq_queued_messages",
  "denomq_queued_bytes",
  "denomq_memory_used_bytes",
  "denomq_memory_pauses",
  "denomq_messages_received",
  "denomq_messages_sent",
  "denomq_bytes_received",
  "denomq_bytes_sent",
  "denomq_messages_dropped",
  "denomq_protocol_errors",
  "denomq_event_loop_delay_seconds",
  "process_resident_memory_bytes",
  "denomq_heap_used_bytes",
];

async function waitForMetric(
  server: Parameters<typeof scrape>[0],
  what: string,
  check: (samples: ParsedSample[]) => boolean,
): Promise<ParsedSample[]> {
  let last: ParsedSample[] = [];
  await waitFor(async () => check(last = await scrape(server)), 10_000, what);
  return last;
}

Deno.test("metrics: the reference parser accepts /metrics and the values follow real clients", async () => {
  const broker = new Broker({
    logLevel: "silent",
    authenticate: ({ username }) => username === "intruder" ? 4 : true,
  });
  const { port } = await broker.listen({ hostname: "127.0.0.1", port: 0 });
  await using server = serveOps(broker);
  const clients: Awaited<ReturnType<typeof connectMqtt>>[] = [];
  try {
    let samples = await scrape(server);
    const families = new Set(samples.map((s) => s.family));
    for (const name of FAMILIES) assert.ok(families.has(name), `family ${name} is exposed`);
    for (const s of samples.filter((s) => s.type === "counter")) {
      assert.match(s.name, /_total$/, `counter sample ${s.name} ends in _total`);
    }
    assert.equal(sampleValue(samples, "denomq_connections"), 0);
    assert.equal(sampleValue(samples, "denomq_messages_received_total"), 0);

    for (let i = 0; i < 3; i++) clients.push(await connectMqtt(port, { clientId: `m-${i}` }));
    samples = await waitForMetric(
      server,
      "3 connections",
      (s) =>
        sampleValue(s, "denomq_connections") === 3 &&
        sampleValue(s, "denomq_clients_connected") === 3,
    );
    assert.equal(sampleValue(samples, "denomq_sessions", { state: "online" }), 3);
    assert.equal(sampleValue(samples, "denomq_connections_accepted_total"), 3);

    // Traffic: one subscriber, 10 QoS 1 messages, one of them retained.
    const [sub, pub] = clients;
    let received = 0;
    sub.on("message", () => received++);
    await sub.subscribeAsync("t/#", { qos: 1 });
    for (let i = 0; i < 10; i++) {
      await pub.publishAsync(`t/${i}`, `payload-${i}`, { qos: 1, retain: i === 9 });
    }
    await waitFor(() => received === 10, 10_000, "10 messages delivered");
    samples = await waitForMetric(
      server,
      "the traffic counted",
      (s) =>
        sampleValue(s, "denomq_messages_received_total") === 10 &&
        sampleValue(s, "denomq_messages_sent_total") === 10,
    );
    assert.equal(sampleValue(samples, "denomq_subscriptions"), 1);
    assert.equal(sampleValue(samples, "denomq_retained_messages"), 1);
    assert.equal(sampleValue(samples, "denomq_retained_bytes"), "t/9".length + "payload-9".length);
    assert.ok(sampleValue(samples, "denomq_bytes_received_total") > 10 * "payload-0".length);
    assert.ok(sampleValue(samples, "denomq_bytes_sent_total") > 10 * "payload-0".length);
    assert.ok(sampleValue(samples, "process_resident_memory_bytes") > 0);
    assert.ok(sampleValue(samples, "denomq_heap_used_bytes") > 0);

    // A refused CONNECT is counted by its reason.
    await assert.rejects(connectMqtt(port, { clientId: "x", username: "intruder" }));
    // A persistent session goes offline; a QoS 0 message for it is dropped, by reason.
    const durable = await connectMqtt(port, { clientId: "offline-one", clean: false });
    await durable.subscribeAsync("q0/#", { qos: 0 });
    await durable.endAsync();
    await waitForMetric(
      server,
      "one offline session",
      (s) => sampleValue(s, "denomq_sessions", { state: "offline" }) === 1,
    );
    await pub.publishAsync("q0/x", "lost", { qos: 0 });
    // A protocol error: a first packet that is not CONNECT.
    const raw = await RawSocket.open(port);
    await raw.send(Uint8Array.of(0xc0, 0x00));
    assert.equal(await raw.closedByPeer(), true);
    await raw.close();
    samples = await waitForMetric(
      server,
      "refusal, drop and protocol error",
      (s) =>
        sampleValue(s, "denomq_connections_refused_total", {
            reason: "bad_username_or_password",
          }) === 1 &&
        sampleValue(s, "denomq_messages_dropped_total", { reason: "offline_qos0" }) === 1 &&
        sampleValue(s, "denomq_protocol_errors_total") === 1,
    );
    assert.equal(
      sampleValue(samples, "denomq_connections_refused_total", { reason: "not_authorized" }),
      0,
    );
    assert.equal(
      sampleValue(samples, "denomq_messages_dropped_total", { reason: "queue_full" }),
      0,
    );

    for (const client of clients.splice(0)) {
      await client.endAsync();
    }
    samples = await waitForMetric(
      server,
      "no connections",
      (s) => sampleValue(s, "denomq_connections") === 0,
    );
    assert.equal(sampleValue(samples, "denomq_clients_connected"), 0);
    assert.equal(sampleValue(samples, "denomq_clients_connected_max"), 4);
    // broker.stats() carries the same counters.
    const stats = broker.stats();
    assert.equal(stats.connectedMax, 4);
    assert.equal(stats.connected, 0);
    assert.equal(
      stats.connectionsAccepted,
      sampleValue(samples, "denomq_connections_accepted_total"),
    );
    assert.equal(stats.packetsIn, sampleValue(samples, "denomq_packets_received_total"));
  } finally {
    for (const client of clients) await client.endAsync();
    await broker.close();
  }
});

Deno.test("metrics: registered families (bridge or cluster link state) are exposed and escaped", async () => {
  const broker = new Broker({ logLevel: "silent" });
  await using server = serveOps(broker);
  try {
    let up = 0;
    const remove = registerMetricFamily(broker, {
      name: "denomq_bridge_link_up",
      help: 'Whether the bridge link is up; a "quoted" help \\ line',
      type: "gauge",
      collect: () => [{ labels: { bridge: 'cloud "eu"\nsecond line' }, value: up }],
    });
    assert.throws(
      () =>
        registerMetricFamily(broker, {
          name: "bad-name",
          help: "",
          type: "gauge",
          collect: () => [],
        }),
      TypeError,
    );
    assert.throws(
      () =>
        registerMetricFamily(broker, {
          name: "denomq_bridge_link_up",
          help: "",
          type: "gauge",
          collect: () => [],
        }),
      TypeError,
    );
    let samples = await scrape(server);
    assert.equal(
      sampleValue(samples, "denomq_bridge_link_up", { bridge: 'cloud "eu"\nsecond line' }),
      0,
    );
    up = 1;
    samples = await scrape(server);
    assert.equal(sampleValue(samples, "denomq_bridge_link_up"), 1);
    remove();
    samples = await scrape(server);
    assert.ok(Number.isNaN(sampleValue(samples, "denomq_bridge_link_up")), "removed");
  } finally {
    await broker.close();
  }
});

Deno.test("metrics: with a store, commits and their duration follow QoS 1 traffic to a persistent session", async () => {
  const dir = await Deno.makeTempDir({ prefix: "http_metrics_" });
  const broker = new Broker({
    logLevel: "silent",
    persistence: new SqlitePersistence({ dir, sync: "normal" }),
  });
  try {
    const { port } = await broker.listen({ hostname: "127.0.0.1", port: 0 });
    await using server = serveOps(broker);
    const before = await scrape(server);
    const commitsBefore = sampleValue(before, "denomq_store_commits_total");
    assert.ok(commitsBefore >= 0);
    const client = await connectMqtt(port, { clientId: "durable-pub", clean: false });
    try {
      await client.subscribeAsync("d/#", { qos: 1 });
      for (let i = 0; i < 5; i++) {
        await client.publishAsync("d/x", `m${i}`, { qos: 1, retain: true });
      }
    } finally {
      await client.endAsync();
    }
    const samples = await scrape(server);
    const commits = sampleValue(samples, "denomq_store_commits_total");
    assert.ok(commits > commitsBefore, `commits ${commitsBefore} -> ${commits}`);
    assert.equal(sampleValue(samples, "denomq_store_commit_duration_seconds_count"), commits);
    assert.ok(sampleValue(samples, "denomq_store_commit_duration_seconds_sum") > 0);
  } finally {
    await broker.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("healthz and readyz: 200 while serving; readyz 503 while a registered check fails; 503 once closed", async () => {
  const broker = new Broker({ logLevel: "silent" });
  await broker.listen({ hostname: "127.0.0.1", port: 0 });
  await using server = serveOps(broker);
  let linkUp = false;
  registerReadinessCheck(broker, "bridge cloud", () => linkUp || "link down");
  let response = await server.get("/healthz");
  assert.equal(response.status, 200);
  assert.equal(await response.text(), "ok\n");
  response = await server.get("/readyz");
  assert.equal(response.status, 503);
  const body = await response.json();
  assert.equal(body.checks["bridge cloud"], "link down");
  assert.equal(body.checks.store, "ok");
  assert.match(body.checks.listeners, /^tcp 127\.0\.0\.1:\d+$/);
  linkUp = true;
  response = await server.get("/readyz");
  assert.equal(response.status, 200, JSON.stringify(await response.clone().json()));
  assert.equal((await response.json()).status, "ready");
  response = await server.get("/metrics", { method: "POST" });
  assert.equal(response.status, 405);
  await response.body?.cancel();
  response = await server.get("/nothing-here");
  assert.equal(response.status, 404);
  await response.body?.cancel();
  await broker.close();
  response = await server.get("/healthz");
  assert.equal(response.status, 503);
  await response.body?.cancel();
  response = await server.get("/readyz");
  assert.equal(response.status, 503);
  await response.body?.cancel();
  // The exposition still parses after close.
  await parsePrometheus(await (await server.get("/metrics")).text());
});

Deno.test("createHttpHandler: TypeError for something that is not a Broker, or an empty token", () => {
  assert.throws(
    () => createHttpHandler({} as unknown as Broker),
    (error: unknown) => error instanceof TypeError && /Broker/.test(error.message),
  );
  const broker = new Broker({ logLevel: "silent" });
  assert.throws(() => createHttpHandler(broker, { token: "" }), TypeError);
});

Deno.test("readyz: 503 naming the store while it cannot be opened", async () => {
  const store = new MemoryPersistence();
  store.open = () => Promise.reject(new Error("disk on fire"));
  const broker = new Broker({ logLevel: "silent", persistence: store });
  await using server = serveOps(broker);
  await assert.rejects(broker.ready, /disk on fire/);
  const response = await server.get("/readyz");
  assert.equal(response.status, 503);
  assert.match((await response.json()).checks.store, /could not be opened/);
  await broker.close();
});
