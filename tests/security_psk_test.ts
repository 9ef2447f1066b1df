/**
 * TLS-PSK through the CLI and a real stunnel sidecar, end to end: mosquitto_pub/sub with
 * `--psk`, TLS 1.3 and TLS 1.2, refusals, the real client address, and the sidecar's life cycle
 * (stopped with the broker, restarted when killed, the broker exiting when it cannot be).
 *
 * Permissions of the broker: `--allow-net --allow-read=psk.txt --allow-run=stunnel`. Nothing is
 * written: stunnel gets its configuration on stdin and reads psk.txt itself.
 */
import assert from "node:assert/strict";
import {
  assertOneLineRefusal,
  HAVE,
  processAlive,
  runCli,
  type RunningCli,
  scratchDir,
  startCli,
  waitForLog,
  within,
} from "./_security.ts";
import { RawSocket, run, type RunResult, spawn, waitFor } from "./_util.ts";

const KEY = "00112233445566778899aabbccddeeff";
const OTHER_KEY = "ffeeddccbbaa99887766554433221100";
const PSK_PERMISSIONS = ["--allow-net", "--allow-read=psk.txt", "--allow-run=stunnel"];
const READY = !HAVE.stunnel || !HAVE.mosquittoClients;

/** psk.txt (mode 0600, as stunnel wants) and an OpenSSL config capping a client at TLS 1.2. */
async function pskDir(prefix: string) {
  const dir = await scratchDir(prefix);
  await Deno.writeTextFile(`${dir.path}/psk.txt`, `dev1:${KEY}\ndev2:${OTHER_KEY}\n`, {
    mode: 0o600,
  });
  // mosquitto's --tls-version is a minimum: only capping OpenSSL itself forces TLS 1.2.
  await Deno.writeTextFile(
    `${dir.path}/tls12.cnf`,
    "openssl_conf = init\n[init]\nssl_conf = ssl\n[ssl]\nsystem_default = sys\n" +
      "[sys]\nMaxProtocol = TLSv1.2\n",
  );
  return dir;
}

function startPskCli(dir: string, extra: string[] = [], permissions = PSK_PERMISSIONS) {
  return startCli(
    dir,
    permissions,
    ["--no-tcp", "--psk-port", "0", "--psk-file", "psk.txt", ...extra],
    ["psk", "tls-psk"],
  );
}

/** mosquitto_pub over TLS-PSK; `tls12` caps the client's OpenSSL at TLS 1.2. */
function pskPublish(
  dir: string,
  port: number,
  o: {
    id: string;
    topic: string;
    message: string;
    key?: string;
    identity?: string;
    tls12?: boolean;
  },
): Promise<RunResult> {
  return run("mosquitto_pub", [
    ...["-h", "127.0.0.1", "-p", String(port), "-V", "mqttv311", "-q", "1"],
    ...["--psk", o.key ?? KEY, "--psk-identity", o.identity ?? "dev1"],
    ...["-i", o.id, "-t", o.topic, "-m", o.message],
  ], { cwd: dir, deadlineMs: 15_000, env: o.tls12 ? { OPENSSL_CONF: `${dir}/tls12.cnf` } : {} });
}

/** The stunnel and broker log lines of one connection, found by its client's port. */
function connectionOf(cli: RunningCli, from: number, id: string) {
  const log = cli.stderr().slice(from);
  const connect = new RegExp(`client "${id}" connected from 127\\.0\\.0\\.1:(\\d+) over psk`).exec(
    log,
  );
  assert.ok(connect, `no connect line for ${id} in: ${log}`);
  return { clientPort: Number(connect[1]), log };
}

Deno.test({
  name: "PSK: mosquitto_pub/sub over TLS 1.3 and TLS 1.2; the broker sees the real client address",
  ignore: READY,
  async fn() {
    await using dir = await pskDir("security_psk_");
    await using cli = await startPskCli(dir.path, ["--log-level", "debug"]);
    const port = cli.ports["tls-psk"];
    assert.ok(cli.stunnelPid !== undefined && await processAlive(cli.stunnelPid));

    const sub = spawn("mosquitto_sub", [
      ...["-h", "127.0.0.1", "-p", String(port), "-V", "mqttv311", "-q", "1"],
      ...["--psk", OTHER_KEY, "--psk-identity", "dev2", "-i", "sub-psk"],
      ...["-t", "psk/#", "-C", "2", "-F", "%t %p"],
    ], { cwd: dir.path, deadlineMs: 20_000 });
    await waitForLog(cli, /client "sub-psk" subscribed to "psk\/#"/);

    for (const [id, tls12, version] of [["pub13", false, "1.3"], ["pub12", true, "1.2"]] as const) {
      const from = cli.stderr().length;
      const pub = await pskPublish(dir.path, port, { id, topic: `psk/${id}`, message: id, tls12 });
      assert.equal(pub.code, 0, `${id}: ${pub.stderr}`);
      await waitForLog(cli, new RegExp(`client "${id}" disconnected`), from);
      const { clientPort, log } = connectionOf(cli, from, id);
      // stunnel's own lines for this connection: the client it accepted, the TLS version it
      // negotiated, and its own outgoing port towards the broker.
      assert.ok(
        log.includes(
          `stunnel: Service [mqtt-psk] accepted connection from 127.0.0.1:${clientPort}`,
        ),
        `the broker reports the port stunnel accepted: ${log}`,
      );
      const negotiated = [...log.matchAll(/stunnel: (TLSv1\.\d) ciphersuite: (\S+)/g)];
      assert.deepEqual(negotiated.map((m) => m[1]), [`TLSv${version}`], log);
      if (version === "1.2") assert.match(negotiated[0][2], /PSK/);
      const outgoing = /connected remote server from 127\.0\.0\.1:(\d+)/.exec(log);
      assert.ok(outgoing, log);
      assert.notEqual(Number(outgoing[1]), clientPort, "not stunnel's own address");
    }
    const received = await within(cli, sub.finished, 10_000, "mosquitto_sub to get 2 messages");
    assert.equal(received.code, 0, received.stderr);
    assert.deepEqual(received.stdout.trim().split("\n").sort(), [
      "psk/pub12 pub12",
      "psk/pub13 pub13",
    ]);

    // SIGTERM stops the broker and stunnel with it.
    const pid = cli.stunnelPid!;
    const result = await cli.stop();
    assert.equal(result.code, 0, result.stderr);
    assert.equal(await processAlive(pid), false, `stunnel (pid ${pid}) outlived the broker`);
  },
});

Deno.test({
  name: "PSK: a wrong key, an unknown identity and a connection without PROXY header are refused",
  ignore: READY,
  async fn() {
    await using dir = await pskDir("security_psk_");
    await using cli = await startPskCli(dir.path);
    const port = cli.ports["tls-psk"];
    const from = cli.stderr().length;
    const refused = await Promise.all([
      pskPublish(dir.path, port, { id: "wrong13", topic: "t", message: "x", key: OTHER_KEY }),
      pskPublish(dir.path, port, {
        id: "wrong12",
        topic: "t",
        message: "x",
        key: OTHER_KEY,
        tls12: true,
      }),
      pskPublish(dir.path, port, { id: "nobody13", topic: "t", message: "x", identity: "nobody" }),
      pskPublish(dir.path, port, {
        id: "nobody12",
        topic: "t",
        message: "x",
        identity: "nobody",
        tls12: true,
      }),
    ]);
    for (const result of refused) assert.notEqual(result.code, 0, result.stdout + result.stderr);
    await waitFor(
      () => (cli.stderr().slice(from).match(/stunnel: SSL_accept/g) ?? []).length === 4,
      10_000,
      "stunnel to log 4 failed handshakes",
    );

    // The loopback listener stunnel forwards to takes only connections that start with PROXY.
    const direct = await RawSocket.open(cli.ports.psk);
    try {
      await direct.send(Uint8Array.of(0x10, 0x0c, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 2, 0, 0, 0, 0));
      assert.equal(await direct.closedByPeer(5_000), true, "closed without CONNACK");
      await assert.rejects(direct.next(100), /connection closed/);
    } finally {
      await direct.close();
    }
    await waitForLog(cli, /psk: refused a connection: .*PROXY/, from);

    // A right key still works, and nothing refused got as far as CONNECT.
    const ok = await pskPublish(dir.path, port, { id: "right", topic: "t", message: "x" });
    assert.equal(ok.code, 0, ok.stderr);
    await waitForLog(cli, /client "right" connected from 127\.0\.0\.1:\d+ over psk/, from);
    const connects = cli.stderr().slice(from).match(/client "[^"]*" connected/g) ?? [];
    assert.deepEqual(connects, ['client "right" connected']);
    assert.equal((await cli.stop()).code, 0);
  },
});

Deno.test({
  name:
    "PSK: stunnel killed from outside is restarted on the same port; past the budget the broker exits 1",
  ignore: READY,
  async fn() {
    await using dir = await pskDir("security_psk_");
    await using cli = await startPskCli(dir.path);
    const port = cli.ports["tls-psk"];
    let pid = cli.stunnelPid!;
    // The budget: 3 restarts within 60 s; the 4th death ends the broker.
    for (let kill = 1; kill <= 3; kill++) {
      const from = cli.stderr().length;
      Deno.kill(pid, "SIGKILL");
      await waitForLog(cli, /stunnel exited \(code \d+, signal SIGKILL\); restarting it/, from);
      const restarted = await waitForLog(cli, /stunnel restarted \(pid (\d+)\)/, from);
      assert.equal(await processAlive(pid), false);
      pid = Number(restarted[1]);
      assert.ok(await processAlive(pid));
      const pub = await pskPublish(dir.path, port, {
        id: `after-${kill}`,
        topic: "t",
        message: "x",
      });
      assert.equal(pub.code, 0, `a client connects again after restart ${kill}: ${pub.stderr}`);
      await waitForLog(cli, new RegExp(`client "after-${kill}" connected`), from);
    }
    Deno.kill(pid, "SIGKILL");
    const result = await within(cli, cli.process.finished, 10_000, "the broker to exit");
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /error shutting down: stunnel exited 4 times within 60 s/);
    assert.equal(await processAlive(pid), false);
    await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port }), "nobody on the PSK port");
  },
});

Deno.test({
  name: "PSK: when stunnel cannot be restarted (its binary is gone) the broker exits 1",
  ignore: READY,
  async fn() {
    await using dir = await pskDir("security_psk_");
    const wrapper = `${dir.path}/stunnel-wrapper`;
    await Deno.writeTextFile(wrapper, '#!/bin/sh\nexec stunnel "$@"\n', { mode: 0o755 });
    await using cli = await startPskCli(
      dir.path,
      ["--stunnel", wrapper],
      ["--allow-net", "--allow-read=psk.txt", `--allow-run=${wrapper}`],
    );
    await Deno.remove(wrapper);
    Deno.kill(cli.stunnelPid!, "SIGKILL");
    const result = await within(cli, cli.process.finished, 10_000, "the broker to exit");
    assert.equal(result.code, 1, result.stderr);
    assert.match(
      result.stderr,
      /error shutting down: stunnel could not be restarted: .*not found\. Install stunnel/,
    );
  },
});

Deno.test({
  name: "PSK: a missing stunnel and bad PSK files are refused in one line, before anything listens",
  ignore: !HAVE.stunnel,
  async fn() {
    await using dir = await pskDir("security_psk_");
    const files: Record<string, string> = {
      "short.txt": `dev1:${KEY}\ndev2:0011\n`,
      "hex.txt": `dev1:${KEY.slice(0, 30)}zz\n`,
      "dup.txt": `dev1:${KEY}\n\ndev1:${OTHER_KEY}\n`,
      "comment.txt": `# devices\ndev1:${KEY}\n`,
    };
    for (const [name, text] of Object.entries(files)) {
      await Deno.writeTextFile(`${dir.path}/${name}`, text, { mode: 0o600 });
    }
    const psk = (file: string, stunnel = "stunnel") =>
      runCli(
        dir.path,
        ["--allow-net", `--allow-read=${file}`, `--allow-run=${stunnel}`],
        ["--no-tcp", "--psk-port", "0", "--psk-file", file, "--stunnel", stunnel],
      );
    const [missing, short, hex, dup, comment] = await Promise.all([
      psk("psk.txt", "/nonexistent/stunnel"),
      psk("short.txt"),
      psk("hex.txt"),
      psk("dup.txt"),
      psk("comment.txt"),
    ]);
    assert.match(
      assertOneLineRefusal(missing, ["--stunnel /nonexistent/stunnel"]),
      /not found\. Install stunnel \(Debian\/Ubuntu: apt-get install stunnel4\)/,
    );
    assert.match(
      assertOneLineRefusal(short, ["--psk-file short.txt", "line 2"]),
      /key of "dev2" is 2 bytes; at least 16 bytes \(32 hex digits\)/,
    );
    assert.match(assertOneLineRefusal(hex, ["--psk-file hex.txt", "line 1"]), /is not hex/);
    assert.match(
      assertOneLineRefusal(dup, ["--psk-file dup.txt", "line 3"]),
      /duplicate identity "dev1" \(first on line 1\)/,
    );
    assert.match(
      assertOneLineRefusal(comment, ["--psk-file comment.txt", "line 1"]),
      /comments are not allowed/,
    );
  },
});
