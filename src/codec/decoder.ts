/**
 * Incremental MQTT 3.1.1 and 5.0 decoder: bytes in, typed packets out. Pure: no I/O, no timers.
 *
 * A small state machine (fixed header → remaining length → body). The remaining length is checked
 * against `maxPacketSize` as soon as the fixed header is known, before the body is buffered.
 * Framing is the same in every version, so one decoder can serve connections of any version in
 * turn: `next(version)` picks the bodies (3.1.1 here, 5.0 in `_decode_v5.ts`); a CONNECT is always
 * read by the protocol level it carries.
 *
 * @module
 */

import {
  type ConnectPacket,
  DecodeError,
  type DisconnectPacket,
  type EmptyPacket,
  type Packet,
  type ProtocolVersion,
  type QoS,
  REASON,
  type Subscription,
  type Will,
} from "./packet.ts";
import { COPY, EMPTY, KEEP, LEND, READER, type Reader } from "./_reader.ts";
import { isUtf8 } from "./_utf8.ts";
import {
  decodeAuthV5,
  decodeConnackV5,
  decodeConnectV5,
  decodeDisconnectV5,
  decodePubAckV5,
  decodePublishV5,
  decodeSubackV5,
  decodeSubscribeV5,
  decodeUnsubackV5,
  decodeUnsubscribeV5,
} from "./_decode_v5.ts";

/**
 * Whether a payload is well-formed UTF-8 without U+0000, as a 5.0 PUBLISH or will with Payload
 * Format Indicator 1 declares it; the receiver may answer 0x99 (payload format invalid) when not.
 *
 * @example
 * ```ts
 * import { isUtf8Payload } from "./decoder.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(isUtf8Payload(new TextEncoder().encode("21.5 °C")), true);
 * assert.equal(isUtf8Payload(new Uint8Array([0xc3, 0x28])), false);
 * ```
 */
export function isUtf8Payload(payload: Uint8Array): boolean {
  return isUtf8(payload);
}

/** Options of a {@linkcode Decoder}. */
export interface DecoderOptions {
  /** Largest packet accepted, whole (fixed header included), in bytes. */
  maxPacketSize: number;
  /**
   * Which side reads: a "server" (the default) rejects what only a server may send, such as a
   * Subscription Identifier on PUBLISH [MQTT-3.3.4-6]; a "client" rejects what only a client may
   * send, such as Session Expiry Interval on DISCONNECT [MQTT-3.14.2-2].
   */
  role?: "server" | "client";
  /**
   * PUBLISH payloads as views instead of copies. A payload in a pushed chunk is then a view of
   * that chunk, with `borrowed: true` on its packet: valid only until the chunk is overwritten, so
   * whoever keeps it longer copies it. A payload of a packet that spanned chunks is a view of the
   * buffer the decoder assembled it in, which nothing else uses. Default false: copies.
   */
  borrowPayloads?: boolean;
}
/** Longest fixed header: 1 type byte and at most 4 remaining-length bytes. */
const MAX_HEADER_BYTES = 5;
/**
 * A partial packet up to this size gets its whole buffer at once. A larger one grows by doubling
 * as bytes arrive, so a peer that only announces a big packet does not make us allocate it.
 */
const EAGER_ALLOCATION_BYTES = 64 * 1024;

/**
 * Turns a stream of byte chunks of any size into {@linkcode Packet}s.
 *
 * `push()` keeps a reference to the chunk instead of copying it; only the tail of an incomplete
 * packet is copied, when `next()` returns `undefined`. So a caller may read into one reused buffer
 * provided it calls `next()` until it returns `undefined` before overwriting that buffer. Returned
 * packets never alias pushed chunks (payloads are copies, strings are decoded), unless the
 * decoder was made with `borrowPayloads`.
 *
 * After `next()` has thrown a {@linkcode DecodeError}, the decoder is unusable: it throws the
 * same error again, and the connection is meant to be closed.
 *
 * @example Decode a PINGREQ split over two chunks
 * ```ts
 * import { Decoder } from "./decoder.ts";
 * import assert from "node:assert/strict";
 *
 * const decoder = new Decoder({ maxPacketSize: 1024 });
 * decoder.push(new Uint8Array([0xc0]));
 * assert.equal(decoder.next(), undefined);
 * decoder.push(new Uint8Array([0x00]));
 * assert.deepEqual(decoder.next(), { type: "pingreq" });
 * ```
 */
export class Decoder {
  readonly #maxPacketSize: number;
  readonly #server: boolean;
  readonly #borrow: boolean;
  /** Borrowed (or, after a join, owned) bytes not yet decoded: `#chunk[#pos, #end)`. */
  #chunk: Uint8Array = EMPTY;
  #pos = 0;
  #end = 0;
  /**
   * Owned copy of the start of a packet that did not fit in the chunks seen so far. While it is
   * incomplete, `#chunk` is empty: every byte received after it belongs to it.
   */
  #partial: Uint8Array | undefined = undefined;
  #partialLength = 0;
  /** Whole size of the packet in `#partial`; 0 while its fixed header is incomplete. */
  #partialTotal = 0;
  #partialHeaderLength = 0;
  #error: DecodeError | undefined = undefined;
  /** Set by `#parseHeader`. */
  #headerLength = 0;

  /**
   * Creates a decoder for one connection.
   *
   * @param options `maxPacketSize` must be an integer of at least 2.
   * @throws {RangeError} when `maxPacketSize` is not an integer of at least 2.
   */
  constructor(options: DecoderOptions) {
    const max = options.maxPacketSize;
    if (!Number.isInteger(max) || max < 2) {
      throw new RangeError(`maxPacketSize must be an integer >= 2, got ${max}`);
    }
    this.#maxPacketSize = max;
    this.#server = options.role !== "client";
    this.#borrow = options.borrowPayloads === true;
  }

  /** Bytes held for packets not yet returned by `next()`. */
  get bufferedBytes(): number {
    return this.#partialLength + (this.#end - this.#pos);
  }

  /**
   * Moves everything this decoder holds (unread bytes, a partial packet, an error) into a new
   * decoder and leaves this one empty. One decoder can then serve many connections in turn: a
   * connection detaches the state it must keep (a packet cut by a read, or bytes still to decode
   * while it waits) into a decoder of its own. Borrowed chunks stay borrowed.
   */
  detach(): Decoder {
    const other = new Decoder({
      maxPacketSize: this.#maxPacketSize,
      role: this.#server ? "server" : "client",
      borrowPayloads: this.#borrow,
    });
    other.#chunk = this.#chunk;
    other.#pos = this.#pos;
    other.#end = this.#end;
    other.#partial = this.#partial;
    other.#partialLength = this.#partialLength;
    other.#partialTotal = this.#partialTotal;
    other.#partialHeaderLength = this.#partialHeaderLength;
    other.#error = this.#error;
    other.#headerLength = this.#headerLength;
    this.reset();
    return other;
  }

  /** Forgets everything held, an error included. */
  reset(): void {
    this.#chunk = EMPTY;
    this.#pos = 0;
    this.#end = 0;
    this.#partial = undefined;
    this.#partialLength = 0;
    this.#partialTotal = 0;
    this.#partialHeaderLength = 0;
    this.#error = undefined;
    this.#headerLength = 0;
  }

  /**
   * Appends the first `length` bytes of `chunk` (all of it by default). The chunk is referenced,
   * not copied, unless earlier bytes are still pending; do not overwrite it before `next()` has
   * returned `undefined`.
   */
  push(chunk: Uint8Array, length: number = chunk.length): void {
    if (this.#error !== undefined || length === 0) return;
    if (this.#pos < this.#end) {
      // The caller pushed again without draining: join (rare, so a plain copy is fine).
      const rest = this.#end - this.#pos;
      const joined = new Uint8Array(rest + length);
      joined.set(this.#chunk.subarray(this.#pos, this.#end), 0);
      joined.set(length === chunk.length ? chunk : chunk.subarray(0, length), rest);
      this.#chunk = joined;
      this.#pos = 0;
      this.#end = joined.length;
      return;
    }
    const partial = this.#partial;
    if (
      partial === undefined ||
      (this.#partialTotal !== 0 && this.#partialLength === this.#partialTotal)
    ) {
      // The first `length` bytes only: a reused read buffer need not be cut to size.
      this.#chunk = chunk;
      this.#pos = 0;
      this.#end = length;
      return;
    }
    this.#fillPartial(partial, length === chunk.length ? chunk : chunk.subarray(0, length));
  }

  /**
   * Returns the next complete packet, or `undefined` when more bytes are needed.
   *
   * @param version The connection's protocol version (default 4, i.e. 3.1.1; 3 reads the same
   * bodies). A CONNECT is read by the level it carries, whatever `version` says.
   * @throws {DecodeError} when the bytes break the standard; the connection must then be closed
   * (in 5.0 after a DISCONNECT with the error's `reasonCode`).
   */
  next(version: ProtocolVersion = 4): Packet | undefined {
    if (this.#error !== undefined) throw this.#error;
    try {
      return this.#next(version);
    } catch (e) {
      if (e instanceof DecodeError) {
        this.#error = e;
        this.#release();
        READER.buf = EMPTY;
      }
      throw e;
    }
  }

  #next(version: ProtocolVersion): Packet | undefined {
    const partial = this.#partial;
    if (partial !== undefined) {
      const total = this.#partialTotal;
      if (total === 0 || this.#partialLength < total) return undefined;
      this.#partial = undefined;
      this.#partialLength = 0;
      this.#partialTotal = 0;
      READER.payloads = this.#borrow ? KEEP : COPY;
      return this.#decode(partial, 0, this.#partialHeaderLength, total, version);
    }
    const buf = this.#chunk;
    const pos = this.#pos;
    const end = this.#end;
    if (pos === end) {
      this.#release();
      return undefined;
    }
    const total = this.#parseHeader(buf, pos, end);
    if (total < 0 || end - pos < total) {
      // Keep only the tail, so that the caller may reuse its buffer.
      const have = end - pos;
      const owned = new Uint8Array(total < 0 ? MAX_HEADER_BYTES : initialCapacity(total, have));
      owned.set(buf.subarray(pos, end), 0);
      this.#partial = owned;
      this.#partialLength = have;
      this.#partialTotal = total < 0 ? 0 : total;
      this.#partialHeaderLength = this.#headerLength;
      this.#release();
      return undefined;
    }
    this.#pos = pos + total;
    READER.payloads = this.#borrow ? LEND : COPY;
    return this.#decode(buf, pos, pos + this.#headerLength, pos + total, version);
  }

  #release(): void {
    this.#chunk = EMPTY;
    this.#pos = 0;
    this.#end = 0;
  }

  #fillPartial(partial: Uint8Array, chunk: Uint8Array): void {
    let i = 0;
    if (this.#partialTotal === 0) {
      // The fixed header is split: take bytes one at a time until it is known (at most 4 more).
      let total = -1;
      while (i < chunk.length) {
        partial[this.#partialLength++] = chunk[i++];
        try {
          total = this.#parseHeader(partial, 0, this.#partialLength);
        } catch (e) {
          if (!(e instanceof DecodeError)) throw e;
          this.#error = e; // reported by next(); the body is never buffered
          this.#partial = undefined;
          this.#partialLength = 0;
          return;
        }
        if (total >= 0) break;
      }
      if (total < 0) return;
      this.#partialTotal = total;
      this.#partialHeaderLength = this.#headerLength;
    }
    const take = Math.min(this.#partialTotal - this.#partialLength, chunk.length - i);
    if (this.#partialLength + take > partial.length) {
      const size = this.#partialLength + take;
      const capacity = Math.min(
        this.#partialTotal,
        Math.max(size, initialCapacity(this.#partialTotal, size), 2 * partial.length),
      );
      const grown = new Uint8Array(capacity);
      grown.set(partial.subarray(0, this.#partialLength), 0);
      this.#partial = partial = grown;
    }
    partial.set(chunk.subarray(i, i + take), this.#partialLength);
    this.#partialLength += take;
    i += take;
    if (i < chunk.length) {
      this.#chunk = chunk;
      this.#pos = i;
      this.#end = chunk.length;
    }
  }

  /**
   * Parses the fixed header at `buf[pos]`: returns the whole packet size and sets
   * `#headerLength`, or returns -1 when the header is incomplete.
   */
  #parseHeader(buf: Uint8Array, pos: number, end: number): number {
    let remaining = 0;
    let multiplier = 1;
    for (let i = 1; i < MAX_HEADER_BYTES; i++) {
      if (pos + i >= end) return -1;
      const b = buf[pos + i];
      remaining += (b & 0x7f) * multiplier;
      if ((b & 0x80) === 0) {
        const total = i + 1 + remaining;
        if (total > this.#maxPacketSize) {
          // 5.0 (3.2.2.3.6): a packet over the advertised Maximum Packet Size gets 0x95
          throw new DecodeError(
            `Cannot decode packet: size ${total} exceeds maxPacketSize ${this.#maxPacketSize}`,
            "",
            REASON.packetTooLarge,
          );
        }
        this.#headerLength = i + 1;
        return total;
      }
      multiplier *= 128;
    }
    throw new DecodeError("Cannot decode packet: remaining length exceeds 4 bytes");
  }

  /** Decodes the packet `buf[start, end)` whose body starts at `bodyStart`. */
  #decode(
    buf: Uint8Array,
    start: number,
    bodyStart: number,
    end: number,
    version: ProtocolVersion,
  ): Packet {
    const first = buf[start];
    const flags = first & 0x0f;
    const r = READER;
    r.buf = buf;
    r.pos = bodyStart;
    r.end = end;
    const v5 = version === 5;
    r.v5 = v5;
    // [MQTT-2.2.2-1] (3.1.1) [MQTT-2.1.3-1] (5.0) reserved flag bits hold the listed value
    const flagsTag = v5 ? "[MQTT-2.1.3-1]" : "[MQTT-2.2.2-1]";
    let packet: Packet;
    switch (first >> 4) {
      case 3: {
        const qos = (flags >> 1) & 3;
        // [MQTT-3.3.1-4] both QoS bits set is malformed, in both versions
        if (qos === 3) {
          throw new DecodeError("Cannot decode packet: PUBLISH with QoS 3", "[MQTT-3.3.1-4]");
        }
        const dup = (flags & 8) !== 0;
        if (dup && qos === 0) {
          throw new DecodeError(
            "Cannot decode packet: PUBLISH with DUP set and QoS 0",
            "[MQTT-3.3.1-2]",
          );
        }
        if (v5) {
          packet = decodePublishV5(r, flags, qos as QoS, dup, this.#server);
          break;
        }
        const topic = r.string("topic name");
        if (qos === 0) {
          packet = {
            type: "publish",
            topic,
            payload: r.payload(end),
            qos,
            retain: (flags & 1) !== 0,
            dup,
          };
        } else {
          const packetId = r.packetId();
          packet = {
            type: "publish",
            topic,
            payload: r.payload(end),
            qos: qos as QoS,
            retain: (flags & 1) !== 0,
            dup,
            packetId,
          };
        }
        if (r.payloads === LEND) packet.borrowed = true;
        r.pos = end;
        break;
      }
      case 4:
        checkFlags(flags, 0, "PUBACK", flagsTag);
        packet = v5 ? decodePubAckV5(r, "puback") : { type: "puback", packetId: r.packetId() };
        break;
      case 5:
        checkFlags(flags, 0, "PUBREC", flagsTag);
        packet = v5 ? decodePubAckV5(r, "pubrec") : { type: "pubrec", packetId: r.packetId() };
        break;
      case 6:
        checkFlags(flags, 2, "PUBREL", "[MQTT-3.6.1-1]");
        packet = v5 ? decodePubAckV5(r, "pubrel") : { type: "pubrel", packetId: r.packetId() };
        break;
      case 7:
        checkFlags(flags, 0, "PUBCOMP", flagsTag);
        packet = v5 ? decodePubAckV5(r, "pubcomp") : { type: "pubcomp", packetId: r.packetId() };
        break;
      case 12:
        checkFlags(flags, 0, "PINGREQ", flagsTag);
        packet = PINGREQ_PACKET;
        break;
      case 14:
        // [MQTT-3.14.1-1] (5.0) reserved bits are 0
        checkFlags(flags, 0, "DISCONNECT", v5 ? "[MQTT-3.14.1-1]" : flagsTag);
        packet = v5 && r.pos < end ? decodeDisconnectV5(r, this.#server) : DISCONNECT_PACKET;
        break;
      case 8:
        checkFlags(flags, 2, "SUBSCRIBE", "[MQTT-3.8.1-1]");
        packet = v5 ? decodeSubscribeV5(r) : decodeSubscribe(r);
        break;
      case 10:
        checkFlags(flags, 2, "UNSUBSCRIBE", "[MQTT-3.10.1-1]");
        packet = v5 ? decodeUnsubscribeV5(r) : decodeUnsubscribe(r);
        break;
      case 1:
        checkFlags(flags, 0, "CONNECT", flagsTag);
        packet = decodeConnect(r);
        break;
      case 2:
        checkFlags(flags, 0, "CONNACK", flagsTag);
        packet = v5 ? decodeConnackV5(r) : decodeConnack(r);
        break;
      case 9:
        checkFlags(flags, 0, "SUBACK", flagsTag);
        packet = v5 ? decodeSubackV5(r) : decodeSuback(r);
        break;
      case 11:
        checkFlags(flags, 0, "UNSUBACK", flagsTag);
        packet = v5 ? decodeUnsubackV5(r) : { type: "unsuback", packetId: r.packetId() };
        break;
      case 13:
        checkFlags(flags, 0, "PINGRESP", flagsTag);
        packet = PINGRESP_PACKET;
        break;
      case 15:
        if (v5) {
          // [MQTT-3.15.1-1] AUTH flags are 0
          checkFlags(flags, 0, "AUTH", "[MQTT-3.15.1-1]");
          packet = decodeAuthV5(r);
          break;
        }
        throw new DecodeError("Cannot decode packet: reserved packet type 15");
      default:
        throw new DecodeError(`Cannot decode packet: reserved packet type ${first >> 4}`);
    }
    if (r.pos !== end) {
      throw new DecodeError(
        `Cannot decode packet: ${
          end - r.pos
        } unexpected bytes at the end of ${packet.type.toUpperCase()}`,
      );
    }
    r.buf = EMPTY; // do not keep the caller's buffer alive
    return packet;
  }
}

/** First buffer size for a partial packet of `total` bytes of which `have` arrived. */
function initialCapacity(total: number, have: number): number {
  return total <= EAGER_ALLOCATION_BYTES ? total : Math.max(have, EAGER_ALLOCATION_BYTES);
}

// Packets without fields are shared: a client flooding PINGREQ makes no garbage per packet.
const PINGREQ_PACKET: EmptyPacket = Object.freeze({ type: "pingreq" });
const PINGRESP_PACKET: EmptyPacket = Object.freeze({ type: "pingresp" });
const DISCONNECT_PACKET: DisconnectPacket = Object.freeze({ type: "disconnect" });

function checkFlags(flags: number, expected: number, name: string, specRef: string): void {
  // [MQTT-2.2.2-1] reserved flag bits hold the value of Table 2.2; [MQTT-2.2.2-2] else close
  if (flags !== expected) {
    throw new DecodeError(
      `Cannot decode packet: ${name} fixed header flags must be 0b${
        expected.toString(2).padStart(4, "0")
      }`,
      specRef,
    );
  }
}

function decodeConnect(r: Reader): ConnectPacket {
  const protocolName = r.string("protocol name");
  const levelByte = r.u8("protocol level");
  // mosquitto's bridge flag (try_private): the level with its top bit set.
  const bridge = (levelByte & 0x80) !== 0;
  const protocolLevel = levelByte & 0x7f;
  const flags = r.u8("connect flags");
  const keepAlive = r.u16("keep alive");
  if (bridge) {
    const packet = decodeConnectLevel(r, protocolName, protocolLevel, flags, keepAlive);
    packet.bridge = true;
    return packet;
  }
  return decodeConnectLevel(r, protocolName, protocolLevel, flags, keepAlive);
}

function decodeConnectLevel(
  r: Reader,
  protocolName: string,
  protocolLevel: number,
  flags: number,
  keepAlive: number,
): ConnectPacket {
  if (protocolName === "MQTT" && protocolLevel === 5) {
    return decodeConnectV5(r, protocolName, protocolLevel, flags, keepAlive);
  }
  r.v5 = false;
  const cleanSession = (flags & 0x02) !== 0;
  if (
    !((protocolName === "MQTT" && protocolLevel === 4) ||
      (protocolName === "MQIsdp" && protocolLevel === 3))
  ) {
    // [MQTT-3.1.2-2] the broker answers CONNACK 0x01; the rest may follow another format
    r.pos = r.end;
    return { type: "connect", protocolName, protocolLevel, cleanSession, keepAlive, clientId: "" };
  }
  // [MQTT-3.1.2-3] the reserved flag is 0
  if ((flags & 0x01) !== 0) {
    throw new DecodeError("Cannot decode packet: CONNECT reserved flag is set", "[MQTT-3.1.2-3]");
  }
  const willFlag = (flags & 0x04) !== 0;
  const willQos = (flags >> 3) & 3;
  const willRetain = (flags & 0x20) !== 0;
  if (!willFlag) {
    // [MQTT-3.1.2-11] without a will, Will QoS and Will Retain are 0
    if (willQos !== 0) {
      throw new DecodeError(
        "Cannot decode packet: CONNECT Will QoS set without Will Flag",
        "[MQTT-3.1.2-13]",
      );
    }
    if (willRetain) {
      throw new DecodeError(
        "Cannot decode packet: CONNECT Will Retain set without Will Flag",
        "[MQTT-3.1.2-15]",
      );
    }
  } else if (willQos === 3) {
    throw new DecodeError("Cannot decode packet: CONNECT Will QoS 3", "[MQTT-3.1.2-14]");
  }
  const hasUsername = (flags & 0x80) !== 0;
  const hasPassword = (flags & 0x40) !== 0;
  if (hasPassword && !hasUsername) {
    throw new DecodeError(
      "Cannot decode packet: CONNECT password flag without username flag",
      "[MQTT-3.1.2-22]",
    );
  }
  const packet: ConnectPacket = {
    type: "connect",
    protocolName,
    protocolLevel,
    cleanSession,
    keepAlive,
    clientId: r.string("client identifier"),
  };
  if (willFlag) {
    const topic = r.string("will topic");
    const payload = r.bytes("will message");
    const will: Will = { topic, payload, qos: willQos as QoS, retain: willRetain };
    packet.will = will;
  }
  if (hasUsername) packet.username = r.string("user name");
  if (hasPassword) packet.password = r.bytes("password");
  return packet;
}

function decodeConnack(r: Reader): Packet {
  const ackFlags = r.u8("connect acknowledge flags");
  if ((ackFlags & 0xfe) !== 0) {
    throw new DecodeError("Cannot decode packet: CONNACK reserved acknowledge flags are set");
  }
  return { type: "connack", sessionPresent: ackFlags === 1, returnCode: r.u8("return code") };
}

function decodeSubscribe(r: Reader): Packet {
  const packetId = r.packetId();
  // [MQTT-3.8.3-3] at least one filter
  if (r.pos === r.end) {
    throw new DecodeError("Cannot decode packet: SUBSCRIBE without topic filter", "[MQTT-3.8.3-3]");
  }
  const subscriptions: Subscription[] = [];
  while (r.pos < r.end) {
    const topicFilter = r.string("topic filter");
    const qos = r.u8("requested QoS");
    // [MQTT-3-8.3-4] reserved bits are 0 and QoS is 0, 1 or 2 (the tag is spelled so in the standard)
    if (qos > 2) {
      throw new DecodeError(
        `Cannot decode packet: SUBSCRIBE requested QoS byte 0x${qos.toString(16)}`,
        "[MQTT-3-8.3-4]",
      );
    }
    subscriptions.push({ topicFilter, qos: qos as QoS });
  }
  return { type: "subscribe", packetId, subscriptions };
}

function decodeSuback(r: Reader): Packet {
  const packetId = r.packetId();
  if (r.pos === r.end) throw new DecodeError("Cannot decode packet: SUBACK without return code");
  const returnCodes: number[] = [];
  while (r.pos < r.end) {
    const code = r.u8("return code");
    // [MQTT-3.9.3-2] other return codes are reserved
    if (code > 2 && code !== 0x80) {
      throw new DecodeError(
        `Cannot decode packet: SUBACK return code 0x${code.toString(16)}`,
        "[MQTT-3.9.3-2]",
      );
    }
    returnCodes.push(code);
  }
  return { type: "suback", packetId, returnCodes };
}

function decodeUnsubscribe(r: Reader): Packet {
  const packetId = r.packetId();
  // [MQTT-3.10.3-2] at least one filter
  if (r.pos === r.end) {
    throw new DecodeError(
      "Cannot decode packet: UNSUBSCRIBE without topic filter",
      "[MQTT-3.10.3-2]",
    );
  }
  const topicFilters: string[] = [];
  while (r.pos < r.end) topicFilters.push(r.string("topic filter"));
  return { type: "unsubscribe", packetId, topicFilters };
}
