/**
 * A session: subscriptions, the outbound queue, messages in flight and inbound QoS 2 ids of one
 * client id. It outlives connections when the client asked for a persistent session.
 *
 * @module
 */
import type { QoS } from "../codec/packet.ts";
import type { AuthorizeForwardHook, ClientInfo } from "../hooks.ts";
import type { Message } from "../message.ts";
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
}

/** What a session needs of the connection it is attached to. */
export interface SessionLink {
  /** False while the socket has more unwritten bytes than `maxSocketBufferBytes`. */
  readonly writable: boolean;
  /** Queues a PUBLISH; for QoS > 0 `packetId` is written at `length - payloadLength - 2` of a copy. */
  sendPublish(bytes: Uint8Array, packetId: number, payloadLength: number): void;
  /** Queues any other packet. */
  sendPacket(bytes: Uint8Array): void;
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

/** Encodes PUBLISH with DUP=1 for a resend; injected to keep this module free of the encoder. */
export type DupEncoder = (
  message: Message,
  qos: QoS,
  retain: boolean,
  packetId: number,
) => Uint8Array;

const EMPTY_SUBSCRIPTIONS: ReadonlyMap<string, QoS> = new Map();
const EMPTY_INFLIGHT: ReadonlyMap<number, Outgoing> = new Map();
const EMPTY_IDS: ReadonlySet<number> = new Set();
// Shared by every session whose queue is empty; replaced by a private array before a push.
const EMPTY_QUEUE: (Outgoing | undefined)[] = [];

/** State of one client id. */
export class Session {
  readonly clientId: string;
  /** A clean session ends with its connection. */
  clean: boolean;
  // Collections are created on first use: an idle client's session holds none of them
  // (an empty Map costs a few hundred bytes, and idle connections are counted in thousands).
  #subscriptions: Map<string, QoS> | undefined;
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
  /** Routing scratch: the publish generation that last matched this session, and its slot. */
  mark = 0;
  markIndex = 0;

  #ctx: SessionContext;
  #queue: (Outgoing | undefined)[] = EMPTY_QUEUE;
  #head = 0;
  #queuedBytes = 0;
  #nextPacketId = 1;
  #seq = 0;

  constructor(clientId: string, clean: boolean, client: ClientInfo, ctx: SessionContext) {
    this.clientId = clientId;
    this.clean = clean;
    this.client = client;
    this.#ctx = ctx;
  }

  /** Subscribed filters and their granted QoS. */
  get subscriptions(): ReadonlyMap<string, QoS> {
    return this.#subscriptions ?? EMPTY_SUBSCRIPTIONS;
  }

  /** Adds or replaces a subscription; the router keeps the trie in step. */
  setSubscription(filter: string, qos: QoS): void {
    (this.#subscriptions ??= new Map()).set(filter, qos);
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

  /** Delivers a message at `qos` (already min(published, granted)); queues or drops by the limits. */
  deliver(message: Message, qos: QoS, retain = false): void {
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
        link.sendPublish(message.encoded(0, retain), 0, 0);
        return;
      }
    } else if (
      link !== undefined && idle && link.writable &&
      (this.#inflight?.size ?? 0) < ctx.limits.maxInflight
    ) {
      const entry: Outgoing = {
        message,
        qos,
        retain,
        packetId: 0,
        state: QUEUED,
        seq: ++this.#seq,
      };
      ctx.observer?.outgoingAdded(this, entry);
      this.#send(link, entry);
      return;
    }
    this.#enqueue({ message, qos, retain, packetId: 0, state: QUEUED, seq: ++this.#seq });
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
    if (this.#queue === EMPTY_QUEUE) this.#queue = [];
    this.#queue.push(entry);
    this.#queuedBytes += size;
    ctx.counters.queued++;
    if (entry.qos > 0) ctx.observer?.outgoingAdded(this, entry);
  }

  #send(link: SessionLink, entry: Outgoing): void {
    const bytes = entry.message.encoded(entry.qos, entry.retain);
    if (entry.qos === 0) {
      link.sendPublish(bytes, 0, 0);
      return;
    }
    const inflight = this.#inflight ??= new Map();
    entry.packetId = this.#allocatePacketId(inflight);
    entry.state = SENT;
    inflight.set(entry.packetId, entry);
    this.#ctx.counters.inflight++;
    this.#ctx.observer?.outgoingChanged(this, entry);
    link.sendPublish(bytes, entry.packetId, entry.message.payload.length);
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
    const max = this.#ctx.limits.maxInflight;
    // `#queue` is read afresh each time: a send may re-enter pump() (an ack handled at once) and
    // replace it.
    while (this.#head < this.#queue.length && link.writable) {
      const entry = this.#queue[this.#head]!;
      if (entry.qos > 0 && (this.#inflight?.size ?? 0) >= max) break;
      this.#queue[this.#head++] = undefined;
      this.#queuedBytes -= entry.message.size;
      this.#ctx.counters.queued--;
      this.#send(link, entry);
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

  /** Re-sends what is in flight, in order, after a reconnect [MQTT-4.4.0-1], then the queue. */
  resume(encodeDup: DupEncoder, pubrel: (packetId: number) => Uint8Array): void {
    const link = this.link;
    if (link === undefined || (this.#inflight === undefined && this.queued === 0)) return;
    for (const entry of this.inflight.values()) {
      if (entry.state === RELEASED) {
        link.sendPacket(pubrel(entry.packetId));
      } else {
        link.sendPacket(encodeDup(entry.message, entry.qos, entry.retain, entry.packetId));
      }
    }
    this.pump();
  }

  /** PUBACK for a QoS 1 message we sent. Unknown ids are ignored. */
  acknowledge(packetId: number): void {
    const entry = this.#inflight?.get(packetId);
    if (entry === undefined || entry.qos !== 1) return;
    this.#complete(entry);
  }

  /** PUBREC for a QoS 2 message we sent; the caller answers PUBREL either way. */
  received(packetId: number): void {
    const entry = this.#inflight?.get(packetId);
    if (entry === undefined || entry.qos !== 2 || entry.state !== SENT) return;
    entry.state = RELEASED;
    this.#ctx.observer?.outgoingChanged(this, entry);
  }

  /** PUBCOMP for a QoS 2 message we sent. */
  completed(packetId: number): void {
    const entry = this.#inflight?.get(packetId);
    if (entry === undefined || entry.qos !== 2) return;
    this.#complete(entry);
  }

  #complete(entry: Outgoing): void {
    this.#inflight!.delete(entry.packetId);
    this.#ctx.counters.inflight--;
    this.#ctx.observer?.outgoingRemoved(this, entry);
    this.pump();
  }

  /** Drops everything queued and in flight (the session ends); counts the loss. */
  discard(): void {
    const c = this.#ctx.counters;
    const lost = this.queued + this.inflight.size;
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
