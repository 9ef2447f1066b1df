/**
 * The broker as a program: `deno run --allow-net cli.ts …` in a subprocess.
 */
import assert from "node:assert/strict";
import { freePort, isListening, RawSocket, run, spawn, type Spawned, which } from "./_util.ts";

const CLI = new URL("../cli.ts", import.meta.url).pathname;
const ROOT = new URL("..", import.meta.url).pathname;
const DENO = Deno.execPath();

function startCli(args: string[], permissions = ["--allow-net"]): Spawned {
  return spawn(DENO, ["run", ...permissions, CLI, ...args], { cwd: ROOT, deadlineMs: 30_000 });
}

function runCli(args: string[], permissions = ["--allow-net"]) {
  return run(DENO, ["run", ...permissions, CLI, ...args], { cwd: ROOT, deadlineMs: 30_000 });
}

function listeningLines(stderr: string): string[] {
  return stderr.split("\n").filter((line) => /listening on/.test(line));
}

/** Connects a raw client and returns the CONNACK return code. */
async function connackCode(port: number, clientId: string): Promise<[number, RawSocket]> {
  const socket = await RawSocket.open(port);
  const [, code] = await socket.connect({ clientId });
  return [code, socket];
}

async function stopAndCheck(cli: Spawned, signal: Deno.Signal, ports: number[]): Promise<void> {
  cli.kill(signal);
  const result = await cli.finished;
  assert.equal(result.code, 0, `exit code after ${signal}; stderr: ${result.stderr}`);
  assert.equal(result.signal, null);
  for (const port of ports) {
    assert.equal(await isListening(port), false, `port ${port} still accepts connections`);
    // And it can be bound again.
    const listener = Deno.listen({ hostname: "127.0.0.1", port });
    listener.close();
  }
}

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  Deno.test(`cli starts, logs one line for its listener, serves a client and exits 0 on ${signal}`, async () => {
    const port = freePort();
    const cli = startCli(["--host", "127.0.0.1", "--port", String(port)]);
    try {
      await cli.waitForOutput("stderr", `listening on tcp 127.0.0.1:${port}`);
      const [code, socket] = await connackCode(port, `cli-${signal}`);
      assert.equal(code, 0);
      await socket.send(Uint8Array.of(0xc0, 0x00)); // PINGREQ
      assert.equal((await socket.next()).type, 13);
      await stopAndCheck(cli, signal, [port]);
      assert.equal(await socket.closedByPeer(), true, "the client is disconnected at shutdown");
      await socket.close();
      const result = await cli.finished;
      const lines = listeningLines(result.stderr);
      assert.equal(lines.length, 1, result.stderr);
      assert.match(
        lines[0],
        new RegExp(`listening on tcp 127\\.0\\.0\\.1:${port} \\(anonymous clients allowed\\)$`),
      );
      assert.ok(!result.stderr.includes("    at "), result.stderr);
    } finally {
      cli.kill("SIGKILL");
      await cli.finished;
    }
  });
}

Deno.test("cli: SIGHUP without password or ACL files is logged and the broker keeps serving", async () => {
  const port = freePort();
  const cli = startCli(["--host", "127.0.0.1", "--port", String(port)]);
  try {
    await cli.waitForOutput("stderr", `listening on tcp 127.0.0.1:${port}`);
    const [code, socket] = await connackCode(port, "before-hup");
    assert.equal(code, 0);
    cli.kill("SIGHUP");
    await cli.waitForOutput("stderr", "SIGHUP: no password or ACL file to reload");
    // The connected client is still served, and a new one is accepted.
    await socket.send(Uint8Array.of(0xc0, 0x00));
    assert.equal((await socket.next()).type, 13);
    const [code2, socket2] = await connackCode(port, "after-hup");
    assert.equal(code2, 0);
    await socket.close();
    await socket2.close();
    await stopAndCheck(cli, "SIGTERM", [port]);
  } finally {
    cli.kill("SIGKILL");
    await cli.finished;
  }
});

Deno.test("cli --help and --version exit 0", async () => {
  const [help, version] = await Promise.all([runCli(["--help"]), runCli(["--version"])]);
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /Usage:/);
  assert.match(help.stdout, /--max-connections/);
  assert.match(help.stdout, /--config FILE/);
  assert.equal(version.code, 0, version.stderr);
  assert.match(version.stdout, /^denomq \d+\.\d+\.\d+/);
});

Deno.test("cli: a bad flag, value or file prints one line naming it and exits 2, without a stack trace", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cli_test_" });
  try {
    const unknownKey = `${dir}/unknown_key.json`;
    await Deno.writeTextFile(unknownKey, JSON.stringify({ port: 1883, maxConections: 5 }));
    const badJson = `${dir}/bad.json`;
    await Deno.writeTextFile(badJson, "{ port: ");
    const badValue = `${dir}/bad_value.json`;
    await Deno.writeTextFile(badValue, JSON.stringify({ maxInflight: 0 }));
    const cases: [string[], string[]][] = [
      [["--bogus"], ["--bogus"]],
      [["--port", "abc"], ["--port", "abc"]],
      [["--port", "70000"], ["--port"]],
      [["--max-inflight", "0"], ["--max-inflight"]],
      [["--max-connections", "-5"], ["--max-connections"]],
      [["--log-level", "loud"], ["--log-level", "loud"]],
      [["--config", `${dir}/missing.json`], ["--config", "missing.json"]],
      [["--config", unknownKey], ["unknown_key.json", "maxConections"]],
      [["--config", badJson], ["bad.json"]],
      [["--config", badValue], ["bad_value.json", 'key "maxInflight"', "between 1 and 65535"]],
      [["--tls-cert", `${dir}/cert.pem`], ["--tls-cert", "--tls-key"]],
      [["positional"], ["positional"]],
    ];
    // Two at a time: the machine is small.
    for (let i = 0; i < cases.length; i += 2) {
      const batch = cases.slice(i, i + 2);
      const results = await Promise.all(
        batch.map(([args]) => runCli(args, ["--allow-net", `--allow-read=${dir}`])),
      );
      for (let j = 0; j < batch.length; j++) {
        const [args, names] = batch[j];
        const { code, stdout, stderr } = results[j];
        const label = `cli ${args.join(" ")}`;
        assert.equal(code, 2, `${label}: exit code; stderr: ${stderr}`);
        const lines = stderr.split("\n").filter((line) => line !== "");
        assert.equal(lines.length, 1, `${label}: exactly one line on stderr, got ${stderr}`);
        for (const name of names) assert.ok(lines[0].includes(name), `${label}: ${lines[0]}`);
        assert.ok(!stderr.includes("    at "), `${label}: stack trace: ${stderr}`);
        assert.equal(stdout, "", `${label}: nothing on stdout`);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli --config FILE values apply and flags override them", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cli_test_" });
  const configPort = freePort();
  const flagPort = freePort();
  const path = `${dir}/broker.json`;
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      host: "127.0.0.1",
      port: configPort,
      maxConnections: 1,
      logLevel: "warn",
      sysInterval: 0,
    }),
  );
  // The config says port configPort and log level warn (no "listening" line); the flags win.
  const cli = startCli(["--config", path, "--port", String(flagPort), "--log-level", "info"], [
    "--allow-net",
    `--allow-read=${dir}`,
  ]);
  const sockets: RawSocket[] = [];
  try {
    await cli.waitForOutput("stderr", `listening on tcp 127.0.0.1:${flagPort}`);
    assert.equal(await isListening(configPort), false, "the flag --port overrides the config port");
    // maxConnections 1 from the config file.
    const [first, a] = await connackCode(flagPort, "config-1");
    sockets.push(a);
    assert.equal(first, 0);
    const [second, b] = await connackCode(flagPort, "config-2");
    sockets.push(b);
    assert.equal(second, 0x03, "maxConnections from the config file applies");
    assert.equal(await b.closedByPeer(), true);
    await stopAndCheck(cli, "SIGTERM", [flagPort]);
  } finally {
    for (const s of sockets) await s.close();
    cli.kill("SIGKILL");
    await cli.finished;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli --max-connections 1: a second client gets CONNACK 0x03, and a slot frees when the first leaves", async () => {
  const port = freePort();
  const cli = startCli([
    "--host",
    "127.0.0.1",
    "--port",
    String(port),
    "--max-connections",
    "1",
  ]);
  const sockets: RawSocket[] = [];
  try {
    await cli.waitForOutput("stderr", `listening on tcp 127.0.0.1:${port}`);
    const [first, a] = await connackCode(port, "limit-1");
    sockets.push(a);
    assert.equal(first, 0);
    const [second, b] = await connackCode(port, "limit-2");
    sockets.push(b);
    assert.equal(second, 0x03);
    assert.equal(await b.closedByPeer(), true, "the refused connection is closed");
    await a.send(Uint8Array.of(0xe0, 0x00)); // DISCONNECT
    assert.equal(await a.closedByPeer(), true);
    // The broker counts the slot free once it has closed the connection; retry until then.
    let third = -1;
    for (let attempt = 0; attempt < 50 && third !== 0; attempt++) {
      const [code, c] = await connackCode(port, "limit-3");
      sockets.push(c);
      third = code;
    }
    assert.equal(third, 0);
    await stopAndCheck(cli, "SIGTERM", [port]);
  } finally {
    for (const s of sockets) await s.close();
    cli.kill("SIGKILL");
    await cli.finished;
  }
});

const OPENSSL = which("openssl");

Deno.test({
  name: "cli with --tls-cert/--tls-key logs one line per listener and serves MQTT over TLS",
  ignore: OPENSSL === undefined,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "cli_test_" });
    const port = freePort();
    const tlsPort = freePort();
    const cli: { value?: Spawned } = {};
    try {
      // A CA and a leaf certificate it signs (rustls refuses a CA certificate as the server's).
      const steps: string[][] = [
        ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", `${dir}/ca.key`],
        [
          "req",
          "-x509",
          "-new",
          "-key",
          `${dir}/ca.key`,
          "-out",
          `${dir}/ca.pem`,
          "-days",
          "1",
          "-subj",
          "/CN=cli test CA",
        ],
        ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", `${dir}/key.pem`],
        [
          "req",
          "-new",
          "-key",
          `${dir}/key.pem`,
          "-out",
          `${dir}/leaf.csr`,
          "-subj",
          "/CN=127.0.0.1",
        ],
        [
          "x509",
          "-req",
          "-in",
          `${dir}/leaf.csr`,
          "-CA",
          `${dir}/ca.pem`,
          "-CAkey",
          `${dir}/ca.key`,
          "-CAcreateserial",
          "-out",
          `${dir}/cert.pem`,
          "-days",
          "1",
          "-extfile",
          `${dir}/leaf.ext`,
        ],
      ];
      await Deno.writeTextFile(
        `${dir}/leaf.ext`,
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
      );
      for (const args of steps) {
        const made = await run(OPENSSL!, args);
        assert.equal(made.code, 0, `openssl ${args[0]}: ${made.stderr}`);
      }
      cli.value = startCli([
        "--host",
        "127.0.0.1",
        "--port",
        String(port),
        "--tls-cert",
        `${dir}/cert.pem`,
        "--tls-key",
        `${dir}/key.pem`,
        "--tls-port",
        String(tlsPort),
      ], ["--allow-net", `--allow-read=${dir}`]);
      await cli.value.waitForOutput("stderr", `listening on tls 127.0.0.1:${tlsPort}`);
      await cli.value.waitForOutput("stderr", `listening on tcp 127.0.0.1:${port}`);
      assert.equal(listeningLines(cli.value.stderr()).length, 2, cli.value.stderr());

      const conn = await Deno.connectTls({
        hostname: "127.0.0.1",
        port: tlsPort,
        caCerts: [await Deno.readTextFile(`${dir}/ca.pem`)],
      });
      const connect = Uint8Array.of(
        0x10,
        0x10,
        0x00,
        0x04,
        ...new TextEncoder().encode("MQTT"),
        0x04,
        0x02,
        0x00,
        0x00,
        0x00,
        0x04,
        ...new TextEncoder().encode("tls1"),
      );
      await conn.write(connect);
      const connack = new Uint8Array(4);
      let got = 0;
      while (got < 4) {
        const n = await conn.read(connack.subarray(got));
        if (n === null) break;
        got += n;
      }
      assert.deepEqual([...connack], [0x20, 0x02, 0x00, 0x00]);
      conn.close();
      await stopAndCheck(cli.value, "SIGTERM", [port, tlsPort]);
    } finally {
      cli.value?.kill("SIGKILL");
      await cli.value?.finished;
      await Deno.remove(dir, { recursive: true });
    }
  },
});
