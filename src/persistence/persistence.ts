/**
 * The persistence interface: what the broker mirrors into a store so that persistent sessions,
 * their undelivered messages and retained messages survive a restart.
 *
 * The broker keeps all state in memory and calls the store's mutation methods synchronously as
 * that state changes; they only queue work. Everything queued in one event-loop turn is written
 * as ONE batch (group commit). Before it acknowledges a client (PUBACK, PUBREC, SUBACK to a
 * persistent session) the broker awaits {@linkcode Persistence.commit}, which resolves when that
 * batch is as durable as the store promises.
 *
 * Two backends implement it: `MemoryPersistence` (memory.ts, the default, nothing survives the
 * process) and `SqlitePersistence` (sqlite.ts, one `broker.db` file). Both pass the shared suite
 * in persistence_suite.ts.
 *
 * @module
 */
import type { QoS } from "../codec/packet.ts";

/**
 * The MQTT 5.0 properties a message keeps on its way from publisher to subscriber, as stored.
 * The names are those of the standard (3.3.2.3); every field is optional, and a 3.1.1 message has
 * none.
 */
export interface StoredProperties {
  /** Payload Format Indicator: false unspecified bytes, true UTF-8. */
  payloadFormatIndicator?: boolean;
  /** Content Type. */
  contentType?: string;
  /** Response Topic. */
  responseTopic?: string;
  /** Correlation Data. */
  correlationData?: Uint8Array;
  /** User Properties, in the order they were received (a name may repeat). */
  userProperties?: [string, string][];
}

/**
 * An application message as stored: a retained message, or one waiting for a session.
 *
 * Payloads are kept by reference until they are written: do not mutate a payload after handing
 * it to a store.
 */
export interface StoredMessage {
  /** Topic name. */
  topic: string;
  /** Application payload. An empty payload given to `setRetained` deletes the retained topic. */
  payload: Uint8Array;
  /** QoS of the message (for an outbound record: the QoS it is delivered with). */
  qos: QoS;
  /** Retain flag as it will be sent. Always `true` for messages returned as retained. */
  retain: boolean;
  /** The 5.0 properties forwarded with it; absent when it has none. */
  properties?: StoredProperties;
  /**
   * Wall-clock deadline (epoch ms) from its Message Expiry Interval: after it the message is not
   * delivered, and it is not loaded. Absolute, so time spent while the broker was down counts.
   * 0 or absent: it does not expire.
   */
  expiresAt?: number;
}

/** A granted subscription with its 5.0 options (3.1.1 subscriptions have only the first two). */
export interface StoredSubscription {
  /** The topic filter as subscribed, `$share/{group}/` included for a shared subscription. */
  topicFilter: string;
  /** Granted (maximum) QoS. */
  qos: QoS;
  /** No Local: messages the session published itself are not sent to it. */
  noLocal?: boolean;
  /** Retain As Published: forwarded messages keep their retain flag. */
  retainAsPublished?: boolean;
  /** Retain Handling: 0 send retained on subscribe, 1 only if new, 2 never. */
  retainHandling?: 0 | 1 | 2;
  /** Subscription Identifier (1..268 435 455). */
  subscriptionId?: number;
}

/** A will that waits for its Will Delay Interval while its session is offline (5.0). */
export interface StoredWill {
  /** Will topic. */
  topic: string;
  /** Will payload. */
  payload: Uint8Array;
  /** Will QoS. */
  qos: QoS;
  /** Will retain flag. */
  retain: boolean;
  /** Will properties that travel with the message (payload format, content type, …). */
  properties?: StoredProperties;
  /**
   * The will's Message Expiry Interval in seconds, counted from when it is published; absent: it
   * does not expire.
   */
  messageExpiryS?: number;
  /** When it is due (epoch ms): the disconnect time plus the Will Delay Interval. */
  publishAt: number;
}

/** A persistent session without its messages. */
export interface SessionRecord {
  /** Client identifier; the key of the session. */
  clientId: string;
  /** Granted subscriptions, in the order the broker keeps them. */
  subscriptions: StoredSubscription[];
  /**
   * When the session expires, in epoch milliseconds. 0 means "not while the client is connected"
   * or "never"; the broker sets it when the client disconnects. A session loaded with 0 after a
   * crash was connected when the broker stopped.
   */
  expiresAt: number;
  /**
   * Session Expiry Interval in seconds (5.0, after the broker's cap); 0xFFFFFFFF = never. Absent:
   * the broker's `sessionExpiryMs` applies (3.1.1 sessions, and every session of a schema 1 store).
   * Restoring a session saved while connected (`expiresAt` 0) starts its expiry from this.
   */
  expiryIntervalS?: number;
  /** A will still waiting for its delay; absent when there is none. */
  will?: StoredWill;
}

/**
 * Where an outbound message is in its delivery:
 * - `"queued"`: not sent yet (`packetId` is 0);
 * - `"sent"`: PUBLISH sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2);
 * - `"pubrel"`: PUBREC received and PUBREL sent, waiting for PUBCOMP (QoS 2).
 */
export type OutboundState = "queued" | "sent" | "pubrel";

/** A message for one session, waiting to be sent or acknowledged. */
export interface OutboundRecord {
  /** The session it belongs to. */
  clientId: string;
  /**
   * Order within the session, assigned by the broker and strictly increasing. After a restart the
   * broker continues from the largest loaded `seq` + 1.
   */
  seq: number;
  /** Packet identifier it was sent with; 0 while `"queued"`. */
  packetId: number;
  /** Delivery state. */
  state: OutboundState;
  /** The message itself. */
  message: StoredMessage;
  /** 5.0 Subscription Identifiers it is delivered with (resent with it); absent: none. */
  subscriptionIds?: number[];
}

/** A session as loaded: the record plus its outbound messages and unreleased QoS 2 packet ids. */
export interface LoadedSession extends SessionRecord {
  /** Outbound records ordered by `seq`. */
  outbound: OutboundRecord[];
  /**
   * Packet identifiers of QoS 2 PUBLISHes received from the client whose PUBREL has not arrived
   * yet (the broker must not deliver a retransmission of them again), in ascending order.
   */
  inboundQos2: number[];
}

/** Everything a store returns at start-up. */
export interface LoadedState {
  /** Retained messages, ordered by topic. */
  retained: StoredMessage[];
  /** Sessions, ordered by client identifier. */
  sessions: LoadedSession[];
}

/** The limits `load` honours; take them from the broker's `Limits`. */
export interface LoadLimits {
  /** At most this many sessions are loaded (the first ones by client identifier). */
  maxSessions: number;
  /** At most this many retained messages are loaded (in topic order). */
  maxRetained: number;
  /** Retained messages are loaded while their topic (UTF-8) + payload bytes fit in this total. */
  maxRetainedBytes: number;
  /**
   * At most this many `"queued"` records are loaded per session (the oldest by `seq`). In-flight
   * records (`"sent"`, `"pubrel"`) are always loaded: they are bounded by the broker's
   * `maxInflight`, and dropping one would break a QoS 2 exchange.
   */
  maxQueued: number;
  /**
   * Current time in epoch ms, for session and message expiry: a session or message whose
   * `expiresAt` is non-zero and not after `now` is not loaded. Defaults to `Date.now()`.
   */
  now?: number;
}

/** What `load` left out. Everything left out is also deleted from the store (at the next commit),
 * so that the store mirrors what the broker holds. */
export interface SkippedCounts {
  /** Sessions over `maxSessions`. */
  sessions: number;
  /** Sessions that had expired. */
  expiredSessions: number;
  /** Retained messages over `maxRetained` or `maxRetainedBytes`. */
  retained: number;
  /** Outbound records not returned: over `maxQueued`, or belonging to a session not loaded. */
  messages: number;
  /** Retained and outbound messages not returned because their `expiresAt` had passed. */
  expiredMessages: number;
}

/** The result of `load`. */
export interface LoadResult extends LoadedState {
  /** What was left out because of the limits or expiry. */
  skipped: SkippedCounts;
  /**
   * Wills of sessions that expired while the broker was down: the session ended, so its will is
   * due now [MQTT-3.1.2-8]. Their sessions are not loaded (and are deleted).
   */
  expiredWills: { clientId: string; will: StoredWill }[];
}

/** What `open` found and had to do. */
export interface OpenReport {
  /** True when the store started empty: it did not exist, or an unreadable one was moved aside. */
  created: boolean;
  /**
   * Set when an unreadable store was moved aside: where to, and why. The store then started empty.
   */
  movedAside?: { path: string; reason: string };
  /** Set when the store was written by an older schema and was migrated in place: its version. */
  migratedFrom?: number;
}

/**
 * A store the broker mirrors its durable state into.
 *
 * Mutation methods are synchronous and cheap: they queue the change. Every change queued during
 * one event-loop turn is written in one batch, scheduled for the end of that turn; `commit()`
 * returns a promise for the batch that holds everything queued so far. After `close()`, mutation
 * calls are ignored and `commit()` rejects: a closed store cannot make anything durable.
 *
 * @example Mirror a QoS 1 message for an offline session, then acknowledge
 * ```ts
 * import { MemoryPersistence } from "./memory.ts";
 *
 * const store: Persistence = new MemoryPersistence();
 * await store.open();
 * store.load({ maxSessions: 100, maxRetained: 100, maxRetainedBytes: 1 << 20, maxQueued: 100 });
 * store.saveSession({ clientId: "c1", subscriptions: [{ topicFilter: "a/#", qos: 1 }], expiresAt: 0 });
 * store.addOutbound({
 *   clientId: "c1",
 *   seq: 1,
 *   packetId: 0,
 *   state: "queued",
 *   message: { topic: "a/b", payload: new Uint8Array([1]), qos: 1, retain: false },
 * });
 * await store.commit(); // now PUBACK may be sent to the publisher
 * await store.close();
 * ```
 */
export interface Persistence {
  /** Opens (creating if needed) the store. Throws when the store exists but must not be used. */
  open(): Promise<OpenReport>;
  /**
   * Returns the stored state within `limits`, and counts what was left out. What is left out is
   * deleted from the store with the next batch. Call once after `open`, before any mutation.
   */
  load(limits: LoadLimits): LoadResult;
  /** Stores a retained message, replacing the topic's previous one; an empty payload deletes it. */
  setRetained(message: StoredMessage): void;
  /** Inserts or replaces a session record (subscriptions included). Its messages are untouched. */
  saveSession(record: SessionRecord): void;
  /** Deletes a session with all its outbound records and inbound QoS 2 packet ids. */
  deleteSession(clientId: string): void;
  /** Adds a message to a session; a record with the same `clientId` and `seq` is replaced. */
  addOutbound(record: OutboundRecord): void;
  /** Changes the packet id and state of an outbound record; no-op when it does not exist. */
  updateOutbound(clientId: string, seq: number, packetId: number, state: OutboundState): void;
  /** Deletes an outbound record (acknowledged, expired or dropped). */
  deleteOutbound(clientId: string, seq: number): void;
  /** Records a QoS 2 PUBLISH received from the client and not yet released by PUBREL. */
  addInboundQos2(clientId: string, packetId: number): void;
  /** Forgets an inbound QoS 2 packet id (PUBREL received). */
  deleteInboundQos2(clientId: string, packetId: number): void;
  /**
   * Resolves when everything queued so far is as durable as the store promises; rejects when the
   * batch holding it could not be written, or when the store is closed. Every call made in the
   * same turn shares one batch, so awaiting it per acknowledgement costs one transaction per turn.
   */
  commit(): Promise<void>;
  /** True while changes are queued and not yet written. */
  readonly pending: boolean;
  /** Batches written since the store was created (a diagnostic; batches that failed excluded). */
  readonly commits: number;
  /** Writes what is pending, then closes. Idempotent. `open()` may be called again afterwards. */
  close(): Promise<void>;
}
