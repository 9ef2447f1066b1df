/**
 * TLS-PSK towards a bridge's remote: Deno's TLS has no PSK, so an stunnel in client mode
 * listens on a loopback port, and each connection the bridge makes there goes out as TLS-PSK
 * to the remote (stunnel tries the addresses in order).
 *
 * stunnel reads the key from a file: it is written, mode 0600, in a fresh temporary directory
 * that is removed on `stop()`. Needs `--allow-run` of stunnel and `--allow-write`/`--allow-read`
 * of the temporary directory.
 *
 * @module
 */

/** Options of {@link startPskClient}. */
export interface PskClientOptions {
  identity: string;
  /** Hex. */
  key: string;
  addresses: readonly { host: string; port: number }[];
  stunnel?: string;
  log: (level: "info" | "warn" | "error", message: string) => void;
  startTimeoutMs?: number;
}

/** A running stunnel client. */
export interface PskClient {
  /** The loopback port to connect to. */
  readonly port: number;
  stop(): Promise<void>;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

function checkValue(name: string, value: string): void {
  if (value === "" || /[\r\n\0]/.test(value) || value !== value.trim()) {
    throw new TypeError(`bridge ${name} must be a single line without surrounding whitespace`);
  }
}

/** Starts stunnel in client mode; resolves once it listens. */
export async function startPskClient(options: PskClientOptions): Promise<PskClient> {
  checkValue("identity", options.identity);
  if (options.identity.includes(":")) throw new TypeError(`bridge_identity must not contain ":"`);
  for (const a of options.addresses) checkValue("address", a.host);
  const dir = await Deno.makeTempDir({ prefix: "denomq-bridge-psk-" });
  const secrets = `${dir}/psk.txt`;
  await Deno.writeTextFile(secrets, `${options.identity}:${options.key}\n`, { mode: 0o600 });
  const port = freePort();
  const config = [
    "foreground = yes",
    "syslog = no",
    "debug = notice",
    "pid = ",
    "",
    "[bridge-psk]",
    "client = yes",
    `accept = 127.0.0.1:${port}`,
    ...options.addresses.map((a) =>
      `connect = ${a.host.includes(":") ? `[${a.host}]` : a.host}:${a.port}`
    ),
    "failover = prio",
    "sslVersionMin = TLSv1.2",
    "ciphers = PSK",
    "ciphersuites = TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256",
    `PSKsecrets = ${secrets}`,
    `PSKidentity = ${options.identity}`,
    "TIMEOUTidle = 100000",
    "",
  ].join("\n");
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(options.stunnel ?? "stunnel", {
      args: ["-fd", "0"],
      stdin: "piped",
      stdout: "null",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw new Error(`bridge TLS-PSK: cannot start stunnel: ${(error as Error).message}`);
  }
  const writer = child.stdin.getWriter();
  writer.write(new TextEncoder().encode(config)).then(() => writer.close()).catch(() => {});
  let ready!: () => void;
  const started = new Promise<void>((resolve) => ready = resolve);
  const tail: string[] = [];
  const pump = (async () => {
    const decoder = new TextDecoderStream();
    let buffer = "";
    for await (const chunk of child.stderr.pipeThrough(decoder)) {
      buffer += chunk;
      let nl: number;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl).trim();
        buffer = buffer.slice(nl + 1);
        if (line === "") continue;
        tail.push(line);
        if (tail.length > 5) tail.shift();
        if (/Configuration successful/.test(line)) ready();
        const m = /LOG(\d)/.exec(line);
        const severity = m ? Number(m[1]) : 5;
        if (severity <= 3) options.log("error", line);
        else if (severity === 4) options.log("warn", line);
      }
    }
  })().catch(() => {});
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const outcome = await Promise.race([
    started.then(() => "ok" as const),
    status.then(() => "exited" as const),
    new Promise<"timeout">((resolve) =>
      timer = setTimeout(() => resolve("timeout"), options.startTimeoutMs ?? 10_000)
    ),
  ]);
  clearTimeout(timer);
  const stop = async () => {
    if (!exited) {
      try {
        child.kill("SIGTERM");
      } catch {
        // Gone already.
      }
    }
    await status;
    await pump;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  if (outcome !== "ok") {
    await stop();
    throw new Error(`bridge TLS-PSK: stunnel did not start: ${tail.join(" / ")}`);
  }
  return { port, stop };
}
