/**
 * MQTT 3.1.1 and 5.0 encoder: typed packets to bytes, both directions (server and client
 * packets), so a bridge can use it as well as the broker. Pure: no I/O, no timers.
 *
 * Every function returns a fresh `Uint8Array` made with exactly one allocation. The version is an
 * argument; a CONNECT is written in the format of its own `protocolLevel`. One packet model serves
 * both versions: the 3.1.1 encoder leaves out what 5.0 added and maps 5.0 reason codes to 3.1.1
 * return codes ({@linkcode connackReturnCode}, {@linkcode subackReturnCode}).
 *
 * @module
 */

import {
  type AckPacket,
  type AuthPacket,
  type ConnackPacket,
  connackReasonCode,
  connackReturnCode,
  type ConnectPacket,
  type DisconnectPacket,
  type Packet,
  type Properties,
  type ProtocolVersion,
  type PublishPacket,
  type QoS,
  type SubackPacket,
  subackReturnCode,
  type SubscribePacket,
  type UnsubackPacket,
  type UnsubscribePacket,
} from "./packet.ts";
import { utf8Length, writeUtf8 } from "./_utf8.ts";
import { KIND, propertiesLength, writeProperties } from "./_properties.ts";
import { ALLOWED_REASON_CODES } from "./_reason_codes.ts";
import {
  binaryLength,
  checkByte,
  checkPacketId,
  checkUint16,
  fieldLength,
  MAX_FIELD_LENGTH,
  varintLength,
  Writer,
  writeVarint,
} from "./_writer.ts";
import { type PublishDelivery, PublishFrame } from "./publish_frame.ts";

// The byte count the encoder uses, for callers that size things as they go on the wire.
export { utf8Length };
export { encodePublishHeader, type PublishDelivery, PublishFrame } from "./publish_frame.ts";
export { WriteBatch } from "./write_batch.ts";

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

const ACK_KIND: Readonly<Record<AckType, number>> = {
  puback: KIND.puback,
  pubrec: KIND.pubrec,
  pubrel: KIND.pubrel,
  pubcomp: KIND.pubcomp,
  unsuback: KIND.unsuback,
};

/**
 * Encodes a PUBACK, PUBREC, PUBREL or PUBCOMP (or a 3.1.1 UNSUBACK). In 5.0 the reason code and
 * the properties are left out when the code is 0x00 and there are no properties (3.4.2.1), so a
 * success is the same 4 bytes in both versions; 3.1.1 ignores `reasonCode` and `properties`.
 *
 * @throws {TypeError} when `packetId` is not an integer in 0..65535, when `reasonCode` is not one
 * the packet allows [MQTT-3.4.2-1] [MQTT-3.5.2-1] [MQTT-3.6.2-1] [MQTT-3.7.2-1], for a property
 * an ack cannot carry, or for a 5.0 UNSUBACK (which needs reason codes: use `encodePacket`).
 *
 * @example Acknowledge a QoS 1 PUBLISH, in 3.1.1 and in 5.0
 * ```ts
 * import { encodeAck } from "./encoder.ts";
 * import { REASON } from "./packet.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual([...encodeAck("puback", 258)], [0x40, 0x02, 0x01, 0x02]);
 * assert.deepEqual(
 *   [...encodeAck("puback", 258, 5, REASON.noMatchingSubscribers)],
 *   [0x40, 0x03, 0x01, 0x02, 0x10],
 * );
 * assert.deepEqual([...encodeAck("puback", 258, 4, REASON.noMatchingSubscribers)], [0x40, 2, 1, 2]);
 * ```
 */
export function encodeAck(
  type: AckType,
  packetId: number,
  version: ProtocolVersion = 4,
  reasonCode = 0,
  properties?: Properties,
): Uint8Array {
  const first = ACK_FIRST_BYTE[type];
  if (first === undefined) throw new TypeError(`Cannot encode packet: unknown ack type ${type}`);
  checkPacketId(packetId);
  if (version === 5) {
    if (type === "unsuback") {
      throw new TypeError("Cannot encode packet: a 5.0 UNSUBACK needs reason codes (encodePacket)");
    }
    checkReasonCode(type, reasonCode);
    const propsLength = propertiesLength(properties, ACK_KIND[type], type.toUpperCase());
    if (reasonCode !== 0 || propsLength !== 0) {
      const remaining = propsLength === 0 ? 3 : 3 + varintLength(propsLength) + propsLength;
      const w = new Writer(first, remaining);
      w.u16(packetId);
      w.u8(reasonCode);
      if (propsLength !== 0) writeBlock(w, properties, propsLength);
      return w.done();
    }
  }
  const out = new Uint8Array(4);
  out[0] = first;
  out[1] = 2;
  out[2] = packetId >> 8;
  out[3] = packetId & 0xff;
  return out;
}

function checkReasonCode(type: string, code: number): void {
  if (!Number.isInteger(code) || ALLOWED_REASON_CODES[type][code] !== 1) {
    throw new TypeError(
      `Cannot encode packet: ${type.toUpperCase()} cannot carry reason code ${code}`,
    );
  }
}

/** Writes a property block (length and content) whose content length is known. */
function writeBlock(w: Writer, properties: Properties | undefined, length: number): void {
  w.varint(length);
  w.pos = writeProperties(w.out, w.pos, properties);
}

/** Bytes of a property block, length prefix included. */
function blockLength(contentLength: number): number {
  return varintLength(contentLength) + contentLength;
}

/**
 * Encodes a 3.1.1 PUBLISH: one allocation, no caching. A 5.0 PUBLISH, or one framed per
 * delivery, comes from {@linkcode PublishFrame}.
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
  const out = new Uint8Array(1 + varintLength(remaining) + remaining);
  // [MQTT-3.3.1-2] DUP is 0 for QoS 0 messages
  out[0] = 0x30 | (dup && qos !== 0 ? 8 : 0) | (qos << 1) | (retain ? 1 : 0);
  let p = writeVarint(out, 1, remaining);
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
 * The bytes of a 3.1.1 PUBLISH that come before a payload of `payloadLength` bytes: fixed header,
 * topic and, for QoS 1/2, the packet identifier. Queued before the payload itself, a forwarded
 * message is sent without a copy of its payload in an encoded packet.
 *
 * @throws {TypeError} for a QoS, packet identifier or topic `encodePublish` refuses.
 *
 * @example Header, then the shared payload
 * ```ts
 * import { encodePublish, encodePublishPrefix } from "./encoder.ts";
 * import assert from "node:assert/strict";
 *
 * const payload = new TextEncoder().encode("21.5");
 * const header = encodePublishPrefix("sensors/t", payload.length, 1, false, false, 7);
 * assert.deepEqual(
 *   [...header, ...payload],
 *   [...encodePublish("sensors/t", payload, 1, false, false, 7)],
 * );
 * ```
 */
export function encodePublishPrefix(
  topic: string,
  payloadLength: number,
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
  const remaining = 2 + topicLength + (qos === 0 ? 0 : 2) + payloadLength;
  const out = new Uint8Array(1 + varintLength(remaining) + remaining - payloadLength);
  // [MQTT-3.3.1-2] DUP is 0 for QoS 0 messages
  out[0] = 0x30 | (dup && qos !== 0 ? 8 : 0) | (qos << 1) | (retain ? 1 : 0);
  let p = writeVarint(out, 1, remaining);
  out[p++] = topicLength >> 8;
  out[p++] = topicLength & 0xff;
  p = writeUtf8(topic, topicLength, out, p);
  if (qos !== 0) {
    out[p++] = id >> 8;
    out[p] = id & 0xff;
  }
  return out;
}

/**
 * Encodes any MQTT 3.1.1 (`version` 3 or 4, the default) or 5.0 packet, client-to-server or
 * server-to-client. A CONNECT is written in the format of its own `protocolLevel`.
 *
 * 3.1.1 leaves out `properties`, reason codes of acks and DISCONNECT and UNSUBACK's reason codes;
 * it writes `connackReturnCode(reasonCode)` for a CONNACK that has a `reasonCode` and
 * `subackReturnCode(code)` for each SUBACK code. 5.0 leaves out a 0x00 reason code and empty
 * properties where the standard allows (acks, DISCONNECT, AUTH).
 *
 * For PUBLISH deliveries, see {@linkcode PublishFrame}; prefer the constants
 * {@linkcode PINGRESP_BYTES} and {@linkcode encodeAck} on hot paths.
 *
 * @throws {TypeError} for a packet that cannot be encoded: remaining length over 268 435 455,
 * a string or binary field over 65 535 bytes, a string with U+0000 or a lone surrogate, a field
 * out of its range, a reason code or property the packet cannot carry, or a packet the version
 * forbids (SUBSCRIBE or UNSUBSCRIBE without filters, a 3.1.1 password without user name, AUTH in
 * 3.1.1, unknown type).
 *
 * @example The same CONNACK in both versions
 * ```ts
 * import { encodePacket } from "./encoder.ts";
 * import { REASON } from "./packet.ts";
 * import assert from "node:assert/strict";
 *
 * const connack = {
 *   type: "connack",
 *   sessionPresent: false,
 *   returnCode: 0,
 *   reasonCode: REASON.notAuthorized,
 * } as const;
 * assert.deepEqual([...encodePacket(connack)], [0x20, 0x02, 0x00, 0x05]);
 * assert.deepEqual([...encodePacket(connack, 5)], [0x20, 0x03, 0x00, 0x87, 0x00]);
 * ```
 */
export function encodePacket(packet: Packet, version: ProtocolVersion = 4): Uint8Array {
  const v5 = version === 5;
  switch (packet.type) {
    case "publish":
      return v5 ? encodePublishV5(packet) : encodePublish(
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
      return encodeAck(packet.type, packet.packetId, version, packet.reasonCode, packet.properties);
    case "unsuback":
      return v5 ? encodeUnsubackV5(packet) : encodeAck("unsuback", packet.packetId);
    case "pingreq":
      return PINGREQ_BYTES.slice();
    case "pingresp":
      return PINGRESP_BYTES.slice();
    case "disconnect":
      return v5 ? encodeReasonAndProperties(0xe0, "disconnect", packet) : DISCONNECT_BYTES.slice();
    case "auth":
      if (!v5) throw new TypeError("Cannot encode packet: AUTH does not exist in MQTT 3.1.1");
      return encodeReasonAndProperties(0xf0, "auth", packet);
    case "connack":
      return encodeConnack(packet, v5);
    case "connect":
      return encodeConnect(packet);
    case "subscribe":
      return encodeSubscribe(packet, v5);
    case "suback":
      return encodeSuback(packet, v5);
    case "unsubscribe":
      return encodeUnsubscribe(packet, v5);
    default:
      throw new TypeError(
        `Cannot encode packet: unknown type ${(packet as { type: unknown }).type}`,
      );
  }
}

/**
 * Size in bytes of `packet` encoded for `version`. For PUBLISH deliveries,
 * {@linkcode PublishFrame.size} gives the same without encoding.
 *
 * @throws {TypeError} as {@linkcode encodePacket}.
 */
export function packetSize(packet: Packet, version: ProtocolVersion = 4): number {
  if (packet.type === "publish") {
    const { frame, delivery } = publishFrameOf(packet, version);
    return frame.size(version, packet.qos, delivery);
  }
  return encodePacket(packet, version).length;
}

/**
 * Encodes `packet` so that it fits in `maximumPacketSize` bytes, the peer's Maximum Packet Size:
 * if it does not, a 5.0 packet other than PUBLISH is tried again without its Reason String, then
 * also without its User Properties, as the standard allows and requires [MQTT-3.1.2-24]
 * [MQTT-3.2.2-19] [MQTT-3.2.2-20] [MQTT-3.4.2-2] [MQTT-3.4.2-3] [MQTT-3.9.2-1] [MQTT-3.14.2-3].
 * Returns `undefined` when it still does not fit: the packet must not be sent [MQTT-3.1.2-25].
 *
 * @throws {TypeError} as {@linkcode encodePacket}.
 *
 * @example
 * ```ts
 * import { encodeWithin } from "./encoder.ts";
 * import assert from "node:assert/strict";
 *
 * const ack = {
 *   type: "puback",
 *   packetId: 1,
 *   reasonCode: 0x87,
 *   properties: { reasonString: "no access to this topic" },
 * } as const;
 * assert.equal(encodeWithin(ack, 5, 1000)?.length, 32);
 * assert.deepEqual([...encodeWithin(ack, 5, 10)!], [0x40, 0x03, 0x00, 0x01, 0x87]);
 * assert.equal(encodeWithin(ack, 5, 4), undefined);
 * ```
 */
export function encodeWithin(
  packet: Packet,
  version: ProtocolVersion,
  maximumPacketSize: number,
): Uint8Array | undefined {
  const bytes = encodePacket(packet, version);
  if (bytes.length <= maximumPacketSize) return bytes;
  if (version !== 5 || packet.type === "publish" || !("properties" in packet)) return undefined;
  const props = packet.properties;
  if (props === undefined) return undefined;
  if (props.reasonString !== undefined) {
    const { reasonString: _, ...rest } = props;
    const smaller = encodePacket({ ...packet, properties: rest } as Packet, version);
    if (smaller.length <= maximumPacketSize) return smaller;
  }
  if (props.reasonString === undefined && props.userProperties === undefined) return undefined;
  const { reasonString: _r, userProperties: _u, ...rest } = props;
  const smallest = encodePacket({ ...packet, properties: rest } as Packet, version);
  return smallest.length <= maximumPacketSize ? smallest : undefined;
}

function publishFrameOf(
  packet: PublishPacket,
  version: ProtocolVersion,
): { frame: PublishFrame; delivery: PublishDelivery | undefined } {
  const frame = new PublishFrame(packet.topic, packet.payload, packet.properties);
  const p = packet.properties;
  const delivery = version === 5 && p !== undefined &&
      (p.topicAlias !== undefined || p.subscriptionIdentifiers !== undefined)
    ? { topicAlias: p.topicAlias, subscriptionIdentifiers: p.subscriptionIdentifiers }
    : undefined;
  return { frame, delivery };
}

function encodePublishV5(packet: PublishPacket): Uint8Array {
  const { frame, delivery } = publishFrameOf(packet, 5);
  const qos = packet.qos;
  const out = new Uint8Array(frame.size(5, qos, delivery));
  const pos = frame.writeHeader(
    out,
    0,
    5,
    qos,
    packet.retain,
    packet.dup,
    packet.packetId ?? 0,
    delivery,
  );
  out.set(packet.payload, pos);
  return out;
}

/** DISCONNECT and AUTH: nothing after the fixed header when the code is 0x00 and no properties. */
function encodeReasonAndProperties(
  first: number,
  type: "disconnect" | "auth",
  packet: DisconnectPacket | AuthPacket,
): Uint8Array {
  const code = packet.reasonCode ?? 0;
  checkReasonCode(type, code);
  const kind = type === "auth" ? KIND.auth : KIND.disconnect;
  const propsLength = propertiesLength(packet.properties, kind, type.toUpperCase());
  if (code === 0 && propsLength === 0) return new Uint8Array([first, 0]);
  // 3.14.2.2: DISCONNECT may stop after the reason code; AUTH always has its property length
  const remaining = propsLength === 0 && type === "disconnect" ? 1 : 1 + blockLength(propsLength);
  const w = new Writer(first, remaining);
  w.u8(code);
  if (remaining > 1) writeBlock(w, packet.properties, propsLength);
  return w.done();
}

function encodeConnack(packet: ConnackPacket, v5: boolean): Uint8Array {
  if (!v5) {
    const code = packet.reasonCode === undefined
      ? packet.returnCode
      : connackReturnCode(packet.reasonCode);
    checkByte(code, "CONNACK return code");
    return new Uint8Array([0x20, 0x02, packet.sessionPresent ? 1 : 0, code]);
  }
  const code = packet.reasonCode ?? connackReasonCode(packet.returnCode);
  checkReasonCode("connack", code);
  if (packet.sessionPresent && code !== 0) {
    throw new TypeError(
      "Cannot encode packet: CONNACK refusal with Session Present [MQTT-3.2.2-6]",
    );
  }
  const propsLength = propertiesLength(packet.properties, KIND.connack, "CONNACK");
  const w = new Writer(0x20, 2 + blockLength(propsLength));
  w.u8(packet.sessionPresent ? 1 : 0);
  w.u8(code);
  writeBlock(w, packet.properties, propsLength);
  return w.done();
}

function encodeConnect(packet: ConnectPacket): Uint8Array {
  const { will, username, password } = packet;
  const v5 = packet.protocolLevel === 5;
  if (password !== undefined && username === undefined && !v5) {
    throw new TypeError("Cannot encode packet: CONNECT password without user name [MQTT-3.1.2-22]");
  }
  checkByte(packet.protocolLevel, "CONNECT protocol level");
  checkUint16(packet.keepAlive, "CONNECT keepAlive");
  const nameLength = fieldLength(packet.protocolName);
  const clientIdLength = fieldLength(packet.clientId);
  let remaining = 2 + nameLength + 4 + 2 + clientIdLength;
  let propsLength = 0;
  let willPropsLength = 0;
  if (v5) {
    propsLength = propertiesLength(packet.properties, KIND.connect, "CONNECT");
    remaining += blockLength(propsLength);
  }
  let flags = packet.cleanSession ? 0x02 : 0;
  let willTopicLength = 0;
  if (will !== undefined) {
    if (will.qos !== 0 && will.qos !== 1 && will.qos !== 2) {
      throw new TypeError(`Cannot encode packet: will QoS must be 0, 1 or 2, got ${will.qos}`);
    }
    willTopicLength = fieldLength(will.topic);
    remaining += 2 + willTopicLength + 2 + binaryLength(will.payload);
    if (v5) {
      willPropsLength = propertiesLength(will.properties, KIND.will, "Will Properties");
      remaining += blockLength(willPropsLength);
    }
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
  if (v5) writeBlock(w, packet.properties, propsLength);
  w.string(packet.clientId, clientIdLength);
  if (will !== undefined) {
    if (v5) writeBlock(w, will.properties, willPropsLength);
    w.string(will.topic, willTopicLength);
    w.binary(will.payload);
  }
  if (username !== undefined) w.string(username, usernameLength);
  if (password !== undefined) w.binary(password);
  return w.done();
}

function encodeSubscribe(packet: SubscribePacket, v5: boolean): Uint8Array {
  const subs = packet.subscriptions;
  checkPacketId(packet.packetId);
  if (subs.length === 0) {
    throw new TypeError("Cannot encode packet: SUBSCRIBE without topic filter [MQTT-3.8.3-3]");
  }
  const lengths = new Array<number>(subs.length);
  const propsLength = v5 ? propertiesLength(packet.properties, KIND.subscribe, "SUBSCRIBE") : 0;
  let remaining = 2 + (v5 ? blockLength(propsLength) : 0);
  for (let i = 0; i < subs.length; i++) {
    const { topicFilter, qos, retainHandling } = subs[i];
    if (qos !== 0 && qos !== 1 && qos !== 2) {
      throw new TypeError(`Cannot encode packet: SUBSCRIBE QoS must be 0, 1 or 2, got ${qos}`);
    }
    if (
      v5 && retainHandling !== undefined && retainHandling !== 0 && retainHandling !== 1 &&
      retainHandling !== 2
    ) {
      throw new TypeError(`Cannot encode packet: Retain Handling must be 0, 1 or 2`);
    }
    lengths[i] = fieldLength(topicFilter);
    remaining += 2 + lengths[i] + 1;
  }
  const w = new Writer(0x82, remaining); // [MQTT-3.8.1-1] flags 0b0010
  w.u16(packet.packetId);
  if (v5) writeBlock(w, packet.properties, propsLength);
  for (let i = 0; i < subs.length; i++) {
    const sub = subs[i];
    w.string(sub.topicFilter, lengths[i]);
    w.u8(
      v5
        ? sub.qos | (sub.noLocal ? 4 : 0) | (sub.retainAsPublished ? 8 : 0) |
          ((sub.retainHandling ?? 0) << 4)
        : sub.qos,
    );
  }
  return w.done();
}

function encodeSuback(packet: SubackPacket, v5: boolean): Uint8Array {
  const codes = packet.returnCodes;
  checkPacketId(packet.packetId);
  if (codes.length === 0) throw new TypeError("Cannot encode packet: SUBACK without return code");
  // [MQTT-3.9.3-2] only SUBACK codes; 3.1.1 gets 0x00, 0x01, 0x02 or 0x80 of each
  for (const code of codes) checkReasonCode("suback", code);
  const propsLength = v5 ? propertiesLength(packet.properties, KIND.suback, "SUBACK") : 0;
  const w = new Writer(0x90, 2 + (v5 ? blockLength(propsLength) : 0) + codes.length);
  w.u16(packet.packetId);
  if (v5) writeBlock(w, packet.properties, propsLength);
  for (const code of codes) w.u8(v5 ? code : subackReturnCode(code));
  return w.done();
}

function encodeUnsubscribe(packet: UnsubscribePacket, v5: boolean): Uint8Array {
  const filters = packet.topicFilters;
  checkPacketId(packet.packetId);
  if (filters.length === 0) {
    throw new TypeError("Cannot encode packet: UNSUBSCRIBE without topic filter [MQTT-3.10.3-2]");
  }
  const lengths = filters.map(fieldLength);
  const propsLength = v5 ? propertiesLength(packet.properties, KIND.unsubscribe, "UNSUBSCRIBE") : 0;
  let remaining = 2 + (v5 ? blockLength(propsLength) : 0);
  for (const n of lengths) remaining += 2 + n;
  const w = new Writer(0xa2, remaining); // [MQTT-3.10.1-1] flags 0b0010
  w.u16(packet.packetId);
  if (v5) writeBlock(w, packet.properties, propsLength);
  for (let i = 0; i < filters.length; i++) w.string(filters[i], lengths[i]);
  return w.done();
}

function encodeUnsubackV5(packet: UnsubackPacket): Uint8Array {
  const codes = packet.reasonCodes;
  checkPacketId(packet.packetId);
  // [MQTT-3.11.3-1] one reason code per filter of the UNSUBSCRIBE
  if (codes === undefined || codes.length === 0) {
    throw new TypeError("Cannot encode packet: a 5.0 UNSUBACK needs at least one reason code");
  }
  for (const code of codes) checkReasonCode("unsuback", code); // [MQTT-3.11.3-2]
  const propsLength = propertiesLength(packet.properties, KIND.unsuback, "UNSUBACK");
  const w = new Writer(0xb0, 2 + blockLength(propsLength) + codes.length);
  w.u16(packet.packetId);
  writeBlock(w, packet.properties, propsLength);
  for (const code of codes) w.u8(code);
  return w.done();
}
