/**
 * Several listeners, each with its own address, port, protocol, TLS and (with per-listener
 * settings) its own authentication and ACL: the shape the JSON config's `listeners` array, the
 * mosquitto.conf reader and the API share, and the check that turns untrusted JSON into it.
 *
 * Pure: no I/O. Starting listeners is `startListeners()` in `listen.ts`.
 *
 * @module
 */
import { isAbsolute, resolve } from "node:path";

/** Per-listener authentication (mosquitto's `per_listener_settings true`). */
export interface ListenerAuthConfig {
  /** A mosquitto password file. */
  passwordFile?: string;
  /** A mosquitto ACL file. */
  aclFile?: string;
  /** Whether clients without a user name may connect (mosquitto 2.0 default: false). */
  allowAnonymous?: boolean;
}

/** TLS of one listener (`Deno.listenTls`). */
export interface ListenerTlsConfig {
  /** PEM certificate chain. */
  certFile: string;
  /** PEM private key. */
  keyFile: string;
  /** PEM CA certificate(s) client certificates must chain to (with `requireCertificate`). */
  caFile?: string;
  /**
   * Require a client certificate signed by `caFile` (mosquitto's `require_certificate true`);
   * served through Deno's `node:tls`, since `Deno.listenTls` cannot ask for one.
   */
  requireCertificate?: boolean;
}

/** One listener. */
export interface ListenerConfig {
  /** A name for logs and for `RemoteAddress.listener`; default `PROTOCOL HOST:PORT`. */
  name?: string;
  /** Address to bind. Default "0.0.0.0" ("::" with `socketDomain: "ipv6"`). */
  host?: string;
  /** Port; 0 picks a free one. */
  port: number;
  /** "mqtt" (default) or "websockets". */
  protocol?: "mqtt" | "websockets";
  /** "ipv4" or "ipv6": only decides the default `host`. */
  socketDomain?: "ipv4" | "ipv6";
  /** WebSocket path. Default "/mqtt". */
  wsPath?: string;
  /** Serve TLS (MQTT over TLS, or WebSocket over TLS). */
  tls?: ListenerTlsConfig;
  /** TLS-PSK through the stunnel sidecar: the `identity:hexkey` file. */
  pskFile?: string;
  /** Connections open at once on this listener; past it a new one is closed at once. */
  maxConnections?: number;
  /** Own authentication and ACL; without it the broker-wide settings apply. */
  auth?: ListenerAuthConfig;
}

/** A bad `listeners` entry; the message names the entry and the key. */
export class ListenerConfigError extends TypeError {
  /** The message names the entry and the key. */
  constructor(message: string) {
    super(message);
    this.name = "ListenerConfigError";
  }
}

const LISTENER_KEYS = new Set([
  "name",
  "host",
  "port",
  "protocol",
  "socketDomain",
  "wsPath",
  "tls",
  "pskFile",
  "maxConnections",
  "auth",
]);

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** The name a listener has in logs and in `RemoteAddress.listener`. */
export function listenerName(listener: ListenerConfig, index: number): string {
  if (listener.name !== undefined) return listener.name;
  const kind = listener.protocol === "websockets"
    ? (listener.tls ? "wss" : "ws")
    : listener.pskFile !== undefined
    ? "tls-psk"
    : listener.tls
    ? "tls"
    : "tcp";
  return `${kind}#${index}`;
}

/**
 * Checks a `listeners` array from JSON (the config file or the API) and returns it typed.
 *
 * @example
 * ```ts
 * import { parseListeners } from "./listeners.ts";
 *
 * const listeners = parseListeners([{ host: "127.0.0.1", port: 1883 }], "listeners");
 * console.log(listeners[0].port); // 1883
 * ```
 *
 * @param value The array.
 * @param where Names the array in error messages (e.g. "--config broker.json: listeners").
 * @param folder Relative file names (`tls.certFile`, `tls.keyFile`, `tls.caFile`, `pskFile`,
 * `auth.passwordFile`, `auth.aclFile`) are resolved against it: the config file's folder. Kept as
 * they are when omitted.
 * @throws {ListenerConfigError} naming the entry index and the key at fault.
 */
export function parseListeners(
  value: unknown,
  where = "listeners",
  folder?: string,
): ListenerConfig[] {
  const file = (name: string | undefined): string | undefined =>
    name === undefined || folder === undefined || isAbsolute(name) ? name : resolve(folder, name);
  if (!Array.isArray(value) || value.length === 0) {
    throw new ListenerConfigError(`${where}: expected a non-empty array of listener objects`);
  }
  const names = new Set<string>();
  return value.map((entry, i) => {
    const at = `${where}[${i}]`;
    if (!isObject(entry)) throw new ListenerConfigError(`${at}: expected an object`);
    for (const key of Object.keys(entry)) {
      if (!LISTENER_KEYS.has(key)) throw new ListenerConfigError(`${at}: unknown key "${key}"`);
    }
    const str = (key: string, object = entry, path = at): string | undefined => {
      const v = object[key];
      if (v === undefined) return undefined;
      if (typeof v !== "string" || v === "") {
        throw new ListenerConfigError(`${path}.${key}: expected a non-empty string`);
      }
      return v;
    };
    const port = entry.port;
    if (typeof port !== "number" || !Number.isInteger(port) || port < 0 || port > 65535) {
      throw new ListenerConfigError(`${at}.port: expected an integer from 0 to 65535`);
    }
    const protocol = str("protocol") ?? "mqtt";
    if (protocol !== "mqtt" && protocol !== "websockets") {
      throw new ListenerConfigError(`${at}.protocol: must be "mqtt" or "websockets"`);
    }
    const socketDomain = str("socketDomain");
    if (socketDomain !== undefined && socketDomain !== "ipv4" && socketDomain !== "ipv6") {
      throw new ListenerConfigError(`${at}.socketDomain: must be "ipv4" or "ipv6"`);
    }
    const wsPath = str("wsPath");
    if (wsPath !== undefined && !wsPath.startsWith("/")) {
      throw new ListenerConfigError(`${at}.wsPath: must start with "/"`);
    }
    let tls: ListenerTlsConfig | undefined;
    if (entry.tls !== undefined) {
      if (!isObject(entry.tls)) throw new ListenerConfigError(`${at}.tls: expected an object`);
      for (const key of Object.keys(entry.tls)) {
        if (!["certFile", "keyFile", "caFile", "requireCertificate"].includes(key)) {
          throw new ListenerConfigError(`${at}.tls: unknown key "${key}"`);
        }
      }
      const certFile = str("certFile", entry.tls, `${at}.tls`);
      const keyFile = str("keyFile", entry.tls, `${at}.tls`);
      if (certFile === undefined || keyFile === undefined) {
        throw new ListenerConfigError(`${at}.tls: needs both certFile and keyFile`);
      }
      tls = { certFile: file(certFile)!, keyFile: file(keyFile)! };
      const caFile = file(str("caFile", entry.tls, `${at}.tls`));
      const require = entry.tls.requireCertificate;
      if (require !== undefined && typeof require !== "boolean") {
        throw new ListenerConfigError(`${at}.tls.requireCertificate: expected true or false`);
      }
      if (require === true) {
        if (caFile === undefined) {
          throw new ListenerConfigError(`${at}.tls.requireCertificate: needs caFile`);
        }
        if (protocol === "websockets") {
          throw new ListenerConfigError(
            `${at}.tls.requireCertificate: not for websockets (Deno.serve cannot ask for one)`,
          );
        }
        tls.requireCertificate = true;
      }
      if (caFile !== undefined) tls.caFile = caFile;
    }
    const pskFile = file(str("pskFile"));
    if (pskFile !== undefined && (tls !== undefined || protocol === "websockets")) {
      throw new ListenerConfigError(`${at}.pskFile: a PSK listener is plain MQTT without tls`);
    }
    const maxConnections = entry.maxConnections;
    if (
      maxConnections !== undefined &&
      (typeof maxConnections !== "number" || !Number.isInteger(maxConnections) ||
        maxConnections < 1)
    ) {
      throw new ListenerConfigError(`${at}.maxConnections: expected a positive integer`);
    }
    let auth: ListenerAuthConfig | undefined;
    if (entry.auth !== undefined) {
      if (!isObject(entry.auth)) throw new ListenerConfigError(`${at}.auth: expected an object`);
      for (const key of Object.keys(entry.auth)) {
        if (key !== "passwordFile" && key !== "aclFile" && key !== "allowAnonymous") {
          throw new ListenerConfigError(`${at}.auth: unknown key "${key}"`);
        }
      }
      const allowAnonymous = entry.auth.allowAnonymous;
      if (allowAnonymous !== undefined && typeof allowAnonymous !== "boolean") {
        throw new ListenerConfigError(`${at}.auth.allowAnonymous: expected true or false`);
      }
      auth = {
        passwordFile: file(str("passwordFile", entry.auth, `${at}.auth`)),
        aclFile: file(str("aclFile", entry.auth, `${at}.auth`)),
        allowAnonymous,
      };
    }
    const listener: ListenerConfig = {
      name: str("name"),
      host: str("host"),
      port,
      protocol,
      socketDomain,
      wsPath,
      tls,
      pskFile,
      maxConnections: maxConnections as number | undefined,
      auth,
    };
    const name = listenerName(listener, i);
    if (names.has(name)) throw new ListenerConfigError(`${at}.name: "${name}" is used twice`);
    names.add(name);
    return listener;
  });
}
