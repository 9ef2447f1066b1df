/**
 * The broker: owns the registry (connections, sessions, subscriptions, retained messages),
 * the hooks that decide and the events that observe.
 *
 * @module
 */
import { type Properties, type QoS, REASON, type Will } from "./codec/packet.ts";
import { Decoder } from "./codec/decoder.ts";
import { utf8Length } from "./codec/encoder.ts";
import { Connection } from "./connection.ts";
import type { BrokerContext, Flushable, Hooks, StateMirror } from "./context.ts";
import type { BrokerEventMap } from "./events.ts";
import type {
  AuthenticateEnhancedHook,
  AuthenticateHook,
  AuthorizeForwardHook,
  AuthorizePublishHook,
  AuthorizeSubscribeHook,
  ClientInfo,
  RemoteAddress,
} from "./hooks.ts";
import { createLogger, formatAddress, LOG_LEVELS, type Logger, type LogLevel } from "./logger.ts";
import { forwardedProperties, Message } from "./message.ts";
import { type Limits, resolveLimits } from "./options.ts";
import { RetainedStore } from "./retained_store.ts";
import { Router } from "./router.ts";
import { SessionRegistry } from "./session/registry.ts";
import type { Outgoing, Session, SessionContext } from "./session/session.ts";
import { type BrokerStats, Counters } from "./stats.ts";
import { parseSharedFilter } from "./topic/shared.ts";
import { validateTopicName } from "./topic/topic.ts";
import { DurableState, restoreState } from "./durable_state.ts";
import type { Persistence } from "./persistence/persistence.ts";
import type { BrokerConn } from "./transport/types.ts";
import { type ListenerInfo, registerInternals } from "./introspection.ts";
import { SysTopics } from "./sys_topics.ts";
import {
  type ClusterHost,
  type ClusterLink,
  type ClusterOptions,
  validateClusterOptions,
} from "./cluster/link.ts";
import { clusterMirror } from "./cluster/mirror.ts";
import { addMessages, adoptSession, exportSession } from "./cluster/session_state.ts";
import type { ClusterSeam } from "./context.ts";

/** Options of `new Broker()`. */
export interface BrokerOptions {
  /** Limits; anything left out takes its default from `DEFAULT_LIMITS`. */
  limits?: Partial<Limits>;
  /** Decides whether a CONNECT is accepted. Default: everyone. */
  authenticate?: AuthenticateHook;
  /**
   * Decides 5.0 enhanced authentication (AUTH exchanges, re-authentication) for a CONNECT with an
   * Authentication Method. Without it such a CONNECT gets CONNACK 0x8C.
   */
  authenticateEnhanced?: AuthenticateEnhancedHook;
  /**
   * 5.0 Response Information: a client that requests it gets this prefix followed by its client
   * id in CONNACK, as the base of its response topics. Default "" (none sent).
   */
  responseInformation?: string;
  /** Decides whether a client may publish to a topic. Default: all but `$SYS/…`. */
  authorizePublish?: AuthorizePublishHook;
  /** Decides a subscription. Default: every valid filter at the requested QoS. */
  authorizeSubscribe?: AuthorizeSubscribeHook;
  /** Decides at delivery whether a client may receive a topic. Default: yes. */
  authorizeForward?: AuthorizeForwardHook;
  /** Log level of the built-in logger (stderr). Default "info". Ignored when `logger` is given. */
  logLevel?: LogLevel;
  /** A logger of your own. */
  logger?: Logger;
  /**
   * Publish broker statistics as retained messages under `$SYS/broker/…` every this many ms,
   * like mosquitto's `sys_interval`. 0 (the default for embedding; the CLI uses 10 s) = off.
   */
  sysIntervalMs?: number;
  /**
   * Log one info line per accepted CONNECT (who, from where, over what, as which user) and per
   * disconnect, like mosquitto's "New client connected". Default false; the CLI turns it on.
   */
  logConnections?: boolean;
  /**
   * Where persistent sessions and retained messages are kept across restarts: a
   * `SqlitePersistence` (or any `Persistence`). Without it, state lives in memory only and ends
   * with the process. With it, PUBACK/PUBREC/SUBACK to a client wait until the change is stored.
   */
  persistence?: Persistence;
  /**
   * Join a cluster of brokers through NATS JetStream: one topic space, retained messages and
   * client ids cluster-wide (see the README's cluster section). The NATS client is loaded only
   * when this is given. `ready` rejects when NATS cannot be reached.
   */
  cluster?: ClusterOptions;
}

/** Where and how `broker.listen()` accepts connections. */
export interface ListenOptions {
  /** Default "127.0.0.1" (this machine only, as mosquitto 2.0); "0.0.0.0" serves every host. */
  hostname?: string;
  /** Default 1883 (8883 with `tls`); 0 picks a free port. */
  port?: number;
  /** PEM certificate chain and private key: listen with TLS through `Deno.listenTls`. */
  tls?: { cert: string; key: string };
  /** Name given to clients' `remoteAddress.transport`. Default "tcp" or "tls". */
  transport?: string;
  /**
   * Wraps each accepted connection before it is handled (e.g. to read a PROXY header); a
   * rejection closes that connection only.
   */
  accept?: (conn: Deno.Conn) => Promise<BrokerConn>;
  /**
   * The listener's name: given to clients' `remoteAddress.listener`, so hooks can apply
   * per-listener rules (see `handle()`).
   */
  name?: string;
  /** Connections open at once through this listener; past it a new one is closed at once. */
  maxConnections?: number;
  /** Log "listening on …" at info. Default true (the CLI writes its own line). */
  log?: boolean;
  /**
   * SO_REUSEPORT (Linux): several processes listen on one port and the kernel spreads the
   * connections. Deno needs `--unstable-net` for it. Plain TCP only.
   */
  reusePort?: boolean;
}

/** A listening socket of the broker. */
export interface Listener {
  /** The bound address. */
  readonly hostname: string;
  /** The bound port: the real one when 0 was asked for. */
  readonly port: number;
  /** "tcp", "tls" or the name given in `ListenOptions.transport`. */
  readonly transport: string;
  /** Stops accepting; connections already accepted stay. */
  close(): Promise<void>;
}

/** What `broker.publish()` takes. */
export interface PublishOptions {
  /** Topic name: no wildcards; `$SYS/…` is allowed from the process. */
  topic: string;
  /** Bytes, or a string sent as UTF-8. Default empty. */
  payload?: Uint8Array | string;
  /** Default 0. */
  qos?: QoS;
  /** Default false. */
  retain?: boolean;
  /**
   * 5.0 properties forwarded to 5.0 subscribers (payload format, content type, response topic,
   * correlation data, user properties) and the Message Expiry Interval in seconds.
   */
  properties?: Pick<
    Properties,
    | "payloadFormatIndicator"
    | "contentType"
    | "responseTopic"
    | "correlationData"
    | "userProperties"
    | "messageExpiryInterval"
  >;
}

/** A listener for one broker event. */
export type BrokerEventListener<K extends keyof BrokerEventMap> = (
  event: CustomEvent<BrokerEventMap[K]>,
) => void;

const SWEEP_MS = 250;
// Connections arriving while at maxConnections are read only to send CONNACK 0x03; past this
// many of those at once they are closed unanswered.
const MAX_REFUSING = 1024;

const utf8 = new TextEncoder();

// Every option of `new Broker()`: anything else is a TypeError, as an unknown limit is.
const OPTION_NAMES: ReadonlySet<string> = new Set([
  "limits",
  "authenticate",
  "authorizePublish",
  "authorizeSubscribe",
  "authorizeForward",
  "logLevel",
  "logger",
  "sysIntervalMs",
  "logConnections",
  "persistence",
  "authenticateEnhanced",
  "responseInformation",
  "cluster",
]);

function closeQuietly(conn: BrokerConn): void {
  try {
    conn.close();
  } catch {
    // Closed already.
  }
}

function remoteOf(
  conn: BrokerConn,
  transport: string,
  listener: string | undefined,
): RemoteAddress | undefined {
  const addr = conn.remoteAddr as
    | { hostname?: string; port?: number; transport?: string }
    | undefined;
  if (addr === undefined || typeof addr.hostname !== "string") return undefined;
  const named = addr.transport === "tcp" || addr.transport === undefined
    ? transport
    : addr.transport;
  const remote: RemoteAddress = { hostname: addr.hostname, port: addr.port ?? 0, transport: named };
  if (listener !== undefined) remote.listener = listener;
  return remote;
}

/**
 * An MQTT 5.0 and 3.1.1 broker. Two brokers in one process share nothing.
 *
 * @example Start a broker, publish from the process, stop it
 * ```ts
 * import { Broker } from "./mod.ts";
 *
 * await using broker = new Broker({ limits: { maxConnections: 1000 } });
 * const listener = await broker.listen({ hostname: "127.0.0.1", port: 0 });
 * console.log(`listening on ${listener.port}`);
 * await broker.publish({ topic: "status", payload: "up", retain: true });
 * ```
 */
export class Broker extends EventTarget {
  readonly #limits: Limits;
  readonly #counters = new Counters();
  readonly #router = new Router();
  readonly #retained: RetainedStore;
  readonly #registry: SessionRegistry;
  readonly #connections = new Set<Connection>();
  readonly #listeners = new Set<{ close(): void; done: Promise<void>; info: ListenerInfo }>();
  readonly #handlers = new Map<string, Set<unknown>>();
  readonly #wrapped = new WeakMap<object, EventListener>();
  readonly #log: Logger;
  readonly #ctx: BrokerContext;
  #mirror: StateMirror | undefined;
  #sweepTimer: ReturnType<typeof setInterval> | undefined;
  #sysTimer: ReturnType<typeof setInterval> | undefined;
  #readiness: "loading" | "ready" | "failed" = "loading";
  readonly #startedAt = Date.now();
  // Epoch ms at which the retained store may hold an expired message (5.0 Message Expiry).
  #retainedExpiry = Infinity;
  // Connections with bytes queued this turn, written together once the turn's reads are done.
  #dirty: Flushable[] = [];
  #spare: Flushable[] = [];
  #flushScheduled = false;
  readonly #flushAll = () => {
    this.#flushScheduled = false;
    const dirty = this.#dirty;
    this.#dirty = this.#spare;
    for (let i = 0; i < dirty.length; i++) dirty[i].flush();
    dirty.length = 0;
    this.#spare = dirty;
  };
  // With a store, nothing a turn queued reaches a socket before that turn's changes are
  // committed: a PUBLISH or PUBREL to a persistent session never runs ahead of its state.
  readonly #flushTurn = () => {
    const store = this.#store;
    if (store === undefined || !store.pending) return this.#flushAll();
    store.commit().then(this.#flushAll, this.#commitFailed);
  };
  readonly #commitFailed = (error: unknown) => {
    this.#log.error(`persistence: commit failed, closing the clients waiting on it: ${error}`);
    this.#flushScheduled = false;
    const dirty = this.#dirty;
    this.#dirty = [];
    for (const connection of dirty) (connection as Connection).close("persistence failed", false);
  };
  #refusing = 0;
  #closed = false;
  #closing: Promise<void> | undefined;
  #ready: Promise<void>;
  #store: Persistence | undefined;
  #cluster: ClusterLink | undefined;
  #sessionContext: SessionContext;
  #seam: ClusterSeam | undefined;
  #clustered = false;
  // Sessions handed to another node that still collect messages until it has taken them.
  readonly #leaving = new Map<
    string,
    { session: Session; sent: Set<Outgoing>; timer: ReturnType<typeof setTimeout> }
  >();

  /** Creates a broker; throws TypeError/RangeError naming a bad option. */
  constructor(options: BrokerOptions = {}) {
    super();
    if (options === null || typeof options !== "object") {
      throw new TypeError("Broker options must be an object");
    }
    for (const key of Object.keys(options)) {
      if (!OPTION_NAMES.has(key)) throw new TypeError(`Unknown Broker option "${key}"`);
    }
    this.#limits = resolveLimits(options.limits);
    for (
      const hook of [
        "authenticate",
        "authenticateEnhanced",
        "authorizePublish",
        "authorizeSubscribe",
        "authorizeForward",
      ] as const
    ) {
      if (options[hook] !== undefined && typeof options[hook] !== "function") {
        throw new TypeError(`Broker option "${hook}" must be a function`);
      }
    }
    if (
      options.logger === undefined && options.logLevel !== undefined &&
      !LOG_LEVELS.includes(options.logLevel)
    ) {
      throw new RangeError(
        `Broker option "logLevel" must be one of ${LOG_LEVELS.join(", ")}, got ${
          String(options.logLevel)
        }`,
      );
    }
    this.#log = options.logger ?? createLogger(options.logLevel ?? "info");
    this.#counters.memory.limit = this.#limits.memoryLimit;
    this.#retained = new RetainedStore(this.#limits, this.#counters);
    const sessionContext: SessionContext = this.#sessionContext = {
      limits: this.#limits,
      counters: this.#counters,
      authorizeForward: options.authorizeForward,
    };
    const hooks: Hooks = {
      authenticate: options.authenticate,
      authenticateEnhanced: options.authenticateEnhanced,
      authorizePublish: options.authorizePublish,
      authorizeSubscribe: options.authorizeSubscribe,
    };
    let nextId = 0;
    // deno-lint-ignore no-this-alias
    const broker = this;
    const prefix = `auto-${crypto.randomUUID().slice(0, 8)}-`;
    const logConnections = options.logConnections === true && this.#log.enabled("info");
    const responseInformation = options.responseInformation ?? "";
    if (typeof responseInformation !== "string") {
      throw new TypeError(`Broker option "responseInformation" must be a string`);
    }
    this.#registry = new SessionRegistry({
      limits: this.#limits,
      sessionContext,
      unsubscribeAll: (session) => this.#router.unsubscribeAll(session),
      sessionSaved: (session) => this.#mirror?.sessionSaved(session),
      sessionDeleted: (session) => this.#mirror?.sessionDeleted(session),
      publishWill: (client, will) => this.#publishWill(client, will),
      debug: (line) => this.#log.debug(line),
      expired: () => this.#counters.sessionsExpired++,
      ended: (session) => this.#cluster?.sessionDeleted(session.clientId),
    });
    this.#ctx = {
      now: 0,
      logConnections,
      trace: this.#log.enabled("debug"),
      limits: this.#limits,
      responseInformation,
      // Payloads are views of the read buffer; a Message copies one only if something keeps it.
      decoder: new Decoder({ maxPacketSize: this.#limits.maxPacketSize, borrowPayloads: true }),
      counters: this.#counters,
      router: this.#router,
      retained: this.#retained,
      registry: this.#registry,
      hooks,
      log: this.#log,
      get mirror() {
        return broker.#mirror;
      },
      get cluster() {
        return broker.#seam;
      },
      publish: (message, from) => this.#publish(message, from),
      publishWill: (client, will) => this.#publishWill(client, will),
      emit: (type, detail) => this.#emit(type, detail),
      listening: (type) => (this.#handlers.get(type)?.size ?? 0) > 0,
      connectionClosed: (link, will, reason) =>
        this.#connectionClosed(link as Connection, will, reason),
      generateClientId: () => prefix + (++nextId).toString(36),
      scheduleFlush: (connection) => {
        this.#dirty.push(connection);
        if (!this.#flushScheduled) {
          this.#flushScheduled = true;
          // Without a store, at the end of the current batch of promise jobs: every read that
          // completed in this poll has been dispatched by then, so one write per socket still
          // carries what they queued (fan-out, fan-in), and a socket that always has data cannot
          // hold writes back (a setImmediate waits for the read loop to leave the microtask
          // queue, which a flooding socket never does). With a store, once per turn, so a
          // group commit covers the turn.
          if (this.#store === undefined) queueMicrotask(this.#flushTurn);
          else setImmediate(this.#flushTurn);
        }
      },
    };
    this.#ready = Promise.resolve();
    if (options.persistence !== undefined) {
      const store = options.persistence;
      const durable = new DurableState(store);
      this.#store = store;
      this.#mirror = durable;
      sessionContext.observer = durable;
      this.#ready = restoreState(store, {
        limits: this.#limits,
        log: this.#log,
        router: this.#router,
        retained: this.#retained,
        sessions: this.#registry.sessions,
        sessionContext,
      }).then((restored) => {
        for (const session of this.#registry.sessions.values()) this.#registry.restored(session);
        // Wills of sessions that ended while the broker was down are published now; delayed
        // wills that came due meanwhile go out with the first sweep.
        for (const { client, will } of restored.dueWills) this.#publishWill(client, will);
        this.#retainedExpiry = Date.now();
        this.#startSweep();
      });
      // Reported through ready/listen/handle; never an unhandled rejection.
      this.#ready.catch(() => {});
    }
    if (options.cluster !== undefined) {
      const clusterOptions = options.cluster;
      validateClusterOptions(clusterOptions);
      this.#clustered = true;
      this.#ready = this.#ready.then(() => this.#joinCluster(clusterOptions));
      this.#ready.catch(() => {});
    }
    const sysIntervalMs = options.sysIntervalMs ?? 0;
    if (!Number.isInteger(sysIntervalMs) || sysIntervalMs < 0) {
      throw new RangeError(
        `Broker option "sysIntervalMs" must be a non-negative integer, got ${sysIntervalMs}`,
      );
    }
    registerInternals(this, {
      ctx: this.#ctx,
      connections: this.#connections,
      startedAt: this.#startedAt,
      store: this.#store,
      listeners: () => [...this.#listeners].map((l) => l.info),
      readiness: () => this.#readiness,
      isClosed: () => this.#closed,
    });
    this.#ready.then(() => this.#readiness = "ready", () => this.#readiness = "failed");
    if (sysIntervalMs > 0) {
      const sys = new SysTopics({
        ctx: this.#ctx,
        startedAt: this.#startedAt,
        cluster: () => this.#cluster?.stats(),
      });
      this.#sysTimer = setInterval(() => sys.publish(), sysIntervalMs);
      Deno.unrefTimer(this.#sysTimer);
      sys.publish();
    }
  }

  async #joinCluster(options: ClusterOptions): Promise<void> {
    // A literal specifier, so `deno compile` bundles it; loaded only for a cluster.
    const { startCluster } = await import("./cluster/nats_cluster.ts");
    const inner = this.#mirror;
    const host: ClusterHost = {
      log: this.#log,
      limits: this.#limits,
      deliver: (message) => {
        if (!this.#closed) this.#router.route(message);
      },
      deliverShared: (group, filter, message) =>
        !this.#closed && this.#router.deliverShared(group, filter, message),
      setRetained: (message) => {
        if (message.expiresAt !== 0 && message.expiresAt < this.#retainedExpiry) {
          this.#retainedExpiry = message.expiresAt;
        }
        const result = this.#retained.set(message);
        if (result !== "full" && result !== "none") inner?.retainedChanged(message);
      },
      release: (clientId, handOver, phase, idOf) => {
        // Phase 1 ends an expired session first (its delayed will, if any, goes out).
        const session = phase === 1
          ? this.#registry.get(clientId)
          : this.#registry.sessions.get(clientId);
        const leaving = this.#leaving.get(clientId);
        if (phase === 2) {
          if (leaving === undefined || session !== leaving.session) return undefined;
          this.#leaving.delete(clientId);
          clearTimeout(leaving.timer);
          const late = exportSession(session, idOf, leaving.sent);
          this.#registry.end(session);
          return late;
        }
        if (session === undefined) return undefined;
        const old = session.link as Connection | undefined;
        if (old !== undefined) {
          // As a local takeover: the will now, unless it has a delay and the session goes on
          // [MQTT-3.1.3-9]; a 5.0 client is told DISCONNECT 0x8E first [MQTT-3.1.4-3].
          old.session = undefined;
          session.link = undefined;
          const will = old.will;
          old.will = undefined;
          if (will !== undefined) {
            const delayed = (will.properties?.willDelayInterval ?? 0) > 0 && handOver &&
              !session.clean;
            if (!delayed) this.#publishWill(old.client, will);
          }
          old.disconnect(
            REASON.sessionTakenOver,
            "taken over by a connection on another node",
            false,
          );
        }
        if (!handOver || session.clean) {
          this.#registry.end(session);
          return undefined;
        }
        // The client came back on another node: a will waiting for its delay is not published.
        this.#registry.cancelDelayedWill(session);
        // It keeps collecting until the new node has its subscriptions in place (phase 2).
        const state = exportSession(session, idOf);
        if (leaving !== undefined) clearTimeout(leaving.timer);
        const timer = setTimeout(() => {
          if (this.#leaving.get(clientId)?.session !== session) return;
          this.#leaving.delete(clientId);
          if (this.#registry.sessions.get(clientId) === session) this.#registry.end(session);
        }, 10_000);
        Deno.unrefTimer(timer);
        this.#leaving.set(clientId, { session, sent: new Set(session.outgoing()), timer });
        return state;
      },
    };
    const link = await startCluster(options, host);
    if (this.#closed) return await link.close();
    this.#cluster = link;
    this.#mirror = clusterMirror(inner, link);
    const target = {
      sessions: this.#registry.sessions,
      router: this.#router,
      sessionContext: this.#sessionContext,
    };
    this.#seam = {
      claim: (clientId, clean) => link.claim(clientId, clean),
      adopt: (clientId, client, state) => {
        const session = adoptSession(target, clientId, client, state);
        link.adopted(clientId, (late) => {
          if (this.#registry.sessions.get(clientId) !== session) return;
          const have = new Set<string>();
          for (const entry of session.outgoing()) {
            const id = link.idOf(entry.message);
            if (id !== undefined) have.add(id);
          }
          addMessages(session, late.filter((m) => m.id === undefined || !have.has(m.id)));
        });
        return session;
      },
    };
    this.#router.interest = (filter, change) =>
      change === 1 ? link.filterAdded(filter) : link.filterRemoved(filter);
    // From now on a shared group's messages reach its local members only through the cluster,
    // which picks one member cluster-wide (this node's own publishes included).
    this.#router.sharedInterest = (group, filter, change) =>
      change === 1 ? link.sharedAdded(group, filter) : link.sharedRemoved(group, filter);
    // Sessions restored from the store subscribed before the link was there.
    for (const session of this.#registry.sessions.values()) {
      for (const filter of session.subscriptions.keys()) {
        const shared = parseSharedFilter(filter);
        if (shared === undefined) link.filterAdded(filter);
        else link.sharedAdded(shared.group, shared.filter);
      }
    }
    await link.restored();
  }

  /**
   * Resolves once the broker is ready: with `persistence`, when the stored state is loaded;
   * rejects when the store cannot be used (e.g. written by a newer version).
   */
  get ready(): Promise<void> {
    return this.#ready;
  }

  /** The limits in force, defaults filled in. */
  get limits(): Readonly<Limits> {
    return this.#limits;
  }

  /** Registers an event listener; `event.detail` carries the event's data. */
  override addEventListener<K extends keyof BrokerEventMap>(
    type: K,
    listener: BrokerEventListener<K> | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  /** Registers a listener for any other event type. */
  override addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  override addEventListener(
    type: string,
    // deno-lint-ignore no-explicit-any
    listener: any,
    options?: boolean | AddEventListenerOptions,
  ): void {
    if (listener === null || listener === undefined) {
      return super.addEventListener(type, listener, options);
    }
    let set = this.#handlers.get(type);
    if (set === undefined) this.#handlers.set(type, set = new Set());
    set.add(listener);
    super.addEventListener(type, this.#wrap(listener), options);
  }

  /** Removes an event listener. */
  override removeEventListener<K extends keyof BrokerEventMap>(
    type: K,
    listener: BrokerEventListener<K> | null,
    options?: boolean | EventListenerOptions,
  ): void;
  /** Removes a listener for any other event type. */
  override removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void;
  override removeEventListener(
    type: string,
    // deno-lint-ignore no-explicit-any
    listener: any,
    options?: boolean | EventListenerOptions,
  ): void {
    if (listener === null || listener === undefined) {
      return super.removeEventListener(type, listener, options);
    }
    this.#handlers.get(type)?.delete(listener);
    super.removeEventListener(type, this.#wrap(listener), options);
  }

  // Deno reports a listener's exception as uncaught, which ends the process: a listener that
  // throws must cost a log line, not the broker.
  #wrap(listener: EventListenerOrEventListenerObject): EventListener {
    let wrapped = this.#wrapped.get(listener);
    if (wrapped === undefined) {
      wrapped = (event) => {
        try {
          if (typeof listener === "function") (listener as (e: unknown) => void).call(this, event);
          else (listener as { handleEvent(e: unknown): void }).handleEvent(event);
        } catch (error) {
          this.#log.error(`"${event.type}" event listener threw: ${error}`);
        }
      };
      this.#wrapped.set(listener, wrapped);
    }
    return wrapped;
  }

  #emit<K extends keyof BrokerEventMap>(type: K, detail: BrokerEventMap[K]): void {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /**
   * Listens on TCP (`Deno.listen`) or, with `tls`, on TLS (`Deno.listenTls`), and handles every
   * connection it accepts. Requires `--allow-net`.
   */
  async listen(options: ListenOptions = {}): Promise<Listener> {
    await this.#ready;
    return this.#listen(options);
  }

  #listen(options: ListenOptions): Promise<Listener> {
    if (this.#closed) return Promise.reject(new Error("Cannot listen: the broker is closed"));
    const hostname = options.hostname ?? "127.0.0.1";
    const port = options.port ?? (options.tls ? 8883 : 1883);
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      return Promise.reject(new RangeError(`Port must be an integer from 0 to 65535, got ${port}`));
    }
    const transport = options.transport ?? (options.tls ? "tls" : "tcp");
    let listener: Deno.Listener;
    try {
      listener = options.tls
        ? Deno.listenTls({ hostname, port, cert: options.tls.cert, key: options.tls.key })
        : Deno.listen({ hostname, port, ...(options.reusePort ? { reusePort: true } : {}) });
    } catch (error) {
      return Promise.reject(error);
    }
    const addr = listener.addr as Deno.NetAddr;
    let stopped = false;
    let retryTimer: ReturnType<typeof setTimeout> | undefined;
    let wake: (() => void) | undefined;
    const accept = options.accept;
    const name = options.name;
    const maxConnections = options.maxConnections ?? Infinity;
    let open = 0;
    const serve = (conn: BrokerConn) => {
      if (maxConnections === Infinity) {
        this.handle(conn, transport, name); // never rejects
        return;
      }
      open++;
      this.handle(conn, transport, name).finally(() => open--);
    };
    const loop = async () => {
      while (!stopped) {
        let conn: Deno.Conn;
        try {
          conn = await listener.accept();
        } catch (error) {
          if (stopped || error instanceof Deno.errors.BadResource) return;
          // Out of file descriptors and the like: say so, wait, and keep serving the others.
          this.#log.warn(
            `${transport} ${formatAddress(addr.hostname, addr.port)}: accept failed: ${error}`,
          );
          await new Promise<void>((resolve) => {
            wake = resolve;
            retryTimer = setTimeout(resolve, 100);
          });
          continue;
        }
        try {
          (conn as Deno.TcpConn).setNoDelay?.(true);
        } catch {
          // Not every connection kind has Nagle to turn off.
        }
        if (open >= maxConnections) {
          this.#counters.connectionsRefused++;
          closeQuietly(conn);
          continue;
        }
        if (accept === undefined) {
          serve(conn);
          continue;
        }
        accept(conn).then(
          (wrapped) => serve(wrapped),
          (error) => {
            this.#log.warn(
              `${transport}: refused a connection: ${
                error instanceof Error ? error.message : error
              }`,
            );
            try {
              conn.close();
            } catch {
              // The wrapper closed it already.
            }
          },
        ).catch((error) => this.#log.error(`handle: ${error}`));
      }
    };
    const done = loop().catch((error) => this.#log.error(`accept loop: ${error}`));
    const entry = {
      info: { hostname: addr.hostname, port: addr.port, transport },
      close: () => {
        if (stopped) return;
        stopped = true;
        clearTimeout(retryTimer);
        wake?.();
        try {
          listener.close();
        } catch {
          // Closed already.
        }
      },
      done,
    };
    this.#listeners.add(entry);
    if (options.log !== false) {
      this.#log.info(
        `listening on ${transport} ${formatAddress(addr.hostname, addr.port)}${
          name === undefined ? "" : ` (listener ${name})`
        }`,
      );
    }
    return Promise.resolve({
      hostname: addr.hostname,
      port: addr.port,
      transport,
      close: async () => {
        entry.close();
        this.#listeners.delete(entry);
        await done;
      },
    });
  }

  /**
   * Serves one connection until it closes: any object with `read`, `write` and `close`
   * (`Deno.Conn`, a WebSocket adapter, a test double). Never rejects for anything the client does.
   *
   * `listener` names the listener the connection came in on; hooks see it as
   * `client.remoteAddress.listener` (per-listener authentication and ACLs use it).
   */
  handle(conn: BrokerConn, transport = "tcp", listener?: string): Promise<void> {
    if (this.#store === undefined && !this.#clustered) {
      return this.#serve(conn, transport, listener);
    }
    return this.#ready.then(() => this.#serve(conn, transport, listener), () => {
      // The store could not be opened: serve nobody.
      this.#closed = true;
      closeQuietly(conn);
    });
  }

  // Not async, and no promise chain of its own: per-connection objects add up over thousands
  // of idle clients. `run()` never rejects.
  #serve(conn: BrokerConn, transport: string, listener: string | undefined): Promise<void> {
    if (this.#closed) {
      closeQuietly(conn);
      return Promise.resolve();
    }
    const overLimit = this.#connections.size >= this.#limits.maxConnections;
    if (overLimit && this.#refusing >= MAX_REFUSING) {
      this.#counters.connectionsRefused++;
      this.#counters.connectRefused[3]++;
      closeQuietly(conn);
      return Promise.resolve();
    }
    this.#ctx.now = Date.now() - this.#startedAt;
    const connection = new Connection(
      this.#ctx,
      conn,
      remoteOf(conn, transport, listener),
      overLimit,
    );
    this.#connections.add(connection);
    this.#counters.connectionsTotal++;
    if (overLimit) this.#refusing++;
    this.#startSweep();
    return connection.run();
  }

  #startSweep(): void {
    if (this.#sweepTimer !== undefined) return;
    this.#sweepTimer = setInterval(() => this.#sweep(), SWEEP_MS);
    Deno.unrefTimer(this.#sweepTimer);
  }

  #sweep(): void {
    const now = Date.now();
    const clock = this.#ctx.now = now - this.#startedAt;
    for (const connection of this.#connections) connection.check(clock);
    this.#registry.sweep(now);
    // Expired retained messages are skipped when matched; this frees them in the meantime, a
    // pass at most once a minute and only while some retained message has an expiry.
    if (now >= this.#retainedExpiry) {
      this.#retained.removeExpired(now);
      this.#retainedExpiry = now + 60_000;
    }
  }

  // Connections whose CONNECT was accepted (not sockets still before CONNECT).
  #connectedClients(): number {
    let n = 0;
    for (const c of this.#connections) if (c.connected) n++;
    return n;
  }

  #connectionClosed(connection: Connection, will: Will | undefined, reason: string): void {
    this.#connections.delete(connection);
    if (connection.overLimit) this.#refusing--;
    const session = connection.session;
    // The broker going away publishes no will, now or later.
    const left = this.#closed ? undefined : will;
    // Published now: no Will Delay, or a session that ends with this connection (whichever first).
    const willPublished = left !== undefined &&
      ((left.properties?.willDelayInterval ?? 0) === 0 || session === undefined ||
        session.link !== connection || session.clean);
    if (session !== undefined && session.link === connection) {
      this.#registry.detach(session, left, connection.client);
    } else if (left !== undefined) {
      this.#publishWill(connection.client, left);
    }
    if (connection.connected) {
      this.#counters.connected--;
      if (this.#ctx.logConnections || this.#log.enabled("debug")) {
        const line = `client ${JSON.stringify(connection.client.clientId)} disconnected: ${reason}`;
        if (this.#ctx.logConnections) this.#log.info(line);
        else this.#log.debug(line);
      }
      if (this.#ctx.listening("disconnect")) {
        this.#emit("disconnect", { client: connection.client, reason, willPublished });
      }
    }
  }

  // [MQTT-3.1.2-8] the will is published when the connection ends without DISCONNECT.
  #publishWill(client: ClientInfo, will: Will): void {
    if (this.#closed) return;
    const props = will.properties;
    const properties = forwardedProperties(props);
    let expiresAt = 0;
    const expiry = props?.messageExpiryInterval;
    if (expiry !== undefined) {
      const max = this.#limits.maxMessageExpiry;
      expiresAt = Date.now() + (expiry > max ? max : expiry) * 1000;
    }
    const message = new Message(
      will.topic,
      will.payload,
      will.qos,
      will.retain,
      properties,
      expiresAt,
      client.clientId,
    );
    const authorize = this.#ctx.hooks.authorizePublish;
    if (authorize === undefined) {
      this.#publish(message, client);
      return;
    }
    Promise.resolve()
      .then(() => authorize(client, will.topic, will.qos, will.retain, properties))
      .then((allowed) => {
        if (allowed === true && !this.#closed) this.#publish(message, client);
        else this.#counters.dropped.notAuthorized++;
      })
      .catch((error) => this.#log.error(`authorizePublish threw for a will: ${error}`));
  }

  #publish(message: Message, from: ClientInfo | undefined): number {
    let retainedChanged = false;
    if (message.retain) {
      message.own();
      if (message.expiresAt !== 0 && message.expiresAt < this.#retainedExpiry) {
        this.#retainedExpiry = message.expiresAt;
      }
      const result = this.#retained.set(message);
      retainedChanged = result !== "full" && result !== "none";
      if (retainedChanged) this.#mirror?.retainedChanged(message);
    }
    const delivered = this.#router.route(message);
    if (this.#cluster !== undefined) {
      message.own();
      this.#cluster.forward(message, retainedChanged);
    }
    if (this.#ctx.listening("publish")) {
      message.own();
      const detail: BrokerEventMap["publish"] = {
        client: from,
        topic: message.topic,
        payload: message.payload,
        qos: message.qos,
        retain: message.retain,
      };
      if (message.properties !== undefined) detail.properties = message.properties;
      if (message.expiresAt !== 0) detail.expiresAt = message.expiresAt;
      this.#emit("publish", detail);
    }
    return delivered;
  }

  /**
   * Publishes a message from the process itself, as if a client had. Throws TypeError for an
   * invalid topic or QoS. Resolves once the message is routed (and stored, with persistence).
   */
  async publish(options: PublishOptions): Promise<void> {
    await this.#ready;
    return this.#publishFromProcess(options);
  }

  #publishFromProcess(options: PublishOptions): Promise<void> {
    if (this.#closed) return Promise.reject(new Error("Cannot publish: the broker is closed"));
    const { topic, qos = 0, retain = false } = options;
    if (typeof topic !== "string") {
      return Promise.reject(new TypeError("publish: topic must be a string"));
    }
    const error = validateTopicName(
      topic,
      this.#limits.maxTopicLength,
      this.#limits.maxTopicLevels,
    );
    if (error !== undefined) {
      return Promise.reject(new TypeError(`publish: invalid topic: ${error}`));
    }
    if (qos !== 0 && qos !== 1 && qos !== 2) {
      return Promise.reject(new TypeError(`publish: qos must be 0, 1 or 2`));
    }
    const raw = options.payload ?? new Uint8Array(0);
    const payload = typeof raw === "string" ? utf8.encode(raw) : raw;
    if (!(payload instanceof Uint8Array)) {
      return Promise.reject(new TypeError("publish: payload must be a Uint8Array or a string"));
    }
    // Subscribers never see a packet larger than a client could have sent.
    if (payload.length + utf8Length(topic) + 7 > this.#limits.maxPacketSize) {
      return Promise.reject(
        new RangeError(
          `publish: the message exceeds maxPacketSize (${this.#limits.maxPacketSize} bytes)`,
        ),
      );
    }
    const props = options.properties;
    if (props !== undefined && (props === null || typeof props !== "object")) {
      return Promise.reject(new TypeError("publish: properties must be an object"));
    }
    let expiresAt = 0;
    const expiry = props?.messageExpiryInterval;
    if (expiry !== undefined) {
      if (!Number.isInteger(expiry) || expiry < 0 || expiry > 0xffff_ffff) {
        return Promise.reject(
          new RangeError("publish: messageExpiryInterval must be an integer of 0..4294967295"),
        );
      }
      const max = this.#limits.maxMessageExpiry;
      expiresAt = Date.now() + (expiry > max ? max : expiry) * 1000;
    }
    this.#counters.messagesIn++;
    this.#publish(
      new Message(topic, payload, qos, retain === true, forwardedProperties(props), expiresAt),
      undefined,
    );
    return this.#mirror?.durable() ?? Promise.resolve();
  }

  /**
   * Disconnects the connected client with this id, as an administrator would, and returns true;
   * false when no client with that id is connected. Its will is published (the client did not
   * send DISCONNECT); a persistent session stays. `reasonCode` (0x80..0xff, default 0x98,
   * administrative action) is the DISCONNECT reason code for MQTT 5.0; MQTT 3.1.1 has no
   * DISCONNECT from the server, so a 3.1.1 connection is closed.
   */
  disconnectClient(clientId: string, reasonCode = 0x98): boolean {
    if (!Number.isInteger(reasonCode) || reasonCode < 0x80 || reasonCode > 0xff) {
      throw new RangeError(`disconnectClient: reasonCode must be 0x80..0xff, got ${reasonCode}`);
    }
    const link = this.#registry.sessions.get(clientId)?.link as Connection | undefined;
    if (link === undefined || link.isClosed) return false;
    // A 5.0 connection is sent DISCONNECT with `reasonCode` first; a 3.1.1 one is closed.
    link.disconnect(
      reasonCode,
      `disconnected by an administrator (reason 0x${reasonCode.toString(16)})`,
      true,
    );
    return true;
  }

  /** A snapshot of the counters. */
  stats(): BrokerStats {
    const c = this.#counters;
    return {
      connections: this.#connections.size,
      sessions: this.#registry.size,
      subscriptions: this.#router.size,
      retained: this.#retained.size,
      retainedBytes: this.#retained.bytes,
      queued: c.queued,
      inflight: c.inflight,
      messagesIn: c.messagesIn,
      messagesOut: c.messagesOut,
      bytesIn: c.bytesIn,
      bytesOut: c.bytesOut,
      connectionsTotal: c.connectionsTotal,
      connectionsRefused: c.connectionsRefused,
      protocolErrors: c.protocolErrors,
      memoryUsed: c.memory.used,
      memoryPauses: c.memoryPauses,
      connectionsAccepted: c.connectionsAccepted,
      connected: c.connected,
      connectedMax: c.connectedMax,
      sessionsExpired: c.sessionsExpired,
      packetsIn: c.packetsIn,
      packetsOut: c.packetsOut,
      dropped: { ...c.dropped },
      ...(this.#cluster === undefined ? {} : { cluster: this.#cluster.stats() }),
    };
  }

  /**
   * Stops listening, closes every connection (wills are not published: the broker is going
   * away, not the clients) and releases timers. Idempotent.
   */
  close(): Promise<void> {
    return this.#closing ??= this.#close();
  }

  async #close(): Promise<void> {
    this.#closed = true;
    const listeners = [...this.#listeners];
    this.#listeners.clear();
    for (const listener of listeners) listener.close();
    await Promise.all(listeners.map((l) => l.done));
    const connections = [...this.#connections];
    // 5.0 clients are told why: DISCONNECT 0x8B server shutting down.
    for (const connection of connections) {
      connection.disconnect(REASON.serverShuttingDown, "broker shutting down", false);
    }
    await Promise.all(connections.map((c) => c.closed));
    if (this.#clustered) {
      await this.#ready.catch(() => {});
      await this.#cluster?.close();
    }
    if (this.#sweepTimer !== undefined) clearInterval(this.#sweepTimer);
    if (this.#sysTimer !== undefined) clearInterval(this.#sysTimer);
    this.#sweepTimer = this.#sysTimer = undefined;
    if (this.#store !== undefined) {
      try {
        await this.#ready;
      } catch {
        return; // Never opened: nothing to close.
      }
      await this.#store.close();
    }
  }

  /** `await using broker = new Broker()` closes it at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
