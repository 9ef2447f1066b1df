/**
 * Command-line flags and the JSON config file, turned into one checked configuration.
 * Pure: no I/O except reading the config file.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { dirname, isAbsolute, resolve } from "node:path";
import { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from "./logger.ts";
import { DEFAULT_LIMITS, isBooleanLimit, LIMIT_RANGES, limitFlag, type Limits } from "./options.ts";

import { VERSION } from "./version.ts";
import { type BridgeConfig, parseBridges } from "./bridge/bridge_config.ts";
import {
  type ListenerAuthConfig,
  type ListenerConfig,
  parseListeners,
} from "./config/listeners.ts";
import { loadMosquittoConf, type MosquittoConfig } from "./config/mosquitto_conf.ts";

export { VERSION };

/** Everything the CLI can be told. */
export interface CliConfig {
  host: string;
  /** Plain TCP port; `tcp: false` turns the plain listener off. */
  port: number;
  tcp: boolean;
  logLevel: LogLevel;
  limits: Partial<Limits>;
  tlsCert?: string;
  tlsKey?: string;
  tlsPort: number;
  pskFile?: string;
  pskPort: number;
  stunnel: string;
  wsPort?: number;
  wssPort?: number;
  wsPath: string;
  passwordFile?: string;
  aclFile?: string;
  allowAnonymous?: boolean;
  dataDir?: string;
  sync: "full" | "normal" | "off";
  sysIntervalS: number;
  /** `--cluster` and the flags that go with it. */
  cluster?: {
    servers: string[];
    nodeName: string;
    credsFile?: string;
    user?: string;
    password?: string;
    token?: string;
    tlsCaFile?: string;
    replicas: number;
  };
  reusePort: boolean;
  /** 5.0 Response Information prefix; undefined = none. */
  responseInformation?: string;
  /** `--mosquitto-conf FILE`. */
  mosquittoConf?: string;
  /** Listeners from the JSON config or the mosquitto.conf; they replace the listener flags. */
  listeners?: ListenerConfig[];
  /** Bridges from the JSON config or the mosquitto.conf. */
  bridges?: BridgeConfig[];
  /** Broker-wide authentication from the mosquitto.conf (it replaces the auth flags). */
  auth?: ListenerAuthConfig;
  /** One log line per connect/disconnect (mosquitto's `connection_messages`). Default true. */
  logConnections?: boolean;
  /** mosquitto.conf directives accepted and ignored: one line each, logged at start. */
  notes?: string[];
  logFormat: LogFormat;
  /** The HTTP side (metrics, health, admin API, status page); off without a port. */
  httpPort?: number;
  httpHost: string;
  httpTokenFile?: string;
  /** MQTT over WebSocket on the HTTP listener too, at `wsPath`. */
  httpWs: boolean;
  /**
   * Where a setting came from, for error messages: `--flag VALUE`, or for a value from the
   * config file `FILE: key "camelCase" (VALUE)`.
   */
  describe(flag: string, value?: unknown): string;
}

/** A bad flag or value: the CLI prints the message alone and exits 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

const LIMIT_FLAGS = (Object.keys(DEFAULT_LIMITS) as (keyof Limits)[]).map((name) =>
  [limitFlag(name), name] as const
);

const STRING_FLAGS = {
  host: "host",
  "log-level": "logLevel",
  config: "config",
  "mosquitto-conf": "mosquittoConf",
  "tls-cert": "tlsCert",
  "tls-key": "tlsKey",
  "psk-file": "pskFile",
  stunnel: "stunnel",
  "ws-path": "wsPath",
  "password-file": "passwordFile",
  "acl-file": "aclFile",
  "data-dir": "dataDir",
  sync: "sync",
  cluster: "cluster",
  "node-name": "nodeName",
  "cluster-creds": "clusterCreds",
  "cluster-user": "clusterUser",
  "cluster-password": "clusterPassword",
  "cluster-token": "clusterToken",
  "cluster-tls-ca": "clusterTlsCa",
  "response-information": "responseInformation",
  "log-format": "logFormat",
  "http-host": "httpHost",
  "http-token-file": "httpTokenFile",
} as const;

const PORT_FLAGS = {
  port: "port",
  "tls-port": "tlsPort",
  "psk-port": "pskPort",
  "ws-port": "wsPort",
  "wss-port": "wssPort",
  "http-port": "httpPort",
} as const;

const BOOLEAN_FLAGS = {
  "allow-anonymous": "allowAnonymous",
  "no-tcp": "noTcp",
  "http-ws": "httpWs",
  "reuse-port": "reusePort",
  help: "help",
  version: "version",
} as const;

/** `--help` text. */
export function helpText(): string {
  const limitLines = LIMIT_FLAGS.map(([flag, name]) => {
    if (isBooleanLimit(name)) {
      return `  --${(flag + " true|false").padEnd(31)} default ${DEFAULT_LIMITS[name]}`;
    }
    const [min, max] = LIMIT_RANGES[name];
    return `  --${flag.padEnd(31)} default ${DEFAULT_LIMITS[name]} (${min}..${max})`;
  });
  return `Usage: deno run --allow-net cli.ts [options]
       deno run --allow-read=FILE --allow-write=FILE cli.ts passwd [-c|-D|-b|-U] FILE ...

A Deno-native MQTT 5.0 and 3.1.1 broker. Version ${VERSION}.

Listeners:
  --host HOST                        address to listen on (default 127.0.0.1: this machine only;
                                     --host 0.0.0.0 serves every host)
  --port PORT                        plain MQTT over TCP (default 1883)
  --no-tcp                           no plain TCP listener (with TLS, PSK or WebSocket only)
  --tls-cert FILE --tls-key FILE     add a TLS listener (PEM files)
  --tls-port PORT                    TLS port (default 8883)
  --psk-file FILE                    TLS-PSK through a stunnel sidecar; lines "identity:hexkey"
  --psk-port PORT                    TLS-PSK port (default 8884)
  --stunnel PATH                     stunnel binary (default stunnel)
  --ws-port PORT                     MQTT over WebSocket
  --wss-port PORT                    MQTT over secure WebSocket (needs --tls-cert/--tls-key)
  --ws-path PATH                     WebSocket path (default /mqtt)
Security:
  --password-file FILE               users (mosquitto_passwd format); anonymous refused unless:
  --allow-anonymous                  let clients without a user name in
  --acl-file FILE                    mosquitto acl_file format
Persistence:
  --data-dir DIR                     keep retained messages and sessions in DIR/broker.db (SQLite)
  --sync full|normal|off             durability of acknowledged messages (default normal)
Operations (HTTP):
  --http-port PORT                   metrics, /healthz, /readyz, admin API, status page
  --http-host HOST                   address of the HTTP listener (default 127.0.0.1)
  --http-token-file FILE             bearer token of the admin API (/api/v1/...); mode 0600
  --http-ws                          MQTT over WebSocket on the HTTP listener too (--ws-path)
Cluster (several brokers as one, joined through NATS JetStream; see README):
  --cluster URL[,URL…]               NATS servers, e.g. nats://127.0.0.1:4222
  --node-name NAME                   this node's name: unique, stable, [A-Za-z0-9_-]
  --cluster-creds FILE               NATS credentials file
  --cluster-user USER                NATS user (with --cluster-password)
  --cluster-password PASSWORD
  --cluster-token TOKEN              NATS token
  --cluster-tls-ca FILE              CA of the NATS servers' certificates: connect with TLS
  --cluster-replicas N               JetStream replicas of the cluster's state (default 1)
  --reuse-port                       SO_REUSEPORT: several nodes on one port (Linux, --unstable-net)
Other:
  --sys-interval SECONDS             publish $SYS/broker/... every N s, 0 = off (default 10)
  --response-information PREFIX      5.0 Response Information: PREFIX + client id, when requested
  --log-level LEVEL                  ${LOG_LEVELS.join("|")} (default info; debug traces packets)
  --log-format FORMAT                ${LOG_FORMATS.join("|")} (default text)
  --config FILE                      JSON object of these options in camelCase; flags override it
                                     (also "listeners" and "bridges" arrays, see README)
  --mosquitto-conf FILE              read a mosquitto.conf (listeners, auth, limits, bridges)
  --help, --version
Limits (see README for the action taken when each is hit):
${limitLines.join("\n")}
`;
}

/** `label` names where the value came from: `--flag`, or the config file and its key. */
function parseInteger(label: string, value: unknown, min: number, max: number): number {
  const n = typeof value === "number"
    ? value
    : typeof value === "string" && /^-?\d+$/.test(value.trim())
    ? Number(value.trim())
    : NaN;
  if (!Number.isSafeInteger(n)) {
    throw new UsageError(`${label}: expected an integer, got ${JSON.stringify(value)}`);
  }
  if (n < min || n > max) {
    throw new UsageError(`${label}: must be between ${min} and ${max}, got ${n}`);
  }
  return n;
}

// Flags whose value is a path: in the config file, relative to the file's folder.
const PATH_FLAGS = new Set([
  "tls-cert",
  "tls-key",
  "psk-file",
  "password-file",
  "acl-file",
  "data-dir",
  "http-token-file",
]);

// `--port -1` is a value, not an unknown short option: parseArgs would call it ambiguous.
function joinNegativeValues(args: string[], valued: Set<string>): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const next = args[i + 1];
    if (
      arg.startsWith("--") && !arg.includes("=") && valued.has(arg.slice(2)) &&
      next !== undefined && /^-\d/.test(next)
    ) {
      out.push(`${arg}=${next}`);
      i++;
    } else {
      out.push(arg);
    }
  }
  return out;
}

const WILDCARD_HOSTS = new Set(["0.0.0.0", "::", "[::]"]);

// Two listeners given one port fail at the second bind; say so before binding anything.
function checkPorts(config: CliConfig): void {
  const taken: [string, string, number][] = [];
  const add = (flag: string, host: string, port: number | undefined, on: boolean) => {
    if (on && port !== undefined && port !== 0) taken.push([flag, host, port]);
  };
  // "listeners" (JSON or mosquitto.conf) replace the listener flags: only their ports count then.
  const flags = config.listeners === undefined;
  add("port", config.host, config.port, flags && config.tcp);
  add("tls-port", config.host, config.tlsPort, flags && config.tlsCert !== undefined);
  add("psk-port", config.host, config.pskPort, flags && config.pskFile !== undefined);
  add("ws-port", config.host, config.wsPort, flags);
  add("wss-port", config.host, config.wssPort, flags);
  add("http-port", config.httpHost, config.httpPort, true);
  for (let i = 0; i < taken.length; i++) {
    for (let j = 0; j < i; j++) {
      const [flagA, hostA, portA] = taken[j];
      const [flagB, hostB, portB] = taken[i];
      const overlap = hostA === hostB || WILDCARD_HOSTS.has(hostA) || WILDCARD_HOSTS.has(hostB);
      if (portA === portB && overlap) {
        throw new UsageError(
          `${config.describe(flagA, portA)} and ${
            config.describe(flagB, portB)
          }: two listeners cannot share one port`,
        );
      }
    }
  }
}

/** Defaults of the non-limit settings. */
export const CLI_DEFAULTS = {
  host: "127.0.0.1",
  port: 1883,
  tlsPort: 8883,
  pskPort: 8884,
  wsPath: "/mqtt",
  stunnel: "stunnel",
  logLevel: "info" as LogLevel,
  sync: "normal" as const,
  sysIntervalS: 10,
  logFormat: "text" as LogFormat,
  httpHost: "127.0.0.1",
};

/**
 * Parses argv (without the program name). `readConfig` reads the `--config` file. Throws
 * UsageError naming the bad flag, config key or file.
 */
export function parseCliArgs(
  args: string[],
  readConfig: (path: string) => string = (path) => Deno.readTextFileSync(path),
): CliConfig & { help: boolean; version: boolean } {
  const options: Record<string, { type: "string" | "boolean" }> = {};
  for (const flag of Object.keys(STRING_FLAGS)) options[flag] = { type: "string" };
  for (const flag of Object.keys(PORT_FLAGS)) options[flag] = { type: "string" };
  for (const flag of Object.keys(BOOLEAN_FLAGS)) options[flag] = { type: "boolean" };
  for (const [flag] of LIMIT_FLAGS) options[flag] = { type: "string" };
  options["sys-interval"] = { type: "string" };
  const valued = new Set(Object.keys(options).filter((flag) => options[flag].type === "string"));
  options["cluster-replicas"] = { type: "string" };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: joinNegativeValues(args, valued),
      options,
      strict: true,
      allowPositionals: false,
    });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new UsageError(message.split("\n")[0].replace(/\. To specify a positional.*$/, ""));
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  // The config file's keys are the flags in camelCase; flags given on the command line win.
  const merged: Record<string, unknown> = {};
  // Flags whose value came from the config file, and the key they came from.
  const fromConfig = new Map<string, string>();
  const configPath = typeof values.config === "string" ? values.config : "";
  const label = (flag: string) =>
    fromConfig.has(flag) ? `${configPath}: key "${fromConfig.get(flag)}"` : `--${flag}`;
  const describe = (flag: string, value?: unknown) =>
    value === undefined
      ? label(flag)
      : fromConfig.has(flag)
      ? `${label(flag)} (${value})`
      : `--${flag} ${value}`;
  let listeners: ListenerConfig[] | undefined;
  let bridges: BridgeConfig[] | undefined;
  let mosquitto: MosquittoConfig | undefined;
  if (typeof values["mosquitto-conf"] === "string") {
    const path = values["mosquitto-conf"];
    try {
      mosquitto = loadMosquittoConf(path);
    } catch (error) {
      const text = error instanceof Error ? error.message : String(error);
      throw new UsageError(text.startsWith(path) ? text : `--mosquitto-conf ${path}: ${text}`);
    }
    const s = mosquitto.settings;
    for (const [name, value] of Object.entries(s.limits)) {
      merged[limitFlag(name as keyof Limits)] = value;
    }
    if (s.dataDir !== undefined) merged["data-dir"] = s.dataDir;
    if (s.sysIntervalS !== undefined) merged["sys-interval"] = s.sysIntervalS;
    if (s.logLevel !== undefined) merged["log-level"] = s.logLevel;
  }
  if (typeof values.config === "string") {
    let text: string;
    try {
      text = readConfig(values.config);
    } catch (error) {
      throw new UsageError(
        `--config ${values.config}: ${error instanceof Error ? error.message : error}`,
      );
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw new UsageError(
        `--config ${values.config}: not valid JSON: ${(error as Error).message}`,
      );
    }
    if (json === null || typeof json !== "object" || Array.isArray(json)) {
      throw new UsageError(`--config ${values.config}: must hold a JSON object`);
    }
    const known = new Map<string, string>();
    for (const [flag, key] of Object.entries({ ...STRING_FLAGS, ...PORT_FLAGS })) {
      known.set(key, flag);
    }
    for (const [flag, key] of LIMIT_FLAGS) known.set(key, flag);
    known.set("allowAnonymous", "allow-anonymous");
    known.set("tcp", "tcp");
    known.set("sysInterval", "sys-interval");
    known.set("httpWs", "http-ws");
    const folder = dirname(resolve(values.config));
    known.set("clusterReplicas", "cluster-replicas");
    known.set("reusePort", "reuse-port");
    for (const [key, value] of Object.entries(json as Record<string, unknown>)) {
      try {
        if (key === "listeners") listeners = parseListeners(value, "listeners", folder);
        else if (key === "bridges") bridges = parseBridges(value, "bridges", folder);
      } catch (error) {
        throw new UsageError(`--config ${values.config}: ${(error as Error).message}`);
      }
      if (key === "listeners" || key === "bridges") continue;
      const flag = known.get(key);
      if (flag === undefined || key === "config" || key === "mosquittoConf") {
        throw new UsageError(`--config ${values.config}: unknown key "${key}"`);
      }
      fromConfig.set(flag, key);
      // Relative paths in the file mean the file's folder, wherever the broker was started.
      merged[flag] = PATH_FLAGS.has(flag) && typeof value === "string" && value !== "" &&
          !isAbsolute(value)
        ? resolve(folder, value)
        : value;
    }
  }
  for (const [flag, value] of Object.entries(values)) {
    if (value === undefined) continue;
    merged[flag] = value;
    fromConfig.delete(flag);
  }
  if (mosquitto !== undefined) {
    if (listeners !== undefined || bridges !== undefined) {
      throw new UsageError(
        `--mosquitto-conf: cannot be combined with "listeners" or "bridges" in --config`,
      );
    }
    listeners = mosquitto.listeners;
    bridges = mosquitto.bridges;
  }
  if (listeners !== undefined) {
    const flags = ["host", "port", "no-tcp", "tcp", "tls-cert", "tls-key", "tls-port"];
    flags.push("psk-file", "psk-port", "ws-port", "wss-port", "ws-path");
    if (mosquitto !== undefined) flags.push("password-file", "acl-file", "allow-anonymous");
    const clash = flags.find((f) => merged[f] !== undefined);
    if (clash !== undefined) {
      throw new UsageError(
        `--${clash}: cannot be combined with ${
          mosquitto ? "--mosquitto-conf (the file's listeners" : '"listeners" (they'
        } replace the listener flags)`,
      );
    }
  }

  const str = (flag: string): string | undefined => {
    const v = merged[flag];
    if (v === undefined) return undefined;
    if (typeof v !== "string" || v === "") {
      throw new UsageError(`${label(flag)}: expected a non-empty string`);
    }
    return v;
  };
  const bool = (flag: string): boolean | undefined => {
    const v = merged[flag];
    if (v === undefined) return undefined;
    if (typeof v !== "boolean") throw new UsageError(`${label(flag)}: expected true or false`);
    return v;
  };
  const port = (flag: string, fallback?: number): number | undefined =>
    merged[flag] === undefined ? fallback : parseInteger(label(flag), merged[flag], 0, 65535);

  const logLevel = (str("log-level") ?? CLI_DEFAULTS.logLevel) as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new UsageError(
      `${label("log-level")}: must be one of ${LOG_LEVELS.join(", ")}, got "${logLevel}"`,
    );
  }
  const logFormat = (str("log-format") ?? CLI_DEFAULTS.logFormat) as LogFormat;
  if (!LOG_FORMATS.includes(logFormat)) {
    throw new UsageError(
      `${label("log-format")}: must be one of ${LOG_FORMATS.join(", ")}, got "${logFormat}"`,
    );
  }
  const sync = str("sync") ?? CLI_DEFAULTS.sync;
  if (sync !== "full" && sync !== "normal" && sync !== "off") {
    throw new UsageError(`${label("sync")}: must be full, normal or off, got "${sync}"`);
  }
  const limits: Partial<Limits> = {};
  for (const [flag, name] of LIMIT_FLAGS) {
    const value = merged[flag];
    if (value === undefined) continue;
    if (isBooleanLimit(name)) {
      if (value === true || value === "true") limits[name] = true;
      else if (value === false || value === "false") limits[name] = false;
      else throw new UsageError(`--${flag}: expected true or false, got "${value}"`);
      continue;
    }
    const [min, max] = LIMIT_RANGES[name];
    limits[name] = parseInteger(label(flag), value, min, max);
  }
  const wsPath = str("ws-path") ?? CLI_DEFAULTS.wsPath;
  if (!wsPath.startsWith("/")) {
    throw new UsageError(`${label("ws-path")}: must start with "/", got "${wsPath}"`);
  }
  if (merged["tcp"] !== undefined && typeof merged["tcp"] !== "boolean") {
    throw new UsageError(`${configPath}: key "tcp": expected true or false`);
  }
  const tcp = merged["tcp"] === undefined ? !bool("no-tcp") : merged["tcp"] === true;
  const config: CliConfig & { help: boolean; version: boolean } = {
    host: str("host") ?? CLI_DEFAULTS.host,
    port: port("port", CLI_DEFAULTS.port)!,
    tcp,
    logLevel,
    limits,
    tlsCert: str("tls-cert"),
    tlsKey: str("tls-key"),
    tlsPort: port("tls-port", CLI_DEFAULTS.tlsPort)!,
    pskFile: str("psk-file"),
    pskPort: port("psk-port", CLI_DEFAULTS.pskPort)!,
    stunnel: str("stunnel") ?? CLI_DEFAULTS.stunnel,
    wsPort: port("ws-port"),
    wssPort: port("wss-port"),
    wsPath,
    passwordFile: str("password-file"),
    aclFile: str("acl-file"),
    allowAnonymous: bool("allow-anonymous"),
    dataDir: str("data-dir"),
    sync,
    responseInformation: str("response-information"),
    sysIntervalS: merged["sys-interval"] === undefined
      ? CLI_DEFAULTS.sysIntervalS
      : parseInteger(label("sys-interval"), merged["sys-interval"], 0, 86_400),
    logFormat,
    httpPort: port("http-port"),
    httpHost: str("http-host") ?? CLI_DEFAULTS.httpHost,
    httpTokenFile: str("http-token-file"),
    httpWs: bool("http-ws") ?? false,
    reusePort: bool("reuse-port") ?? false,
    describe,
    help: bool("help") ?? false,
    version: bool("version") ?? false,
  };
  if (listeners !== undefined) config.listeners = listeners;
  if (bridges !== undefined && bridges.length > 0) config.bridges = bridges;
  if (mosquitto !== undefined) {
    config.mosquittoConf = values["mosquitto-conf"] as string;
    config.auth = mosquitto.auth;
    config.notes = mosquitto.notes;
    if (mosquitto.settings.logConnections !== undefined) {
      config.logConnections = mosquitto.settings.logConnections;
    }
  }
  const clusterUrls = str("cluster");
  if (clusterUrls !== undefined) {
    const nodeName = str("node-name");
    if (nodeName === undefined) throw new UsageError(`--cluster needs --node-name`);
    if (!/^[A-Za-z0-9_-]+$/.test(nodeName)) {
      throw new UsageError(`--node-name: letters, digits, "_" and "-" only, got "${nodeName}"`);
    }
    const servers = clusterUrls.split(",").map((u) => u.trim()).filter((u) => u !== "");
    for (const url of servers) {
      if (!/^(nats|tls):\/\/[^\s/]+$/.test(url) && !/^[^\s/:]+:\d+$/.test(url)) {
        throw new UsageError(`--cluster: expected nats://HOST:PORT, got "${url}"`);
      }
    }
    const user = str("cluster-user");
    const password = str("cluster-password");
    if ((user === undefined) !== (password === undefined)) {
      throw new UsageError(`--cluster-user and --cluster-password go together`);
    }
    config.cluster = {
      servers,
      nodeName,
      credsFile: str("cluster-creds"),
      user,
      password,
      token: str("cluster-token"),
      tlsCaFile: str("cluster-tls-ca"),
      replicas: merged["cluster-replicas"] === undefined
        ? 1
        : parseInteger(label("cluster-replicas"), merged["cluster-replicas"], 1, 5),
    };
  } else {
    for (
      const flag of [
        "node-name",
        "cluster-creds",
        "cluster-user",
        "cluster-password",
        "cluster-token",
        "cluster-tls-ca",
        "cluster-replicas",
      ]
    ) {
      if (merged[flag] !== undefined) throw new UsageError(`--${flag} needs --cluster`);
    }
  }
  if ((config.tlsCert === undefined) !== (config.tlsKey === undefined)) {
    throw new UsageError(`--tls-cert and --tls-key go together`);
  }
  if (config.wssPort !== undefined && config.tlsCert === undefined) {
    throw new UsageError(`--wss-port needs --tls-cert and --tls-key`);
  }
  if (
    !config.tcp && !config.tlsCert && !config.pskFile && config.wsPort === undefined &&
    config.listeners === undefined && !(config.httpWs && config.httpPort !== undefined)
  ) {
    throw new UsageError(`--no-tcp leaves no listener: add --tls-cert, --psk-file or --ws-port`);
  }
  if (config.httpPort === undefined) {
    for (const flag of ["http-token-file", "http-ws"] as const) {
      if (merged[flag] !== undefined) throw new UsageError(`${label(flag)} needs --http-port`);
    }
  }
  checkPorts(config);
  return config;
}
