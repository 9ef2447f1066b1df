/**
 * Counters the broker keeps, readable through `broker.stats()`.
 *
 * @module
 */
import type { ClusterStats } from "./cluster/link.ts";

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
  queued = 0;
  inflight = 0;
  dropped: DropCounters = {
    queueFull: 0,
    offlineQos0: 0,
    retainedFull: 0,
    notAuthorized: 0,
    forwardDenied: 0,
    sessionDiscarded: 0,
  };
}
