/**
 * What a bridge is told: the shape shared by mosquitto.conf's `connection` sections, the JSON
 * config's `bridges` array and the API, its check, and mosquitto's topic prefix rules.
 *
 * Pure: no I/O, no MQTT client (that is `bridge.ts`, loaded only when a bridge runs).
 *
 * @module
 */
import { isAbsolute, resolve } from "node:path";
import type { QoS } from "../codec/packet.ts";
import { matchTopic, validateTopicFilter, validateTopicName } from "../topic/topic.ts";

/** One `topic` line of a bridge. */
export interface BridgeTopic {
  /** The pattern (may hold wildcards); "" when the prefixes alone name the topics. */
  pattern: string;
  /** "out" (local → remote, the default), "in" (remote → local) or "both". */
  direction: "in" | "out" | "both";
  /** Highest QoS of the bridge's subscriptions for this topic. Default 0. */
  qos: QoS;
  /** Prepended to the pattern on the local side. Default "". */
  localPrefix: string;
  /** Prepended to the pattern on the remote side. Default "". */
  remotePrefix: string;
}

/** One remote address. */
export interface BridgeAddress {
  /** Host name or IP address. */
  host: string;
  /** TCP port. */
  port: number;
}

/** TLS towards the remote (`Deno.connectTls`): the remote's certificate is always verified. */
export interface BridgeTlsConfig {
  /** PEM CA certificate(s) the remote's certificate must chain to; default the system roots. */
  caFile?: string;
  /** PEM client certificate, for a remote that asks for one. */
  certFile?: string;
  /** PEM key of `certFile`. */
  keyFile?: string;
  /** ALPN protocol to offer. */
  alpn?: string;
}

/** TLS-PSK towards the remote, through an stunnel in client mode. */
export interface BridgePskConfig {
  /** The identity sent to the remote. */
  identity: string;
  /** The key, in hex (as mosquitto's `bridge_psk`). */
  key: string;
}

/** One bridge: an MQTT client inside the broker, connected to a remote broker. */
export interface BridgeConfig {
  /** The connection name (`connection NAME`). */
  name: string;
  /** Remote addresses, tried in order (see `roundRobin`). */
  addresses: BridgeAddress[];
  /**
   * false (default): after a failure the first address is tried again first, so the bridge
   * returns to the main broker; true: the next address is tried after the one that failed.
   */
  roundRobin?: boolean;
  /** "mqttv311" (default) or "mqttv50". */
  protocolVersion?: "mqttv311" | "mqttv50";
  /** Client id at the remote. Default `HOSTNAME.NAME` (as mosquitto). */
  clientId?: string;
  /** Client id of the bridge's own session in this broker. Default `local.CLIENTID`. */
  localClientId?: string;
  /** User name at the remote. */
  remoteUsername?: string;
  /** Password at the remote. */
  remotePassword?: string;
  /** User name of the bridge's local session: local ACLs apply to it. */
  localUsername?: string;
  /** Password of the local session (checked only if the broker authenticates its bridge). */
  localPassword?: string;
  /** Clean session at the remote. Default false (as mosquitto). */
  cleanSession?: boolean;
  /**
   * Clean session of the bridge's local session. Default false, so messages for the remote
   * queue in this broker while the remote is away (and, with a store, across restarts).
   */
  localCleanSession?: boolean;
  /** Keep-alive towards the remote, in seconds. Default 60. */
  keepAliveS?: number;
  /**
   * Seconds before reconnecting: one number for a constant delay, or [base, cap] for an
   * exponential backoff with jitter (as mosquitto). Default [5, 30].
   */
  restartTimeoutS?: number | [number, number];
  /**
   * Tell the remote this is a bridge (protocol level | 0x80), so it does not echo our own
   * messages back (mosquitto understands it). Default true. A remote that refuses it is retried
   * without, and the bridge then drops the echoes itself.
   */
  tryPrivate?: boolean;
  /** Publish 1/0 on the notification topic (retained) locally and at the remote. Default true. */
  notifications?: boolean;
  /** Only publish the notifications locally. Default false. */
  notificationsLocalOnly?: boolean;
  /** Default `$SYS/broker/connection/CLIENTID/state`. */
  notificationTopic?: string;
  /** Keep the retain flag on outgoing messages. Default true. */
  outgoingRetain?: boolean;
  /** The topics bridged; at least one. */
  topics: BridgeTopic[];
  /** TLS towards the remote. */
  tls?: BridgeTlsConfig;
  /** TLS-PSK towards the remote (not with `tls`). */
  psk?: BridgePskConfig;
}

/** A bad bridge setting; the message names the bridge and the key. */
export class BridgeConfigError extends TypeError {
  /** The message names the bridge and the key. */
  constructor(message: string) {
    super(message);
    this.name = "BridgeConfigError";
  }
}

/**
 * Checks one topic line's parts with mosquitto's rules: prefixes hold no wildcards; with an
 * empty pattern the prefixes are the topics and at least one is set.
 *
 * @throws {BridgeConfigError} with the reason.
 */
export function checkBridgeTopic(topic: BridgeTopic, where: string): void {
  if (!["in", "out", "both"].includes(topic.direction)) {
    throw new BridgeConfigError(`${where}: direction must be in, out or both`);
  }
  if (topic.qos !== 0 && topic.qos !== 1 && topic.qos !== 2) {
    throw new BridgeConfigError(`${where}: QoS must be 0, 1 or 2`);
  }
  for (const [name, prefix] of [["local", topic.localPrefix], ["remote", topic.remotePrefix]]) {
    if (prefix !== "" && validateTopicName(prefix, 65_535, 65_535) !== undefined) {
      throw new BridgeConfigError(
        `${where}: invalid ${name} prefix "${prefix}" (no wildcards, not empty)`,
      );
    }
  }
  if (topic.pattern === "" && topic.localPrefix === "" && topic.remotePrefix === "") {
    throw new BridgeConfigError(`${where}: an empty pattern needs a local or remote prefix`);
  }
  for (const filter of [localFilter(topic), remoteFilter(topic)]) {
    const error = validateTopicFilter(filter, 65_535, 65_535);
    if (error !== undefined) {
      throw new BridgeConfigError(`${where}: invalid topic "${filter}": ${error}`);
    }
  }
}

/** The filter the bridge subscribes to locally (for "out" and "both"). */
export function localFilter(topic: BridgeTopic): string {
  return topic.localPrefix + topic.pattern;
}

/** The filter the bridge subscribes to at the remote (for "in" and "both"). */
export function remoteFilter(topic: BridgeTopic): string {
  return topic.remotePrefix + topic.pattern;
}

/**
 * Maps a local topic to the remote one with the first outgoing topic line that matches it
 * (local prefix replaced by the remote prefix), as mosquitto does; undefined when none does.
 *
 * @example
 * ```ts
 * import { mapOutgoing } from "./bridge_config.ts";
 *
 * const topics = [{ pattern: "#", direction: "out" as const, qos: 1 as const, localPrefix: "gw/", remotePrefix: "site1/" }];
 * console.log(mapOutgoing(topics, "gw/temp")); // { topic: "site1/temp", qos: 1 }
 * ```
 */
export function mapOutgoing(
  topics: readonly BridgeTopic[],
  localTopic: string,
): { topic: string; qos: QoS } | undefined {
  for (const t of topics) {
    if (t.direction === "in" || !matchTopic(localFilter(t), localTopic)) continue;
    return { topic: t.remotePrefix + localTopic.slice(t.localPrefix.length), qos: t.qos };
  }
  return undefined;
}

/** Maps a remote topic to the local one (remote prefix replaced by the local prefix). */
export function mapIncoming(
  topics: readonly BridgeTopic[],
  remoteTopic: string,
): { topic: string; qos: QoS } | undefined {
  for (const t of topics) {
    if (t.direction === "out" || !matchTopic(remoteFilter(t), remoteTopic)) continue;
    return { topic: t.localPrefix + remoteTopic.slice(t.remotePrefix.length), qos: t.qos };
  }
  return undefined;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

const BRIDGE_KEYS = new Set([
  "name",
  "addresses",
  "roundRobin",
  "protocolVersion",
  "clientId",
  "localClientId",
  "remoteUsername",
  "remotePassword",
  "localUsername",
  "localPassword",
  "cleanSession",
  "localCleanSession",
  "keepAliveS",
  "restartTimeoutS",
  "tryPrivate",
  "notifications",
  "notificationsLocalOnly",
  "notificationTopic",
  "outgoingRetain",
  "topics",
  "tls",
  "psk",
]);

/**
 * Checks a whole bridge (from JSON, the API or the mosquitto.conf reader) and fills nothing in:
 * defaults are applied where the bridge runs.
 *
 * @throws {BridgeConfigError} naming the bridge and the key at fault.
 */
export function checkBridge(bridge: BridgeConfig, where = `bridge "${bridge.name}"`): void {
  if (typeof bridge.name !== "string" || !/^[A-Za-z0-9_.-]+$/.test(bridge.name)) {
    throw new BridgeConfigError(`${where}: name must be letters, digits, "_", "." or "-"`);
  }
  if (!Array.isArray(bridge.addresses) || bridge.addresses.length === 0) {
    throw new BridgeConfigError(`${where}: needs at least one address`);
  }
  for (const a of bridge.addresses) {
    if (!isObject(a) || typeof a.host !== "string" || a.host === "") {
      throw new BridgeConfigError(`${where}: address needs a host`);
    }
    if (!Number.isInteger(a.port) || a.port < 1 || a.port > 65535) {
      throw new BridgeConfigError(`${where}: address port must be from 1 to 65535`);
    }
  }
  if (
    bridge.protocolVersion !== undefined && bridge.protocolVersion !== "mqttv311" &&
    bridge.protocolVersion !== "mqttv50"
  ) {
    throw new BridgeConfigError(`${where}: protocolVersion must be mqttv311 or mqttv50`);
  }
  if (!Array.isArray(bridge.topics) || bridge.topics.length === 0) {
    throw new BridgeConfigError(`${where}: needs at least one topic`);
  }
  bridge.topics.forEach((t, i) => checkBridgeTopic(t, `${where}: topics[${i}]`));
  const k = bridge.keepAliveS;
  if (k !== undefined && (!Number.isInteger(k) || k < 0 || k > 65535)) {
    throw new BridgeConfigError(`${where}: keepAliveS must be an integer from 0 to 65535`);
  }
  const r = bridge.restartTimeoutS;
  const delays = Array.isArray(r) ? r : r === undefined ? [] : [r];
  if (
    (Array.isArray(r) && r.length !== 2) ||
    delays.some((d) => typeof d !== "number" || !Number.isFinite(d) || d < 0) ||
    (Array.isArray(r) && r[0] > r[1])
  ) {
    throw new BridgeConfigError(
      `${where}: restartTimeoutS must be seconds >= 0, or [base, cap] with base <= cap`,
    );
  }
  if (bridge.psk !== undefined) {
    if (bridge.tls !== undefined) {
      throw new BridgeConfigError(`${where}: cannot use both certificate and PSK encryption`);
    }
    if (
      typeof bridge.psk.identity !== "string" || bridge.psk.identity === "" ||
      typeof bridge.psk.key !== "string" || !/^([0-9a-fA-F]{2})+$/.test(bridge.psk.key)
    ) {
      throw new BridgeConfigError(`${where}: psk needs an identity and a hex key`);
    }
  }
  if (bridge.notificationTopic !== undefined) {
    if (validateTopicName(bridge.notificationTopic, 65_535, 65_535) !== undefined) {
      throw new BridgeConfigError(`${where}: invalid notificationTopic`);
    }
  }
}

/**
 * Checks a `bridges` array from JSON and returns it typed.
 *
 * @param folder Relative `tls.caFile`, `tls.certFile` and `tls.keyFile` are resolved against it
 * (the config file's folder); kept as they are when omitted.
 * @throws {BridgeConfigError} naming the entry and the key at fault.
 */
export function parseBridges(
  value: unknown,
  where = "bridges",
  folder?: string,
): BridgeConfig[] {
  if (!Array.isArray(value)) throw new BridgeConfigError(`${where}: expected an array`);
  const names = new Set<string>();
  return value.map((entry, i) => {
    const at = `${where}[${i}]`;
    if (!isObject(entry)) throw new BridgeConfigError(`${at}: expected an object`);
    for (const key of Object.keys(entry)) {
      if (!BRIDGE_KEYS.has(key)) throw new BridgeConfigError(`${at}: unknown key "${key}"`);
    }
    for (
      const key of [
        "clientId",
        "localClientId",
        "remoteUsername",
        "remotePassword",
        "localUsername",
        "localPassword",
        "notificationTopic",
      ]
    ) {
      if (entry[key] !== undefined && typeof entry[key] !== "string") {
        throw new BridgeConfigError(`${at}.${key}: expected a string`);
      }
    }
    for (
      const key of [
        "roundRobin",
        "cleanSession",
        "localCleanSession",
        "tryPrivate",
        "notifications",
        "notificationsLocalOnly",
        "outgoingRetain",
      ]
    ) {
      if (entry[key] !== undefined && typeof entry[key] !== "boolean") {
        throw new BridgeConfigError(`${at}.${key}: expected true or false`);
      }
    }
    const topics = Array.isArray(entry.topics)
      ? entry.topics.map((t: unknown, j: number) => {
        if (!isObject(t) || typeof t.pattern !== "string") {
          throw new BridgeConfigError(`${at}.topics[${j}]: expected { pattern, ... }`);
        }
        return {
          pattern: t.pattern,
          direction: t.direction ?? "out",
          qos: t.qos ?? 0,
          localPrefix: t.localPrefix ?? "",
          remotePrefix: t.remotePrefix ?? "",
        } as BridgeTopic;
      })
      : entry.topics;
    const bridge = { ...entry, topics } as unknown as BridgeConfig;
    checkBridge(bridge, at);
    const tls = bridge.tls;
    if (isObject(tls) && folder !== undefined) {
      const copy = { ...tls };
      for (const key of ["caFile", "certFile", "keyFile"] as const) {
        const name = copy[key];
        if (typeof name === "string" && name !== "" && !isAbsolute(name)) {
          copy[key] = resolve(folder, name);
        }
      }
      bridge.tls = copy;
    }
    if (names.has(bridge.name)) throw new BridgeConfigError(`${at}: name used twice`);
    names.add(bridge.name);
    return bridge;
  });
}
