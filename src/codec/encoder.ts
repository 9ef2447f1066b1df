/**
 * MQTT 3.1.1 encoder: typed packets to bytes, both directions. Pure: no I/O, no timers.
 *
 * Every function returns a fresh `Uint8Array` made with exactly one allocation.
 *
 * @module
 */

import type {
  AckPacket,
  ConnectPacket,
  Packet,
  QoS,
  SubackPacket,
  SubscribePacket,
  UnsubscribePacket,
} from "./packet.ts";
import { utf8Length, writeUtf8 } from "./_utf8.ts";

// The byte count the encoder uses, for callers that size things as they go on the wire.
export { utf8Length };

/** Largest remaining length the 4-byte variable length encoding can carry. */
const MAX_REMAINING_LENGTH = 268_435_455;
/** Largest string or binary field (2-byte length prefix). */
const MAX_FIELD_LENGTH = 65_535;

/**
 * PINGREQ, ready to write. Shared: never mutate it.
 *
 * @example
 * ```ts
 * import { PINGREQ_BYTES } from "./encoder.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual([...PINGREQ_BYTES], [0xc0, 0x00]);
 * ```
 */
export const PINGREQ_BYTES: Uint8Array = new Uint8Array([0xc0, 0x00]);

/**
 * PINGRESP, ready to write. Shared: never mutate it.
 *
 * @example
 * ```ts
 * import { PINGRESP_BYTES } from "./encoder.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual([...PINGRESP_BYTES], [0xd0, 0x00]);
 * ```
 */
export const PINGRESP_BYTES: Uint8Array = new Uint8Array([0xd0, 0x00]);

/**
 * DISCONNECT, ready to write. Shared: never mutate it.
 *
 * @example
 * ```ts
 * import { DISCONNECT_BYTES } from "./encoder.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual([...DISCONNECT_BYTES], [0xe0, 0x00]);
 * ```
 */
export const DISCONNECT_BYTES: Uint8Array = new Uint8Array([0xe0, 0x00]);

/** The packets {@linkcode encodeAck} writes: a fixed header and a packet identifier. */
export type AckType = AckPacket["type"];

const ACK_FIRST_BYTE: Readonly<Record<AckType, number>> = {
  puback: 0x40,
  pubrec: 0x50,
  pubrel: 0x62, // [MQTT-3.6.1-1] PUBREL flags are 0b0010
  pubcomp: 0x70,
  unsuback: 0xb0,
};

/**
 * Encodes a PUBACK, PUBREC, PUBREL, PUBCOMP or UNSUBACK (4 bytes).
 *
 * @throws {TypeError} when `packetId` is not an integer in 0..65535.
 *
 * @example Acknowledge a QoS 1 PUBLISH
 * ```ts
 * import { encodeAck } from "./encoder.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual([...encodeAck("puback", 258)], [0x40, 0x02, 0x01, 0x02]);
 * ```
 */
export function encodeAck(type: AckType, packetId: number): Uint8Array {
  const first = ACK_FIRST_BYTE[type];
  if (first === undefined) throw new TypeError(`Cannot encode packet: unknown ack type ${type}`);
  checkPacketId(packetId);
  const out = new Uint8Array(4);
  out[0] = first;
  out[1] = 2;
  out[2] = packetId >> 8;
  out[3] = packetId & 0xff;
  return out;
}

/**
 * Encodes a PUBLISH. This is the hot path of the broker: one allocation, no caching.
 *
 * For `qos` > 0 the packet identifier sits in the two bytes at offset
 * `bytes.length - payload.length - 2` (big-endian), so a broker may encode a message once and
 * patch the identifier per subscriber in a copy. `packetId` may be omitted (written as 0) when it
 * is patched later; it is ignored for QoS 0, and so is `dup` [MQTT-3.3.1-2].
 *
 * @throws {TypeError} when the topic is longer than 65 535 UTF-8 bytes, holds U+0000 or a lone
 * surrogate, when the packet would exceed 268 435 455 bytes of remaining length, or when `qos` or
 * `packetId` is out of range.
 *
 * @example Encode once, patch the packet identifier per subscriber
 * ```ts
 * import { encodePublish } from "./encoder.ts";
 * import assert from "node:assert/strict";
 *
 * const payload = new TextEncoder().encode("21.5");
 * const bytes = encodePublish("sensors/t", payload, 1, false, false);
 * const copy = bytes.slice();
 * const at = copy.length - payload.length - 2;
 * copy[at] = 0x01;
 * copy[at + 1] = 0x02; // packet identifier 258
 * assert.deepEqual([...copy.subarray(0, 2)], [0x32, 17]);
 * ```
 */
export function encodePublish(
  topic: string,
  payload: Uint8Array,
  qos: QoS,
  retain: boolean,
  dup: boolean,
  packetId?: number,
): Uint8Array {
  if (qos !== 0 && qos !== 1 && qos !== 2) {
    throw new TypeError(`Cannot encode packet: PUBLISH QoS must be 0, 1 or 2, got ${qos}`);
  }
  const topicLength = utf8Length(topic);
  if (topicLength > MAX_FIELD_LENGTH) {
    throw new TypeError(`Cannot encode packet: topic is ${topicLength} bytes, over 65535`);
  }
  const id = qos === 0 ? 0 : packetId ?? 0;
  if (qos !== 0) checkPacketId(id);
  const remaining = 2 + topicLength + (qos === 0 ? 0 : 2) + payload.length;
  const out = new Uint8Array(1 + lengthOfLength(remaining) + remaining);
  // [MQTT-3.3.1-2] DUP is 0 for QoS 0 messages
  out[0] = 0x30 | (dup && qos !== 0 ? 8 : 0) | (qos << 1) | (retain ? 1 : 0);
  let p = writeLength(out, 1, remaining);
  out[p++] = topicLength >> 8;
  out[p++] = topicLength & 0xff;
  p = writeUtf8(topic, topicLength, out, p);
  if (qos !== 0) {
    out[p++] = id >> 8;
    out[p++] = id & 0xff;
  }
  out.set(payload, p);
  return out;
}

/**
 * Encodes any MQTT 3.1.1 packet, client-to-server or server-to-client.
 *
 * For PUBLISH, see {@linkcode encodePublish}; prefer the constants {@linkcode PINGRESP_BYTES}
 * and {@linkcode encodeAck} on hot paths.
 *
 * @throws {TypeError} for a packet that cannot be encoded: remaining length over 268 435 455,
 * a string or binary field over 65 535 bytes, a string with U+0000 or a lone surrogate, a field
 * out of its range, or a packet MQTT 3.1.1 forbids (SUBSCRIBE or UNSUBSCRIBE without filters,
 * password without user name, unknown type).
 *
 * @example
 * ```ts
 * import { encodePacket } from "./encoder.ts";
 * import assert from "node:assert/strict";
 *
 * const bytes = encodePacket({ type: "connack", sessionPresent: false, returnCode: 0 });
 * assert.deepEqual([...bytes], [0x20, 0x02, 0x00, 0x00]);
 * ```
 */
export function encodePacket(packet: Packet): Uint8Array {
  switch (packet.type) {
    case "publish":
      return encodePublish(
        packet.topic,
        packet.payload,
        packet.qos,
        packet.retain,
        packet.dup,
        packet.packetId,
      );
    case "puback":
    case "pubrec":
    case "pubrel":
    case "pubcomp":
    case "unsuback":
      return encodeAck(packet.type, packet.packetId);
    case "pingreq":
      return PINGREQ_BYTES.slice();
    case "pingresp":
      return PINGRESP_BYTES.slice();
    case "disconnect":
      return DISCONNECT_BYTES.slice();
    case "connack": {
      checkByte(packet.returnCode, "CONNACK return code");
      return new Uint8Array([0x20, 0x02, packet.sessionPresent ? 1 : 0, packet.returnCode]);
    }
    case "connect":
      return encodeConnect(packet);
    case "subscribe":
      return encodeSubscribe(packet);
    case "suback":
      return encodeSuback(packet);
    case "unsubscribe":
      return encodeUnsubscribe(packet);
    default:
      throw new TypeError(
        `Cannot encode packet: unknown type ${(packet as { type: unknown }).type}`,
      );
  }
}

function encodeConnect(packet: ConnectPacket): Uint8Array {
  const { will, username, password } = packet;
  if (password !== undefined && username === undefined) {
    throw new TypeError("Cannot encode packet: CONNECT password without user name [MQTT-3.1.2-22]");
  }
  checkByte(packet.protocolLevel, "CONNECT protocol level");
  checkUint16(packet.keepAlive, "CONNECT keepAlive");
  const nameLength = fieldLength(packet.protocolName);
  const clientIdLength = fieldLength(packet.clientId);
  let remaining = 2 + nameLength + 4 + 2 + clientIdLength;
  let flags = packet.cleanSession ? 0x02 : 0;
  let willTopicLength = 0;
  if (will !== undefined) {
    if (will.qos !== 0 && will.qos !== 1 && will.qos !== 2) {
      throw new TypeError(`Cannot encode packet: will QoS must be 0, 1 or 2, got ${will.qos}`);
    }
    willTopicLength = fieldLength(will.topic);
    remaining += 2 + willTopicLength + 2 + binaryLength(will.payload);
    flags |= 0x04 | (will.qos << 3) | (will.retain ? 0x20 : 0);
  }
  let usernameLength = 0;
  if (username !== undefined) {
    usernameLength = fieldLength(username);
    remaining += 2 + usernameLength;
    flags |= 0x80;
  }
  if (password !== undefined) {
    remaining += 2 + binaryLength(password);
    flags |= 0x40;
  }
  const w = new Writer(0x10, remaining);
  w.string(packet.protocolName, nameLength);
  w.u8(packet.protocolLevel);
  w.u8(flags);
  w.u16(packet.keepAlive);
  w.string(packet.clientId, clientIdLength);
  if (will !== undefined) {
    w.string(will.topic, willTopicLength);
    w.binary(will.payload);
  }
  if (username !== undefined) w.string(username, usernameLength);
  if (password !== undefined) w.binary(password);
  return w.done();
}

function encodeSubscribe(packet: SubscribePacket): Uint8Array {
  const subs = packet.subscriptions;
  checkPacketId(packet.packetId);
  if (subs.length === 0) {
    throw new TypeError("Cannot encode packet: SUBSCRIBE without topic filter [MQTT-3.8.3-3]");
  }
  const lengths = new Array<number>(subs.length);
  let remaining = 2;
  for (let i = 0; i < subs.length; i++) {
    const { topicFilter, qos } = subs[i];
    if (qos !== 0 && qos !== 1 && qos !== 2) {
      throw new TypeError(`Cannot encode packet: SUBSCRIBE QoS must be 0, 1 or 2, got ${qos}`);
    }
    lengths[i] = fieldLength(topicFilter);
    remaining += 2 + lengths[i] + 1;
  }
  const w = new Writer(0x82, remaining); // [MQTT-3.8.1-1] flags 0b0010
  w.u16(packet.packetId);
  for (let i = 0; i < subs.length; i++) {
    w.string(subs[i].topicFilter, lengths[i]);
    w.u8(subs[i].qos);
  }
  return w.done();
}

function encodeSuback(packet: SubackPacket): Uint8Array {
  const codes = packet.returnCodes;
  checkPacketId(packet.packetId);
  if (codes.length === 0) throw new TypeError("Cannot encode packet: SUBACK without return code");
  for (const code of codes) {
    // [MQTT-3.9.3-2] only 0x00, 0x01, 0x02 and 0x80
    if (code !== 0 && code !== 1 && code !== 2 && code !== 0x80) {
      throw new TypeError(`Cannot encode packet: SUBACK return code ${code}`);
    }
  }
  const w = new Writer(0x90, 2 + codes.length);
  w.u16(packet.packetId);
  for (const code of codes) w.u8(code);
  return w.done();
}

function encodeUnsubscribe(packet: UnsubscribePacket): Uint8Array {
  const filters = packet.topicFilters;
  checkPacketId(packet.packetId);
  if (filters.length === 0) {
    throw new TypeError("Cannot encode packet: UNSUBSCRIBE without topic filter [MQTT-3.10.3-2]");
  }
  const lengths = filters.map(fieldLength);
  let remaining = 2;
  for (const n of lengths) remaining += 2 + n;
  const w = new Writer(0xa2, remaining); // [MQTT-3.10.1-1] flags 0b0010
  w.u16(packet.packetId);
  for (let i = 0; i < filters.length; i++) w.string(filters[i], lengths[i]);
  return w.done();
}

/** Writes one packet into a buffer sized up front from its remaining length. */
class Writer {
  readonly out: Uint8Array;
  pos: number;

  constructor(firstByte: number, remaining: number) {
    this.out = new Uint8Array(1 + lengthOfLength(remaining) + remaining);
    this.out[0] = firstByte;
    this.pos = writeLength(this.out, 1, remaining);
  }

  u8(n: number): void {
    this.out[this.pos++] = n;
  }

  u16(n: number): void {
    this.out[this.pos++] = n >> 8;
    this.out[this.pos++] = n & 0xff;
  }

  string(s: string, byteLength: number): void {
    this.u16(byteLength);
    this.pos = writeUtf8(s, byteLength, this.out, this.pos);
  }

  binary(b: Uint8Array): void {
    this.u16(b.length);
    this.out.set(b, this.pos);
    this.pos += b.length;
  }

  done(): Uint8Array {
    return this.out;
  }
}

/** Bytes of the remaining-length field for `n`. */
function lengthOfLength(n: number): number {
  if (n < 128) return 1;
  if (n < 16_384) return 2;
  if (n < 2_097_152) return 3;
  if (n <= MAX_REMAINING_LENGTH) return 4;
  throw new TypeError(
    `Cannot encode packet: remaining length ${n} exceeds ${MAX_REMAINING_LENGTH}`,
  );
}

function writeLength(out: Uint8Array, pos: number, n: number): number {
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out[pos++] = b;
  } while (n > 0);
  return pos;
}

function fieldLength(s: string): number {
  const n = utf8Length(s);
  if (n > MAX_FIELD_LENGTH) {
    throw new TypeError(`Cannot encode packet: string of ${n} bytes exceeds 65535`);
  }
  return n;
}

function binaryLength(b: Uint8Array): number {
  if (b.length > MAX_FIELD_LENGTH) {
    throw new TypeError(`Cannot encode packet: binary field of ${b.length} bytes exceeds 65535`);
  }
  return b.length;
}

function checkPacketId(id: number): void {
  if (!Number.isInteger(id) || id < 0 || id > 0xffff) {
    throw new TypeError(`Cannot encode packet: packet identifier must be in 0..65535, got ${id}`);
  }
}

function checkUint16(n: number, what: string): void {
  if (!Number.isInteger(n) || n < 0 || n > 0xffff) {
    throw new TypeError(`Cannot encode packet: ${what} must be in 0..65535, got ${n}`);
  }
}

function checkByte(n: number, what: string): void {
  if (!Number.isInteger(n) || n < 0 || n > 0xff) {
    throw new TypeError(`Cannot encode packet: ${what} must be in 0..255, got ${n}`);
  }
}
