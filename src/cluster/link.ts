/**
 * The seam between a broker and its cluster: what the broker calls (`ClusterLink`) and what the
 * cluster calls back (`ClusterHost`). Types only, plus the state mirror that joins the two; the
 * NATS implementation lives in `nats_cluster.ts` and is loaded only when a cluster is configured.
 *
 * @module
 */
import type { QoS } from "../codec/packet.ts";
import type { Logger } from "../logger.ts";
import type { Message, MessageProperties } from "../message.ts";
import type { Limits } from "../options.ts";
import type { SubscriptionOptions } from "../session/session.ts";
import type { ClusterStats } from "../stats.ts";

export type { ClusterStats };

/** How a broker joins a cluster of brokers through NATS JetStream. */
export interface ClusterOptions {
  /** NATS server URLs, e.g. `["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"]`. */
  servers: string[];
  /** This node's name: unique in the cluster and stable across restarts; `[A-Za-z0-9_-]`. */
  nodeName: string;
  /** A NATS credentials file (JWT + NKey seed), read at start. */
  credsFile?: string;
  /** NATS user name (with `password`). */
  user?: string;
  /** NATS password. */
  password?: string;
  /** NATS token. */
  token?: string;
  /** PEM file of the CA that signed the NATS servers' certificates: connect with TLS. */
  tlsCaFile?: string;
  /** JetStream replicas of the streams and buckets this cluster creates. Default 1. */
  replicas?: number;
  /** Prefix of every subject, stream and bucket: two clusters can share one NATS. Default "dmq". */
  prefix?: string;
}

/** One outbound message of a session as it moves between nodes. */
export interface SessionMessage {
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  /** 0 while queued. */
  packetId: number;
  /** 0 queued, 1 sent (waiting for PUBACK/PUBREC), 2 PUBREL sent. */
  state: 0 | 1 | 2;
  /** The message's cluster-wide identity (origin and sequence), when it has one. */
  id?: string;
  /** A 5.0 message's properties. */
  properties?: MessageProperties;
  /** A 5.0 message's expiry, epoch ms. */
  expiresAt?: number;
}

/** What a node hands over when another node takes a client id. */
export interface SessionState {
  /** `options`: a 5.0 subscription's (No Local, Retain As Published, …); absent = QoS only. */
  subscriptions: { topicFilter: string; qos: QoS; options?: SubscriptionOptions }[];
  messages: SessionMessage[];
  /** Inbound QoS 2 packet ids whose PUBREL has not come. */
  inboundQos2: number[];
}

/** What the broker calls on its cluster link. */
export interface ClusterLink {
  /**
   * A message published on this node (by a client after authorisation, a will, or the process)
   * and already routed to the local subscribers: send it to the other nodes. `retainedChanged`
   * says the retained store took it (stored, replaced or cleared).
   */
  forward(message: Message, retainedChanged: boolean): void;
  /**
   * Resolves once everything forwarded and every subscription change so far is on NATS (QoS ≥ 1
   * stored by JetStream); PUBACK, PUBREC and SUBACK wait for it.
   */
  settled(): Promise<void>;
  /**
   * The sessions restored from the node's own store have subscribed: what a previous run of
   * this node left in NATS for other filters is dropped.
   */
  restored(): Promise<void>;
  /**
   * A session handed over by `claim` has been registered here: the link asks the old node for
   * what reached the session there since, and hands it to `merge` before CONNACK.
   */
  adopted(clientId: string, merge: (late: SessionMessage[]) => void): void;
  /** The cluster-wide identity of a message that came through or went out over the link. */
  idOf(message: Message): string | undefined;
  /** A local session subscribed to `filter` (each new (session, filter) pair once). */
  filterAdded(filter: string): void;
  /** A local session's subscription to `filter` went. */
  filterRemoved(filter: string): void;
  /**
   * A local session joined the shared subscription `$share/{group}/{filter}` (each new
   * (session, group, filter) once). The cluster then hands this node its share of the group's
   * messages through `ClusterHost.deliverShared`, from every node this one included: a broker in a
   * cluster must not deliver a local publish to its own shared members directly.
   */
  sharedAdded(group: string, filter: string): void;
  /** A local member of `$share/{group}/{filter}` went. */
  sharedRemoved(group: string, filter: string): void;
  /**
   * A client connects here with this id: take the session from the node that has it. Resolves
   * with the handed-over state of a persistent session (undefined when there is none or the
   * client asked for a clean session); never rejects.
   */
  claim(clientId: string, clean: boolean): Promise<SessionState | undefined>;
  /**
   * A persistent session changed (subscriptions, connected or not): record it cluster-wide.
   * `expiresAt` is 0 while connected; `expiryMs` is the session's own expiry once offline (a 5.0
   * Session Expiry Interval; 0 = never), undefined for the broker's `sessionExpiryMs`.
   */
  sessionSaved(
    clientId: string,
    subscriptions: ReadonlyMap<string, SubscriptionOptions>,
    expiresAt: number,
    expiryMs?: number,
  ): void;
  /** A session ended here (expired, cleaned); not called for one handed to another node. */
  sessionDeleted(clientId: string): void;
  /** The link's counters. */
  stats(): ClusterStats;
  /** Leaves the cluster: drains the NATS connection. */
  close(): Promise<void>;
}

/** What the cluster calls on the broker. */
export interface ClusterHost {
  readonly log: Logger;
  readonly limits: Limits;
  /** A message from another node: route it to the local subscribers only. */
  deliver(message: Message): void;
  /** A retained update from the cluster (an empty payload clears): local store only. */
  setRetained(message: Message): void;
  /**
   * Another node takes this client id. Phase 1: close its connection here (publishing its will,
   * as a takeover does); a persistent session asked for (`handOver`) is returned and stays here,
   * still collecting messages, until phase 2 (or 10 s); any other session ends. Phase 2: the
   * messages that reached the session since phase 1, and the session ends here.
   */
  release(
    clientId: string,
    handOver: boolean,
    phase: 1 | 2,
    idOf: (message: Message) => string | undefined,
  ): SessionState | undefined;
  /**
   * A message for the shared subscription `$share/{group}/{filter}` that the cluster gave to this
   * node: deliver it to one local member. Returns false when there is none (any more); a QoS ≥ 1
   * message then goes to another node. Optional until the broker has shared subscriptions.
   */
  deliverShared?(group: string, filter: string, message: Message): boolean;
}

const NAME = /^[A-Za-z0-9_-]+$/;

/** Checks options; throws TypeError/RangeError naming the bad one. */
export function validateClusterOptions(options: ClusterOptions): void {
  if (!Array.isArray(options.servers) || options.servers.length === 0) {
    throw new TypeError(`cluster option "servers" must list at least one NATS URL`);
  }
  if (typeof options.nodeName !== "string" || !NAME.test(options.nodeName)) {
    throw new TypeError(
      `cluster option "nodeName" must be letters, digits, "_" or "-", got ${
        JSON.stringify(options.nodeName)
      }`,
    );
  }
  const prefix = options.prefix ?? "dmq";
  if (!NAME.test(prefix)) {
    throw new TypeError(`cluster option "prefix" must be letters, digits, "_" or "-"`);
  }
  const replicas = options.replicas ?? 1;
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 5) {
    throw new RangeError(
      `cluster option "replicas" must be an integer from 1 to 5, got ${replicas}`,
    );
  }
}
