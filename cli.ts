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
 * `--mosquitto-conf FILE` needs `--allow-read` of FILE, its `include_dir`s and the files it names;
 * bridges need `--allow-net` to their remotes (TLS-PSK bridges: `--allow-run` of stunnel and
 * read/write of the temporary directory).
 *
 * @module
 */
import { Broker, createHttpHandler, loadTokenFile } from "./mod.ts";
import { FileAuth, fileAuthErrorOption } from "./src/auth/file_auth.ts";
import { type CliConfig, helpText, parseCliArgs, UsageError, VERSION } from "./src/cli_args.ts";
import {
  createLogger,
  flushLogs,
  formatAddress,
  type LogFormat,
  type Logger,
  type LogLevel,
  sinkFor,
} from "./src/logger.ts";
import { SqlitePersistence } from "./src/persistence/sqlite.ts";
import { acceptProxied } from "./src/transport/proxy_protocol.ts";
import { loadPskFile } from "./src/transport/psk_file.ts";
import { PskSidecar, type PskSidecarOptions } from "./src/transport/psk_sidecar.ts";
import { createWebSocketHandler } from "./src/transport/websocket.ts";
import {
  anonymousAllowed as anonymousAllowedBy,
  type AuthHooks,
  isLoopbackHost,
  loadListenerAuth,
  startListeners as startConfiguredListeners,
} from "./src/config/listen.ts";
import type { ListenerAuthConfig } from "./src/config/listeners.ts";
import type { ReloadResult } from "./src/auth/file_auth.ts";
import { passwd } from "./src/cli/passwd.ts";

/** The deciding hooks and their reload, from flags or from per-listener settings. */
type Auth = Partial<AuthHooks> & { reload(): Promise<ReloadResult> };

/** Something to stop at shutdown, in reverse order of starting. */
type Stopper = () => Promise<void> | void;

// stunnel dying this many times within the window makes the broker exit rather than run without PSK.
const SIDECAR_RESTARTS = 3;
const SIDECAR_WINDOW_MS = 60_000;

function errorText(error: unknown): string {
  return error instanceof Error ? error.message.split("\n")[0] : String(error).split("\n")[0];
}

function readFileFor(config: CliConfig, flag: string, path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch (error) {
    throw new UsageError(`${config.describe(flag, path)}: ${errorText(error)}`);
  }
}

/** The one line a refused certificate/key pair becomes, naming the flag at fault. */
function tlsErrorText(config: CliConfig, error: unknown): string {
  const text = errorText(error);
  const cert = config.describe("tls-cert", config.tlsCert);
  const key = config.describe("tls-key", config.tlsKey);
  if (/KeyMismatch|not be consistent/i.test(text)) {
    return `${key}: the private key does not match the certificate in ${cert}`;
  }
  if (/no certificates found/i.test(text)) return `${cert}: no PEM certificate in the file`;
  if (/no keys found/i.test(text)) return `${key}: no PEM private key in the file`;
  return `${cert} / ${key}: ${text}`;
}

function isLoopback(addr: Deno.Addr): boolean {
  return isLoopbackHost((addr as Deno.NetAddr).hostname ?? "");
}

/** The broker-wide authentication settings: a mosquitto.conf's, else the flags'. */
function globalAuth(config: CliConfig): ListenerAuthConfig {
  return config.auth ?? {
    passwordFile: config.passwordFile,
    aclFile: config.aclFile,
    allowAnonymous: config.allowAnonymous,
  };
}

/** Whether clients without a user name get in, as `FileAuth` decides it (the flags' settings). */
function anonymousAllowed(config: CliConfig): boolean {
  return anonymousAllowedBy({
    passwordFile: config.passwordFile,
    allowAnonymous: config.allowAnonymous,
  });
}

/**
 * Binds through `bind`, turning the errors an operator can fix into one line naming the flag:
 * an address in use (exit 1, a runtime condition) or a host that does not resolve (exit 2).
 */
async function bindFor<T>(
  config: CliConfig,
  portFlag: string,
  hostFlag: string,
  host: string,
  port: number,
  bind: () => T | Promise<T>,
): Promise<T> {
  try {
    return await bind();
  } catch (error) {
    const where = formatAddress(host, port);
    if (error instanceof Deno.errors.AddrInUse) {
      throw new Error(`${config.describe(portFlag, port)}: address ${where} is already in use`);
    }
    const hostLabel = config.describe(hostFlag, host);
    if (error instanceof Deno.errors.AddrNotAvailable) {
      throw new UsageError(`${hostLabel}: address not available on this machine (${where})`);
    }
    const text = errorText(error);
    if (/lookup|resolve|Name or service|nodename|getaddrinfo|No address/i.test(text)) {
      throw new UsageError(`${hostLabel}: cannot resolve the host name (${text})`);
    }
    throw error;
  }
}

/** The one start-up line per listener: address, transport, and whether anonymous clients get in. */
function logListener(
  log: Logger,
  config: CliConfig,
  transport: string,
  host: string,
  port: number,
  suffix = "",
): void {
  const anonymous = anonymousAllowed(config);
  log.info(
    `listening on ${transport} ${formatAddress(host, port)}${suffix} (anonymous clients ${
      anonymous ? "allowed" : "refused"
    })`,
  );
  if (anonymous && !isLoopbackHost(host)) {
    log.warn(
      `anonymous clients are allowed on ${transport} ${
        formatAddress(host, port)
      }, which other hosts can reach: add --password-file (and no --allow-anonymous) to require a user name`,
    );
  }
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
  const startup = holdLogLines(config.logLevel, config.logFormat);
  const log = startup.log;
  const stoppers: Stopper[] = [];
  let fail: (reason: string) => void = () => {};
  const fatal = new Promise<string>((resolve) => fail = resolve);
  let auth: Auth | undefined;
  try {
    for (const note of config.notes ?? []) log.info(`mosquitto.conf: ${note}`);
    if (config.listeners !== undefined) {
      let loaded;
      try {
        loaded = await loadListenerAuth(globalAuth(config), config.listeners);
      } catch (error) {
        throw new UsageError(errorText(error));
      }
      if (loaded.hooks !== undefined || loaded.hasFiles) auth = { ...loaded.hooks, ...loaded };
    } else {
      auth = await loadAuth(config);
    }
    const broker = await startBroker(config, log, auth, stoppers);
    if (config.listeners !== undefined) {
      const token = await loadHttpToken(config);
      try {
        await startConfiguredListeners(broker, config.listeners, {
          log,
          stoppers,
          fail: (reason) => fail(reason),
          stunnel: config.stunnel,
          debug: config.logLevel === "debug",
          globalAuth: globalAuth(config),
        });
      } catch (error) {
        if (error instanceof Deno.errors.AddrInUse) throw error;
        throw new UsageError(errorText(error));
      }
      if (config.httpPort !== undefined) (await startHttp(config, log, broker, stoppers, token))();
    } else {
      await startListeners(config, log, broker, stoppers, (reason) => fail(reason));
    }
    if (config.bridges !== undefined) {
      // Loaded only when a bridge is configured: the MQTT client stays out of everything else.
      const { startBridges } = await import("./src/bridge/bridge.ts");
      const bridges = await startBridges(broker, config.bridges, { log });
      stoppers.push(() => bridges.close());
    }
  } catch (error) {
    startup.drop();
    await stopAll(stoppers, log);
    // A log collector reading JSON lines gets the reason as one of them too.
    if (config.logFormat === "json") {
      console.error(JSON.stringify({
        time: new Date().toISOString(),
        level: "error",
        msg: errorText(error),
      }));
    } else {
      console.error(`error: ${errorText(error)}`);
    }
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

function holdLogLines(
  level: LogLevel,
  format: LogFormat,
): { log: Logger; release(): void; drop(): void } {
  const sink = sinkFor(format);
  let held: [Parameters<typeof sink>[0], string][] | undefined = [];
  const log = createLogger(level, (l, message) => {
    if (held !== undefined) held.push([l, message]);
    else sink(l, message);
  });
  return {
    log,
    release() {
      const lines = held ?? [];
      held = undefined;
      for (const [l, message] of lines) sink(l, message);
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
    // The error says which file it is about; the flag (or config key) is that file's.
    const flag = config.describe(
      fileAuthErrorOption(error) === "aclFile" ? "acl-file" : "password-file",
    );
    throw new UsageError(`${flag}: ${errorText(error)}`);
  }
}

async function startBroker(
  config: CliConfig,
  log: Logger,
  auth: Partial<AuthHooks> | undefined,
  stoppers: Stopper[],
): Promise<Broker> {
  // The cluster's files are checked first: a bad one is a usage error naming its flag.
  if (config.cluster?.credsFile !== undefined) {
    readFileFor(config, "cluster-creds", config.cluster.credsFile);
  }
  if (config.cluster?.tlsCaFile !== undefined) {
    readFileFor(config, "cluster-tls-ca", config.cluster.tlsCaFile);
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
    logConnections: config.logConnections ?? true,
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
    throw new UsageError(`${config.describe("data-dir", config.dataDir)}: ${errorText(error)}`);
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
  const readyHooks: (() => void)[] = [];
  // Files first: a bad one is reported before any port is taken.
  let tls: { cert: string; key: string } | undefined;
  if (config.tlsCert !== undefined && config.tlsKey !== undefined) {
    tls = {
      cert: readFileFor(config, "tls-cert", config.tlsCert),
      key: readFileFor(config, "tls-key", config.tlsKey),
    };
  }
  if (config.pskFile !== undefined) {
    try {
      await loadPskFile(config.pskFile);
    } catch (error) {
      throw new UsageError(`${config.describe("psk-file", config.pskFile)}: ${errorText(error)}`);
    }
  }
  const token = await loadHttpToken(config);
  if (tls !== undefined) {
    const listener = await bindFor(config, "tls-port", "host", host, config.tlsPort, async () => {
      try {
        return await broker.listen({ hostname: host, port: config.tlsPort, tls, log: false });
      } catch (error) {
        if (
          error instanceof Deno.errors.AddrInUse || error instanceof Deno.errors.AddrNotAvailable ||
          /lookup|resolve/i.test(errorText(error))
        ) throw error;
        throw new UsageError(tlsErrorText(config, error));
      }
    });
    logListener(log, config, "tls", listener.hostname, listener.port);
  }
  if (config.tcp) {
    const listener = await bindFor(
      config,
      "port",
      "host",
      host,
      config.port,
      () =>
        broker.listen({
          hostname: host,
          port: config.port,
          log: false,
          reusePort: config.reusePort,
        }),
    );
    logListener(log, config, "tcp", listener.hostname, listener.port);
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
    const server = await bindFor(
      config,
      secure ? "wss-port" : "ws-port",
      "host",
      host,
      port,
      () =>
        Deno.serve({
          hostname: host,
          port,
          ...(secure ? tls : {}),
          onListen: (addr) =>
            logListener(log, config, transport, addr.hostname, addr.port, config.wsPath),
        }, handler),
    );
    stoppers.push(() => server.shutdown());
  }
  // Ready once everything below is bound too; see the end of this function.
  if (config.httpPort !== undefined) {
    readyHooks.push(await startHttp(config, log, broker, stoppers, token));
  }
  if (config.pskFile !== undefined) {
    // The sidecar's only way in: loopback, and every connection must start with a PROXY header.
    const inner = await broker.listen({
      hostname: "127.0.0.1",
      port: 0,
      transport: "psk",
      log: false,
      accept: (conn) => {
        if (!isLoopback(conn.remoteAddr)) {
          return Promise.reject(new Error("not from the PSK sidecar"));
        }
        return acceptProxied(conn, "psk");
      },
    });
    log.info(
      `listening on psk ${
        formatAddress(inner.hostname, inner.port)
      } (loopback only: the stunnel sidecar's way in, PROXY protocol)`,
    );
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
        ? config.describe("stunnel", config.stunnel)
        : /Address already in use/.test(errorText(error))
        ? config.describe("psk-port", config.pskPort)
        : config.describe("psk-file", config.pskFile);
      throw new UsageError(`${flag}: ${errorText(error)}`);
    }
    // A restart takes the same port, also when port 0 had stunnel pick one.
    options.port = sidecar.port;
    logListener(log, config, "tls-psk", host, sidecar.port, ` (stunnel pid ${sidecar.pid})`);
  }
  for (const hook of readyHooks) hook();
}

/** The bearer token of the admin API, read before any port is taken. */
async function loadHttpToken(config: CliConfig): Promise<string | undefined> {
  if (config.httpTokenFile === undefined) return undefined;
  try {
    return await loadTokenFile(config.httpTokenFile);
  } catch (error) {
    // The message names the file already when it is about the file's mode or contents.
    const text = errorText(error).replace(`${config.httpTokenFile}: `, "");
    throw new UsageError(`${config.describe("http-token-file", config.httpTokenFile)}: ${text}`);
  }
}

/**
 * The HTTP side (`--http-port`): metrics, health, admin API, status page. Returns the function
 * that marks the broker ready (/readyz) once every other listener is bound too.
 */
async function startHttp(
  config: CliConfig,
  log: Logger,
  broker: Broker,
  stoppers: Stopper[],
  token: string | undefined,
): Promise<() => void> {
  let bound = false;
  const handler = createHttpHandler(broker, {
    token,
    webSocket: config.httpWs ? { path: config.wsPath, transport: "ws" } : undefined,
    config: publicConfig(config),
    ready: () => bound || "starting",
  });
  stoppers.push(() => handler.close());
  const httpHost = config.httpHost;
  const httpPort = config.httpPort!;
  const server = await bindFor(
    config,
    "http-port",
    "http-host",
    httpHost,
    httpPort,
    () =>
      Deno.serve({
        hostname: httpHost,
        port: httpPort,
        onListen: (addr) => {
          const where = formatAddress(addr.hostname, addr.port);
          log.info(
            `listening on http ${where} (metrics, health, status page; admin API ${
              token === undefined ? "off: no --http-token-file" : "with bearer token"
            })`,
          );
          if (!isLoopbackHost(addr.hostname)) {
            log.warn(
              `http ${where}: metrics, health and the status page are served without a token ` +
                "to anyone who can reach this address",
            );
          }
          if (config.httpWs) {
            logListener(log, config, "ws", addr.hostname, addr.port, config.wsPath);
          }
        },
      }, handler),
  );
  stoppers.push(() => server.shutdown());
  return () => bound = true;
}

/** What `GET /api/v1/config` shows: the flags in force (file paths, never file contents). */
function publicConfig(config: CliConfig): Record<string, unknown> {
  const { limits: _limits, describe: _describe, ...rest } = config;
  return { ...rest, anonymousAllowed: anonymousAllowed(config) };
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

if (import.meta.main) {
  const code = await main(Deno.args);
  flushLogs();
  Deno.exit(code);
}
