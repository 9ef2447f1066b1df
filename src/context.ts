/**
 * What connections and packet handlers share with the broker that owns them.
 *
 * @module
 */
import type { Decoder } from "./codec/decoder.ts";
import type { Will } from "./codec/packet.ts";
import type { SessionState } from "./cluster/link.ts";
import type { Connection } from "./connection.ts";
import type { BrokerEventMap } from "./events.ts";
import type {
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
import type { Session, SessionContext } from "./session/session.ts";
import type { Counters } from "./stats.ts";

/** The deciding hooks a broker was given. */
export interface Hooks {
  authenticate?: AuthenticateHook;
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

/** Broker state and services, as seen by a connection. */
export interface BrokerContext {
  /**
   * A coarse clock: milliseconds since the broker started, refreshed by the sweep (every 250 ms)
   * and on each accepted connection. Small integers, so the timestamps every connection keeps
   * stay unboxed.
   */
  now: number;
  /** Whether connects and disconnects get an info log line each. */
  readonly logConnections: boolean;
  readonly limits: Limits;
  /**
   * The decoder every connection uses while it holds no bytes of its own; decoding is
   * synchronous, and a connection detaches what it must keep before it waits.
   */
  readonly decoder: Decoder;
  readonly counters: Counters;
  readonly router: Router;
  readonly retained: RetainedStore;
  readonly sessions: Map<string, Session>;
  readonly connections: Set<Connection>;
  readonly sessionContext: SessionContext;
  readonly hooks: Hooks;
  readonly log: Logger;
  readonly mirror: StateMirror | undefined;
  /** Set when the broker is a node of a cluster. */
  readonly cluster: ClusterSeam | undefined;
  /** Routes a message and updates the retained store; `from` is undefined for the broker itself. */
  publish(message: Message, from: ClientInfo | undefined): void;
  /** Dispatches an event if anyone listens. */
  emit<K extends keyof BrokerEventMap>(type: K, detail: BrokerEventMap[K]): void;
  /** Whether anyone listens for `type`, so callers can skip building the detail. */
  listening(type: keyof BrokerEventMap): boolean;
  /** Ends a session: its subscriptions, queue and registry entry, and its stored copy. */
  endSession(session: Session): void;
  /** A connection ended: publish its will if given, detach or end its session. */
  connectionClosed(connection: Connection, will: Will | undefined, reason: string): void;
  /**
   * Asks for `connection.flush()` at the end of this event-loop turn. One setImmediate serves
   * every connection that wrote in the turn.
   */
  scheduleFlush(connection: Connection): void;
  /** An id for a client that sent an empty one with clean session [MQTT-3.1.3-6]. */
  generateClientId(): string;
}
