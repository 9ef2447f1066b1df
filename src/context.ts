/**
 * What connections and packet handlers share with the broker that owns them, and what handlers
 * see of a connection: `ClientLink`. Handlers depend on these interfaces, never on `Connection`,
 * so dependencies point one way (connection → handlers → context) without a cycle.
 *
 * @module
 */
import type { Decoder } from "./codec/decoder.ts";
import type { Packet, ProtocolVersion, Will } from "./codec/packet.ts";
import type { SessionState } from "./cluster/link.ts";
import type { BrokerEventMap } from "./events.ts";
import type {
  AuthenticateEnhancedHook,
  AuthenticateHook,
  AuthorizePublishHook,
  AuthorizeSubscribeHook,
  ClientInfo,
} from "./hooks.ts";
import type { Logger } from "./logger.ts";
import type { Message } from "./message.ts";
import type { Limits } from "./options.ts";
import type { RetainedStore } from "./retained_store.ts";
import type { Router } from "./router.ts";
import type { SessionRegistry } from "./session/registry.ts";
import type { Session, SessionLink } from "./session/session.ts";
import type { Counters } from "./stats.ts";

/** The deciding hooks a broker was given. */
export interface Hooks {
  authenticate?: AuthenticateHook;
  authenticateEnhanced?: AuthenticateEnhancedHook;
  authorizePublish?: AuthorizePublishHook;
  authorizeSubscribe?: AuthorizeSubscribeHook;
}

/** Durable mirror of broker state; no-ops without a store. */
export interface StateMirror {
  /** Resolves when every change made so far is durable; acks to clients wait for it. */
  durable(): Promise<void> | undefined;
  sessionSaved(session: Session): void;
  sessionDeleted(session: Session): void;
  retainedChanged(message: Message): void;
  inboundQos2Added(session: Session, packetId: number): void;
  inboundQos2Removed(session: Session, packetId: number): void;
}

/** What CONNECT needs of a cluster: the client id taken cluster-wide, a handed-over session. */
export interface ClusterSeam {
  /** Takes the client id from whichever node has it; resolves with a persistent session's state. */
  claim(clientId: string, clean: boolean): Promise<SessionState | undefined>;
  /** Registers a session handed over by another node. */
  adopt(clientId: string, client: ClientInfo, state: SessionState): Session;
}

/** Something the broker flushes once per event-loop turn. */
export interface Flushable {
  flush(): void;
}

/** Broker state and services, as seen by a connection and its handlers. */
export interface BrokerContext {
  /**
   * A coarse clock: milliseconds since the broker started, refreshed by the sweep (every 250 ms)
   * and on each accepted connection. Small integers, so the timestamps every connection keeps
   * stay unboxed.
   */
  now: number;
  /** Whether connects and disconnects get an info log line each. */
  readonly logConnections: boolean;
  /** Whether every packet gets a debug line (`--log-level debug`, like `mosquitto -v`). */
  readonly trace: boolean;
  readonly limits: Limits;
  /** Response Information prefix for 5.0 clients that request it; "" = none. */
  readonly responseInformation: string;
  /**
   * The decoder every connection uses while it holds no bytes of its own; decoding is
   * synchronous, and a connection detaches what it must keep before it waits.
   */
  readonly decoder: Decoder;
  readonly counters: Counters;
  readonly router: Router;
  readonly retained: RetainedStore;
  /** Sessions and their lifecycle. */
  readonly registry: SessionRegistry;
  readonly hooks: Hooks;
  readonly log: Logger;
  readonly mirror: StateMirror | undefined;
  /** Set when the broker is a node of a cluster. */
  readonly cluster: ClusterSeam | undefined;
  /**
   * Routes a message and updates the retained store; `from` is undefined for the broker itself.
   * Returns how many sessions it went to.
   */
  publish(message: Message, from: ClientInfo | undefined): number;
  /** Publishes a will through `authorizePublish`, as the client would have. */
  publishWill(client: ClientInfo, will: Will): void;
  /** Dispatches an event if anyone listens. */
  emit<K extends keyof BrokerEventMap>(type: K, detail: BrokerEventMap[K]): void;
  /** Whether anyone listens for `type`, so callers can skip building the detail. */
  listening(type: keyof BrokerEventMap): boolean;
  /** A connection ended: its will (what is left of it) and its session go to the registry. */
  connectionClosed(link: ClientLink, will: Will | undefined, reason: string): void;
  /**
   * Asks for `connection.flush()` at the end of this event-loop turn. One setImmediate serves
   * every connection that wrote in the turn.
   */
  scheduleFlush(connection: Flushable): void;
  /** An id for a client that sent an empty one [MQTT-3.1.3-6]. */
  generateClientId(): string;
}

/** 5.0 state of one connection, negotiated by CONNECT; absent on 3.1.1 connections. */
export interface V5State {
  /** The client's Receive Maximum: most unacknowledged QoS 1/2 PUBLISH we may send it. */
  receiveMaximum: number;
  /** The client's Maximum Packet Size, in bytes (no limit: 268 435 460). */
  maximumPacketSize: number;
  /** The client's Request Problem Information: reason strings and user properties on failures. */
  problemInformation: boolean;
  /** Inbound topic aliases of this connection [MQTT-3.3.2-10]. */
  aliases: Map<number, string> | undefined;
  /** Inbound QoS 1/2 PUBLISH not yet fully acknowledged, against our Receive Maximum. */
  inboundPending: number;
  /** Session Expiry Interval in force, in seconds, as CONNACK granted or DISCONNECT changed. */
  sessionExpiryS: number;
  /** The CONNECT's Authentication Method, for re-authentication; undefined without one. */
  authMethod: string | undefined;
  /** Steps of an AUTH exchange so far (0 when none runs). */
  authStep: number;
  /** Whether the exchange running is a re-authentication (after CONNACK). */
  reauthenticating: boolean;
}

/**
 * The part of the broker packet handlers may use: no decoder, no write scheduling, no
 * connection bookkeeping (those belong to the connection).
 */
export type ProtocolContext = Omit<
  BrokerContext,
  "now" | "decoder" | "scheduleFlush" | "connectionClosed"
>;

/** A connection as packet handlers use it. `Connection` implements it. */
export interface ClientLink extends SessionLink {
  /** The broker as handlers see it. */
  readonly ctx: ProtocolContext;
  /** Who the client is, for hooks and events. */
  readonly client: ClientInfo;
  /** 3 or 4 until a 5.0 CONNECT is read. */
  version: ProtocolVersion;
  /** 5.0 negotiated state; undefined for 3.1.1. */
  v5: V5State | undefined;
  /** The attached session, once CONNECT is accepted. */
  session: Session | undefined;
  /** The will to publish if the connection ends abnormally. */
  will: Will | undefined;
  /** Keep alive in force, in ms; 0 = off. */
  keepAliveMs: number;
  /** Set when CONNECT is accepted. */
  connected: boolean;
  /** Set when the broker was at `maxConnections` as this connection arrived. */
  readonly overLimit: boolean;
  /** Whether the connection is closed or closing. */
  readonly isClosed: boolean;
  /** Encodes `packet` for this connection's version and queues it. */
  send(packet: Packet): void;
  /** Queues bytes as they are. */
  sendPacket(bytes: Uint8Array): void;
  /** Queues a PUBACK, PUBREC or PUBCOMP; a reason code ≠ 0 only reaches 5.0 clients. */
  sendAck(type: "puback" | "pubrec" | "pubcomp", packetId: number, reasonCode: number): void;
  /** Closes after what is queued has been written; the will is dropped unless `publishWill`. */
  closeAfterFlush(reason: string, publishWill?: boolean): void;
  /**
   * Set while an accepted CONNECT waits for its CONNACK (a store commit, the cluster): the session
   * queues instead of sending, so nothing goes out before the CONNACK [MQTT-3.2.0-1].
   */
  holding: boolean;
  /** Closes now; publishes the will unless told not to. */
  close(reason: string, publishWill?: boolean): void;
  /** Closes for a reason 5.0 can name: 5.0 clients get DISCONNECT with `reasonCode` first. */
  disconnect(reasonCode: number, reason: string, publishWill: boolean): void;
  /** Closes for an error, through the one error → wire action table. */
  fail(error: unknown): void;
  /** Counts a publish against the rate limit. */
  chargeRate(payloadBytes: number): void;
}
