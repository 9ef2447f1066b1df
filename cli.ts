/**
 * The broker as a program: `deno run --allow-net cli.ts [options]`. `--help` lists the options.
 *
 * Each feature asks only for the permission it needs: plain MQTT needs `--allow-net`; a password,
 * ACL, certificate or PSK file needs `--allow-read` of that file; the PSK sidecar needs
 * `--allow-run` of the stunnel binary and nothing else (its configuration goes to stunnel's stdin
 * and stunnel reads the PSK file itself); `--data-dir` needs `--allow-read` and `--allow-write`
 * of that folder; `passwd FILE USER` needs `--allow-read=FILE --allow-write=FILE`; `--cluster`
 * needs `--allow-net` of the NATS servers and `--allow-read` of a `--cluster-creds` or
 * `--cluster-tls-ca` file; `--reuse-port` needs `--unstable-net`.
 *
 * @module
 */
import { Broker } from "./mod.ts";
import { FileAuth, fileAuthErrorOption } from "./src/auth/file_auth.ts";
import { setPasswordInFile } from "./src/auth/password_file.ts";
import { type CliConfig, helpText, parseCliArgs, UsageError, VERSION } from "./src/cli_args.ts";
import { createLogger, flushLogs, type Logger, type LogLevel, stderrSink } from "./src/logger.ts";
import { SqlitePersistence } from "./src/persistence/sqlite.ts";
import { acceptProxied } from "./src/transport/proxy_protocol.ts";
import { loadPskFile } from "./src/transport/psk_file.ts";
import { PskSidecar, type PskSidecarOptions } from "./src/transport/psk_sidecar.ts";
import { createWebSocketHandler } from "./src/transport/websocket.ts";

/** Something to stop at shutdown, in reverse order of starting. */
type Stopper = () => Promise<void> | void;

// stunnel dying this many times within the window makes the broker exit rather than run without PSK.
const SIDECAR_RESTARTS = 3;
const SIDECAR_WINDOW_MS = 60_000;

function errorText(error: unknown): string {
  return error instanceof Error ? error.message.split("\n")[0] : String(error).split("\n")[0];
}

function readFileFor(flag: string, path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch (error) {
    throw new UsageError(`--${flag} ${path}: ${errorText(error)}`);
  }
}

/** The one line a refused certificate/key pair becomes, naming the flag at fault. */
function tlsErrorText(config: CliConfig, error: unknown): string {
  const text = errorText(error);
  const cert = `--tls-cert ${config.tlsCert}`;
  const key = `--tls-key ${config.tlsKey}`;
  if (/KeyMismatch|not be consistent/i.test(text)) {
    return `${key}: the private key does not match the certificate in ${cert}`;
  }
  if (/no certificates found/i.test(text)) return `${cert}: no PEM certificate in the file`;
  if (/no keys found/i.test(text)) return `${key}: no PEM private key in the file`;
  return `${cert} / ${key}: ${text}`;
}

function isLoopback(addr: Deno.Addr): boolean {
  const host = (addr as Deno.NetAddr).hostname ?? "";
  return host.startsWith("127.") || host === "::1" || host === "::ffff:127.0.0.1";
}

/** Runs the broker until SIGINT or SIGTERM; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  if (args[0] === "passwd") return await passwd(args.slice(1));
  let config: ReturnType<typeof parseCliArgs>;
  try {
    config = parseCliArgs(args);
  } catch (error) {
    console.error(`error: ${errorText(error)} (see --help)`);
    return 2;
  }
  if (config.help) {
    console.log(helpText());
    return 0;
  }
  if (config.version) {
    console.log(`denomq ${VERSION} (deno ${Deno.version.deno})`);
    return 0;
  }
  // Until every listener is up, log lines are held: a start that fails prints its one error
  // line alone (it says what went wrong), not "listening on" lines for listeners that are
  // closed again at once, nor stunnel's own account of the failure.
  const startup = holdLogLines(config.logLevel);
  const log = startup.log;
  const stoppers: Stopper[] = [];
  let fail: (reason: string) => void = () => {};
  const fatal = new Promise<string>((resolve) => fail = resolve);
  let auth: FileAuth | undefined;
  try {
    auth = await loadAuth(config);
    const broker = await startBroker(config, log, auth, stoppers);
    await startListeners(config, log, broker, stoppers, (reason) => fail(reason));
  } catch (error) {
    startup.drop();
    await stopAll(stoppers, log);
    console.error(`error: ${errorText(error)}`);
    return error instanceof UsageError ? 2 : 1;
  }
  startup.release();
  // SIGHUP always has a listener: without one, Deno would end the process on it.
  const reload = auth === undefined
    ? () => log.info("SIGHUP: no password or ACL file to reload")
    : () => {
      auth!.reload().then((result) => {
        if (result.ok) log.info("SIGHUP: password and ACL files reloaded");
        else log.error(`SIGHUP: kept the previous rules: ${result.error}`);
      }).catch((error) => log.error(`SIGHUP: ${errorText(error)}`));
    };
  if (Deno.build.os !== "windows") Deno.addSignalListener("SIGHUP", reload);
  const signals = waitForSignals();
  const outcome = await Promise.race([signals.signal, fatal.then((reason) => ({ fatal: reason }))]);
  signals.remove();
  if (Deno.build.os !== "windows") Deno.removeSignalListener("SIGHUP", reload);
  if (typeof outcome === "string") log.info(`${outcome}: shutting down`);
  else log.error(`shutting down: ${outcome.fatal}`);
  await stopAll(stoppers, log);
  return typeof outcome === "string" ? 0 : 1;
}

function holdLogLines(level: LogLevel): { log: Logger; release(): void; drop(): void } {
  let held: [Parameters<typeof stderrSink>[0], string][] | undefined = [];
  const log = createLogger(level, (l, message) => {
    if (held !== undefined) held.push([l, message]);
    else stderrSink(l, message);
  });
  return {
    log,
    release() {
      const lines = held ?? [];
      held = undefined;
      for (const [l, message] of lines) stderrSink(l, message);
    },
    drop() {
      held = undefined;
    },
  };
}

async function loadAuth(config: CliConfig): Promise<FileAuth | undefined> {
  if (config.passwordFile === undefined && config.aclFile === undefined) {
    if (config.allowAnonymous === false) {
      return await FileAuth.load({ allowAnonymous: false });
    }
    return undefined;
  }
  try {
    return await FileAuth.load({
      passwordFile: config.passwordFile,
      aclFile: config.aclFile,
      allowAnonymous: config.allowAnonymous,
    });
  } catch (error) {
    // The error says which file it is about; the flag is that file's.
    const flag = fileAuthErrorOption(error) === "aclFile" ? "--acl-file" : "--password-file";
    throw new UsageError(`${flag}: ${errorText(error)}`);
  }
}

async function startBroker(
  config: CliConfig,
  log: Logger,
  auth: FileAuth | undefined,
  stoppers: Stopper[],
): Promise<Broker> {
  // The cluster's files are checked first: a bad one is a usage error naming its flag.
  if (config.cluster?.credsFile !== undefined) {
    readFileFor("cluster-creds", config.cluster.credsFile);
  }
  if (config.cluster?.tlsCaFile !== undefined) {
    readFileFor("cluster-tls-ca", config.cluster.tlsCaFile);
  }
  const persistence = config.dataDir === undefined ? undefined : new SqlitePersistence({
    dir: config.dataDir,
    sync: config.sync,
    log: (level, message) => log[level](`persistence: ${message}`),
  });
  const broker = new Broker({
    limits: config.limits,
    logger: log,
    sysIntervalMs: config.sysIntervalS * 1000,
    logConnections: true,
    persistence,
    cluster: config.cluster,
    responseInformation: config.responseInformation,
    authenticate: auth?.authenticate,
    authorizePublish: auth?.authorizePublish,
    authorizeSubscribe: auth?.authorizeSubscribe,
    authorizeForward: auth?.authorizeForward,
  });
  stoppers.push(() => broker.close());
  try {
    await broker.ready;
  } catch (error) {
    // NATS unreachable is not a usage error: one line naming the URL, exit 1.
    if (config.cluster !== undefined && (/NATS/.test(errorText(error)) || !config.dataDir)) {
      throw new Error(`--cluster: ${errorText(error)}`);
    }
    throw new UsageError(`--data-dir ${config.dataDir}: ${errorText(error)}`);
  }
  if (log.enabled("debug")) {
    broker.addEventListener("subscribe", ({ detail: { client, subscriptions, granted } }) => {
      const each = subscriptions.map((s, i) =>
        `${JSON.stringify(s.topicFilter)} (QoS ${s.qos}: ${
          granted[i] >= 0x80 ? `refused 0x${granted[i].toString(16)}` : `granted ${granted[i]}`
        })`
      );
      log.debug(`client ${JSON.stringify(client.clientId)} subscribed to ${each.join(", ")}`);
    });
  }
  return broker;
}

async function startListeners(
  config: CliConfig,
  log: Logger,
  broker: Broker,
  stoppers: Stopper[],
  fail: (reason: string) => void,
): Promise<void> {
  const host = config.host;
  // Files first: a bad one is reported before any port is taken.
  let tls: { cert: string; key: string } | undefined;
  if (config.tlsCert !== undefined && config.tlsKey !== undefined) {
    tls = {
      cert: readFileFor("tls-cert", config.tlsCert),
      key: readFileFor("tls-key", config.tlsKey),
    };
  }
  if (config.pskFile !== undefined) {
    try {
      await loadPskFile(config.pskFile);
    } catch (error) {
      throw new UsageError(`--psk-file ${config.pskFile}: ${errorText(error)}`);
    }
  }
  if (tls !== undefined) {
    try {
      await broker.listen({ hostname: host, port: config.tlsPort, tls });
    } catch (error) {
      if (error instanceof Deno.errors.AddrInUse) throw error;
      throw new UsageError(tlsErrorText(config, error));
    }
  }
  if (config.tcp) {
    await broker.listen({ hostname: host, port: config.port, reusePort: config.reusePort });
  }
  for (const [port, secure] of [[config.wsPort, false], [config.wssPort, true]] as const) {
    if (port === undefined) continue;
    const transport = secure ? "wss" : "ws";
    const handler = createWebSocketHandler(broker, {
      path: config.wsPath,
      transport,
      // A whole packet must fit in what the adapter buffers.
      maxInboundBytes: 2 * broker.limits.maxPacketSize,
    });
    const server = Deno.serve({
      hostname: host,
      port,
      ...(secure ? tls : {}),
      onListen: (addr) =>
        log.info(`listening on ${transport} ${addr.hostname}:${addr.port}${config.wsPath}`),
    }, handler);
    stoppers.push(() => server.shutdown());
  }
  if (config.pskFile !== undefined) {
    // The sidecar's only way in: loopback, and every connection must start with a PROXY header.
    const inner = await broker.listen({
      hostname: "127.0.0.1",
      port: 0,
      transport: "psk",
      accept: (conn) => {
        if (!isLoopback(conn.remoteAddr)) {
          return Promise.reject(new Error("not from the PSK sidecar"));
        }
        return acceptProxied(conn, "psk");
      },
    });
    const options: PskSidecarOptions = {
      pskFile: config.pskFile,
      hostname: host,
      port: config.pskPort,
      targetPort: inner.port,
      stunnel: config.stunnel,
      // At debug, stunnel's per-connection lines too (TLS version, cipher suite, addresses).
      debug: config.logLevel === "debug" ? "info" : undefined,
      log: (level: "info" | "warn" | "error", message: string) => log[level](`stunnel: ${message}`),
    };
    let sidecar: PskSidecar | undefined;
    const deaths: number[] = [];
    let stopped = false;
    stoppers.push(() => {
      stopped = true;
      return sidecar?.stop();
    });
    // Never run on silently without PSK: restart stunnel, or exit non-zero when it keeps dying.
    const onSidecarExit = (status: Deno.CommandStatus): void => {
      if (stopped) return;
      const now = Date.now();
      deaths.push(now);
      while (deaths.length > 0 && now - deaths[0] > SIDECAR_WINDOW_MS) deaths.shift();
      if (deaths.length > SIDECAR_RESTARTS) {
        fail(
          `stunnel exited ${deaths.length} times within ${
            SIDECAR_WINDOW_MS / 1000
          } s (last: code ${status.code})`,
        );
        return;
      }
      log.error(`stunnel exited (code ${status.code}, signal ${status.signal}); restarting it`);
      PskSidecar.start({ ...options, onExit: onSidecarExit }).then((next) => {
        if (stopped) return next.stop();
        sidecar = next;
        log.info(`stunnel restarted (pid ${next.pid})`);
      }, (error) => fail(`stunnel could not be restarted: ${errorText(error)}`));
    };
    try {
      sidecar = await PskSidecar.start({ ...options, onExit: onSidecarExit });
    } catch (error) {
      const flag = error instanceof Error && error.cause instanceof Deno.errors.NotFound ||
          error instanceof Deno.errors.NotCapable
        ? `--stunnel ${config.stunnel}`
        : /Address already in use/.test(errorText(error))
        ? `--psk-port ${config.pskPort}`
        : `--psk-file ${config.pskFile}`;
      throw new UsageError(`${flag}: ${errorText(error)}`);
    }
    // A restart takes the same port, also when port 0 had stunnel pick one.
    options.port = sidecar.port;
    log.info(`listening on tls-psk ${host}:${sidecar.port} (stunnel pid ${sidecar.pid})`);
  }
}

async function stopAll(stoppers: Stopper[], log: Logger): Promise<void> {
  for (const stop of stoppers.reverse()) {
    try {
      await stop();
    } catch (error) {
      log.error(`shutdown: ${errorText(error)}`);
    }
  }
  stoppers.length = 0;
}

function waitForSignals(): { signal: Promise<string>; remove(): void } {
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  const handlers: [Deno.Signal, () => void][] = [];
  const signal = new Promise<string>((resolve) => {
    for (const s of signals) {
      const handler = () => resolve(s);
      Deno.addSignalListener(s, handler);
      handlers.push([s, handler]);
    }
  });
  return {
    signal,
    remove: () => {
      for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
    },
  };
}

async function readPasswordLine(prompt: string): Promise<string> {
  const encoder = new TextEncoder();
  const stdin = Deno.stdin;
  const terminal = stdin.isTerminal();
  if (terminal) {
    Deno.stderr.writeSync(encoder.encode(prompt));
    stdin.setRaw(true);
  }
  const bytes: number[] = [];
  const buffer = new Uint8Array(1);
  try {
    for (;;) {
      const n = await stdin.read(buffer);
      if (n === null) break;
      const c = buffer[0];
      if (c === 10 || c === 13) break;
      if (terminal && c === 3) throw new UsageError("passwd: interrupted");
      if (terminal && (c === 127 || c === 8)) {
        bytes.pop();
        continue;
      }
      bytes.push(c);
    }
  } finally {
    if (terminal) {
      stdin.setRaw(false);
      Deno.stderr.writeSync(encoder.encode("\n"));
    }
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

/** `cli.ts passwd FILE USER`: adds or changes a user; the password comes from a prompt or stdin. */
async function passwd(args: string[]): Promise<number> {
  if (args.length !== 2 || args[0].startsWith("-") || args[1].startsWith("-")) {
    console.error(
      "error: usage: cli.ts passwd FILE USER (the password is read from the terminal or stdin)",
    );
    return 2;
  }
  const [file, user] = args;
  if (user.includes(":") || user === "") {
    console.error(`error: passwd: user name must be non-empty and must not contain ":"`);
    return 2;
  }
  try {
    const password = await readPasswordLine("Password: ");
    if (Deno.stdin.isTerminal() && (await readPasswordLine("Reenter password: ")) !== password) {
      console.error("error: passwd: the passwords do not match");
      return 2;
    }
    if (password === "") {
      console.error("error: passwd: empty password");
      return 2;
    }
    await setPasswordInFile(file, user, password);
  } catch (error) {
    console.error(`error: passwd ${file}: ${errorText(error)}`);
    return error instanceof UsageError ? 2 : 1;
  }
  return 0;
}

if (import.meta.main) {
  const code = await main(Deno.args);
  flushLogs();
  Deno.exit(code);
}
