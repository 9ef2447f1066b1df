/**
 * What an operator reads and trips over, through the CLI: start-up lines per listener, the
 * anonymous warning, refused CONNECTs, the debug packet trace (never passwords or payloads),
 * JSON log lines, IPv6 in brackets, and clear start-up errors (ports, hosts, config files).
 */
import assert from "node:assert/strict";
import { connectMqtt } from "./_mqttjs.ts";
import { freePort, run, spawn, type Spawned, waitFor } from "./_util.ts";

const CLI = new URL("../cli.ts", import.meta.url).pathname;
const ROOT = new URL("..", import.meta.url).pathname;
const DENO = Deno.execPath();

function startCli(args: string[], permissions = ["--allow-net"]): Spawned {
  return spawn(DENO, ["run", ...permissions, CLI, "--sys-interval", "0", ...args], {
    cwd: ROOT,
    deadlineMs: 60_000,
  });
}

async function stop(cli: Spawned): Promise<string> {
  cli.kill("SIGTERM");
  const result = await cli.finished;
  assert.equal(result.code, 0, result.stderr);
  return result.stderr;
}

async function portOf(cli: Spawned, pattern = /listening on tcp (?:\S+):(\d+)/): Promise<number> {
  await cli.waitForOutput("stderr", pattern, 20_000);
  return Number(pattern.exec(cli.stderr())![1]);
}

Deno.test("cli: the default listener binds 127.0.0.1 and says anonymous clients are allowed, without a warning", async () => {
  const port = freePort();
  const cli = startCli(["--port", String(port)]);
  try {
    await cli.waitForOutput(
      "stderr",
      `listening on tcp 127.0.0.1:${port} (anonymous clients allowed)`,
    );
  } finally {
    const stderr = await stop(cli);
    assert.ok(!/ warn /.test(stderr), stderr);
  }
});

Deno.test("cli --host 0.0.0.0: warnings for anonymous clients and for the open HTTP side off loopback", async () => {
  const cli = startCli([
    "--host",
    "0.0.0.0",
    "--port",
    "0",
    "--http-host",
    "0.0.0.0",
    "--http-port",
    "0",
  ]);
  try {
    const port = await portOf(cli);
    await cli.waitForOutput(
      "stderr",
      new RegExp(
        `warn anonymous clients are allowed on tcp 0\\.0\\.0\\.0:${port}, which other hosts can reach`,
      ),
    );
    await cli.waitForOutput(
      "stderr",
      /warn http 0\.0\.0\.0:\d+: metrics, health and the status page are served without a token/,
    );
  } finally {
    await stop(cli);
  }
});

Deno.test("cli: a refused CONNECT names the address and the user name tried", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cli_ops_" });
  try {
    await Deno.writeTextFile(`${dir}/c.json`, JSON.stringify({ allowAnonymous: false }));
    const cli = startCli(["--config", `${dir}/c.json`, "--port", "0"], [
      "--allow-net",
      `--allow-read=${dir}`,
    ]);
    try {
      const port = await portOf(cli);
      assert.match(cli.stderr(), /listening on tcp 127\.0\.0\.1:\d+ \(anonymous clients refused\)/);
      await assert.rejects(
        connectMqtt(port, { clientId: "refused-one", username: "mallory", password: "pw" }),
      );
      await cli.waitForOutput(
        "stderr",
        /refused CONNECT from "refused-one" \(127\.0\.0\.1:\d+ over tcp, user "mallory"\): not authorized/,
      );
    } finally {
      const stderr = await stop(cli);
      assert.ok(!stderr.includes('"pw"') && !stderr.includes(" pw"), stderr);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli --log-level debug traces packets like mosquitto -v, never passwords or payloads", async () => {
  const cli = startCli(["--port", "0", "--log-level", "debug"]);
  try {
    const port = await portOf(cli);
    const client = await connectMqtt(port, {
      clientId: "tracer",
      username: "bob",
      password: "hunter2-password",
    });
    try {
      await client.subscribeAsync("trace/#", { qos: 1 });
      await client.publishAsync("trace/t", "topsecret-payload", { qos: 1 });
      await cli.waitForOutput("stderr", /Sending PUBLISH to "tracer"/);
    } finally {
      await client.endAsync();
    }
    await cli.waitForOutput("stderr", 'Received DISCONNECT from "tracer"');
    const stderr = cli.stderr();
    for (
      const line of [
        /Received CONNECT from "tracer" \(p4, c1, k\d+, u'bob', password given\)/,
        /Sending CONNACK to "tracer" \(0, 0\)/,
        /Received SUBSCRIBE from "tracer" \(m\d+: 'trace\/#' q1\)/,
        /Sending SUBACK to "tracer" \(m\d+: 1\)/,
        /Received PUBLISH from "tracer" \(d0, q1, r0, m\d+, 'trace\/t', … \(17 bytes\)\)/,
        /Sending PUBACK to "tracer" \(m\d+\)/,
        /Sending PUBLISH to "tracer" \(d0, q1, r0, m\d+, 'trace\/t', … \(17 bytes\)\)/,
        /Received PUBACK from "tracer" \(m\d+\)/,
      ]
    ) assert.match(stderr, line);
    assert.ok(!stderr.includes("hunter2"), "no password in the log");
    assert.ok(!stderr.includes("topsecret"), "no payload in the log");
  } finally {
    await stop(cli);
  }
});

Deno.test("cli --log-format json: one JSON object per line; IPv6 addresses in brackets", async () => {
  let ipv6 = true;
  try {
    Deno.listen({ hostname: "::1", port: 0 }).close();
  } catch {
    ipv6 = false;
  }
  const host = ipv6 ? "::1" : "127.0.0.1";
  const cli = startCli(["--host", host, "--port", "0", "--log-format", "json"]);
  let stderr = "";
  try {
    const port = await portOf(cli, /listening on tcp (?:\[::1\]|127\.0\.0\.1):(\d+)/);
    const client = await connectMqtt(port, { clientId: "json-one", host } as never);
    await client.endAsync();
    await cli.waitForOutput("stderr", /json-one\\" disconnected/);
  } finally {
    stderr = await stop(cli);
  }
  const lines = stderr.split("\n").filter((l) => l !== "");
  assert.ok(lines.length >= 3, stderr);
  for (const line of lines) {
    const entry = JSON.parse(line);
    assert.deepEqual(Object.keys(entry), ["time", "level", "msg"]);
    assert.ok(!Number.isNaN(Date.parse(entry.time)));
  }
  const messages = lines.map((l) => JSON.parse(l).msg as string);
  if (ipv6) {
    assert.ok(messages.some((m) => /^listening on tcp \[::1\]:\d+ /.test(m)), stderr);
    assert.ok(
      messages.some((m) => /client "json-one" connected from \[::1\]:\d+ over tcp/.test(m)),
      stderr,
    );
  }
});

Deno.test("cli start-up errors: one line naming the flag, the address or the config key and file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cli_ops_" });
  const held = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const busy = (held.addr as Deno.NetAddr).port;
  try {
    await Deno.writeTextFile(`${dir}/bad_key.json`, JSON.stringify({ port: "abc" }));
    await Deno.writeTextFile(`${dir}/bad_type.json`, JSON.stringify({ host: 5 }));
    await Deno.writeTextFile(`${dir}/rel.json`, JSON.stringify({ passwordFile: "passwords" }));
    await Deno.writeTextFile(`${dir}/ports.json`, JSON.stringify({ port: 2998, wsPort: 2998 }));
    const cases: [string[], number, RegExp][] = [
      [["--port", "-1"], 2, /^error: --port: must be between 0 and 65535, got -1/],
      [["--port", "1999", "--ws-port", "1999"], 2, /--port 1999 and --ws-port 1999: two listeners/],
      [
        ["--port", "0", "--http-port", "2999", "--ws-port", "2999"],
        2,
        /--ws-port 2999 and --http-port 2999/,
      ],
      [
        ["--port", String(busy)],
        1,
        new RegExp(`--port ${busy}: address 127\\.0\\.0\\.1:${busy} is already in use`),
      ],
      [
        ["--host", "no-such-host.invalid", "--port", "0"],
        2,
        /--host no-such-host\.invalid: cannot resolve/,
      ],
      [
        ["--port", "0", "--http-port", "0", "--http-host", "no-such-host.invalid"],
        2,
        /--http-host no-such-host\.invalid/,
      ],
      [
        ["--config", `${dir}/bad_key.json`],
        2,
        /bad_key\.json: key "port": expected an integer, got "abc"/,
      ],
      [
        ["--config", `${dir}/bad_type.json`],
        2,
        /bad_type\.json: key "host": expected a non-empty string/,
      ],
      // Relative to the config file's folder, not to where the broker was started.
      [
        ["--config", `${dir}/rel.json`],
        2,
        new RegExp(`rel\\.json: key "passwordFile": .*${dir}/passwords`),
      ],
      [
        ["--config", `${dir}/ports.json`],
        2,
        /ports\.json: key "port" \(2998\) and \S*ports\.json: key "wsPort" \(2998\): two listeners/,
      ],
      [["--log-format", "xml"], 2, /--log-format: must be one of text, json/],
    ];
    for (const [args, code, pattern] of cases) {
      const result = await run(DENO, ["run", "--allow-net", `--allow-read=${dir}`, CLI, ...args], {
        cwd: ROOT,
        deadlineMs: 30_000,
      });
      const label = `cli ${args.join(" ")}`;
      assert.equal(result.code, code, `${label}: ${result.stderr}`);
      const lines = result.stderr.split("\n").filter((l) => l !== "");
      assert.equal(lines.length, 1, `${label}: one line, got ${result.stderr}`);
      assert.match(lines[0], pattern, label);
      assert.ok(!result.stderr.includes("    at "), `${label}: a stack trace`);
    }
  } finally {
    held.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli --log-format json: a start-up failure is a JSON line too", async () => {
  const held = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const busy = (held.addr as Deno.NetAddr).port;
  try {
    const result = await run(
      DENO,
      ["run", "--allow-net", CLI, "--port", String(busy), "--log-format", "json"],
      { cwd: ROOT, deadlineMs: 30_000 },
    );
    assert.equal(result.code, 1, result.stderr);
    const lines = result.stderr.split("\n").filter((l) => l !== "");
    assert.equal(lines.length, 1, result.stderr);
    const entry = JSON.parse(lines[0]);
    assert.equal(entry.level, "error");
    assert.match(
      entry.msg,
      new RegExp(`--port ${busy}: address 127\\.0\\.0\\.1:${busy} is already in use`),
    );
  } finally {
    held.close();
  }
});

Deno.test("cli --config: relative paths resolve against the file's folder", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cli_ops_" });
  try {
    await Deno.writeTextFile(`${dir}/token`, "relative-token-abc");
    await Deno.chmod(`${dir}/token`, 0o600);
    await Deno.writeTextFile(
      `${dir}/broker.json`,
      JSON.stringify({ port: 0, httpPort: 0, httpTokenFile: "token" }),
    );
    const cli = startCli(["--config", `${dir}/broker.json`], [
      "--allow-net",
      `--allow-read=${dir}`,
    ]);
    try {
      const http = await portOf(cli, /listening on http 127\.0\.0\.1:(\d+)/);
      const response = await fetch(`http://127.0.0.1:${http}/api/v1/config`, {
        headers: { authorization: "Bearer relative-token-abc" },
      });
      assert.equal(response.status, 200);
      assert.equal((await response.json()).httpTokenFile, `${dir}/token`);
      await waitFor(() => /with bearer token/.test(cli.stderr()), 5_000, "the http line");
    } finally {
      await stop(cli);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
