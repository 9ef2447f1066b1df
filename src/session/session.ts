/**
 * A session: subscriptions, the outbound queue, messages in flight and inbound QoS 2 ids of one
 * client id. It outlives connections when the client asked for a persistent session.
 *
 * @module
 */
import type { QoS, RetainHandling, Will } from "../codec/packet.ts";
import type { AuthorizeForwardHook, ClientInfo } from "../hooks.ts";
import type { Message } from "../message.ts";
import { type Backlogged, ENTRY_OVERHEAD } from "../memory_budget.ts";
import type { Limits } from "../options.ts";
import type { Counters } from "../stats.ts";

/** Outbound message states. */
export const QUEUED = 0;
/** PUBLISH sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2). */
export const SENT = 1;
/** PUBREC received and PUBREL sent, waiting for PUBCOMP. */
export const RELEASED = 2;

/** One message on its way to this session's client. */
export interface Outgoing {
  message: Message;
  /** QoS it is delivered at: min(published, granted). */
  qos: QoS;
  /** Retain flag on the wire: set only for messages sent from the retained store on SUBSCRIBE. */
  retain: boolean;
  /** 0 until sent. */
  packetId: number;
  state: typeof QUEUED | typeof SENT | typeof RELEASED;
  /** Order within the session, for persistence. */
  seq: number;
  /** 5.0: identifiers of the subscriptions that matched, sent with the PUBLISH [MQTT-3.3.4-3]. */
  subscriptionIds?: readonly number[];
}

/** One subscription of a session: what SUBSCRIBE asked for, as granted. */
export interface SubscriptionOptions {
  /** Granted maximum QoS. */
  qos: QoS;
  /** 5.0 No Local: the client's own messages are not sent back to it [MQTT-3.8.3-3]. */
  noLocal: boolean;
  /** 5.0 Retain As Published: forwarded messages keep their RETAIN flag [MQTT-3.3.1-12/13]. */
  retainAsPublished: boolean;
  /** 5.0 Retain Handling: 0 send retained on subscribe, 1 only if new, 2 never. */
  retainHandling: RetainHandling;
  /** 5.0 Subscription Identifier (1..268 435 455), sent with each matching PUBLISH. */
  subscriptionId?: number;
}

/** What a 3.1.1 subscription is: only a QoS. */
export function plainSubscription(qos: QoS): SubscriptionOptions {
  return { qos, noLocal: false, retainAsPublished: false, retainHandling: 0 };
}

/** A will waiting for its Will Delay Interval (5.0) while the session lives on. */
export interface DelayedWill {
  /** The will as the CONNECT gave it. */
  will: Will;
  /** Epoch ms at which it is published unless the session resumes first. */
  publishAt: number;
}

/** Outcome of an acknowledgement from the client for one of our PUBLISHes. */
export const ACK_OK = 0;
/** No message in flight with this packet id (a late duplicate, or never sent). */
export const ACK_UNKNOWN = 1;
/** The ack's type does not fit the message's QoS or state: a protocol violation [MQTT-4.8.0-1]. */
export const ACK_MISMATCH = 2;
/** One of {@linkcode ACK_OK}, {@linkcode ACK_UNKNOWN}, {@linkcode ACK_MISMATCH}. */
export type AckOutcome = typeof ACK_OK | typeof ACK_UNKNOWN | typeof ACK_MISMATCH;

/** What a session needs of the connection it is attached to. */
export interface SessionLink {
  /** False while the socket has more unwritten bytes than `maxSocketBufferBytes`. */
  readonly writable: boolean;
  /** Most QoS 1/2 PUBLISH the client accepts unacknowledged (5.0 Receive Maximum; 65 535 for 3.1.1). */
  readonly receiveMaximum: number;
  /**
   * Queues a PUBLISH of `message`, encoded for this connection's protocol version. Returns false,
   * sending nothing, when the packet would exceed the client's Maximum Packet Size [MQTT-3.1.2-25].
   */
  sendPublish(
    message: Message,
    qos: QoS,
    retain: boolean,
    packetId: number,
    subscriptionIds: readonly number[] | undefined,
    dup: boolean,
  ): boolean;
  /** Queues a PUBREL for one of our QoS 2 messages. */
  sendPubrel(packetId: number): void;
}

/** Observes changes a durable store must mirror. All calls are synchronous. */
export interface SessionObserver {
  outgoingAdded(session: Session, entry: Outgoing): void;
  outgoingChanged(session: Session, entry: Outgoing): void;
  outgoingRemoved(session: Session, entry: Outgoing): void;
}

/** What every session shares with the broker that owns it. */
export interface SessionContext {
  readonly limits: Limits;
  readonly counters: Counters;
  authorizeForward?: AuthorizeForwardHook;
  observer?: SessionObserver;
}

// State of a session publishers have waited for.
interface DrainState {
  stuck: boolean;
  progress: number;
  waiters: (() => void)[];
}

// The queue length (or bytes) past which a session's QoS 1/2 backlog paces its publishers.
function backlogHigh(limit: number): number {
  return Math.max(1, Math.floor(limit / 8));
}

const EMPTY_SUBSCRIPTIONS: ReadonlyMap<string, SubscriptionOptions> = new Map();
const EMPTY_INFLIGHT: ReadonlyMap<number, Outgoing> = new Map();
const EMPTY_IDS: ReadonlySet<number> = new Set();
// Shared by every session whose queue is empty; replaced by a private array before a push.
const EMPTY_QUEUE: (Outgoing | undefined)[] = [];

/** State of one client id. */
export class Session implements Backlogged {
  readonly clientId: string;
  /** A clean session ends with its connection. */
  clean: boolean;
  // Collections are created on first use: an idle client's session holds none of them
  // (an empty Map costs a few hundred bytes, and idle connections are counted in thousands).
  #subscriptions: Map<string, SubscriptionOptions> | undefined;
  // Inbound QoS 2 packet ids whose PUBREL has not arrived: a resent PUBLISH with one is not routed again.
  #inboundQos2: Set<number> | undefined;
  // Outbound messages sent and not yet acknowledged, in the order they were sent.
  #inflight: Map<number, Outgoing> | undefined;
  /** The attached connection, if the client is online. */
  link: SessionLink | undefined;
  /** Who the client is, for hooks; kept while offline. */
  client: ClientInfo;
  /** Epoch ms after which an offline persistent session is removed; 0 while online or never. */
  expiresAt = 0;
  /**
   * 5.0 Session Expiry Interval in seconds as granted (0xFFFFFFFF never); undefined for a 3.1.1
   * session, which the broker's `sessionExpiryMs` governs.
   */
  expiryIntervalS: number | undefined;
  /** A will waiting for its delay after the connection ended (5.0). */
  delayedWill: DelayedWill | undefined;
  /** Routing scratch: the publish generation that last matched this session, and its slot. */
  mark = 0;
  markIndex = 0;

  #ctx: SessionContext;
  #queue: (Outgoing | undefined)[] = EMPTY_QUEUE;
  #head = 0;
  #queuedBytes = 0;
  #nextPacketId = 1;
  #seq = 0;
  // Publishers waiting for this session's QoS 1/2 backlog to drain (backpressure), if any.
  #drain: DrainState | undefined;

  constructor(clientId: string, clean: boolean, client: ClientInfo, ctx: SessionContext) {
    this.clientId = clientId;
    this.clean = clean;
    this.client = client;
    this.#ctx = ctx;
  }

  /** Subscribed filters (full, `$share/…` included) and their options. */
  get subscriptions(): ReadonlyMap<string, SubscriptionOptions> {
    return this.#subscriptions ?? EMPTY_SUBSCRIPTIONS;
  }

  /** Adds or replaces a subscription; the router keeps the trie in step. */
  setSubscription(filter: string, options: SubscriptionOptions): void {
    (this.#subscriptions ??= new Map()).set(filter, options);
  }

  /** Removes a subscription; returns whether it existed. */
  deleteSubscription(filter: string): boolean {
    return this.#subscriptions?.delete(filter) ?? false;
  }

  /** Removes every subscription. */
  clearSubscriptions(): void {
    this.#subscriptions = undefined;
  }

  /** Outbound messages sent and not yet acknowledged, in the order they were sent. */
  get inflight(): ReadonlyMap<number, Outgoing> {
    return this.#inflight ?? EMPTY_INFLIGHT;
  }

  /** Inbound QoS 2 packet ids whose PUBREL has not come (handed over with the session). */
  get inboundQos2Ids(): ReadonlySet<number> {
    return this.#inboundQos2 ?? EMPTY_IDS;
  }

  /** Whether an inbound QoS 2 message with this id awaits its PUBREL. */
  hasInboundQos2(packetId: number): boolean {
    return this.#inboundQos2?.has(packetId) ?? false;
  }

  /** Records an inbound QoS 2 id until its PUBREL. */
  addInboundQos2(packetId: number): void {
    (this.#inboundQos2 ??= new Set()).add(packetId);
  }

  /** Forgets an inbound QoS 2 id; returns whether it was there. */
  deleteInboundQos2(packetId: number): boolean {
    return this.#inboundQos2?.delete(packetId) ?? false;
  }

  /** Messages waiting to be sent. */
  get queued(): number {
    return this.#queue.length - this.#head;
  }

  /** Topic+payload bytes waiting to be sent. */
  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  /** Outbound messages in order: in flight first, then queued. */
  *outgoing(): IterableIterator<Outgoing> {
    yield* this.inflight.values();
    for (let i = this.#head; i < this.#queue.length; i++) yield this.#queue[i]!;
  }

  // The in-flight window: ours, and never more than the client's Receive Maximum [MQTT-4.9.0-2].
  #window(link: SessionLink): number {
    const max = this.#ctx.limits.maxInflight;
    return link.receiveMaximum < max ? link.receiveMaximum : max;
  }

  /**
   * Delivers a message at `qos` (already min(published, granted)); queues or drops by the limits.
   * `subscriptionIds` are the 5.0 identifiers of the matching subscriptions.
   */
  deliver(
    message: Message,
    qos: QoS,
    retain = false,
    subscriptionIds?: readonly number[],
  ): void {
    const ctx = this.#ctx;
    if (ctx.authorizeForward !== undefined && !ctx.authorizeForward(this.client, message.topic)) {
      ctx.counters.dropped.forwardDenied++;
      return;
    }
    const link = this.link;
    const idle = this.#head === this.#queue.length;
    if (qos === 0) {
      if (link === undefined) {
        ctx.counters.dropped.offlineQos0++;
        return;
      }
      if (idle && link.writable) {
        if (!link.sendPublish(message, 0, retain, 0, subscriptionIds, false)) {
          ctx.counters.dropped.packetTooLarge++;
        }
        return;
      }
      // Past half the broker's memory budget, QoS 0 for a session with a backlog goes first.
      if (ctx.counters.memory.shedding) {
        ctx.counters.dropped.memoryLimit++;
        return;
      }
    } else if (
      link !== undefined && idle && link.writable &&
      (this.#inflight?.size ?? 0) < this.#window(link)
    ) {
      message.own(); // in flight until acknowledged
      const entry: Outgoing = {
        message,
        qos,
        retain,
        packetId: 0,
        state: QUEUED,
        seq: ++this.#seq,
      };
      if (subscriptionIds !== undefined) entry.subscriptionIds = subscriptionIds;
      ctx.observer?.outgoingAdded(this, entry);
      this.#send(link, entry);
      return;
    }
    const entry: Outgoing = { message, qos, retain, packetId: 0, state: QUEUED, seq: ++this.#seq };
    if (subscriptionIds !== undefined) entry.subscriptionIds = subscriptionIds;
    this.#enqueue(entry);
  }

  /**
   * Whether `deliver(message, qos)` would send or queue the message rather than drop it: what a
   * shared subscription asks before it picks this member.
   */
  canTake(message: Message, qos: QoS): boolean {
    const link = this.link;
    if (qos === 0) {
      return link !== undefined && (link.writable || this.#hasQueueRoom(message));
    }
    if (
      link !== undefined && link.writable && this.#head === this.#queue.length &&
      (this.#inflight?.size ?? 0) < this.#window(link)
    ) return true;
    return this.#hasQueueRoom(message);
  }

  /**
   * Whether `deliver(message, qos)` would put a message on the wire at once (online, socket
   * writable, nothing queued before it, room in the in-flight window): a shared subscription
   * prefers such a member over one that would only queue the message.
   */
  canSendNow(qos: QoS): boolean {
    const link = this.link;
    if (link === undefined || !link.writable || this.#head !== this.#queue.length) return false;
    return qos === 0 || (this.#inflight?.size ?? 0) < this.#window(link);
  }

  #hasQueueRoom(message: Message): boolean {
    const limits = this.#ctx.limits;
    return this.queued < limits.maxQueued &&
      this.#queuedBytes + message.size <= limits.maxQueuedBytes;
  }

  /** Puts back an outbound message loaded from a store (in flight or queued). */
  restore(entry: Outgoing): void {
    if (entry.seq > this.#seq) this.#seq = entry.seq;
    if (entry.state === QUEUED) {
      if (this.#queue === EMPTY_QUEUE) this.#queue = [];
      this.#queue.push(entry);
      this.#queuedBytes += entry.message.size;
      this.#ctx.counters.queued++;
    } else {
      (this.#inflight ??= new Map()).set(entry.packetId, entry);
      this.#ctx.counters.inflight++;
    }
    this.#ctx.counters.memory.charge(entry.message.size + ENTRY_OVERHEAD);
  }

  #enqueue(entry: Outgoing): void {
    const ctx = this.#ctx;
    const size = entry.message.size;
    if (
      this.queued >= ctx.limits.maxQueued ||
      this.#queuedBytes + size > ctx.limits.maxQueuedBytes
    ) {
      ctx.counters.dropped.queueFull++;
      return;
    }
    if (this.#drain?.stuck === true && this.link !== undefined) {
      // A connected subscriber that reads nothing (its socket is full) keeps the backlog it had
      // when it was found stuck (1/8 of the queue limits, about mosquitto's 1 000 messages), not
      // the whole queue. One that reads but does not ack keeps its whole queue.
      if (ctx.counters.memory.shedding) {
        ctx.counters.dropped.memoryLimit++;
        return;
      }
      if (
        !this.link.writable &&
        (this.queued >= backlogHigh(ctx.limits.maxQueued) ||
          this.#queuedBytes + size > backlogHigh(ctx.limits.maxQueuedBytes))
      ) {
        ctx.counters.dropped.queueFull++;
        return;
      }
    }
    entry.message.own();
    if (this.#queue === EMPTY_QUEUE) this.#queue = [];
    this.#queue.push(entry);
    this.#queuedBytes += size;
    ctx.counters.queued++;
    ctx.counters.memory.charge(size + ENTRY_OVERHEAD);
    // A subscriber that reads (or acks) slower than its publishers send: pace them to it rather
    // than fill the queue and drop. One that does not move at all is marked stuck and paces
    // nobody.
    if (
      this.link !== undefined && !(this.#drain?.stuck ?? false) &&
      (this.queued >= backlogHigh(ctx.limits.maxQueued) ||
        this.#queuedBytes >= backlogHigh(ctx.limits.maxQueuedBytes))
    ) ctx.counters.memory.backlogged = this;
    if (entry.qos > 0) ctx.observer?.outgoingAdded(this, entry);
  }

  #send(link: SessionLink, entry: Outgoing): void {
    const { message } = entry;
    const counters = this.#ctx.counters;
    // Not yet started on its way: an expired message is deleted [MQTT-3.3.2-5].
    if (message.expiresAt !== 0 && message.expiresAt <= Date.now()) {
      counters.dropped.expired++;
      if (entry.qos > 0) this.#ctx.observer?.outgoingRemoved(this, entry);
      return;
    }
    if (entry.qos === 0) {
      if (!link.sendPublish(message, 0, entry.retain, 0, entry.subscriptionIds, false)) {
        counters.dropped.packetTooLarge++;
      }
      return;
    }
    const inflight = this.#inflight ??= new Map();
    entry.packetId = this.#allocatePacketId(inflight);
    entry.state = SENT;
    // In flight before it is handed over: a link may see its ack at once.
    inflight.set(entry.packetId, entry);
    counters.inflight++;
    counters.memory.charge(message.size + ENTRY_OVERHEAD);
    this.#ctx.observer?.outgoingChanged(this, entry);
    if (
      !link.sendPublish(
        message,
        entry.qos,
        entry.retain,
        entry.packetId,
        entry.subscriptionIds,
        false,
      )
    ) {
      // Larger than the client accepts: not sent, and it never will be [MQTT-3.1.2-25].
      counters.dropped.packetTooLarge++;
      if (inflight.get(entry.packetId) === entry) this.#complete(entry, false);
    }
  }

  // Ids in flight are never reused [MQTT-2.3.1-2]; maxInflight ≤ 65 535 keeps one free.
  #allocatePacketId(inflight: Map<number, Outgoing>): number {
    for (;;) {
      const id = this.#nextPacketId;
      this.#nextPacketId = id === 65535 ? 1 : id + 1;
      if (!inflight.has(id)) return id;
    }
  }

  /** Sends queued messages while the socket takes them and the inflight window has room. */
  pump(): void {
    const link = this.link;
    if (link === undefined) return;
    const max = this.#window(link);
    // `#queue` is read afresh each time: a send may re-enter pump() (an ack handled at once) and
    // replace it.
    while (this.#head < this.#queue.length && link.writable) {
      const entry = this.#queue[this.#head]!;
      if (entry.qos > 0 && (this.#inflight?.size ?? 0) >= max) break;
      this.#queue[this.#head++] = undefined;
      this.#queuedBytes -= entry.message.size;
      this.#ctx.counters.queued--;
      this.#ctx.counters.memory.release(entry.message.size + ENTRY_OVERHEAD);
      this.#send(link, entry);
      if (this.#drain !== undefined) this.#progressed();
    }
    const queue = this.#queue;
    if (this.#head === queue.length) {
      this.#queue = EMPTY_QUEUE;
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > queue.length) {
      this.#queue = queue.slice(this.#head);
      this.#head = 0;
    }
  }

  /** See {@linkcode Backlogged.drained}. */
  drained(stallMs: number): { promise: Promise<void>; cancel: () => void } {
    const drain = this.#drain ??= { stuck: false, progress: 0, waiters: [] };
    let resolve!: () => void;
    const promise = new Promise<void>((r) => resolve = r);
    let seen = drain.progress;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const done = () => {
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      const i = drain.waiters.indexOf(done);
      if (i >= 0) drain.waiters.splice(i, 1);
      resolve();
    };
    const check = () => {
      timer = undefined;
      if (drain.progress === seen) {
        drain.stuck = true;
        done();
      } else {
        seen = drain.progress;
        timer = setTimeout(check, stallMs);
      }
    };
    if (this.#belowLowWater()) {
      resolve();
    } else {
      drain.waiters.push(done);
      timer = setTimeout(check, stallMs);
    }
    return { promise, cancel: done };
  }

  #belowLowWater(): boolean {
    const limits = this.#ctx.limits;
    return this.link === undefined ||
      (this.queued <= backlogHigh(limits.maxQueued) / 2 &&
        this.#queuedBytes <= backlogHigh(limits.maxQueuedBytes) / 2);
  }

  #progressed(): void {
    const drain = this.#drain!;
    drain.progress++;
    drain.stuck = false;
    if (drain.waiters.length > 0 && this.#belowLowWater()) {
      for (const done of drain.waiters.slice()) done();
    }
  }

  /** Re-sends what is in flight, in order, after a reconnect [MQTT-4.4.0-1], then the queue. */
  resume(): void {
    const link = this.link;
    if (link === undefined || (this.#inflight === undefined && this.queued === 0)) return;
    for (const entry of this.inflight.values()) {
      if (entry.state === RELEASED) {
        link.sendPubrel(entry.packetId);
      } else if (
        !link.sendPublish(
          entry.message,
          entry.qos,
          entry.retain,
          entry.packetId,
          entry.subscriptionIds,
          true,
        )
      ) {
        // The client reconnected with a smaller Maximum Packet Size.
        this.#ctx.counters.dropped.packetTooLarge++;
        this.#complete(entry, false);
      }
    }
    this.pump();
  }

  /** PUBACK for one of our PUBLISHes: completes a QoS 1 message; for a QoS 2 one a violation. */
  acknowledge(packetId: number): AckOutcome {
    const entry = this.#inflight?.get(packetId);
    if (entry === undefined) return ACK_UNKNOWN;
    if (entry.qos !== 1) return ACK_MISMATCH;
    this.#complete(entry);
    return ACK_OK;
  }

  /**
   * PUBREC for one of our PUBLISHes. With a reason code < 0x80 the message is released (the caller
   * sends PUBREL); with a failure code the exchange ends here (5.0 section 4.3.3), nothing more is sent.
   * A PUBREC for a QoS 1 message is a violation; one repeated after PUBREL is answered again.
   */
  received(packetId: number, reasonCode = 0): AckOutcome {
    const entry = this.#inflight?.get(packetId);
    if (entry === undefined) return ACK_UNKNOWN;
    if (entry.qos !== 2) return ACK_MISMATCH;
    if (reasonCode >= 0x80) {
      this.#complete(entry);
      return ACK_OK;
    }
    if (entry.state === SENT) {
      entry.state = RELEASED;
      this.#ctx.observer?.outgoingChanged(this, entry);
    }
    return ACK_OK;
  }

  /** PUBCOMP for one of our QoS 2 messages; before its PUBREL, or for QoS 1, a violation. */
  completed(packetId: number): AckOutcome {
    const entry = this.#inflight?.get(packetId);
    if (entry === undefined) return ACK_UNKNOWN;
    if (entry.qos !== 2 || entry.state !== RELEASED) return ACK_MISMATCH;
    this.#complete(entry);
    return ACK_OK;
  }

  #complete(entry: Outgoing, pump = true): void {
    this.#inflight!.delete(entry.packetId);
    this.#ctx.counters.inflight--;
    this.#ctx.counters.memory.release(entry.message.size + ENTRY_OVERHEAD);
    this.#ctx.observer?.outgoingRemoved(this, entry);
    if (pump) this.pump();
  }

  /** Drops everything queued and in flight (the session ends); counts the loss. */
  discard(): void {
    const c = this.#ctx.counters;
    const lost = this.queued + this.inflight.size;
    let held = this.#queuedBytes + this.queued * ENTRY_OVERHEAD;
    for (const entry of this.inflight.values()) held += entry.message.size + ENTRY_OVERHEAD;
    c.memory.release(held);
    c.queued -= this.queued;
    c.inflight -= this.inflight.size;
    c.dropped.sessionDiscarded += lost;
    this.#queue = EMPTY_QUEUE;
    this.#head = 0;
    this.#queuedBytes = 0;
    this.#inflight = undefined;
    this.#inboundQos2 = undefined;
  }
}
