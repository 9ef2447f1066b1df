/**
 * The bounded registry: every limit of the broker, its default, and what happens when it is hit.
 *
 * @module
 */

/** Every limit of the broker. Each one is documented with its default and the action on hitting it. */
export interface Limits {
  /** Concurrent network connections (before CONNECT too). Over it: CONNACK 0x03, then close. Default 50 000. */
  maxConnections: number;
  /** Sessions held, online and offline. A CONNECT that would create one more: CONNACK 0x03. Default 100 000. */
  maxSessions: number;
  /** Subscriptions of one session. A SUBSCRIBE filter past it: SUBACK 0x80 (5.0: 0x97) for that filter. Default 10 000. */
  maxSubscriptionsPerSession: number;
  /** QoS 1/2 messages sent to one client and not yet acknowledged. The rest waits in the session queue. Default 128
   * (mosquitto: 20; a larger window lets an acking subscriber keep up: 231k vs 142k QoS 1 msg/s measured with 32). */
  maxInflight: number;
  /** Messages waiting in one session's queue (offline, or past `maxInflight`, or a slow socket).
   * A message that would exceed it is dropped (newest dropped, like mosquitto) and counted as `queueFull`. Default 10 000
   * (mosquitto: 1 000; higher here so a subscriber keeping up with bursts of thousands of QoS 1 messages loses none). */
  maxQueued: number;
  /** Payload+topic bytes waiting in one session's queue. Same action as `maxQueued`. Default 16 MiB. */
  maxQueuedBytes: number;
  /** Retained topics held. A new retained topic past it is delivered but not stored; counted as `retainedFull`. Default 100 000. */
  maxRetained: number;
  /** Topic+payload bytes of all retained messages. Same action as `maxRetained`. Default 64 MiB. */
  maxRetainedBytes: number;
  /** Largest packet accepted, whole (fixed header included), in bytes. Checked from the fixed header before
   * buffering; a larger packet closes the connection. Default 1 MiB. */
  maxPacketSize: number;
  /** Longest topic name or filter, in UTF-8 bytes. PUBLISH past it closes the connection; a SUBSCRIBE filter past it gets 0x80. Default 65 535. */
  maxTopicLength: number;
  /** Most levels in a topic name or filter. Same action as `maxTopicLength`. Default 128. */
  maxTopicLevels: number;
  /** Longest client identifier, in UTF-8 bytes. Past it: CONNACK 0x02. Default 1 024. */
  maxClientIdLength: number;
  /** Time from TCP accept to a complete CONNECT. Past it the connection is closed. Default 10 000 ms. */
  connectTimeoutMs: number;
  /** An offline persistent session unused this long is removed with its queue. 0 = never. Default 7 days. */
  sessionExpiryMs: number;
  /** Bytes written to a socket and not yet taken by the kernel. Past it, the session stops sending and
   * messages wait in its queue (bounded by `maxQueued`). Default 256 KiB. */
  maxSocketBufferBytes: number;
  /** Publish messages per second one client may send; 0 = unlimited. Over budget its reads pause. Default 0. */
  rateLimitMessages: number;
  /** Publish payload bytes per second one client may send; 0 = unlimited. Over budget its reads pause. Default 0. */
  rateLimitBytes: number;
  /** Longest keep alive a client may ask for, in seconds (mosquitto's `max_keepalive`). A 5.0 client asking
   * more, or 0, is told this value in CONNACK's Server Keep Alive; a 3.1.1 client asking more, or 0, is accepted
   * and held to it (closed after 1.5 × this of silence; mosquitto 2.0.11 accepts but does not hold it).
   * 65 535 = no cap. Default 65 535. */
  maxKeepAlive: number;
  /** QoS 1/2 PUBLISH a 5.0 client may send before their acks (the CONNACK's Receive Maximum). One more:
   * DISCONNECT 0x93. Default 1 024. */
  receiveMaximum: number;
  /** Topic aliases a 5.0 client may use on one connection (CONNACK's Topic Alias Maximum). An alias of 0 or
   * above it: DISCONNECT 0x94. 0 = none. Default 10 (mosquitto's `max_topic_alias`). */
  topicAliasMaximum: number;
  /** Longest Session Expiry Interval a 5.0 client gets, in seconds; a larger request is lowered and the CONNACK
   * says so. 4 294 967 295 = never expires. Default 4 294 967 295 (the client decides, as mosquitto). */
  maxSessionExpiry: number;
  /** Longest Message Expiry Interval a message keeps, in seconds; a larger one is lowered. Messages without one
   * do not expire. Default 4 294 967 295 (no cap). */
  maxMessageExpiry: number;
  /** Highest QoS accepted (CONNACK's Maximum QoS). A 5.0 PUBLISH above it: DISCONNECT 0x9B; 3.1.1: close.
   * Subscriptions are granted at most this. Default 2. */
  maxQos: number;
  /** Whether retained messages are kept (CONNACK's Retain Available). Off: a PUBLISH or will with retain
   * closes the connection (5.0: DISCONNECT 0x9A or CONNACK 0x9A), as mosquitto's `retain_available false`. Default true. */
  retainAvailable: boolean;
  /** Whether filters may hold `+`/`#` (Wildcard Subscription Available). Off: SUBACK 0xA2 (0x80 in 3.1.1). Default true. */
  wildcardSubscriptionAvailable: boolean;
  /** Whether `$share/{group}/{filter}` works (Shared Subscription Available). Off: SUBACK 0x9E (0x80 in 3.1.1). Default true. */
  sharedSubscriptionAvailable: boolean;
  /** Whether a SUBSCRIBE may carry a Subscription Identifier. Off: DISCONNECT 0xA1 for one that does. Default true. */
  subscriptionIdentifierAvailable: boolean;
  /** Bytes of queued and in-flight messages (all sessions), retained messages and unwritten socket
   * bytes the broker may hold (mosquitto's `memory_limit`); 0 = no limit. From half of it, QoS 0 messages for
   * sessions with a backlog (and any message for a session that has taken nothing for 500 ms) are
   * dropped (`dropped.memoryLimit`); at the limit, publishers are not read until usage is back under
   * 7/8 of it, and a 5.0 QoS 1/2 PUBLISH gets PUBACK/PUBREC 0x97. Default 0. */
  memoryLimit: number;
}

/** The names of the limits that are integers (the others are on/off switches). */
export type IntegerLimit = {
  [K in keyof Limits]: Limits[K] extends number ? K : never;
}[keyof Limits];

/** The names of the limits that are switches. */
export type BooleanLimit = Exclude<keyof Limits, IntegerLimit>;

/** The defaults of every limit. */
export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxConnections: 50_000,
  maxSessions: 100_000,
  maxSubscriptionsPerSession: 10_000,
  maxInflight: 128,
  maxQueued: 10_000,
  maxQueuedBytes: 16 * 1024 * 1024,
  maxRetained: 100_000,
  maxRetainedBytes: 64 * 1024 * 1024,
  maxPacketSize: 1024 * 1024,
  maxTopicLength: 65_535,
  maxTopicLevels: 128,
  maxClientIdLength: 1_024,
  connectTimeoutMs: 10_000,
  sessionExpiryMs: 7 * 24 * 3600 * 1000,
  maxSocketBufferBytes: 256 * 1024,
  rateLimitMessages: 0,
  rateLimitBytes: 0,
  maxKeepAlive: 65_535,
  receiveMaximum: 1_024,
  topicAliasMaximum: 10,
  maxSessionExpiry: 4_294_967_295,
  maxMessageExpiry: 4_294_967_295,
  maxQos: 2,
  retainAvailable: true,
  wildcardSubscriptionAvailable: true,
  sharedSubscriptionAvailable: true,
  subscriptionIdentifierAvailable: true,
  memoryLimit: 0,
});

/** Allowed range of each integer limit: [min, max]. */
export const LIMIT_RANGES: Readonly<Record<IntegerLimit, readonly [number, number]>> = Object
  .freeze({
    maxConnections: [1, 10_000_000],
    maxSessions: [1, 10_000_000],
    maxSubscriptionsPerSession: [1, 10_000_000],
    maxInflight: [1, 65_535],
    maxQueued: [0, 10_000_000],
    maxQueuedBytes: [0, 2 ** 40],
    maxRetained: [0, 10_000_000],
    maxRetainedBytes: [0, 2 ** 40],
    maxPacketSize: [2, 268_435_460],
    maxTopicLength: [1, 65_535],
    maxTopicLevels: [1, 65_535],
    maxClientIdLength: [1, 65_535],
    connectTimeoutMs: [1, 3_600_000],
    sessionExpiryMs: [0, 2 ** 40],
    maxSocketBufferBytes: [1024, 2 ** 32],
    rateLimitMessages: [0, 1e9],
    rateLimitBytes: [0, 2 ** 40],
    maxKeepAlive: [1, 65_535],
    receiveMaximum: [1, 65_535],
    topicAliasMaximum: [0, 65_535],
    maxSessionExpiry: [0, 4_294_967_295],
    maxMessageExpiry: [1, 4_294_967_295],
    maxQos: [0, 2],
    memoryLimit: [0, 2 ** 40],
  });

/**
 * The CLI flag of each limit: its name in kebab case, except where mosquitto's name is the one
 * users know (`--max-keepalive`).
 */
export function limitFlag(name: keyof Limits): string {
  if (name === "maxKeepAlive") return "max-keepalive";
  if (name === "maxQos") return "max-qos";
  return name.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());
}

/** Whether a limit is an on/off switch rather than an integer. */
export function isBooleanLimit(name: keyof Limits): name is BooleanLimit {
  return typeof DEFAULT_LIMITS[name] === "boolean";
}

/** Merges partial limits over the defaults; throws TypeError/RangeError naming a bad option. */
export function resolveLimits(partial: Partial<Limits> = {}): Limits {
  const out: Limits = { ...DEFAULT_LIMITS };
  for (const [key, value] of Object.entries(partial)) {
    if (!(key in DEFAULT_LIMITS)) {
      throw new TypeError(`Unknown limit "${key}"`);
    }
    if (value === undefined) continue;
    if (isBooleanLimit(key as keyof Limits)) {
      if (typeof value !== "boolean") {
        throw new TypeError(`Limit "${key}" must be true or false, got ${String(value)}`);
      }
      (out as unknown as Record<string, boolean>)[key] = value;
      continue;
    }
    const [min, max] = LIMIT_RANGES[key as IntegerLimit];
    if (typeof value !== "number" || !Number.isInteger(value)) {
      throw new TypeError(`Limit "${key}" must be an integer, got ${String(value)}`);
    }
    if (value < min || value > max) {
      throw new RangeError(`Limit "${key}" must be between ${min} and ${max}, got ${value}`);
    }
    out[key as IntegerLimit] = value;
  }
  return out;
}
