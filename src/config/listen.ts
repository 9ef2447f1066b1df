/**
 * Starts a list of {@link ListenerConfig}s on a broker, and builds the deciding hooks for
 * per-listener authentication: each connection carries the name of the listener it came in on
 * (`client.remoteAddress.listener`, set by `broker.listen({ name })`), and the hooks pick that
 * listener's password file and ACL.
 *
 * @module
 */
import type { Broker } from "../broker.ts";
import { FileAuth, type ReloadResult } from "../auth/file_auth.ts";
import type {
  AuthenticateHook,
  AuthorizeForwardHook,
  AuthorizePublishHook,
  AuthorizeSubscribeHook,
  ClientInfo,
} from "../hooks.ts";
import type { Logger } from "../logger.ts";
import { acceptProxied } from "../transport/proxy_protocol.ts";
import { loadPskFile } from "../transport/psk_file.ts";
import { PskSidecar, type PskSidecarOptions } from "../transport/psk_sidecar.ts";
import type { BrokerConn } from "../transport/types.ts";
import { createWebSocketHandler } from "../transport/websocket.ts";
import { listenMutualTls } from "../transport/mutual_tls.ts";
import { type ListenerAuthConfig, type ListenerConfig, listenerName } from "./listeners.ts";

/** The transport name of a bridge's own connection into its broker. */
export const BRIDGE_TRANSPORT = "bridge";

/** The four deciding hooks, ready for `new Broker()`. */
export interface AuthHooks {
  /** CONNECT. */
  authenticate: AuthenticateHook;
  /** PUBLISH. */
  authorizePublish: AuthorizePublishHook;
  /** SUBSCRIBE. */
  authorizeSubscribe: AuthorizeSubscribeHook;
  /** Each delivery. */
  authorizeForward: AuthorizeForwardHook;
}

/** Hooks for every listener, reloadable together (SIGHUP). */
export interface ListenerAuth {
  /** undefined when nothing is checked anywhere (every client allowed). */
  hooks: AuthHooks | undefined;
  /** Re-reads every file; all or nothing. */
  reload(): Promise<ReloadResult>;
  /** Whether any password or ACL file is in use (for the SIGHUP log line). */
  readonly hasFiles: boolean;
}

function isBridge(client: ClientInfo): boolean {
  return client.remoteAddress?.transport === BRIDGE_TRANSPORT;
}

async function loadOne(auth: ListenerAuthConfig, where: string): Promise<FileAuth> {
  try {
    return await FileAuth.load(auth);
  } catch (error) {
    throw new Error(`${where}: ${error instanceof Error ? error.message : error}`);
  }
}

/**
 * Builds the hooks: listeners with their own `auth` use it; the others, and connections without
 * a listener name, use `global`. A bridge's own connection into the broker is authenticated (it
 * is the broker's) and gets the global ACL under its `localUsername`.
 *
 * @param global Broker-wide settings (undefined: none).
 * @param listeners The listeners, with their optional `auth`.
 * @throws {Error} naming the listener and the file that could not be read.
 */
export async function loadListenerAuth(
  global: ListenerAuthConfig | undefined,
  listeners: readonly ListenerConfig[],
): Promise<ListenerAuth> {
  const has = (a: ListenerAuthConfig | undefined) =>
    a !== undefined &&
    (a.passwordFile !== undefined || a.aclFile !== undefined || a.allowAnonymous === false);
  const byListener = new Map<string, FileAuth>();
  for (const [i, l] of listeners.entries()) {
    if (l.auth === undefined) continue;
    const name = listenerName(l, i);
    byListener.set(name, await loadOne(l.auth, `listener ${name}`));
  }
  const globalAuth = has(global) ? await loadOne(global!, "broker-wide settings") : undefined;
  const hasFiles = [global, ...listeners.map((l) => l.auth)].some((a) =>
    a?.passwordFile !== undefined || a?.aclFile !== undefined
  );
  if (globalAuth === undefined && byListener.size === 0) {
    return { hooks: undefined, reload: () => Promise.resolve({ ok: true }), hasFiles };
  }
  const pick = (client: ClientInfo): FileAuth | undefined => {
    const name = client.remoteAddress?.listener;
    return (name === undefined ? undefined : byListener.get(name)) ?? globalAuth;
  };
  const hooks: AuthHooks = {
    authenticate: (request) => {
      if (isBridge(request)) return true;
      return pick(request)?.authenticate(request) ?? true;
    },
    authorizePublish: (client, topic, qos, retain) => {
      const auth = isBridge(client) ? globalAuth : pick(client);
      return auth?.authorizePublish(client, topic, qos, retain) ?? true;
    },
    authorizeSubscribe: (client, filter, qos) => {
      const auth = isBridge(client) ? globalAuth : pick(client);
      return auth?.authorizeSubscribe(client, filter, qos) ?? true;
    },
    authorizeForward: (client, topic) => {
      const auth = isBridge(client) ? globalAuth : pick(client);
      return auth?.authorizeForward(client, topic) ?? true;
    },
  };
  const all = [...byListener.values(), ...(globalAuth ? [globalAuth] : [])];
  return {
    hooks,
    hasFiles,
    // FileAuth.reload is all or nothing per file set; one that fails keeps its old rules.
    reload: async () => {
      const results = await Promise.all(all.map((a) => a.reload()));
      const bad = results.find((r) => !r.ok);
      return bad ?? { ok: true };
    },
  };
}

/** Something to stop at shutdown. */
export type Stopper = () => Promise<void> | void;

/** What {@link startListeners} needs besides the listeners. */
export interface StartListenersOptions {
  /** Where listeners log. */
  log: Logger;
  /** Each started listener adds its stop function here (stopped in reverse order). */
  stoppers: Stopper[];
  /** Called when a listener cannot go on (stunnel keeps dying): the broker should exit. */
  fail: (reason: string) => void;
  /** The stunnel binary for TLS-PSK listeners. Default "stunnel". */
  stunnel?: string;
  /** stunnel's per-connection lines too. */
  debug?: boolean;
  /** Reads a PEM file (default Deno.readTextFileSync). */
  readTextFile?: (path: string) => string;
  /**
   * The broker-wide settings that apply to a listener without `auth` of its own. A listener that
   * lets anonymous clients in on an address other hosts can reach gets a warning. Default none:
   * anonymous clients allowed.
   */
  globalAuth?: ListenerAuthConfig;
}

/** Whether clients without a user name get in under these settings, as FileAuth decides. */
export function anonymousAllowed(auth: ListenerAuthConfig | undefined): boolean {
  if (auth === undefined) return true;
  return auth.passwordFile === undefined
    ? auth.allowAnonymous !== false
    : auth.allowAnonymous === true;
}

const SIDECAR_RESTARTS = 3;
const SIDECAR_WINDOW_MS = 60_000;

function errorText(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split("\n")[0];
}

/** Whether a host name or address is this machine's loopback (others cannot reach it). */
export function isLoopbackHost(host: string): boolean {
  return host.startsWith("127.") || host === "::1" || host === "::ffff:127.0.0.1" ||
    host === "localhost";
}

function isLoopback(addr: Deno.Addr | undefined): boolean {
  return isLoopbackHost((addr as Deno.NetAddr | undefined)?.hostname ?? "");
}

/**
 * Starts every listener. Files are read and checked first, so a bad one is reported before any
 * port is taken. Needs `--allow-net`, `--allow-read` of TLS and PSK files, and `--allow-run` of
 * stunnel for TLS-PSK listeners.
 *
 * @throws {Error} naming the listener: a file that cannot be read, a port in use, stunnel failing.
 */
export async function startListeners(
  broker: Broker,
  listeners: readonly ListenerConfig[],
  options: StartListenersOptions,
): Promise<void> {
  const read = options.readTextFile ?? ((path: string) => Deno.readTextFileSync(path));
  const { log, stoppers } = options;
  const tlsOf = listeners.map((l, i) => {
    if (l.tls === undefined) return undefined;
    const name = listenerName(l, i);
    try {
      return {
        cert: read(l.tls.certFile),
        key: read(l.tls.keyFile),
        ca: l.tls.requireCertificate && l.tls.caFile !== undefined ? read(l.tls.caFile) : undefined,
      };
    } catch (error) {
      throw new Error(`listener ${name}: ${errorText(error)}`);
    }
  });
  for (const [i, l] of listeners.entries()) {
    if (l.pskFile === undefined) continue;
    try {
      await loadPskFile(l.pskFile);
    } catch (error) {
      throw new Error(`listener ${listenerName(l, i)}: psk_file ${l.pskFile}: ${errorText(error)}`);
    }
  }
  for (const [i, l] of listeners.entries()) {
    const name = listenerName(l, i);
    const host = l.host ?? (l.socketDomain === "ipv6" ? "::" : "0.0.0.0");
    const tls = tlsOf[i];
    try {
      if (l.protocol === "websockets") {
        const path = l.wsPath ?? "/mqtt";
        const transport = tls ? "wss" : "ws";
        let open = 0;
        const max = l.maxConnections ?? Infinity;
        const handler = createWebSocketHandler({
          handle: (conn: BrokerConn) => {
            if (open >= max) {
              try {
                conn.close();
              } catch {
                // Closed already.
              }
              return Promise.resolve();
            }
            open++;
            return broker.handle(conn, transport, name).finally(() => open--);
          },
        }, { path, transport, maxInboundBytes: 2 * broker.limits.maxPacketSize });
        const server = Deno.serve({
          hostname: host,
          port: l.port,
          ...(tls === undefined ? {} : { cert: tls.cert, key: tls.key }),
          onListen: (addr) =>
            log.info(
              `listening on ${transport} ${addr.hostname}:${addr.port}${path} (listener ${name})`,
            ),
        }, handler);
        stoppers.push(() => server.shutdown());
      } else if (l.pskFile !== undefined) {
        await startPsk(broker, l, name, host, options);
      } else if (tls?.ca !== undefined) {
        // Client certificates: Deno.listenTls cannot ask for them, node:tls can.
        let open = 0;
        const max = l.maxConnections ?? Infinity;
        const server = await listenMutualTls({
          hostname: host,
          port: l.port,
          cert: tls.cert,
          key: tls.key,
          ca: tls.ca,
          onConnection: (conn) => {
            if (open >= max) return conn.close();
            open++;
            broker.handle(conn, "tls", name).finally(() => open--);
          },
          onRefused: (reason) => log.info(`listener ${name}: refused a TLS client: ${reason}`),
        });
        stoppers.push(() => server.close());
        log.info(
          `listening on tls ${server.hostname}:${server.port} (listener ${name}, client ` +
            "certificates required)",
        );
      } else {
        const listener = await broker.listen({
          hostname: host,
          port: l.port,
          tls: tls === undefined ? undefined : { cert: tls.cert, key: tls.key },
          name,
          maxConnections: l.maxConnections,
        });
        stoppers.push(() => listener.close());
      }
    } catch (error) {
      throw new Error(`listener ${name} (${host}:${l.port}): ${errorText(error)}`);
    }
    if (!isLoopbackHost(host) && anonymousAllowed(l.auth ?? options.globalAuth)) {
      log.warn(
        `listener ${name}: anonymous clients are allowed on ${host}:${l.port}, which other hosts ` +
          "can reach: set password_file (and allow_anonymous false) to require a user name",
      );
    }
  }
}

async function startPsk(
  broker: Broker,
  l: ListenerConfig,
  name: string,
  host: string,
  options: StartListenersOptions,
): Promise<void> {
  const { log, stoppers, fail } = options;
  // The sidecar's only way in: loopback, and every connection must start with a PROXY header.
  const inner = await broker.listen({
    hostname: "127.0.0.1",
    port: 0,
    transport: "psk",
    name,
    maxConnections: l.maxConnections,
    accept: (conn) => {
      if (!isLoopback(conn.remoteAddr)) {
        return Promise.reject(new Error("not from the PSK sidecar"));
      }
      return acceptProxied(conn, "psk");
    },
  });
  stoppers.push(() => inner.close());
  const sidecarOptions: PskSidecarOptions = {
    pskFile: l.pskFile!,
    hostname: host,
    port: l.port,
    targetPort: inner.port,
    stunnel: options.stunnel,
    debug: options.debug ? "info" : undefined,
    log: (level, message) => log[level](`stunnel: ${message}`),
  };
  let sidecar: PskSidecar | undefined;
  const deaths: number[] = [];
  let stopped = false;
  stoppers.push(() => {
    stopped = true;
    return sidecar?.stop();
  });
  // Never run on silently without PSK: restart stunnel, or exit non-zero when it keeps dying.
  const onExit = (status: Deno.CommandStatus): void => {
    if (stopped) return;
    const now = Date.now();
    deaths.push(now);
    while (deaths.length > 0 && now - deaths[0] > SIDECAR_WINDOW_MS) deaths.shift();
    if (deaths.length > SIDECAR_RESTARTS) {
      fail(`listener ${name}: stunnel exited ${deaths.length} times within 60 s`);
      return;
    }
    log.error(`listener ${name}: stunnel exited (code ${status.code}); restarting it`);
    PskSidecar.start({ ...sidecarOptions, onExit }).then((next) => {
      if (stopped) return next.stop();
      sidecar = next;
    }, (error) => fail(`listener ${name}: stunnel could not be restarted: ${errorText(error)}`));
  };
  sidecar = await PskSidecar.start({ ...sidecarOptions, onExit });
  sidecarOptions.port = sidecar.port;
  log.info(
    `listening on tls-psk ${host}:${sidecar.port} (stunnel pid ${sidecar.pid}) (listener ${name})`,
  );
}
