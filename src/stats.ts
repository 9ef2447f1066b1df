/**
 * Counters the broker keeps, readable through `broker.stats()`.
 *
 * @module
 */

import { MemoryBudget } from "./memory_budget.ts";

/** The cluster link as `broker.stats()` reports it. */
export interface ClusterStats {
  /** This node's name. */
  node: string;
  /** Whether the NATS connection is up. */
  connected: boolean;
  /** The NATS server connected to, when connected. */
  server: string;
  /** NATS subjects this node subscribes to for its local subscriptions (core + JetStream). */
  subjects: number;
  /** Messages sent to other nodes over NATS (routed and retained updates). */
  messagesOut: number;
  /** Messages from other nodes delivered here. */
  messagesIn: number;
  /** JetStream publishes that failed and were retried before the client was acknowledged. */
  publishRetries: number;
  /** Messages not forwarded because their subject would exceed NATS's control line. */
  tooLong: number;
}

/** Why a message was not delivered or not stored. */
export interface DropCounters {
  /** A session queue was at `maxQueued` or `maxQueuedBytes`. */
  queueFull: number;
  /** A QoS 0 message for an offline session (never queued, as in mosquitto). */
  offlineQos0: number;
  /** A retained message not stored: `maxRetained` or `maxRetainedBytes` reached. */
  retainedFull: number;
  /** A PUBLISH refused by `authorizePublish`, or to a `$SYS` topic from a client. */
  notAuthorized: number;
  /** A message refused at delivery by `authorizeForward`. */
  forwardDenied: number;
  /** Queued messages discarded with a session that expired or was cleaned. */
  sessionDiscarded: number;
  /** 5.0: a message whose Message Expiry Interval passed before it could be sent [MQTT-3.3.2-5]. */
  expired: number;
  /** 5.0: a message larger than the receiving client's Maximum Packet Size, not sent to it [MQTT-3.1.2-25]. */
  packetTooLarge: number;
  /**
   * `memoryLimit` reached: a QoS 0 message for a session with a backlog, or a 5.0 QoS 1/2 PUBLISH
   * answered 0x97 (quota exceeded).
   */
  memoryLimit: number;
}

/** A snapshot of the broker's counters. */
export interface BrokerStats {
  /** Open network connections, before and after CONNECT. */
  connections: number;
  /** Sessions held, online and offline. */
  sessions: number;
  /** Subscriptions over all sessions. */
  subscriptions: number;
  /** Retained messages stored, the broker's own `$SYS` topics included. */
  retained: number;
  /** Topic+payload size of the retained messages: what `maxRetainedBytes` bounds. */
  retainedBytes: number;
  /** Messages waiting in session queues, over all sessions. */
  queued: number;
  /** QoS 1/2 messages sent and not yet acknowledged, over all sessions. */
  inflight: number;
  /** PUBLISH packets received from clients and in-process `publish()` calls. */
  messagesIn: number;
  /** PUBLISH packets sent to clients. */
  messagesOut: number;
  /** MQTT bytes read from clients (after TLS or WebSocket framing is removed). */
  bytesIn: number;
  /** MQTT bytes written to clients. */
  bytesOut: number;
  /** Connections handled since start, those later refused included. */
  connectionsTotal: number;
  /** Connections refused for a limit: CONNACK 0x03, or closed unanswered past 1 024 of those. */
  connectionsRefused: number;
  /** Connections closed for a protocol violation or a malformed packet. */
  protocolErrors: number;
  /**
   * Bytes `memoryLimit` counts now: queued and in-flight messages of all sessions (topic, payload
   * and a per-entry overhead, once per session holding them), retained messages and unwritten
   * socket bytes.
   */
  memoryUsed: number;
  /** Times a publisher's reads were paused because `memoryLimit` was reached. */
  memoryPauses: number;
  /** CONNECTs accepted (CONNACK 0 sent) since start. */
  connectionsAccepted: number;
  /** Clients whose CONNECT was accepted and whose connection is open. */
  connected: number;
  /** The most clients connected at once since start. */
  connectedMax: number;
  /** Offline persistent sessions removed because they expired. */
  sessionsExpired: number;
  /** MQTT packets of any type received from clients. */
  packetsIn: number;
  /** MQTT packets of any type queued for clients. */
  packetsOut: number;
  /** Messages not delivered or not stored, by reason. */
  dropped: DropCounters;
  /** The link to the other nodes, when the broker is part of a cluster. */
  cluster?: ClusterStats;
}

/** The mutable counters; `broker.stats()` copies them. */
export class Counters {
  messagesIn = 0;
  messagesOut = 0;
  bytesIn = 0;
  bytesOut = 0;
  connectionsTotal = 0;
  connectionsRefused = 0;
  protocolErrors = 0;
  /** CONNECTs accepted (CONNACK 0 sent). */
  connectionsAccepted = 0;
  /** Refused CONNECTs by CONNACK return code (1..5), index = code. */
  connectRefused: number[] = [0, 0, 0, 0, 0, 0];
  /** Clients connected now (CONNECT accepted, not yet closed), and the most there ever were. */
  connected = 0;
  connectedMax = 0;
  /** MQTT packets of any type received and sent (mosquitto's `messages/received|sent`). */
  packetsIn = 0;
  packetsOut = 0;
  /** Offline persistent sessions removed because they expired. */
  sessionsExpired = 0;
  queued = 0;
  inflight = 0;
  memoryPauses = 0;
  /** Client PUBLISH packets routed (not refused): the read loop pauses a publisher by it. */
  messagesRouted = 0;
  /** The `memoryLimit` accounting, shared by sessions, connections and the retained store. */
  readonly memory: MemoryBudget = new MemoryBudget();
  dropped: DropCounters = {
    queueFull: 0,
    offlineQos0: 0,
    retainedFull: 0,
    notAuthorized: 0,
    forwardDenied: 0,
    sessionDiscarded: 0,
    expired: 0,
    packetTooLarge: 0,
    memoryLimit: 0,
  };
}
