/**
 * One client connection: the read loop feeding the decoder, packet dispatch, keep-alive, and a
 * write queue that coalesces everything sent in one event-loop turn into one write.
 *
 * @module
 */
import { giveSlab, SLAB_BYTES, takeSlab } from "./_write_slabs.ts";
import type { Decoder } from "./codec/decoder.ts";
import {
  encodeAck,
  encodePacket,
  encodePublishPrefix,
  encodeWithin,
  PINGRESP_BYTES,
  type PublishDelivery,
} from "./codec/encoder.ts";
import {
  connackReturnCode,
  type Packet,
  type ProtocolVersion,
  type QoS,
  REASON,
  type Will,
} from "./codec/packet.ts";
import type { BrokerContext } from "./context.ts";
import { ProtocolError, wireAction } from "./errors.ts";
import { handleAuth } from "./handlers/auth.ts";
import { handleConnect } from "./handlers/connect.ts";
import { handleDisconnect } from "./handlers/disconnect.ts";
import { handlePuback, handlePubcomp, handlePubrec } from "./handlers/acks.ts";
import { handlePublish, handlePubrel } from "./handlers/publish.ts";
import { handleSubscribe, handleUnsubscribe } from "./handlers/subscribe.ts";
import type { ClientInfo, RemoteAddress } from "./hooks.ts";
import type { ClientLink, V5State } from "./context.ts";
import { formatAddress } from "./logger.ts";
import type { Message } from "./message.ts";
import { traceIn, traceOut } from "./packet_trace.ts";
import type { Session } from "./session/session.ts";
import type { BrokerConn } from "./transport/types.ts";

export { ProtocolError };

// Idle connections hold a pending read; its buffer is most of what they cost, so it starts
// small and grows (×4) only while reads fill it.
const MIN_READ = 64;
const MAX_READ = 64 * 1024;
// A connection told to close after its last bytes are written gets this long to write them.
const LINGER_MS = 5_000;
// A backlogged subscriber that takes nothing for this long stops pacing its publishers.
const STALL_MS = 500;

const NO_CHUNKS: Uint8Array[] = [];
// A 3.1.1 payload at least this long is queued as it is, after its own small header, instead of
// in a copy of the whole encoded packet: a copy less per message, and per queued message.
const SHARED_PAYLOAD_BYTES = 256;

function yieldTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
const NO_NUMBERS: number[] = [];

// Bits of Connection.#flags: one field instead of a boolean field each.
const CONNECTED = 1;
const OVER_LIMIT = 2;
const CLOSED = 4;
const CLOSING = 8;
const FIRST_BYTE_CHECKED = 16;
const WRITING = 32;
const SCHEDULED = 64;
const HOLDING = 128;

// State most connections never need, kept out of the Connection object (every field there is
// paid by every idle client).
interface Rare {
  closed?: Promise<void>;
  resolveClosed?: () => void;
  closingSince: number;
  lingerReason: string;
  pauseTimer?: ReturnType<typeof setTimeout>;
  resume?: () => void;
  drained?: () => void;
  // Cancels the wait for room under the memory budget.
  cancelRoom?: () => void;
  rate?: { messages: number; bytes: number; at: number };
}

/** One network connection and, once CONNECT is accepted, the session it is attached to. */
export class Connection implements ClientLink {
  readonly ctx: BrokerContext;
  readonly client: ClientInfo;
  session: Session | undefined;
  will: Will | undefined;
  keepAliveMs = 0;
  /** 4 (or 3) until a 5.0 CONNECT is read. */
  version: ProtocolVersion = 4;
  /** 5.0 negotiated state; undefined on 3.1.1 connections. */
  v5: V5State | undefined;
  lastActivity: number;
  readonly createdAt: number;

  #conn: BrokerConn;
  // Only while this connection holds bytes of its own (a packet cut by a read, or undecoded bytes
  // while it waits); otherwise the broker's shared decoder serves it.
  #decoder: Decoder | undefined;
  #flags = 0;
  #rare: Rare | undefined;
  // Write queue: chunks, and for PUBLISH copies the packet id to write at length - tail. The
  // arrays are allocated on the first packet of a turn and dropped after the flush.
  #single: Uint8Array | undefined;
  #chunks: Uint8Array[] = NO_CHUNKS;
  // Per chunk: 0, or the packet id to write and how far from the chunk's end, as
  // tail * 65536 + packetId (exact in a double: tails stay below 2^28).
  #patches: number[] = NO_NUMBERS;
  #queuedBytes = 0;
  #writingBytes = 0;
  // The pooled buffer the write in progress reads from, given back when it completes.
  #slab: Uint8Array | undefined;

  constructor(
    ctx: BrokerContext,
    conn: BrokerConn,
    remote: RemoteAddress | undefined,
    overLimit: boolean,
  ) {
    this.ctx = ctx;
    this.#conn = conn;
    if (overLimit) this.#flags = OVER_LIMIT;
    // protocolVersion is in the literal: set later, it would move the object to a slower shape.
    this.client = { clientId: "", remoteAddress: remote, protocolVersion: undefined };
    this.createdAt = this.lastActivity = ctx.now;
    if (ctx.limits.rateLimitMessages > 0 || ctx.limits.rateLimitBytes > 0) {
      this.#rate = {
        messages: ctx.limits.rateLimitMessages,
        bytes: ctx.limits.rateLimitBytes,
        at: Date.now(),
      };
    }
  }

  /** Set once the CONNECT is accepted. */
  get connected(): boolean {
    return (this.#flags & CONNECTED) !== 0;
  }
  set connected(value: boolean) {
    this.#flag(CONNECTED, value);
  }

  /**
   * Set while an accepted CONNECT waits for its CONNACK (a store commit, the cluster): the session
   * queues instead of sending, so nothing goes out before the CONNACK [MQTT-3.2.0-1].
   */
  get holding(): boolean {
    return (this.#flags & HOLDING) !== 0;
  }
  set holding(value: boolean) {
    this.#flag(HOLDING, value);
  }

  /** Set when the broker was at `maxConnections` as this connection arrived. */
  get overLimit(): boolean {
    return (this.#flags & OVER_LIMIT) !== 0;
  }

  #flag(bit: number, value: boolean): void {
    this.#flags = value ? this.#flags | bit : this.#flags & ~bit;
  }

  get #isClosed(): boolean {
    return (this.#flags & CLOSED) !== 0;
  }
  set #isClosed(value: boolean) {
    this.#flag(CLOSED, value);
  }
  get #firstByteChecked(): boolean {
    return (this.#flags & FIRST_BYTE_CHECKED) !== 0;
  }
  set #firstByteChecked(value: boolean) {
    this.#flag(FIRST_BYTE_CHECKED, value);
  }
  get #writing(): boolean {
    return (this.#flags & WRITING) !== 0;
  }
  set #writing(value: boolean) {
    this.#flag(WRITING, value);
  }
  get #scheduled(): boolean {
    return (this.#flags & SCHEDULED) !== 0;
  }
  set #scheduled(value: boolean) {
    this.#flag(SCHEDULED, value);
  }

  #rareState(): Rare {
    return this.#rare ??= { closingSince: -1, lingerReason: "" };
  }
  // Made only when someone waits for the close: most connections never need it.
  get #closed(): Promise<void> | undefined {
    return this.#rare?.closed;
  }
  set #closed(value: Promise<void> | undefined) {
    this.#rareState().closed = value;
  }
  get #resolveClosed(): (() => void) | undefined {
    return this.#rare?.resolveClosed;
  }
  set #resolveClosed(value: (() => void) | undefined) {
    this.#rareState().resolveClosed = value;
  }
  get #closingSince(): number {
    return (this.#flags & CLOSING) === 0 ? -1 : this.#rare!.closingSince;
  }
  set #closingSince(value: number) {
    this.#rareState().closingSince = value;
    this.#flag(CLOSING, value !== -1);
  }
  get #lingerReason(): string {
    return this.#rare?.lingerReason ?? "";
  }
  set #lingerReason(value: string) {
    this.#rareState().lingerReason = value;
  }
  // Rate limit buckets, only when a rate limit is set; the timer that resumes reading.
  get #rate(): Rare["rate"] {
    return this.#rare?.rate;
  }
  set #rate(value: Rare["rate"]) {
    this.#rareState().rate = value;
  }
  get #pauseTimer(): Rare["pauseTimer"] {
    return this.#rare?.pauseTimer;
  }
  set #pauseTimer(value: Rare["pauseTimer"]) {
    this.#rareState().pauseTimer = value;
  }
  get #resume(): (() => void) | undefined {
    return this.#rare?.resume;
  }
  set #resume(value: (() => void) | undefined) {
    this.#rareState().resume = value;
  }
  // Set while reading waits for the socket to drain.
  get #drained(): (() => void) | undefined {
    return this.#rare?.drained;
  }
  set #drained(value: (() => void) | undefined) {
    this.#rareState().drained = value;
  }

  /** Resolves when the connection is closed. */
  get closed(): Promise<void> {
    if (this.#isClosed) return Promise.resolve();
    return this.#closed ??= new Promise((resolve) => this.#resolveClosed = resolve);
  }

  /** Whether the connection is closed or closing. */
  get isClosed(): boolean {
    return (this.#flags & (CLOSED | CLOSING)) !== 0;
  }

  /** False while more than `maxSocketBufferBytes` wait to be written. */
  get writable(): boolean {
    return this.#queuedBytes + this.#writingBytes < this.ctx.limits.maxSocketBufferBytes &&
      (this.#flags & (CLOSING | HOLDING)) === 0;
  }

  /** Runs the read loop until the connection closes. Never rejects. */
  async run(): Promise<void> {
    // One async frame per connection, with the loop inline: idle connections are counted in
    // thousands and each suspended frame costs memory.
    try {
      let buffer = new Uint8Array(MIN_READ);
      const shared = this.ctx.decoder;
      const counters = this.ctx.counters;
      const memory = counters.memory;
      while (!this.isClosed) {
        const routed = counters.messagesRouted;
        let n: number | null;
        try {
          n = await this.#conn.read(buffer);
        } catch (error) {
          this.#ioError(error);
          break;
        }
        if (n === null) {
          this.close("connection closed by client");
          break;
        }
        if (this.isClosed) break;
        counters.bytesIn += n;
        this.lastActivity = this.ctx.now;
        memory.backlogged = undefined;
        // Anything but CONNECT first is refused from its first byte, not after waiting for a
        // body it announces [MQTT-3.1.0-1].
        if (!this.connected && !this.#firstByteChecked && buffer[0] !== 0x10) {
          this.#violation(new ProtocolError(`first packet must be CONNECT [MQTT-3.1.0-1]`));
          break;
        }
        this.#firstByteChecked = true;
        // The shared decoder is empty whenever this loop waits: before any await, what it holds
        // moves into a decoder of this connection's own.
        let decoder = this.#decoder ?? shared;
        try {
          decoder.push(buffer, n);
          for (
            let packet = decoder.next(this.version);
            packet !== undefined;
            packet = decoder.next(this.version)
          ) {
            const pending = this.#dispatch(packet);
            if (pending !== undefined) {
              if (decoder === shared) decoder = this.#decoder = shared.detach();
              await pending;
            }
            if (this.isClosed) break;
            // Over its rate budget: wait before the next packet, even within one read, so a
            // large read does not let a burst through. The read buffer is not reused meanwhile.
            if (this.#rate !== undefined && this.#pauseMs() > 0) {
              if (decoder === shared) decoder = this.#decoder = shared.detach();
              await this.#pause();
            }
          }
          if (decoder === shared) {
            // Drained, except perhaps the copied start of a packet the next read completes.
            if (this.isClosed) shared.reset();
            else if (shared.bufferedBytes > 0) this.#decoder = shared.detach();
          } else if (decoder.bufferedBytes === 0) {
            this.#decoder = undefined;
          }
        } catch (error) {
          if (decoder === shared) shared.reset();
          this.#violation(error);
          break;
        }
        // A session this read's messages backed up (its queue past its high-water mark): wait for
        // it to drain, so the publisher runs at the subscriber's pace instead of filling its
        // queue. A subscriber that does not move within STALL_MS is marked stuck and skipped.
        const backlog = memory.takeBacklogged();
        if (backlog !== undefined) {
          const wait = backlog.drained(STALL_MS);
          this.#rareState().cancelRoom = wait.cancel;
          await wait.promise;
          this.#rare!.cancelRoom = undefined;
          if (this.isClosed) break;
        }
        // Over the memory budget a client whose PUBLISHes were routed is not read from until
        // there is room again: the kernel's TCP window then slows it, as mosquitto's
        // memory_limit does. Subscribers are still read (their acks free memory).
        if (memory.over && counters.messagesRouted !== routed) {
          counters.memoryPauses++;
          const room = memory.room();
          this.#rareState().cancelRoom = room.cancel;
          await room.promise;
          this.#rare!.cancelRoom = undefined;
          if (this.isClosed) break;
        }
        // A client that sends but does not read (acks, PINGRESPs pile up) is not read from until
        // its socket takes our bytes again: the backlog stays in the kernel, not in our memory.
        if (this.#queuedBytes + this.#writingBytes >= this.ctx.limits.maxSocketBufferBytes) {
          await new Promise<void>((resolve) => this.#drained = resolve);
          this.#drained = undefined;
          if (this.isClosed) break;
        }
        if (n === buffer.length) {
          // A read that filled the buffer means more is waiting: a socket that always has data
          // would otherwise keep this loop in promise jobs, ahead of timers, other sockets' I/O
          // and write completions. One event-loop turn per full buffer paces such a publisher to
          // what the broker delivers, and costs nothing at low load (reads are small there).
          await yieldTurn();
          if (this.isClosed) break;
          if (buffer.length < MAX_READ) buffer = new Uint8Array(buffer.length * 4);
        } else if (n * 16 <= buffer.length) {
          let size = MIN_READ;
          while (size < n) size *= 4;
          buffer = new Uint8Array(size);
        }
      }
    } catch (error) {
      this.#violation(error);
    }
    // Closing after a last write (a refusing CONNACK): done when that is written.
    if (!this.#isClosed) await this.closed;
  }

  #pause(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.#resume = () => {
        this.#resume = undefined;
        resolve();
      };
      this.#pauseTimer = setTimeout(() => this.#resumeReading(), this.#pauseMs());
    });
  }

  #resumeReading(): void {
    this.#pauseTimer = undefined;
    this.#resume?.();
  }

  #dispatch(packet: Packet): void | Promise<void> {
    this.ctx.counters.packetsIn++;
    if (this.ctx.trace) traceIn(this.ctx.log, this.client.clientId, packet);
    if (!this.connected) {
      if (packet.type === "connect" && this.v5?.authStep !== undefined && this.v5.authStep > 0) {
        throw new ProtocolError("second CONNECT during authentication [MQTT-3.1.0-2]");
      }
      if (packet.type === "connect") return handleConnect(this, packet);
      // A 5.0 CONNECT's AUTH exchange runs before CONNACK.
      if (packet.type === "auth" && this.v5 !== undefined) return handleAuth(this, packet);
      if (packet.type === "disconnect" && this.v5 !== undefined) {
        this.will = undefined;
        this.close("disconnect during authentication");
        return;
      }
      throw new ProtocolError(`first packet must be CONNECT, got ${packet.type} [MQTT-3.1.0-1]`);
    }
    const session = this.session!;
    switch (packet.type) {
      case "publish":
        return handlePublish(this, session, packet);
      case "puback":
        return handlePuback(this, session, packet);
      case "pubrec":
        return handlePubrec(this, session, packet);
      case "pubrel":
        return handlePubrel(this, session, packet.packetId);
      case "pubcomp":
        return handlePubcomp(this, session, packet);
      case "subscribe":
        return handleSubscribe(this, session, packet);
      case "unsubscribe":
        return handleUnsubscribe(this, session, packet);
      case "pingreq":
        this.sendPacket(PINGRESP_BYTES); // [MQTT-3.12.4-1]
        return;
      case "disconnect":
        return handleDisconnect(this, session, packet);
      case "auth":
        if (this.v5 === undefined) throw new ProtocolError("AUTH from a 3.1.1 client");
        return handleAuth(this, packet);
      case "connect":
        throw new ProtocolError("second CONNECT [MQTT-3.1.0-2]");
      default:
        throw new ProtocolError(`unexpected ${packet.type} from a client`);
    }
  }

  /** Counts a publish against the rate limit. */
  chargeRate(payloadBytes: number): void {
    const rate = this.#rate;
    if (rate === undefined) return;
    const { rateLimitMessages: msgs, rateLimitBytes: bytes } = this.ctx.limits;
    const now = Date.now();
    const elapsed = (now - rate.at) / 1000;
    rate.at = now;
    if (msgs > 0) rate.messages = Math.min(msgs, rate.messages + elapsed * msgs) - 1;
    if (bytes > 0) {
      rate.bytes = Math.min(bytes, rate.bytes + elapsed * bytes) - payloadBytes;
    }
  }

  // How long reading must pause for the token buckets to be positive again.
  #pauseMs(): number {
    const rate = this.#rate;
    if (rate === undefined) return 0;
    const { rateLimitMessages: msgs, rateLimitBytes: bytes } = this.ctx.limits;
    let wait = 0;
    if (msgs > 0 && rate.messages < 0) wait = (-rate.messages / msgs) * 1000;
    if (bytes > 0 && rate.bytes < 0) {
      wait = Math.max(wait, (-rate.bytes / bytes) * 1000);
    }
    return Math.ceil(wait);
  }

  /** The client's Receive Maximum (5.0); 65 535 for 3.1.1, so only `maxInflight` applies. */
  get receiveMaximum(): number {
    return this.v5?.receiveMaximum ?? 65_535;
  }

  /**
   * Queues a PUBLISH of `message`. 3.1.1: the message's shared bytes, with `packetId` written into
   * the copy that goes on the wire. 5.0: a frame for this delivery (subscription identifiers,
   * remaining expiry); false when it exceeds the client's Maximum Packet Size.
   */
  sendPublish(
    message: Message,
    qos: QoS,
    retain: boolean,
    packetId: number,
    subscriptionIds: readonly number[] | undefined,
    dup: boolean,
  ): boolean {
    if (this.#isClosed) return true;
    const v5 = this.v5;
    if (v5 === undefined) {
      if (dup) {
        this.sendPacket(
          encodePacket({
            type: "publish",
            topic: message.topic,
            payload: message.payload,
            qos,
            retain,
            dup: true,
            packetId,
          }),
        );
        this.ctx.counters.messagesOut++;
        return true;
      }
      if (message.payload.length >= SHARED_PAYLOAD_BYTES) message.own(); // written later, as it is
      const payload = message.payload;
      if (payload.length < SHARED_PAYLOAD_BYTES) {
        this.#append(message.encoded(qos, retain), packetId, payload.length + 2);
      } else {
        // The payload as the decoder (or publish()) made it, shared by every delivery.
        this.#append(
          encodePublishPrefix(message.topic, payload.length, qos, retain, false, packetId),
          0,
          0,
        );
        this.#append(payload, 0, 0);
      }
      if (this.ctx.trace) {
        const head = payload.length < SHARED_PAYLOAD_BYTES
          ? message.encoded(qos, retain)
          : encodePublishPrefix(message.topic, payload.length, qos, retain, false, packetId);
        traceOut(this.ctx.log, this.client.clientId, head, packetId, payload.length);
      }
      this.ctx.counters.messagesOut++;
      this.ctx.counters.packetsOut++;
      return true;
    }
    // Per delivery: the remaining Message Expiry Interval [MQTT-3.3.2-6] and the Subscription
    // Identifiers of the matching subscriptions [MQTT-3.3.4-3]; the rest is encoded once.
    const frame = message.frame();
    const remaining = message.expiresAt === 0 ? undefined : message.remainingExpiryS(Date.now());
    const delivery: PublishDelivery | undefined =
      remaining === undefined && subscriptionIds === undefined
        ? undefined
        : { subscriptionIdentifiers: subscriptionIds, messageExpiryInterval: remaining };
    // Never a packet larger than the client's Maximum Packet Size [MQTT-3.1.2-25].
    if (frame.size(5, qos, delivery) > v5.maximumPacketSize) return false;
    this.sendPacket(frame.header(5, qos, retain, qos > 0 && dup, packetId, delivery));
    // The payload is the same packet's second chunk: not counted or traced again.
    if (frame.payload.length > 0) this.#append(frame.payload, 0, 0);
    this.ctx.counters.messagesOut++;
    return true;
  }

  /** Queues a PUBREL for one of our QoS 2 messages. */
  sendPubrel(packetId: number): void {
    this.sendPacket(encodeAck("pubrel", packetId));
  }

  /** Queues a PUBACK, PUBREC or PUBCOMP; a reason code ≠ 0 only goes to 5.0 clients. */
  sendAck(type: "puback" | "pubrec" | "pubcomp", packetId: number, reasonCode: number): void {
    if (reasonCode === 0 || this.v5 === undefined) this.sendPacket(encodeAck(type, packetId));
    else this.send({ type, packetId, reasonCode });
  }

  /**
   * Encodes `packet` for this connection's protocol version and queues it. To a 5.0 client, a
   * packet over its Maximum Packet Size loses its reason string (then user properties), or is not
   * sent at all [MQTT-3.1.2-24].
   */
  send(packet: Packet): void {
    if (this.#isClosed) return;
    const v5 = this.v5;
    if (v5 === undefined) {
      this.sendPacket(encodePacket(packet, this.version));
      return;
    }
    const bytes = encodeWithin(packet, 5, v5.maximumPacketSize);
    if (bytes !== undefined) this.sendPacket(bytes);
  }

  /** Queues a packet to be written at the end of this event-loop turn. */
  sendPacket(bytes: Uint8Array): void {
    if (this.#isClosed) return;
    if (this.ctx.trace) traceOut(this.ctx.log, this.client.clientId, bytes);
    this.ctx.counters.packetsOut++;
    if (this.#single === undefined && this.#chunks === NO_CHUNKS) {
      // The usual case on a quiet connection (CONNACK, PINGRESP, an ack): no arrays at all.
      this.#single = bytes;
      this.#queued(bytes.length);
    } else {
      this.#append(bytes, 0, 0);
    }
  }

  #append(bytes: Uint8Array, packetId: number, tail: number): void {
    if (this.#chunks === NO_CHUNKS) {
      this.#chunks = [];
      this.#patches = [];
      if (this.#single !== undefined) {
        this.#chunks.push(this.#single);
        this.#patches.push(0);
        this.#single = undefined;
      }
    }
    this.#chunks.push(bytes);
    this.#patches.push(packetId === 0 ? 0 : tail * 65536 + packetId);
    this.#queued(bytes.length);
  }

  #queued(length: number): void {
    this.#queuedBytes += length;
    this.ctx.counters.memory.charge(length);
    if (!this.#scheduled && !this.#writing) {
      this.#scheduled = true;
      this.ctx.scheduleFlush(this);
    }
  }

  /** Writes what was queued this turn; the broker calls it once per turn for every connection that queued. */
  flush(): void {
    this.#scheduled = false;
    if (this.#isClosed || this.#writing) return;
    const chunks = this.#chunks;
    let data: Uint8Array;
    if (this.#single !== undefined) {
      data = this.#single;
      this.#single = undefined;
    } else if (chunks.length === 0) {
      if (this.#closingSince !== -1) this.#finishClose();
      return;
    } else {
      // One slab of whole chunks per write (a chunk larger than a slab goes alone, as it is); the
      // rest waits for the next write (#written). A fresh buffer per large flush would be
      // hundreds of KB of garbage per write to a busy subscriber.
      const patches = this.#patches;
      let size = chunks[0].length;
      let count = 1;
      while (count < chunks.length && size + chunks[count].length <= SLAB_BYTES) {
        size += chunks[count++].length;
      }
      if (count === 1 && patches[0] === 0) {
        data = chunks[0];
      } else {
        if (size <= SLAB_BYTES) {
          this.#slab = takeSlab();
          data = this.#slab.subarray(0, size);
        } else {
          data = new Uint8Array(size); // one packet larger than a slab, with a packet id to set
        }
        let offset = 0;
        for (let i = 0; i < count; i++) {
          const chunk = chunks[i];
          data.set(chunk, offset);
          offset += chunk.length;
          const patch = patches[i];
          if (patch !== 0) {
            const id = patch % 65536;
            const at = offset - (patch - id) / 65536;
            data[at] = id >> 8;
            data[at + 1] = id & 0xff;
          }
        }
      }
      if (count === chunks.length) {
        this.#chunks = NO_CHUNKS;
        this.#patches = NO_NUMBERS;
      } else {
        this.#chunks = chunks.slice(count);
        this.#patches = patches.slice(count);
      }
    }
    this.#writingBytes = data.length;
    this.#queuedBytes -= data.length;
    this.#writing = true;
    this.ctx.counters.bytesOut += data.length;
    this.#write(data);
  }

  // Promise callbacks rather than an async function: a write per connection per turn, and each
  // async frame is garbage that grows the young generation.
  #write(data: Uint8Array): void {
    let pending: Promise<number>;
    try {
      pending = this.#conn.write(data);
    } catch (error) {
      this.#writeFailed(error);
      return;
    }
    pending.then(
      (n) => n < data.length ? this.#write(data.subarray(n)) : this.#written(),
      (error) => this.#writeFailed(error),
    );
  }

  #writeFailed(error: unknown): void {
    this.#writing = false;
    this.#ioError(error);
  }

  #written(): void {
    this.#writing = false;
    if (this.#slab !== undefined) {
      giveSlab(this.#slab);
      this.#slab = undefined;
    }
    this.ctx.counters.memory.release(this.#writingBytes);
    this.#writingBytes = 0;
    if (this.#isClosed) return;
    if (this.#drained !== undefined && this.#queuedBytes < this.ctx.limits.maxSocketBufferBytes) {
      this.#drained();
    }
    // The socket drained: let the session send what waited for room.
    this.session?.pump();
    if (this.#chunks.length > 0 || this.#single !== undefined) {
      if (!this.#scheduled) {
        this.#scheduled = true;
        this.ctx.scheduleFlush(this);
      }
    } else if (this.#closingSince !== -1) {
      this.#finishClose();
    }
  }

  /** Keep-alive, CONNECT deadline and linger checks; called by the broker's sweep. */
  check(now: number): void {
    if (this.#isClosed) return;
    if (this.#closingSince !== -1) {
      if (now - this.#closingSince > LINGER_MS) this.#finishClose();
    } else if (!this.connected) {
      if (now - this.createdAt > this.ctx.limits.connectTimeoutMs) {
        this.close("no CONNECT within connectTimeoutMs", false);
      }
    } else if (this.keepAliveMs > 0 && now - this.lastActivity > this.keepAliveMs * 1.5) {
      // [MQTT-3.1.2-24] (5.0: [MQTT-3.1.2-22])
      this.disconnect(REASON.keepAliveTimeout, "keep-alive timeout", true);
    }
  }

  /**
   * Closes for a reason 5.0 can name: a 5.0 client first gets DISCONNECT with `reasonCode`
   * (a reason string only if its Request Problem Information allows). 3.1.1: just closes.
   */
  disconnect(reasonCode: number, reason: string, publishWill: boolean): void {
    if (this.isClosed) return;
    const v5 = this.v5;
    if (v5 === undefined || !this.connected) {
      this.close(reason, publishWill);
      return;
    }
    this.send({
      type: "disconnect",
      reasonCode,
      properties: v5.problemInformation ? { reasonString: reason } : undefined,
    });
    this.closeAfterFlush(reason, publishWill);
  }

  /**
   * Closes after what is queued has been written (a refusing CONNACK, a DISCONNECT). The will is
   * published only if `publishWill`; reads stop at once.
   */
  closeAfterFlush(reason: string, publishWill = false): void {
    if (this.isClosed) return;
    if (!publishWill) this.will = undefined;
    this.#lingerReason = reason;
    this.#closingSince = this.ctx.now;
    if (!this.#writing && !this.#scheduled) this.flush();
  }

  #finishClose(): void {
    // The will was cleared by closeAfterFlush unless it is to be published.
    this.close(this.#lingerReason, true);
  }

  /** Closes now; publishes the will unless told not to or DISCONNECT cleared it. */
  close(reason: string, publishWill = true): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    if (this.#pauseTimer !== undefined) clearTimeout(this.#pauseTimer);
    this.#resume?.();
    this.#drained?.();
    this.#rare?.cancelRoom?.();
    this.ctx.counters.memory.release(this.#queuedBytes + this.#writingBytes);
    this.#queuedBytes = this.#writingBytes = 0;
    try {
      this.#conn.close();
    } catch {
      // Already closed by the peer or a transport: nothing left to release.
    }
    this.#single = undefined;
    this.#chunks = NO_CHUNKS;
    this.#patches = NO_NUMBERS;
    const will = publishWill ? this.will : undefined;
    this.will = undefined;
    this.ctx.connectionClosed(this, will, reason);
    this.#resolveClosed?.();
  }

  // A reset, EOF mid-write or broken pipe is routine: close quietly.
  #ioError(error: unknown): void {
    if (this.#isClosed) return;
    const message = error instanceof Error ? error.message : String(error);
    if (this.ctx.log.enabled("debug")) this.ctx.log.debug(`${this.#label()}: ${message}`);
    this.close(`connection lost: ${message}`);
  }

  /**
   * The one place an error becomes a wire action (the table is `wireAction` in errors.ts):
   * 5.0 gets DISCONNECT with the reason code first, 3.1.1 a close.
   */
  fail(error: unknown): void {
    if (this.isClosed) return;
    const err = error instanceof Error ? error : new Error(String(error));
    const action = wireAction(err);
    if (action.blame === "refusal") {
      // A refused CONNECT: its CONNACK, then close; the will is never published [MQTT-3.2.2-5].
      const code = action.reasonCode;
      if (code === REASON.serverBusy || code === REASON.quotaExceeded) {
        this.ctx.counters.connectionsRefused++;
      }
      // By the 3.1.1 return code it is (1..5), for the metrics.
      this.ctx.counters.connectRefused[connackReturnCode(code)]++;
      // Names what an operator acts on: the client id, the address and the user name tried.
      const { clientId, username, remoteAddress: r } = this.client;
      const from = r === undefined
        ? "?"
        : `${formatAddress(r.hostname, r.port)} over ${r.transport}`;
      const user = username === undefined ? "no user name" : `user ${JSON.stringify(username)}`;
      this.ctx.log.info(
        `refused CONNECT from ${JSON.stringify(clientId)} (${from}, ${user}): ${err.message}`,
      );
      this.send({
        type: "connack",
        sessionPresent: false,
        returnCode: 0,
        reasonCode: code,
        properties: this.v5?.problemInformation ? { reasonString: err.message } : undefined,
      });
      this.closeAfterFlush(err.message);
      return;
    }
    if (action.blame === "store") {
      this.ctx.log.error(`${this.#label()}: closing: ${err.message}`);
      this.will = undefined;
      this.close(err.message, false);
      return;
    }
    if (action.blame === "client") {
      this.ctx.counters.protocolErrors++;
      this.ctx.log.info(`${this.#label()}: closing: ${err.message}`);
    } else {
      this.ctx.log.error(`${this.#label()}: internal error: ${err.stack ?? err.message}`);
    }
    if (this.ctx.listening("clientError")) {
      this.ctx.emit("clientError", { client: this.client, error: err });
    }
    this.disconnect(action.reasonCode, err.message, action.publishWill);
  }

  #violation(error: unknown): void {
    this.fail(error);
  }

  #label(): string {
    const r = this.client.remoteAddress;
    const from = r ? formatAddress(r.hostname, r.port) : "?";
    return `client ${JSON.stringify(this.client.clientId)} (${from})`;
  }
}
