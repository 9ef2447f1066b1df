/**
 * Reads mosquitto.conf as mosquitto 2.0 does (man mosquitto.conf(5), src/conf.c): one directive
 * per line, tokens separated by spaces, a line is a comment only when `#` is its first character,
 * no line continuations, `include_dir` reads the directory's `*.conf` files in sorted order.
 *
 * Every directive is supported, accepted and ignored (with a note saying why), or refused. An
 * unknown directive, a bad value, or a setting that would make the broker less secure if it
 * were ignored throws a {@link MosquittoConfError} naming file:line and the directive.
 *
 * The parser is pure: files are read through the `readTextFile`/`readDir` functions it is given.
 *
 * @module
 */
import type { QoS } from "../codec/packet.ts";
import type { LogLevel } from "../logger.ts";
import { type IntegerLimit, LIMIT_RANGES, type Limits } from "../options.ts";
import {
  type BridgeConfig,
  type BridgeTopic,
  checkBridge,
  checkBridgeTopic,
} from "../bridge/bridge_config.ts";
import type { ListenerAuthConfig, ListenerConfig } from "./listeners.ts";

/** Broker-wide settings from the file, in the terms of the CLI's JSON config. */
export interface MosquittoSettings {
  /** Limits from `max_*`, `message_size_limit`, `persistent_client_expiration`, `retain_available`. */
  limits: Partial<Limits>;
  /** `persistence true` + `persistence_location` (default: the current directory). */
  dataDir?: string;
  /** `sys_interval`. */
  sysIntervalS?: number;
  /** From `log_type` (the most verbose one) and `log_dest none`. */
  logLevel?: LogLevel;
  /** `connection_messages` (default true). */
  logConnections?: boolean;
}

/** What {@link parseMosquittoConf} returns. */
export interface MosquittoConfig {
  /** Broker-wide settings. */
  settings: MosquittoSettings;
  /** `per_listener_settings`: each listener has its own `auth`. */
  perListenerSettings: boolean;
  /** Broker-wide authentication (when not per listener). */
  auth: ListenerAuthConfig;
  /** The listeners, in file order (the default listener first). */
  listeners: ListenerConfig[];
  /** The `connection` sections. */
  bridges: BridgeConfig[];
  /** One line per directive accepted and ignored: `file:line: directive: why`. */
  notes: string[];
}

/** A directive that is unknown, has a bad value, or cannot be honoured. */
export class MosquittoConfError extends Error {
  /** The file the directive is in. */
  readonly file: string;
  /** Its line, from 1. */
  readonly line: number;
  /** The directive. */
  readonly directive: string;
  /** Names the place and the reason. */
  constructor(file: string, line: number, directive: string, reason: string) {
    super(`${file}:${line}: ${directive}: ${reason}`);
    this.name = "MosquittoConfError";
    this.file = file;
    this.line = line;
    this.directive = directive;
  }
}

/** How {@link parseMosquittoConf} reads files (for `include_dir`). */
export interface ConfReader {
  /** Reads a whole file. */
  readTextFile(path: string): string;
  /** File names (not paths) in a directory. */
  readDir(path: string): string[];
  /** The host name, for bridges' default client id; default "denomq". */
  hostname?: () => string;
}

/** Reads through Deno: needs `--allow-read` of the file and of any `include_dir`. */
export const DENO_READER: ConfReader = {
  readTextFile: (path) => Deno.readTextFileSync(path),
  readDir: (path) => [...Deno.readDirSync(path)].filter((e) => e.isFile).map((e) => e.name),
  hostname: () => {
    try {
      if (Deno.permissions.querySync({ name: "sys", kind: "hostname" }).state === "granted") {
        return Deno.hostname();
      }
    } catch {
      // No such permission kind: fall through.
    }
    return "denomq";
  },
};

const MAX_INCLUDE_DEPTH = 8;

const LOG_TYPE_LEVEL: Record<string, LogLevel> = {
  none: "silent",
  error: "error",
  warning: "warn",
  notice: "info",
  information: "info",
  subscribe: "debug",
  unsubscribe: "debug",
  websockets: "debug",
  debug: "debug",
  all: "debug",
};
const LEVEL_ORDER: LogLevel[] = ["silent", "error", "warn", "info", "debug"];

/** Directives accepted and ignored, and why (the README table says the same). */
const IGNORED: Record<string, string> = {
  autosave_interval: "the store is written at every change (group commit)",
  autosave_on_changes: "the store is written at every change (group commit)",
  persistence_file: "the store is always DATA_DIR/broker.db",
  pid_file: "not written; a service manager tracks the process",
  user: "no privilege drop; run the broker as the user it should be",
  allow_duplicate_messages: "always true (mosquitto 2.0's default)",
  set_tcp_nodelay: "Nagle is always off",
  log_timestamp: "log lines always carry a timestamp",
  log_timestamp_format: "log lines use ISO 8601",
  log_facility: "no syslog",
  websockets_log_level: "no libwebsockets",
  websockets_headers_size: "no libwebsockets",
  auto_id_prefix: 'assigned client ids start "auto-"',
  tls_version: "Deno's TLS offers TLS 1.2 and 1.3",
  ciphers: "Deno's TLS (rustls) has a fixed set of safe cipher suites",
  "ciphers_tls1.3": "Deno's TLS (rustls) has a fixed set of safe cipher suites",
  ecdh_curve: "Deno's TLS (rustls) chooses the curve",
  dhparamfile: "no DHE suites in Deno's TLS",
  capath: "only used to verify client certificates; with require_certificate give cafile",
  psk_hint: "the listener is a TLS-PSK one; stunnel sends no identity hint",
  bridge_tls_version: "Deno's TLS offers TLS 1.2 and 1.3",
  bridge_attempt_unsubscribe: "nothing is unsubscribed at the remote",
  bridge_max_packet_size: "the remote's limit is not checked ahead",
  idle_timeout: "only used with start_type lazy/once",
  threshold: "only used with start_type lazy",
};

/** Directives refused (the broker does not start), and why. */
const REFUSED: Record<string, string> = {
  auth_plugin: "plugins cannot be loaded; authentication they would do cannot be dropped",
  plugin: "plugins cannot be loaded; authentication they would do cannot be dropped",
  clientid_prefixes: "not supported; ignoring it would let any client id in",
  mount_point: "not supported; ignoring it would let clients see topics outside the mount point",
  crlfile: "not supported: client certificates cannot be requested",
  http_dir: "not supported: no HTTP file serving",
  bind_interface: "not supported: bind an address instead",
  bridge_capath: "not supported: give bridge_cafile (PEM)",
  bridge_bind_address: "not supported",
  keyform: "not supported: give a PEM key",
  tls_engine: "not supported",
  tls_engine_kpass_sha1: "not supported",
  tls_keyform: "not supported: give a PEM key",
  max_inflight_bytes: "not supported: use max_inflight_messages",
  include_file: "not a mosquitto 2.0 directive",
};

interface Ctx {
  file: string;
  line: number;
  directive: string;
}

function fail(ctx: Ctx, reason: string): never {
  throw new MosquittoConfError(ctx.file, ctx.line, ctx.directive, reason);
}

/** The first token is the value; anything after it must be a `#` comment. */
function single(ctx: Ctx, tokens: string[]): string {
  if (tokens.length === 0) fail(ctx, "missing value");
  if (tokens.length > 1 && !tokens[1].startsWith("#")) {
    fail(ctx, `unexpected "${tokens.slice(1).join(" ")}" after the value`);
  }
  return tokens[0];
}

function parseBool(ctx: Ctx, tokens: string[]): boolean {
  const v = single(ctx, tokens);
  if (v === "true") return true;
  if (v === "false") return false;
  return fail(ctx, `expected true or false, got "${v}"`);
}

function parseInt(ctx: Ctx, tokens: string[], min: number, max: number): number {
  const v = single(ctx, tokens);
  if (!/^-?\d+$/.test(v)) fail(ctx, `expected an integer, got "${v}"`);
  const n = Number(v);
  if (n < min || n > max) fail(ctx, `must be between ${min} and ${max}, got ${n}`);
  return n;
}

/** The rest of the line, as mosquitto's conf__parse_string (trailing spaces trimmed). */
function parseString(ctx: Ctx, rest: string): string {
  const v = rest.replace(/ +$/, "");
  if (v === "") fail(ctx, "missing value");
  return v;
}

function setLimit(ctx: Ctx, limits: Partial<Limits>, name: IntegerLimit, value: number): void {
  const [min, max] = LIMIT_RANGES[name];
  if (value < min || value > max) {
    fail(ctx, `maps to ${name}, which must be between ${min} and ${max}, got ${value}`);
  }
  limits[name] = value;
}

const DURATION_UNITS: Record<string, number> = {
  h: 3600,
  d: 86_400,
  w: 7 * 86_400,
  m: 30 * 86_400,
  y: 365 * 86_400,
};

interface ListenerDraft extends ListenerConfig {
  auth?: ListenerAuthConfig;
  /** `psk_hint` seen: a TLS-PSK listener, its psk_file from the security options. */
  psk?: boolean;
  /** For messages. */
  at: string;
  caFile?: string;
  caAt?: string;
  requireCertificate?: boolean;
  requireAt?: string;
  keyFileSet?: boolean;
}

interface BridgeDraft extends Partial<BridgeConfig> {
  name: string;
  topics: BridgeTopic[];
  at: Ctx;
  certSet?: boolean;
}

/**
 * Parses mosquitto.conf text.
 *
 * @example
 * ```ts
 * import { parseMosquittoConf } from "./mosquitto_conf.ts";
 *
 * const conf = parseMosquittoConf("listener 1883 127.0.0.1\nallow_anonymous true\n", "m.conf");
 * console.log(conf.listeners[0]); // { port: 1883, host: "127.0.0.1", ... }
 * ```
 *
 * @param text The file's contents.
 * @param file Its path: names it in errors and notes.
 * @param reader Reads `include_dir` directories; default {@link DENO_READER}.
 * @throws {MosquittoConfError} for the first directive that is unknown, bad or refused.
 */
export function parseMosquittoConf(
  text: string,
  file = "mosquitto.conf",
  reader: ConfReader = DENO_READER,
): MosquittoConfig {
  const settings: MosquittoSettings = { limits: {} };
  const notes: string[] = [];
  const globalAuth: ListenerAuthConfig = {};
  const listeners: ListenerDraft[] = [];
  const bridges: BridgeDraft[] = [];
  let perListener = false;
  let securitySeen = false;
  let persistence = false;
  let persistenceLocation: string | undefined;
  let defaultListener: ListenerDraft | undefined;
  let defaultPort: number | undefined;
  let messageSizeLimit: number | undefined;
  let maxPacketSizeSet = false;
  let logLevel: LogLevel | undefined;
  let logDestSet = false;
  const seenStrings = new Set<string>();

  // mosquitto's default listener (port 1883 unless `port`): listener settings before the first
  // `listener` line open it, security settings alone do not (checked with mosquitto 2.0.11).
  let defaultOpened = false;
  let defaultSettings: Ctx | undefined;
  let defaultSecurity: Ctx | undefined;
  const getDefaultListener = (ctx: Ctx): ListenerDraft => {
    defaultListener ??= { port: 1883, at: `${ctx.file}:${ctx.line}` };
    return defaultListener;
  };

  const readFile = (path: string, depth: number, source: string): void => {
    let current: ListenerDraft | undefined;
    let bridge: BridgeDraft | undefined;
    const lines = source.split("\n");
    for (let index = 0; index < lines.length; index++) {
      let raw = lines[index];
      // mosquitto: a comment or empty line is decided on the first character only.
      if (raw === "" || raw[0] === "#" || raw[0] === "\r") continue;
      raw = raw.replace(/[\r\n]+$/, "");
      const match = /^ *([^ ]+) *(.*)$/.exec(raw);
      if (match === null) continue; // spaces only
      const directive = match[1];
      const rest = match[2];
      const tokens = rest.split(/ +/).filter((t) => t !== "");
      const ctx: Ctx = { file: path, line: index + 1, directive };
      // Strings may appear once per scope, as in mosquitto ("Duplicate ... value").
      const once = (scope: string) => {
        const key = `${scope}\0${directive}`;
        if (seenStrings.has(key)) fail(ctx, "given twice");
        seenStrings.add(key);
      };
      const listenerFor = (): ListenerDraft => {
        if (current !== undefined) return current;
        defaultSettings ??= ctx;
        return getDefaultListener(ctx);
      };
      const security = (): ListenerAuthConfig => {
        securitySeen = true;
        if (!perListener) return globalAuth;
        if (current === undefined) defaultSecurity ??= ctx;
        const l = current ?? getDefaultListener(ctx);
        return l.auth ??= {};
      };
      const needBridge = (): BridgeDraft => {
        if (bridge === undefined) fail(ctx, "only allowed in a connection section");
        return bridge;
      };
      if (directive in REFUSED) fail(ctx, REFUSED[directive]);
      if (directive.startsWith("plugin_opt_") || directive.startsWith("auth_opt_")) {
        fail(ctx, REFUSED.plugin);
      }
      if (directive in IGNORED) {
        if (directive === "psk_hint") {
          parseString(ctx, rest);
          listenerFor().psk = true;
        }
        notes.push(`${path}:${index + 1}: ${directive}: ignored: ${IGNORED[directive]}`);
        continue;
      }
      switch (directive) {
        case "include_dir": {
          if (depth + 1 > MAX_INCLUDE_DEPTH) fail(ctx, "nested too deeply");
          const dir = parseString(ctx, rest);
          let names: string[];
          try {
            names = reader.readDir(dir);
          } catch (error) {
            fail(ctx, `cannot read ${dir}: ${error instanceof Error ? error.message : error}`);
          }
          const confs = names.filter((n) => n.endsWith(".conf")).sort((a, b) => {
            const x = a.toLowerCase();
            const y = b.toLowerCase();
            return x < y ? -1 : x > y ? 1 : 0;
          });
          for (const name of confs) {
            const included = `${dir.replace(/\/+$/, "")}/${name}`;
            let includedText: string;
            try {
              includedText = reader.readTextFile(included);
            } catch (error) {
              fail(ctx, `cannot read ${included}: ${(error as Error).message ?? error}`);
            }
            readFile(included, depth + 1, includedText);
          }
          break;
        }
        case "per_listener_settings":
          if (securitySeen || listeners.length > 0 || defaultListener !== undefined) {
            fail(
              ctx,
              "must come before any listener and before allow_anonymous, password_file, " +
                "acl_file and psk_file",
            );
          }
          perListener = parseBool(ctx, tokens);
          break;
        case "allow_anonymous":
          security().allowAnonymous = parseBool(ctx, tokens);
          break;
        case "password_file":
        case "acl_file":
        case "psk_file": {
          const auth = security() as ListenerAuthConfig & { pskFile?: string };
          once(perListener ? (current ?? getDefaultListener(ctx)).at : "global");
          const value = parseString(ctx, rest);
          if (directive === "password_file") auth.passwordFile = value;
          else if (directive === "acl_file") auth.aclFile = value;
          else auth.pskFile = value;
          break;
        }
        case "allow_zero_length_clientid":
          if (!parseBool(ctx, tokens)) {
            fail(ctx, "false is not supported (empty client ids with clean session are allowed)");
          }
          break;
        case "port":
          defaultPort = parseInt(ctx, tokens, 1, 65535);
          getDefaultListener(ctx).port = defaultPort;
          defaultOpened = true;
          break;
        case "bind_address":
          getDefaultListener(ctx).host = parseString(ctx, rest);
          defaultOpened = true;
          break;
        case "listener": {
          if (tokens.length < 1 || tokens.length > 2) fail(ctx, "expected PORT [ADDRESS]");
          const port = parseInt(ctx, tokens.slice(0, 1), 0, 65535);
          current = { port, at: `${path}:${index + 1}` };
          if (tokens[1] !== undefined) {
            if (tokens[1].startsWith("/")) fail(ctx, "unix sockets are not supported");
            current.host = tokens[1];
          }
          listeners.push(current);
          break;
        }
        case "protocol": {
          const v = single(ctx, tokens);
          if (v !== "mqtt" && v !== "websockets") fail(ctx, `expected mqtt or websockets`);
          listenerFor().protocol = v;
          break;
        }
        case "socket_domain": {
          const v = single(ctx, tokens);
          if (v !== "ipv4" && v !== "ipv6") fail(ctx, "expected ipv4 or ipv6");
          listenerFor().socketDomain = v;
          break;
        }
        case "certfile":
        case "keyfile": {
          const l = listenerFor();
          const value = parseString(ctx, rest);
          const tls = l.tls ?? { certFile: "", keyFile: "" };
          if (directive === "certfile") tls.certFile = value;
          else tls.keyFile = value;
          l.tls = tls;
          break;
        }
        case "cafile": {
          const l = listenerFor();
          l.caFile = parseString(ctx, rest);
          l.caAt = `${path}:${index + 1}`;
          break;
        }
        case "require_certificate":
          listenerFor().requireCertificate = parseBool(ctx, tokens);
          listenerFor().requireAt = `${path}:${index + 1}`;
          break;
        case "use_identity_as_username":
        case "use_subject_as_username":
          if (parseBool(ctx, tokens)) {
            fail(
              ctx,
              "cannot be honoured: the client certificate's name does not reach the broker's " +
                "user names (require_certificate true without it is supported)",
            );
          }
          break;
        case "max_connections": {
          const n = parseInt(ctx, tokens, -1, 10_000_000);
          const l = listenerFor();
          if (n <= 0) delete l.maxConnections;
          else l.maxConnections = n;
          break;
        }
        case "persistence":
          persistence = parseBool(ctx, tokens);
          break;
        case "persistence_location":
          persistenceLocation = parseString(ctx, rest);
          break;
        case "max_inflight_messages": {
          const n = parseInt(ctx, tokens, 0, 65535);
          setLimit(ctx, settings.limits, "maxInflight", n === 0 ? 65535 : n);
          break;
        }
        case "max_queued_messages": {
          const n = parseInt(ctx, tokens, 0, LIMIT_RANGES.maxQueued[1]);
          setLimit(ctx, settings.limits, "maxQueued", n === 0 ? LIMIT_RANGES.maxQueued[1] : n);
          break;
        }
        case "max_queued_bytes": {
          const n = parseInt(ctx, tokens, 0, LIMIT_RANGES.maxQueuedBytes[1]);
          setLimit(ctx, settings.limits, "maxQueuedBytes", n === 0 ? 2 ** 40 : n);
          break;
        }
        case "message_size_limit":
          messageSizeLimit = parseInt(ctx, tokens, 0, 268_435_455);
          break;
        case "max_packet_size": {
          const n = parseInt(ctx, tokens, 0, 268_435_455);
          if (n !== 0 && n < 20) fail(ctx, "must be 0 or at least 20");
          setLimit(ctx, settings.limits, "maxPacketSize", n === 0 ? 268_435_460 : n);
          maxPacketSizeSet = true;
          break;
        }
        case "max_keepalive":
          // mosquitto 2.0.11 refuses values under 10 ("Invalid max_keepalive value").
          setLimit(ctx, settings.limits, "maxKeepAlive", parseInt(ctx, tokens, 10, 65535));
          break;
        case "memory_limit":
          // Both: bytes, 0 = no limit.
          setLimit(ctx, settings.limits, "memoryLimit", parseInt(ctx, tokens, 0, 2 ** 40));
          break;
        case "persistent_client_expiration": {
          const v = single(ctx, tokens);
          const m = /^(\d+)([hdwmy])$/.exec(v);
          if (m === null) fail(ctx, `expected a number and h, d, w, m or y, got "${v}"`);
          setLimit(
            ctx,
            settings.limits,
            "sessionExpiryMs",
            Number(m[1]) * DURATION_UNITS[m[2]] * 1000,
          );
          break;
        }
        case "sys_interval":
          settings.sysIntervalS = parseInt(ctx, tokens, 0, 65535);
          break;
        case "retain_available":
          if (!parseBool(ctx, tokens)) {
            // Retained messages are then delivered but never stored.
            setLimit(ctx, settings.limits, "maxRetained", 0);
          }
          break;
        case "connection_messages":
          settings.logConnections = parseBool(ctx, tokens);
          break;
        case "log_dest": {
          const v = single(ctx, tokens.slice(0, 1));
          if (!["stderr", "stdout", "file", "syslog", "topic", "dlt", "none"].includes(v)) {
            fail(ctx, `unknown destination "${v}"`);
          }
          if (v === "none") logLevel = "silent";
          else if (v !== "stderr") {
            notes.push(
              `${path}:${index + 1}: log_dest ${v}: ignored: the broker logs to stderr only`,
            );
          }
          logDestSet = true;
          break;
        }
        case "log_type": {
          const v = single(ctx, tokens);
          const level = LOG_TYPE_LEVEL[v];
          if (level === undefined) fail(ctx, `unknown log type "${v}"`);
          // Several log_type lines add up: the most verbose wins.
          if (
            logLevel === undefined || LEVEL_ORDER.indexOf(level) > LEVEL_ORDER.indexOf(logLevel)
          ) {
            logLevel = level;
          }
          break;
        }
        case "queue_qos0_messages":
        case "upgrade_outgoing_qos":
        case "check_retain_source":
          if (parseBool(ctx, tokens)) fail(ctx, "true is not supported");
          break;
        case "connection": {
          const name = single(ctx, tokens);
          if (!/^[A-Za-z0-9_.-]+$/.test(name)) fail(ctx, "the name must be letters and digits");
          if (bridges.some((b) => b.name === name)) fail(ctx, `"${name}" is used twice`);
          bridge = { name, topics: [], at: ctx };
          bridges.push(bridge);
          break;
        }
        case "address":
        case "addresses": {
          const b = needBridge();
          if (b.addresses !== undefined) fail(ctx, "given twice in this connection");
          const list: { host: string; port: number }[] = [];
          for (const token of tokens) {
            if (token.startsWith("#")) break;
            const colon = token.lastIndexOf(":");
            const host = colon < 0 ? token : token.slice(0, colon);
            const port = colon < 0 ? 1883 : Number(token.slice(colon + 1));
            if (!Number.isInteger(port) || port < 1 || port > 65535 || host === "") {
              fail(ctx, `invalid address "${token}"`);
            }
            list.push({ host: host.replace(/^\[(.*)\]$/, "$1"), port });
          }
          if (list.length === 0) fail(ctx, "missing value");
          b.addresses = list;
          break;
        }
        case "round_robin":
          needBridge().roundRobin = parseBool(ctx, tokens);
          break;
        case "bridge_protocol_version": {
          const v = single(ctx, tokens);
          if (v === "mqttv31") fail(ctx, "mqttv31 is not supported: use mqttv311 or mqttv50");
          if (v !== "mqttv311" && v !== "mqttv50") fail(ctx, "expected mqttv311 or mqttv50");
          needBridge().protocolVersion = v;
          break;
        }
        case "clientid":
        case "remote_clientid":
          needBridge().clientId = parseString(ctx, rest);
          break;
        case "local_clientid":
          needBridge().localClientId = parseString(ctx, rest);
          break;
        case "remote_username":
        case "username":
          needBridge().remoteUsername = parseString(ctx, rest);
          break;
        case "remote_password":
        case "password":
          needBridge().remotePassword = parseString(ctx, rest);
          break;
        case "local_username":
          needBridge().localUsername = parseString(ctx, rest);
          break;
        case "local_password":
          needBridge().localPassword = parseString(ctx, rest);
          break;
        case "cleansession":
          needBridge().cleanSession = parseBool(ctx, tokens);
          break;
        case "local_cleansession":
          needBridge().localCleanSession = parseBool(ctx, tokens);
          break;
        case "keepalive_interval": {
          const n = parseInt(ctx, tokens, 0, 65535);
          if (n > 0 && n < 5) fail(ctx, "must be 0 or at least 5 seconds");
          needBridge().keepAliveS = n;
          break;
        }
        case "restart_timeout": {
          const b = needBridge();
          const values = tokens.filter((t, i) => i < 2 && !t.startsWith("#"));
          const nums = values.map((t) => parseInt(ctx, [t], 1, 86_400));
          if (nums.length === 0) fail(ctx, "missing value");
          if (nums.length === 2 && nums[0] > nums[1]) fail(ctx, "base must not exceed cap");
          b.restartTimeoutS = nums.length === 1 ? nums[0] : [nums[0], nums[1]];
          break;
        }
        case "try_private":
          needBridge().tryPrivate = parseBool(ctx, tokens);
          break;
        case "notifications":
          needBridge().notifications = parseBool(ctx, tokens);
          break;
        case "notifications_local_only":
          needBridge().notificationsLocalOnly = parseBool(ctx, tokens);
          break;
        case "notification_topic":
          needBridge().notificationTopic = parseString(ctx, rest);
          break;
        case "bridge_outgoing_retain":
          needBridge().outgoingRetain = parseBool(ctx, tokens);
          break;
        case "start_type": {
          const v = single(ctx, tokens);
          needBridge();
          if (v === "lazy" || v === "once") fail(ctx, `${v} is not supported: use automatic`);
          if (v !== "automatic") fail(ctx, "expected automatic, lazy or once");
          break;
        }
        case "topic":
          needBridge().topics.push(parseTopicLine(ctx, tokens));
          break;
        case "bridge_cafile":
        case "bridge_certfile":
        case "bridge_keyfile":
        case "bridge_alpn": {
          const b = needBridge();
          if (b.psk !== undefined) fail(ctx, "cannot use both certificate and PSK encryption");
          const value = parseString(ctx, rest);
          const tls = b.tls ??= {};
          if (directive === "bridge_cafile") tls.caFile = value;
          else if (directive === "bridge_certfile") tls.certFile = value;
          else if (directive === "bridge_keyfile") tls.keyFile = value;
          else tls.alpn = value;
          break;
        }
        case "bridge_insecure":
          needBridge();
          if (parseBool(ctx, tokens)) {
            fail(ctx, "true is refused: the remote's certificate and host name are always checked");
          }
          break;
        case "bridge_require_ocsp":
          needBridge();
          if (parseBool(ctx, tokens)) fail(ctx, "true is not supported");
          break;
        case "bridge_identity":
        case "bridge_psk": {
          const b = needBridge();
          if (b.tls !== undefined) fail(ctx, "cannot use both certificate and PSK encryption");
          const value = single(ctx, tokens);
          const psk = b.psk ??= { identity: "", key: "" };
          if (directive === "bridge_identity") psk.identity = value;
          else {
            if (!/^([0-9a-fA-F]{2})+$/.test(value)) fail(ctx, "expected a hex key");
            psk.key = value;
          }
          break;
        }
        default:
          fail(ctx, "unknown directive");
      }
    }
  };

  readFile(file, 0, text);

  // Finishing touches that need the whole file, as config__read / config__check do.
  if (messageSizeLimit !== undefined && !maxPacketSizeSet) {
    // mosquitto limits the payload; we limit the whole packet: leave room for the longest topic.
    const packet = messageSizeLimit === 0 ? 268_435_460 : messageSizeLimit + 65_544;
    settings.limits.maxPacketSize = Math.min(packet, 268_435_460);
  }
  if (persistence) settings.dataDir = persistenceLocation?.replace(/\/+$/, "") || ".";
  if (logLevel !== undefined) settings.logLevel = logLevel;
  void logDestSet;

  if (defaultListener !== undefined) {
    if (defaultOpened || defaultSettings !== undefined) {
      listeners.unshift(defaultListener);
    } else {
      if (defaultSecurity !== undefined) {
        notes.push(
          `${defaultSecurity.file}:${defaultSecurity.line}: ${defaultSecurity.directive}: ` +
            "ignored, as by mosquitto: with per_listener_settings it belongs to the default " +
            "listener, which is not opened without port",
        );
      }
    }
  }
  const out: ListenerConfig[] = [];
  if (listeners.length === 0) {
    // mosquitto 2.0 without a listener: local only, anonymous clients allowed.
    out.push({ host: "127.0.0.1", port: 1883 });
    globalAuth.allowAnonymous ??= true;
  } else {
    // mosquitto 2.0: anonymous clients are refused unless allowed.
    globalAuth.allowAnonymous ??= false;
  }
  for (const l of listeners) {
    const { at, psk, keyFileSet: _k, caFile, caAt, requireCertificate, requireAt, ...listener } = l;
    const where = requireAt ?? at;
    const [atFile, atLine] = [
      where.slice(0, where.lastIndexOf(":")),
      Number(where.split(":").pop()),
    ];
    if (requireCertificate) {
      if (listener.tls === undefined) {
        throw new MosquittoConfError(
          atFile,
          atLine,
          "require_certificate",
          "needs certfile and keyfile",
        );
      }
      if (caFile === undefined) {
        throw new MosquittoConfError(atFile, atLine, "require_certificate", "needs cafile (PEM)");
      }
      if (listener.protocol === "websockets") {
        throw new MosquittoConfError(
          atFile,
          atLine,
          "require_certificate",
          "cannot be honoured on a websockets listener: Deno.serve cannot ask for client certificates",
        );
      }
      listener.tls.caFile = caFile;
      listener.tls.requireCertificate = true;
    } else if (caFile !== undefined) {
      notes.push(
        `${caAt}: cafile: ignored: only used to verify client certificates, which ` +
          "require_certificate true asks for",
      );
    }
    if (listener.tls !== undefined) {
      if (listener.tls.certFile === "" || listener.tls.keyFile === "") {
        throw new MosquittoConfError(
          at.split(":")[0],
          Number(at.split(":")[1]),
          "listener",
          "certfile and keyfile go together",
        );
      }
    }
    if (psk) {
      const pskFile = perListener
        ? (l.auth as { pskFile?: string } | undefined)?.pskFile
        : (globalAuth as { pskFile?: string }).pskFile;
      if (pskFile === undefined) {
        throw new MosquittoConfError(
          at.split(":")[0],
          Number(at.split(":")[1]),
          "psk_hint",
          "a TLS-PSK listener needs psk_file",
        );
      }
      if (listener.tls !== undefined || listener.protocol === "websockets") {
        throw new MosquittoConfError(
          at.split(":")[0],
          Number(at.split(":")[1]),
          "psk_hint",
          "a TLS-PSK listener cannot also have certfile/keyfile or protocol websockets",
        );
      }
      listener.pskFile = pskFile;
    }
    if (listener.auth !== undefined) {
      const { pskFile: _p, ...auth } = listener.auth as ListenerAuthConfig & { pskFile?: string };
      listener.auth = auth;
    }
    if (perListener) {
      listener.auth ??= {};
      listener.auth.allowAnonymous ??= false;
    } else delete listener.auth;
    for (const key of Object.keys(listener) as (keyof ListenerConfig)[]) {
      if (listener[key] === undefined) delete listener[key];
    }
    out.push(listener);
  }
  const { pskFile: _g, ...auth } = globalAuth as ListenerAuthConfig & { pskFile?: string };
  const outBridges: BridgeConfig[] = bridges.map((b) => {
    const { at, certSet: _c, ...draft } = b;
    const bridge = draft as BridgeConfig;
    if (bridge.addresses === undefined) fail(at, `connection ${b.name}: no address`);
    if (bridge.topics.length === 0) fail(at, `connection ${b.name}: no topic`);
    if (bridge.psk !== undefined && (bridge.psk.identity === "" || bridge.psk.key === "")) {
      fail(at, `connection ${b.name}: bridge_identity and bridge_psk go together`);
    }
    bridge.clientId ??= `${reader.hostname?.() ?? "denomq"}.${b.name}`;
    try {
      checkBridge(bridge, `connection ${b.name}`);
    } catch (error) {
      fail(at, (error as Error).message);
    }
    return bridge;
  });
  return {
    settings,
    perListenerSettings: perListener,
    auth,
    listeners: out,
    bridges: outBridges,
    notes,
  };
}

/** `topic PATTERN [in|out|both [QOS [LOCAL-PREFIX REMOTE-PREFIX]]]`; `""` is an empty string. */
function parseTopicLine(ctx: Ctx, tokens: string[]): BridgeTopic {
  const parts: string[] = [];
  for (const t of tokens) {
    if (t.startsWith("#") && parts.length > 0) break;
    parts.push(t === '""' ? "" : t);
  }
  if (parts.length === 0) fail(ctx, "missing pattern");
  if (parts.length > 5) fail(ctx, "too many values");
  if (parts.length === 4) fail(ctx, "a local prefix needs a remote prefix");
  const direction = (parts[1] ?? "out") as BridgeTopic["direction"];
  if (!["in", "out", "both"].includes(direction)) fail(ctx, "direction must be in, out or both");
  const qosText = parts[2] ?? "0";
  if (!/^[012]$/.test(qosText)) fail(ctx, "QoS must be 0, 1 or 2");
  const topic: BridgeTopic = {
    pattern: parts[0],
    direction,
    qos: Number(qosText) as QoS,
    localPrefix: parts[3] ?? "",
    remotePrefix: parts[4] ?? "",
  };
  try {
    checkBridgeTopic(topic, "topic");
  } catch (error) {
    fail(ctx, (error as Error).message.replace(/^topic: /, ""));
  }
  return topic;
}

/**
 * Reads and parses a mosquitto.conf file. Needs `--allow-read` of the file and of any
 * `include_dir` directory.
 *
 * @throws {MosquittoConfError} for a bad directive; the read error when the file cannot be read.
 */
export function loadMosquittoConf(path: string, reader: ConfReader = DENO_READER): MosquittoConfig {
  return parseMosquittoConf(reader.readTextFile(path), path, reader);
}
