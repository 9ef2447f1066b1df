/**
 * Read-only access to a broker's state for the operations side (metrics, admin API, status
 * page) without widening the public `Broker` class: the broker registers its internals here,
 * keyed by the instance, so two brokers in one process stay apart.
 *
 * @module
 */
import type { Connection } from "./connection.ts";
import type { BrokerContext } from "./context.ts";
import type { Persistence } from "./persistence/persistence.ts";

/** A listening socket as the operations side reports it. */
export interface ListenerInfo {
  readonly hostname: string;
  readonly port: number;
  readonly transport: string;
}

/** What a broker shares with the operations side. */
export interface BrokerInternals {
  readonly ctx: BrokerContext;
  /** Every open connection, before CONNECT too. */
  readonly connections: ReadonlySet<Connection>;
  /** `Date.now()` at construction. */
  readonly startedAt: number;
  readonly store: Persistence | undefined;
  /** The listeners opened through `broker.listen()` and still open. */
  listeners(): ListenerInfo[];
  /** `broker.ready`: still loading the store, resolved, or rejected (the store is unusable). */
  readiness(): "loading" | "ready" | "failed";
  isClosed(): boolean;
}

const INTERNALS = new WeakMap<object, BrokerInternals>();

/** Called once by the broker's constructor. */
export function registerInternals(broker: object, internals: BrokerInternals): void {
  INTERNALS.set(broker, internals);
}

/** The internals of a `Broker`; TypeError for anything else. */
export function internalsOf(broker: object): BrokerInternals {
  const internals = INTERNALS.get(broker);
  if (internals === undefined) throw new TypeError("Expected a Broker instance");
  return internals;
}
