import assert from "node:assert/strict";
import type { RemoteAddress } from "../hooks.ts";
import { acceptProxied } from "./proxy_protocol.ts";
import { PskSidecar, stunnelConfig } from "./psk_sidecar.ts";
import type { BrokerConn } from "./types.ts";

const IDENTITY = "sensor-1";
const KEY = "00112233445566778899aabbccddeeff0011223344556677";
const OTHER_KEY = "ffeeddccbbaa99887766554433221100ffeeddccbbaa9988";

/**
 * The broker side of the sidecar, by hand: reads the PROXY header, answers CONNECT with
 * CONNACK, SUBSCRIBE with SUBACK followed by a PUBLISH "from-broker" on the first filter, and
 * records PUBLISH payloads.
 */
class ProxiedListener {
  readonly listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  readonly remotes: RemoteAddress[] = [];
  readonly payloads: string[] = [];
  accepted = 0;
  connects = 0;
  #tasks: Promise<void>[] = [];
  #loop: Promise<void>;

  constructor() {
    this.#loop = (async () => {
      try {
        for await (const conn of this.listener) {
          this.accepted++;
          this.#tasks.push(this.#handle(conn).catch(() => {}));
        }
      } catch {
        // Listener closed.
      }
    })();
  }

  get port(): number {
    return this.listener.addr.port;
  }

  async #handle(tcp: Deno.Conn): Promise<void> {
    let conn: BrokerConn & { remoteAddr: RemoteAddress };
    try {
      conn = await acceptProxied(tcp, "psk", 5000);
    } catch {
      return;
    }
    this.remotes.push(conn.remoteAddr);
    const buffer = new Uint8Array(4096);
    let pending = new Uint8Array(0);
    try {
      for (;;) {
        const n = await conn.read(buffer);
        if (n === null) return;
        pending = Uint8Array.of(...pending, ...buffer.subarray(0, n));
        for (;;) {
          const packet = takePacket(pending);
          if (!packet) break;
          pending = pending.subarray(packet.whole.length);
          if (!await this.#answer(conn, packet.whole[0] >> 4, packet.body)) return;
        }
      }
    } finally {
      conn.close();
    }
  }

  async #answer(conn: BrokerConn, type: number, body: Uint8Array): Promise<boolean> {
    switch (type) {
      case 1: // CONNECT
        this.connects++;
        await conn.write(Uint8Array.of(0x20, 0x02, 0x00, 0x00));
        return true;
      case 3: { // PUBLISH QoS 0: topic length, topic, payload
        const topicLength = (body[0] << 8) | body[1];
        this.payloads.push(new TextDecoder().decode(body.subarray(2 + topicLength)));
        return true;
      }
      case 8: { // SUBSCRIBE: packet id, then the first filter
        const filterLength = (body[2] << 8) | body[3];
        const filter = body.subarray(4, 4 + filterLength);
        await conn.write(Uint8Array.of(0x90, 0x03, body[0], body[1], 0x00));
        const payload = new TextEncoder().encode("from-broker");
        await conn.write(
          Uint8Array.of(
            0x30,
            2 + filter.length + payload.length,
            0,
            filter.length,
            ...filter,
            ...payload,
          ),
        );
        return true;
      }
      case 12: // PINGREQ
        await conn.write(Uint8Array.of(0xd0, 0x00));
        return true;
      default: // DISCONNECT and anything else ends the test connection
        return false;
    }
  }

  #closed = false;

  async close(): Promise<void> {
    if (!this.#closed) this.listener.close();
    this.#closed = true;
    await this.#loop;
    await Promise.all(this.#tasks);
  }
}

function takePacket(bytes: Uint8Array): { whole: Uint8Array; body: Uint8Array } | undefined {
  let length = 0;
  let i = 1;
  for (let shift = 0;; i++, shift += 7) {
    if (i >= bytes.length || i > 4) return undefined;
    length |= (bytes[i] & 0x7f) << shift;
    if ((bytes[i] & 0x80) === 0) break;
  }
  const end = i + 1 + length;
  if (bytes.length < end) return undefined;
  return { whole: bytes.subarray(0, end), body: bytes.subarray(i + 1, end) };
}

/** Runs a client with a deadline; it is killed if it hangs. */
async function run(command: string, args: string[], env?: Record<string, string>) {
  const child = new Deno.Command(command, { args, env, stdout: "piped", stderr: "piped" }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  }, 15_000);
  try {
    const output = await child.output();
    const decode = (b: Uint8Array) => new TextDecoder().decode(b);
    return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
  } finally {
    clearTimeout(timer);
  }
}

/** Whether a process runs (not a zombie); ps, since /proc/PID needs --allow-all under Deno. */
async function alive(pid: number): Promise<boolean> {
  const state = (await run("ps", ["-o", "stat=", "-p", String(pid)])).stdout.trim();
  return state !== "" && !state.startsWith("Z");
}

function pskArgs(port: number, tls: "tlsv1.2" | "tlsv1.3", key = KEY, identity = IDENTITY) {
  return [
    ...["-h", "127.0.0.1", "-p", String(port), "--psk", key, "--psk-identity", identity],
    ...["--tls-version", tls, "-i", `psk-test-${tls}`],
  ];
}

/** A PSK file, an OpenSSL config capping TLS at 1.2, a listener and a started sidecar. */
async function setup(extra: { log?: string[] } = {}) {
  const dir = await Deno.makeTempDir({ prefix: "psk-sidecar-test-" });
  const pskFile = `${dir}/psk.txt`;
  await Deno.writeTextFile(pskFile, `${IDENTITY}:${KEY}\nother:${OTHER_KEY}\n`, { mode: 0o600 });
  // mosquitto's --tls-version tlsv1.2 is a minimum (it negotiates 1.3 when it can): to prove
  // TLS 1.2 PSK works, cap the client's OpenSSL at 1.2 through its configuration.
  const tls12Conf = `${dir}/openssl-tls12.cnf`;
  await Deno.writeTextFile(
    tls12Conf,
    "openssl_conf = init\n[init]\nssl_conf = ssl\n[ssl]\nsystem_default = sys\n" +
      "[sys]\nMaxProtocol = TLSv1.2\n",
  );
  const listener = new ProxiedListener();
  const log = extra.log ?? [];
  let sidecar: PskSidecar;
  try {
    sidecar = await PskSidecar.start({
      pskFile,
      hostname: "127.0.0.1",
      port: 0,
      targetPort: listener.port,
      debug: "info",
      log: (level, message) => log.push(`${level}: ${message}`),
    });
  } catch (error) {
    await listener.close();
    await Deno.remove(dir, { recursive: true });
    throw error;
  }
  return {
    dir,
    pskFile,
    tls12Conf,
    listener,
    sidecar,
    log,
    async [Symbol.asyncDispose]() {
      await sidecar.stop();
      await listener.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** The client port stunnel logged for its last accepted connection. */
function acceptedPorts(log: string[]): number[] {
  return log.flatMap((line) => {
    const m = /accepted connection from 127\.0\.0\.1:(\d+)$/.exec(line);
    return m ? [Number(m[1])] : [];
  });
}

Deno.test("stunnelConfig: TLS-PSK 1.2 and 1.3 (SHA-256 suites), PROXY towards loopback, foreground, no pid file", () => {
  const config = stunnelConfig({
    pskSecretsPath: "/run/x/psk.txt",
    hostname: "0.0.0.0",
    port: 8884,
    targetPort: 18884,
  });
  const lines = config.split("\n");
  for (
    const expected of [
      "foreground = yes",
      "syslog = no",
      "debug = notice",
      "pid = ",
      "accept = 0.0.0.0:8884",
      "connect = 127.0.0.1:18884",
      "protocol = proxy",
      "sslVersionMin = TLSv1.2",
      "ciphers = PSK",
      "ciphersuites = TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256",
      "PSKsecrets = /run/x/psk.txt",
    ]
  ) assert.ok(lines.includes(expected), expected);
  assert.doesNotMatch(config, /setuid|setgid|chroot|\bcert\b/);
  assert.throws(
    () =>
      stunnelConfig({ pskSecretsPath: "a\nexec = /bin/sh", hostname: "h", port: 1, targetPort: 2 }),
    TypeError,
  );
  assert.throws(
    () => stunnelConfig({ pskSecretsPath: "a", hostname: "h", port: 70000, targetPort: 2 }),
    RangeError,
  );
});

Deno.test("mosquitto_pub over TLS 1.2 PSK reaches the listener with a PROXY header naming the client", async () => {
  await using t = await setup();
  const result = await run("mosquitto_pub", [
    ...pskArgs(t.sidecar.port, "tlsv1.2"),
    "-t",
    "t",
    "-m",
    "x",
  ], {
    OPENSSL_CONF: t.tls12Conf,
  });
  assert.equal(result.code, 0, result.stderr);
  await t.listener.close(); // waits for the connection to end
  assert.deepEqual(t.listener.payloads, ["x"]);
  assert.equal(t.listener.remotes.length, 1);
  const remote = t.listener.remotes[0];
  assert.equal(remote.hostname, "127.0.0.1");
  assert.equal(remote.transport, "psk");
  // The real client's ephemeral port, as stunnel saw it: not stunnel's own outgoing port.
  assert.ok(remote.port > 0 && remote.port !== t.sidecar.port);
  assert.deepEqual(acceptedPorts(t.log), [remote.port]);
  assert.ok(t.log.some((l) => /TLSv1\.2 ciphersuite: \S*PSK/.test(l)), t.log.join("\n"));
});

Deno.test("mosquitto_pub and mosquitto_sub over TLS 1.3 PSK", async () => {
  await using t = await setup();
  const pub = await run("mosquitto_pub", [
    ...pskArgs(t.sidecar.port, "tlsv1.3"),
    "-t",
    "t",
    "-m",
    "y",
  ]);
  assert.equal(pub.code, 0, pub.stderr);
  const sub = await run("mosquitto_sub", [
    ...pskArgs(t.sidecar.port, "tlsv1.3"),
    "-t",
    "t/#",
    "-C",
    "1",
  ]);
  assert.equal(sub.code, 0, sub.stderr);
  assert.equal(sub.stdout.trim(), "from-broker");
  await t.listener.close();
  assert.deepEqual(t.listener.payloads, ["y"]);
  assert.equal(t.listener.connects, 2);
  assert.deepEqual(acceptedPorts(t.log), t.listener.remotes.map((r) => r.port));
  assert.equal(t.log.filter((l) => /TLSv1\.3 ciphersuite: TLS_\w+_SHA256/.test(l)).length, 2);
});

Deno.test("a wrong key or an unknown identity is refused before anything reaches the broker", async () => {
  await using t = await setup();
  for (
    const [key, identity, tls] of [
      [OTHER_KEY, IDENTITY, "tlsv1.3"],
      [OTHER_KEY, IDENTITY, "tlsv1.2"],
      [KEY, "nobody", "tlsv1.3"],
      [KEY, "nobody", "tlsv1.2"],
    ] as const
  ) {
    const env: Record<string, string> = tls === "tlsv1.2" ? { OPENSSL_CONF: t.tls12Conf } : {};
    const result = await run(
      "mosquitto_pub",
      [...pskArgs(t.sidecar.port, tls, key, identity), "-t", "t", "-m", "z"],
      env,
    );
    assert.notEqual(result.code, 0, `${identity} ${tls}: ${result.stdout}`);
  }
  await t.listener.close();
  assert.equal(t.listener.accepted, 0);
  assert.equal(t.listener.connects, 0);
  // stunnel logs a failed handshake after the client has gone: its last line may still be coming.
  const failed = () => t.log.filter((l) => /^error: SSL_accept/.test(l)).length;
  for (const deadline = Date.now() + 5_000; failed() < 4 && Date.now() < deadline;) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.equal(failed(), 4, t.log.join("\n"));
});

Deno.test("the sidecar writes nothing to disk: stunnel gets its config on stdin; stop() ends it", async () => {
  const before = await stunnelTempDirs();
  await using t = await setup();
  const { sidecar } = t;
  assert.deepEqual(await stunnelTempDirs(), before, "no temporary directory");
  const pid = sidecar.pid;
  // Through ps: reading /proc/PID/cmdline would need --allow-all.
  const ps = await run("ps", ["-o", "args=", "-p", String(pid)]);
  assert.match(ps.stdout.trim(), /stunnel -fd 0$/);
  assert.equal(await alive(pid), true);
  // Start-up probes are not logged as failed handshakes.
  assert.ok(!t.log.some((l) => l.startsWith("error:")), t.log.join("\n"));
  await sidecar.stop();
  assert.equal(await alive(pid), false);
  await sidecar.stop(); // idempotent
  await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: sidecar.port }));
});

Deno.test("onExit fires when stunnel is killed from outside, not on stop()", async () => {
  const exits: Deno.CommandStatus[] = [];
  const exited = Promise.withResolvers<void>();
  const dir = await Deno.makeTempDir({ prefix: "psk-sidecar-test-" });
  await Deno.writeTextFile(`${dir}/psk.txt`, `${IDENTITY}:${KEY}\n`);
  const log: string[] = [];
  const options = {
    pskFile: `${dir}/psk.txt`,
    hostname: "127.0.0.1",
    port: 0,
    targetPort: 9, // never reached
    log: (level: string, message: string) => log.push(`${level}: ${message}`),
    onExit: (status: Deno.CommandStatus) => {
      exits.push(status);
      exited.resolve();
    },
  };
  try {
    const killed = await PskSidecar.start(options);
    Deno.kill(killed.pid, "SIGKILL");
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      exited.promise,
      new Promise((_, reject) => timer = setTimeout(() => reject(new Error("no onExit")), 10_000)),
    ]).finally(() => clearTimeout(timer));
    assert.equal(exits.length, 1);
    assert.equal(exits[0].signal, "SIGKILL");
    assert.ok(log.some((l) => /^error: stunnel exited on its own/.test(l)));
    await killed.stop();

    const stopped = await PskSidecar.start(options);
    await stopped.stop();
    assert.equal(exits.length, 1, "stop() does not call onExit");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function stunnelTempDirs(): Promise<string[]> {
  const tmp = Deno.env.get("TMPDIR") ?? "/tmp";
  const names: string[] = [];
  for await (const e of Deno.readDir(tmp)) {
    if (e.name.startsWith("denomq-stunnel-")) names.push(e.name);
  }
  return names.sort();
}

Deno.test("start() refuses a missing binary with the install hint, a bad PSK file with its line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "psk-sidecar-test-" });
  try {
    const good = `${dir}/good.txt`;
    await Deno.writeTextFile(good, `${IDENTITY}:${KEY}\n`);
    const before = await stunnelTempDirs();
    await assert.rejects(
      PskSidecar.start({
        pskFile: good,
        hostname: "127.0.0.1",
        port: 0,
        targetPort: 9,
        stunnel: `${dir}/no-such-stunnel`,
      }),
      /not found\. Install stunnel \(Debian\/Ubuntu: apt-get install stunnel4\)/,
    );
    assert.deepEqual(await stunnelTempDirs(), before, "no temp dir left behind");

    const bad = `${dir}/bad.txt`;
    await Deno.writeTextFile(bad, `${IDENTITY}:${KEY}\nshort:0011\n`);
    await assert.rejects(
      PskSidecar.start({ pskFile: bad, hostname: "127.0.0.1", port: 0, targetPort: 9 }),
      (e: Error) => {
        assert.equal(
          e.message,
          `Cannot read ${bad}: line 2: key of "short" is 2 bytes; at least 16 bytes (32 hex digits) are required`,
        );
        return true;
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("start() fails with stunnel's own error when it exits during start", async () => {
  const dir = await Deno.makeTempDir({ prefix: "psk-sidecar-test-" });
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    await Deno.writeTextFile(`${dir}/psk.txt`, `${IDENTITY}:${KEY}\n`);
    const before = await stunnelTempDirs();
    await assert.rejects(
      PskSidecar.start({
        pskFile: `${dir}/psk.txt`,
        hostname: "127.0.0.1",
        port: taken.addr.port,
        targetPort: 9,
        log: () => {},
      }),
      /stunnel exited during start \(code \d+\):[^]*Address already in use/,
    );
    assert.deepEqual(await stunnelTempDirs(), before, "no temp dir left behind");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
