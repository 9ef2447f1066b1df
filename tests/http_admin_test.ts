/**
 * The admin API and the HTTP side through the CLI, as an operator starts it:
 * `deno run --allow-net --allow-read cli.ts --host 127.0.0.1 --port P --http-port H
 * --http-token-file F`, with real MQTT clients (npm:mqtt over TCP and over the HTTP listener's
 * WebSocket endpoint).
 */
import assert from "node:assert/strict";
import mqtt from "npm:mqtt@5.16.0";
import { collect, connectMqtt } from "./_mqttjs.ts";
import { run, spawn, type Spawned, waitFor } from "./_util.ts";

const CLI = new URL("../cli.ts", import.meta.url).pathname;
const ROOT = new URL("..", import.meta.url).pathname;
const DENO = Deno.execPath();
const TOKEN = "s3cret-token-0123456789";

interface Running {
  cli: Spawned;
  mqttPort: number;
  httpPort: number;
  api(path: string, init?: RequestInit & { token?: string | null }): Promise<Response>;
  [Symbol.asyncDispose](): Promise<void>;
}

async function start(args: string[], dir: string): Promise<Running> {
  const cli = spawn(DENO, [
    "run",
    "--allow-net",
    `--allow-read=${dir}`,
    CLI,
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    "--http-port",
    "0",
    "--sys-interval",
    "0",
    ...args,
  ], { cwd: ROOT, deadlineMs: 60_000 });
  try {
    await cli.waitForOutput("stderr", /listening on http 127\.0\.0\.1:\d+/, 20_000);
    await cli.waitForOutput("stderr", /listening on tcp 127\.0\.0\.1:\d+/, 20_000);
  } catch (error) {
    cli.kill("SIGKILL");
    await cli.finished;
    throw error;
  }
  const mqttPort = Number(/listening on tcp 127\.0\.0\.1:(\d+)/.exec(cli.stderr())![1]);
  const httpPort = Number(/listening on http 127\.0\.0\.1:(\d+)/.exec(cli.stderr())![1]);
  return {
    cli,
    mqttPort,
    httpPort,
    api(path, init = {}) {
      const { token = TOKEN, ...rest } = init;
      const headers = new Headers(rest.headers);
      if (token !== null) headers.set("authorization", `Bearer ${token}`);
      return fetch(`http://127.0.0.1:${httpPort}${path}`, { ...rest, headers });
    },
    async [Symbol.asyncDispose]() {
      cli.kill("SIGTERM");
      const result = await cli.finished;
      assert.equal(result.code, 0, `exit code; stderr: ${result.stderr}`);
    },
  };
}

async function tokenFile(dir: string, mode = 0o600): Promise<string> {
  const path = `${dir}/token`;
  await Deno.writeTextFile(path, TOKEN + "\n");
  await Deno.chmod(path, mode);
  return path;
}

async function status(response: Response): Promise<number> {
  await response.body?.cancel();
  return response.status;
}

Deno.test("admin API: 401 without or with a wrong token, 200 with it; lists clients, sessions, subscriptions; kicks a client", async () => {
  const dir = await Deno.makeTempDir({ prefix: "http_admin_" });
  const clients: mqtt.MqttClient[] = [];
  try {
    await using broker = await start(["--http-token-file", await tokenFile(dir)], dir);
    // No token, a wrong one (also one differing only in its last character), a malformed header.
    assert.equal(await status(await broker.api("/api/v1/clients", { token: null })), 401);
    assert.equal(await status(await broker.api("/api/v1/clients", { token: "wrong" })), 401);
    assert.equal(
      await status(await broker.api("/api/v1/clients", { token: TOKEN.slice(0, -1) + "X" })),
      401,
    );
    assert.equal(
      await status(
        await broker.api("/api/v1/clients", { token: null, headers: { authorization: TOKEN } }),
      ),
      401,
    );
    // Metrics, health and the page need no token.
    assert.equal(await status(await broker.api("/metrics", { token: null })), 200);
    assert.equal(await status(await broker.api("/healthz", { token: null })), 200);
    assert.equal(await status(await broker.api("/readyz", { token: null })), 200);

    const watcher = await connectMqtt(broker.mqttPort, { clientId: "watcher" });
    clients.push(watcher);
    const seen = collect(watcher);
    await watcher.subscribeAsync("wills/#", { qos: 1 });
    const victim = await connectMqtt(broker.mqttPort, {
      clientId: "victim",
      username: "alice",
      clean: false,
      will: { topic: "wills/victim", payload: "gone", qos: 1, retain: false },
    });
    clients.push(victim);
    await victim.subscribeAsync("orders/+", { qos: 1 });

    let response = await broker.api("/api/v1/clients");
    assert.equal(response.status, 200);
    const list = await response.json();
    assert.equal(list.total, 2);
    const row = list.clients.find((c: { clientId: string }) => c.clientId === "victim");
    assert.equal(row.address, "127.0.0.1");
    assert.equal(row.transport, "tcp");
    assert.equal(row.protocolVersion, "3.1.1");
    assert.equal(row.username, "alice");
    assert.equal(row.inflight, 0);
    assert.equal(row.queued, 0);
    assert.ok(Math.abs(Date.parse(row.connectedSince) - Date.now()) < 60_000, row.connectedSince);

    response = await broker.api("/api/v1/clients/victim");
    assert.equal((await response.json()).username, "alice");
    assert.equal(await status(await broker.api("/api/v1/clients/nobody")), 404);

    response = await broker.api("/api/v1/subscriptions");
    const subs = await response.json();
    assert.deepEqual(
      subs.subscriptions.map((s: { clientId: string; topicFilter: string }) =>
        `${s.clientId} ${s.topicFilter}`
      ).sort(),
      ["victim orders/+", "watcher wills/#"],
    );

    // Kick: the connection closes, the will goes out, the persistent session stays offline.
    const closed = new Promise<void>((resolve) => victim.once("close", () => resolve()));
    response = await broker.api("/api/v1/clients/victim", { method: "DELETE" });
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), {
      clientId: "victim",
      disconnected: true,
      reasonCode: 0x98,
    });
    await closed;
    await waitFor(() => seen.some((m) => m.topic === "wills/victim"), 10_000, "the will");
    await broker.cli.waitForOutput(
      "stderr",
      /admin API \(from 127\.0\.0\.1:\d+\): disconnected client "victim"/,
    );
    assert.equal(
      await status(await broker.api("/api/v1/clients/victim", { method: "DELETE" })),
      404,
    );
    response = await broker.api("/api/v1/sessions?state=offline");
    const offline = await response.json();
    assert.deepEqual(offline.sessions.map((s: { clientId: string }) => s.clientId), ["victim"]);
    assert.equal(offline.sessions[0].subscriptions, 1);
    response = await broker.api("/api/v1/sessions?state=online");
    assert.deepEqual(
      (await response.json()).sessions.map((s: { clientId: string }) => s.clientId),
      ["watcher"],
    );
    assert.equal(await status(await broker.api("/api/v1/sessions?state=bogus")), 400);
    assert.equal(await status(await broker.api("/api/v1/clients", { method: "POST" })), 405);
    assert.equal(await status(await broker.api("/api/v1/nothing")), 404);

    // The effective configuration names the token file, never the token.
    response = await broker.api("/api/v1/config");
    const configText = await response.text();
    assert.equal(response.status, 200);
    assert.ok(!configText.includes(TOKEN), configText);
    const config = JSON.parse(configText);
    assert.equal(config.httpTokenFile, `${dir}/token`);
    assert.equal(config.limits.maxInflight, 128);
    assert.equal(config.host, "127.0.0.1");
    assert.equal(config.anonymousAllowed, true);
  } finally {
    for (const client of clients) await client.endAsync();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("admin API: retained messages listed with a filter, read, and deleted", async () => {
  const dir = await Deno.makeTempDir({ prefix: "http_admin_" });
  const publisher: mqtt.MqttClient[] = [];
  try {
    await using broker = await start(["--http-token-file", await tokenFile(dir)], dir);
    const client = await connectMqtt(broker.mqttPort, { clientId: "retainer" });
    publisher.push(client);
    await client.publishAsync("site/a/temp", "21.5", { qos: 1, retain: true });
    await client.publishAsync("site/b/temp", "19", { qos: 1, retain: true });
    await client.publishAsync("other/x", Uint8Array.of(0xff, 0x00, 0xfe) as never, {
      qos: 1,
      retain: true,
    });
    let response = await broker.api(`/api/v1/retained?filter=${encodeURIComponent("site/+/temp")}`);
    let body = await response.json();
    assert.equal(body.total, 2);
    assert.deepEqual(body.retained.map((m: { topic: string }) => m.topic), [
      "site/a/temp",
      "site/b/temp",
    ]);
    assert.equal(await status(await broker.api("/api/v1/retained?filter=a/%23/b")), 400);
    response = await broker.api("/api/v1/retained/site/a/temp");
    assert.deepEqual(await response.json(), {
      topic: "site/a/temp",
      qos: 1,
      payload: "21.5",
      payloadBytes: 4,
    });
    response = await broker.api("/api/v1/retained?topic=other/x");
    body = await response.json();
    assert.equal(body.payloadBase64, btoa(String.fromCharCode(0xff, 0x00, 0xfe)));
    assert.equal(await status(await broker.api("/api/v1/retained/site/c/temp")), 404);

    response = await broker.api("/api/v1/retained/site/a/temp", { method: "DELETE" });
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { topic: "site/a/temp", deleted: true });
    response = await broker.api("/api/v1/retained");
    body = await response.json();
    assert.deepEqual(body.retained.map((m: { topic: string }) => m.topic).sort(), [
      "other/x",
      "site/b/temp",
    ]);
    // A new subscriber no longer gets the deleted one.
    const late = await connectMqtt(broker.mqttPort, { clientId: "late" });
    publisher.push(late);
    const got = collect(late);
    await late.subscribeAsync("site/#", { qos: 1 });
    await waitFor(() => got.length >= 1, 10_000, "the retained site/b/temp");
    await late.publishAsync("site/marker", "m", { qos: 1 });
    await waitFor(() => got.some((m) => m.topic === "site/marker"), 10_000, "the marker");
    assert.deepEqual(got.map((m) => m.topic), ["site/b/temp", "site/marker"]);
  } finally {
    for (const client of publisher) await client.endAsync();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("without --http-token-file the admin API answers 403 and metrics, health and the page are served; --http-ws serves MQTT on /mqtt", async () => {
  const dir = await Deno.makeTempDir({ prefix: "http_admin_" });
  try {
    await using broker = await start(["--http-ws"], dir);
    assert.equal(await status(await broker.api("/api/v1/clients")), 403);
    assert.equal(await status(await broker.api("/api/v1/clients", { token: null })), 403);
    assert.equal(await status(await broker.api("/metrics", { token: null })), 200);
    const page = await broker.api("/", { token: null });
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
    const html = await page.text();
    assert.match(html, /data-metric="connections"/);
    assert.ok(!/<script[^>]+src=|<link[^>]+href=|https?:\/\//i.test(html), "nothing external");
    const ws = await mqtt.connectAsync(`ws://127.0.0.1:${broker.httpPort}/mqtt`, {
      clientId: "over-ws",
      protocolVersion: 4,
      reconnectPeriod: 0,
    });
    try {
      const got = collect(ws);
      await ws.subscribeAsync("echo", { qos: 1 });
      await ws.publishAsync("echo", "over the HTTP listener", { qos: 1 });
      await waitFor(() => got.length === 1, 10_000, "the echo");
      const metrics = await (await broker.api("/metrics", { token: null })).text();
      assert.match(metrics, /^denomq_clients_connected 1$/m);
    } finally {
      await ws.endAsync();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--http-token-file is refused at start unless private to its owner, or empty, or missing: one line, exit 2", async () => {
  const dir = await Deno.makeTempDir({ prefix: "http_admin_" });
  try {
    const open = await tokenFile(dir, 0o644);
    await Deno.writeTextFile(`${dir}/empty`, "\n");
    await Deno.chmod(`${dir}/empty`, 0o600);
    const cases: [string, RegExp][] = [
      [open, /--http-token-file .*token: mode 644 .*chmod 600/],
      [`${dir}/empty`, /--http-token-file .*empty: the file holds no token/],
      [`${dir}/missing`, /--http-token-file .*missing/],
    ];
    for (const [file, expected] of cases) {
      const result = await run(DENO, [
        "run",
        "--allow-net",
        `--allow-read=${dir}`,
        CLI,
        "--port",
        "0",
        "--http-port",
        "0",
        "--http-token-file",
        file,
      ], { cwd: ROOT, deadlineMs: 30_000 });
      assert.equal(result.code, 2, result.stderr);
      const lines = result.stderr.split("\n").filter((l) => l !== "");
      assert.equal(lines.length, 1, result.stderr);
      assert.match(lines[0], expected);
    }
    const noPort = await run(DENO, ["run", "--allow-net", CLI, "--http-token-file", open], {
      cwd: ROOT,
    });
    assert.equal(noPort.code, 2);
    assert.match(noPort.stderr, /--http-token-file needs --http-port/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
