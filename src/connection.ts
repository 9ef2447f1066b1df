/**
 * One client connection: the read loop feeding the decoder, packet dispatch, keep-alive, and a
 * write queue that coalesces everything sent in one event-loop turn into one write.
 *
 * @module
 */
import type { Decoder } from "./codec/decoder.ts";
import { encodeAck, PINGRESP_BYTES } from "./codec/encoder.ts";
import { DecodeError, type Packet, type Will } from "./codec/packet.ts";
import type { BrokerContext } from "./context.ts";
import { handleConnect } from "./handlers/connect.ts";
import { handlePublish, handlePubrel } from "./handlers/publish.ts";
import { handleSubscribe, handleUnsubscribe } from "./handlers/subscribe.ts";
import type { ClientInfo, RemoteAddress } from "./hooks.ts";
import type { Session, SessionLink } from "./session/session.ts";
import type { BrokerConn } from "./transport/types.ts";

// Idle connections hold a pending read; its buffer is most of what they cost, so it starts
// small and grows (×4) only while reads fill it.
const MIN_READ = 64;
const MAX_READ = 64 * 1024;
// A connection told to close after its last bytes are written gets this long to write them.
const LINGER_MS = 5_000;

const NO_CHUNKS: Uint8Array[] = [];
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
  rate?: { messages: number; bytes: number; at: number };
}

/** A protocol violation: the connection is closed and the will published. */
export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ProtocolError";
  }
}

/** One network connection and, once CONNECT is accepted, the session it is attached to. */
export class Connection implements SessionLink {
  readonly ctx: BrokerContext;
  readonly client: ClientInfo;
  session: Session | undefined;
  will: Will | undefined;
  keepAliveMs = 0;
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

  constructor(
    ctx: BrokerContext,
    conn: BrokerConn,
    remote: RemoteAddress | undefined,
    overLimit: boolean,
  ) {
    this.ctx = ctx;
    this.#conn = conn;
    if (overLimit) this.#flags = OVER_LIMIT;
    this.client = { clientId: "", remoteAddress: remote };
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
      while (!this.isClosed) {
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
          for (let packet = decoder.next(); packet !== undefined; packet = decoder.next()) {
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
        // A client that sends but does not read (acks, PINGRESPs pile up) is not read from until
        // its socket takes our bytes again: the backlog stays in the kernel, not in our memory.
        if (this.#queuedBytes + this.#writingBytes >= this.ctx.limits.maxSocketBufferBytes) {
          await new Promise<void>((resolve) => this.#drained = resolve);
          this.#drained = undefined;
          if (this.isClosed) break;
        }
        if (n === buffer.length) {
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
    if (!this.connected) {
      if (packet.type === "connect") return handleConnect(this, packet);
      throw new ProtocolError(`first packet must be CONNECT, got ${packet.type} [MQTT-3.1.0-1]`);
    }
    const session = this.session!;
    switch (packet.type) {
      case "publish":
        return handlePublish(this, session, packet);
      case "puback":
        session.acknowledge(packet.packetId);
        return;
      case "pubrec":
        session.received(packet.packetId);
        this.sendPacket(encodeAck("pubrel", packet.packetId));
        return;
      case "pubrel":
        return handlePubrel(this, session, packet.packetId);
      case "pubcomp":
        session.completed(packet.packetId);
        return;
      case "subscribe":
        return handleSubscribe(this, session, packet);
      case "unsubscribe":
        return handleUnsubscribe(this, session, packet);
      case "pingreq":
        this.sendPacket(PINGRESP_BYTES); // [MQTT-3.12.4-1]
        return;
      case "disconnect":
        this.will = undefined; // [MQTT-3.14.4-3]
        this.close("disconnect");
        return;
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

  /** Queues a PUBLISH; for QoS > 0 writes `packetId` into the copy that goes on the wire. */
  sendPublish(bytes: Uint8Array, packetId: number, payloadLength: number): void {
    if (this.#isClosed) return;
    this.#append(bytes, packetId, payloadLength + 2);
    this.ctx.counters.messagesOut++;
  }

  /** Queues a packet to be written at the end of this event-loop turn. */
  sendPacket(bytes: Uint8Array): void {
    if (this.#isClosed) return;
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
    } else if (chunks.length === 1 && this.#patches[0] === 0) {
      data = chunks[0];
    } else {
      data = new Uint8Array(this.#queuedBytes);
      const patches = this.#patches;
      let offset = 0;
      for (let i = 0; i < chunks.length; i++) {
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
    this.#chunks = NO_CHUNKS;
    this.#patches = NO_NUMBERS;
    this.#writingBytes = data.length;
    this.#queuedBytes = 0;
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
      this.close("keep-alive timeout"); // [MQTT-3.1.2-24]
    }
  }

  /**
   * Closes after what is queued has been written (a refusing CONNACK, say). The will is not
   * published; reads stop at once.
   */
  closeAfterFlush(reason: string): void {
    if (this.isClosed) return;
    this.will = undefined;
    this.#lingerReason = reason;
    this.#closingSince = this.ctx.now;
    if (!this.#writing && !this.#scheduled) this.flush();
  }

  #finishClose(): void {
    this.close(this.#lingerReason, false);
  }

  /** Closes now; publishes the will unless told not to or DISCONNECT cleared it. */
  close(reason: string, publishWill = true): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    if (this.#pauseTimer !== undefined) clearTimeout(this.#pauseTimer);
    this.#resume?.();
    this.#drained?.();
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

  #violation(error: unknown): void {
    if (this.#isClosed) return;
    const err = error instanceof Error ? error : new Error(String(error));
    if (err instanceof DecodeError || err instanceof ProtocolError) {
      this.ctx.counters.protocolErrors++;
      this.ctx.log.info(`${this.#label()}: closing: ${err.message}`);
    } else {
      this.ctx.log.error(`${this.#label()}: internal error: ${err.stack ?? err.message}`);
    }
    if (this.ctx.listening("clientError")) {
      this.ctx.emit("clientError", { client: this.client, error: err });
    }
    this.close(err.message);
  }

  #label(): string {
    const r = this.client.remoteAddress;
    const from = r ? `${r.hostname}:${r.port}` : "?";
    return `client ${JSON.stringify(this.client.clientId)} (${from})`;
  }
}
