/**
 * Hand-written MQTT 3.1.1 and 5.0 bytes and a raw TCP client for the protocol tests.
 *
 * Deliberately independent of `src/codec`: every byte is built here by hand and every answer is
 * split and parsed here by hand, so that the tests check the broker's codec instead of trusting it.
 *
 * @module
 */
import assert from "node:assert/strict";

/** Numeric control packet types (high nibble of the first byte). */
export const TYPE = {
  CONNECT: 1,
  CONNACK: 2,
  PUBLISH: 3,
  PUBACK: 4,
  PUBREC: 5,
  PUBREL: 6,
  PUBCOMP: 7,
  SUBSCRIBE: 8,
  SUBACK: 9,
  UNSUBSCRIBE: 10,
  UNSUBACK: 11,
  PINGREQ: 12,
  PINGRESP: 13,
  DISCONNECT: 14,
  AUTH: 15,
} as const;

const TYPE_NAMES = [
  "RESERVED0",
  "CONNECT",
  "CONNACK",
  "PUBLISH",
  "PUBACK",
  "PUBREC",
  "PUBREL",
  "PUBCOMP",
  "SUBSCRIBE",
  "SUBACK",
  "UNSUBSCRIBE",
  "UNSUBACK",
  "PINGREQ",
  "PINGRESP",
  "DISCONNECT",
  "AUTH",
];

/** Name of a control packet type, for messages. */
export function typeName(type: number): string {
  return TYPE_NAMES[type] ?? `TYPE${type}`;
}

const encoder = new TextEncoder();

/** Bytes of a string or byte array. */
export function bytes(data: string | Uint8Array | number[]): Uint8Array {
  if (typeof data === "string") return encoder.encode(data);
  return data instanceof Uint8Array ? data : Uint8Array.from(data);
}

/** Concatenates byte arrays. */
export function concat(...parts: (Uint8Array | number[])[]): Uint8Array {
  const arrays = parts.map((p) => bytes(p));
  const out = new Uint8Array(arrays.reduce((n, a) => n + a.length, 0));
  let offset = 0;
  for (const a of arrays) {
    out.set(a, offset);
    offset += a.length;
  }
  return out;
}

/** A big-endian 16-bit integer. */
export function u16(n: number): Uint8Array {
  return Uint8Array.of((n >> 8) & 0xff, n & 0xff);
}

/** A length-prefixed string (or raw bytes, to build invalid UTF-8 on purpose). */
export function str(s: string | Uint8Array): Uint8Array {
  const b = bytes(s);
  return concat(u16(b.length), b);
}

/** The variable-length "remaining length" encoding (1 to 4 bytes). */
export function remainingLength(n: number): Uint8Array {
  const out: number[] = [];
  do {
    let digit = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) digit |= 0x80;
    out.push(digit);
  } while (n > 0);
  return Uint8Array.from(out);
}

/** A whole packet: first byte from type and flags, remaining length computed from the body. */
export function packet(
  type: number,
  flags: number,
  ...body: (Uint8Array | number[])[]
): Uint8Array {
  const b = concat(...body);
  return concat([((type & 0x0f) << 4) | (flags & 0x0f)], remainingLength(b.length), b);
}

/** The will of a CONNECT. */
export interface RawWill {
  topic: string;
  payload?: string | Uint8Array;
  qos?: number;
  retain?: boolean;
  /** 5.0 Will Properties (written only in a 5.0 CONNECT). */
  properties?: PropertyList;
}

/** Fields of a CONNECT; anything can be set to a wrong value on purpose. */
export interface ConnectOptions {
  clientId?: string;
  cleanSession?: boolean;
  /** Seconds; default 0 (off) so that slow test machines never trip it. */
  keepAlive?: number;
  will?: RawWill;
  username?: string;
  password?: string | Uint8Array;
  protocolName?: string;
  protocolLevel?: number;
  /** Replaces the computed connect flags byte. The payload still follows the real fields. */
  flagsOverride?: number;
  /** 5 writes a 5.0 CONNECT (protocol level 5 and property blocks); sets `protocolLevel`. */
  version?: number;
  /** 5.0 CONNECT properties (an empty block when omitted in a 5.0 CONNECT). */
  properties?: PropertyList;
}

/** A CONNECT packet. */
export function connect(o: ConnectOptions = {}): Uint8Array {
  const cleanSession = o.cleanSession ?? true;
  let flags = 0;
  if (o.username !== undefined) flags |= 0x80;
  if (o.password !== undefined) flags |= 0x40;
  if (o.will) {
    flags |= 0x04 | ((o.will.qos ?? 0) & 0x03) << 3;
    if (o.will.retain) flags |= 0x20;
  }
  if (cleanSession) flags |= 0x02;
  if (o.flagsOverride !== undefined) flags = o.flagsOverride;
  const level = o.protocolLevel ?? o.version ?? 4;
  const v5 = level === 5 || o.version === 5;
  const parts: Uint8Array[] = [
    str(o.protocolName ?? "MQTT"),
    Uint8Array.of(level, flags),
    u16(o.keepAlive ?? 0),
    ...(v5 ? [properties(o.properties ?? [])] : []),
    str(o.clientId ?? ""),
  ];
  if (o.will) {
    if (v5) parts.push(properties(o.will.properties ?? []));
    parts.push(str(o.will.topic), str(bytes(o.will.payload ?? "")));
  }
  if (o.username !== undefined) parts.push(str(o.username));
  if (o.password !== undefined) parts.push(str(bytes(o.password)));
  return packet(TYPE.CONNECT, 0, ...parts);
}

/** Fields of a PUBLISH; `qos` 3 and `packetId` 0 are allowed on purpose. */
export interface PublishOptions {
  /** A string, or raw bytes to send invalid UTF-8. */
  topic: string | Uint8Array;
  payload?: string | Uint8Array;
  qos?: number;
  retain?: boolean;
  dup?: boolean;
  /** Required by the standard when qos > 0; omitted from the bytes when qos is 0. */
  packetId?: number;
  /** 5 writes a 5.0 PUBLISH (with a property block, empty when `properties` is omitted). */
  version?: number;
  /** 5.0 PUBLISH properties; giving them implies a 5.0 PUBLISH. */
  properties?: PropertyList;
}

/** A PUBLISH packet. */
export function publish(o: PublishOptions): Uint8Array {
  const qos = o.qos ?? 0;
  const flags = (o.dup ? 0x08 : 0) | ((qos & 0x03) << 1) | (o.retain ? 0x01 : 0);
  const parts = [str(o.topic)];
  if (qos > 0) parts.push(u16(o.packetId ?? 1));
  if (o.version === 5 || o.properties !== undefined) parts.push(properties(o.properties ?? []));
  parts.push(bytes(o.payload ?? ""));
  return packet(TYPE.PUBLISH, flags, ...parts);
}

/**
 * The body of a 5.0 acknowledgement: packet id, then the reason code and properties when given
 * (a 2-byte body means reason 0x00 and no properties, valid in both versions [MQTT-3.4.2-1]).
 */
function ackBody(packetId: number, reasonCode?: number, props?: PropertyList): Uint8Array {
  if (reasonCode === undefined && props === undefined) return u16(packetId);
  if (props === undefined) return concat(u16(packetId), [reasonCode!]);
  return concat(u16(packetId), [reasonCode ?? 0], properties(props));
}

/** A PUBACK; a reason code and properties make it a 5.0 PUBACK. */
export function puback(packetId: number, reasonCode?: number, props?: PropertyList): Uint8Array {
  return packet(TYPE.PUBACK, 0, ackBody(packetId, reasonCode, props));
}

/** A PUBREC; a reason code and properties make it a 5.0 PUBREC. */
export function pubrec(packetId: number, reasonCode?: number, props?: PropertyList): Uint8Array {
  return packet(TYPE.PUBREC, 0, ackBody(packetId, reasonCode, props));
}

/** A PUBREL; its fixed header flags must be 0b0010 [MQTT-3.6.1-1], so `flags` is for breaking it. */
export function pubrel(
  packetId: number,
  flags = 0x02,
  reasonCode?: number,
  props?: PropertyList,
): Uint8Array {
  return packet(TYPE.PUBREL, flags, ackBody(packetId, reasonCode, props));
}

/** A PUBCOMP; a reason code and properties make it a 5.0 PUBCOMP. */
export function pubcomp(packetId: number, reasonCode?: number, props?: PropertyList): Uint8Array {
  return packet(TYPE.PUBCOMP, 0, ackBody(packetId, reasonCode, props));
}

/** A topic filter with its requested QoS: `["a/+", 1]`. */
export type RawSubscription = [filter: string | Uint8Array, qos: number];

/** A SUBSCRIBE; flags must be 0b0010 [MQTT-3.8.1-1]. */
export function subscribe(packetId: number, subs: RawSubscription[], flags = 0x02): Uint8Array {
  return packet(
    TYPE.SUBSCRIBE,
    flags,
    u16(packetId),
    ...subs.map(([filter, qos]) => concat(str(filter), [qos])),
  );
}

/** An UNSUBSCRIBE; flags must be 0b0010 [MQTT-3.10.1-1]. */
export function unsubscribe(packetId: number, filters: string[], flags = 0x02): Uint8Array {
  return packet(TYPE.UNSUBSCRIBE, flags, u16(packetId), ...filters.map((f) => str(f)));
}

/** A PINGREQ. */
export function pingreq(): Uint8Array {
  return packet(TYPE.PINGREQ, 0);
}

/**
 * A DISCONNECT. Without arguments the 2-byte form (3.1.1, or 5.0 reason 0x00); with a reason code
 * (and properties) the 5.0 form.
 */
export function disconnect(reasonCode?: number, props?: PropertyList): Uint8Array {
  if (reasonCode === undefined && props === undefined) return packet(TYPE.DISCONNECT, 0);
  if (props === undefined) return packet(TYPE.DISCONNECT, 0, [reasonCode!]);
  return packet(TYPE.DISCONNECT, 0, [reasonCode ?? 0], properties(props));
}

// ---------------------------------------------------------------------------------------------
// MQTT 5.0: properties, reason codes and the 5.0-only packets, written by hand here.

/** Property identifiers of MQTT 5.0 (section 2.2.2.2). */
export const PROP = {
  PAYLOAD_FORMAT_INDICATOR: 0x01,
  MESSAGE_EXPIRY_INTERVAL: 0x02,
  CONTENT_TYPE: 0x03,
  RESPONSE_TOPIC: 0x08,
  CORRELATION_DATA: 0x09,
  SUBSCRIPTION_IDENTIFIER: 0x0b,
  SESSION_EXPIRY_INTERVAL: 0x11,
  ASSIGNED_CLIENT_IDENTIFIER: 0x12,
  SERVER_KEEP_ALIVE: 0x13,
  AUTHENTICATION_METHOD: 0x15,
  AUTHENTICATION_DATA: 0x16,
  REQUEST_PROBLEM_INFORMATION: 0x17,
  WILL_DELAY_INTERVAL: 0x18,
  REQUEST_RESPONSE_INFORMATION: 0x19,
  RESPONSE_INFORMATION: 0x1a,
  SERVER_REFERENCE: 0x1c,
  REASON_STRING: 0x1f,
  RECEIVE_MAXIMUM: 0x21,
  TOPIC_ALIAS_MAXIMUM: 0x22,
  TOPIC_ALIAS: 0x23,
  MAXIMUM_QOS: 0x24,
  RETAIN_AVAILABLE: 0x25,
  USER_PROPERTY: 0x26,
  MAXIMUM_PACKET_SIZE: 0x27,
  WILDCARD_SUBSCRIPTION_AVAILABLE: 0x28,
  SUBSCRIPTION_IDENTIFIER_AVAILABLE: 0x29,
  SHARED_SUBSCRIPTION_AVAILABLE: 0x2a,
} as const;

/** How a property value is written on the wire. */
export type WireType = "byte" | "u16" | "u32" | "varint" | "utf8" | "binary" | "pair";

/** Wire type of every property id (the standard's table, typed here independently of src/codec). */
export const PROP_TYPES: Readonly<Record<number, WireType>> = {
  [PROP.PAYLOAD_FORMAT_INDICATOR]: "byte",
  [PROP.MESSAGE_EXPIRY_INTERVAL]: "u32",
  [PROP.CONTENT_TYPE]: "utf8",
  [PROP.RESPONSE_TOPIC]: "utf8",
  [PROP.CORRELATION_DATA]: "binary",
  [PROP.SUBSCRIPTION_IDENTIFIER]: "varint",
  [PROP.SESSION_EXPIRY_INTERVAL]: "u32",
  [PROP.ASSIGNED_CLIENT_IDENTIFIER]: "utf8",
  [PROP.SERVER_KEEP_ALIVE]: "u16",
  [PROP.AUTHENTICATION_METHOD]: "utf8",
  [PROP.AUTHENTICATION_DATA]: "binary",
  [PROP.REQUEST_PROBLEM_INFORMATION]: "byte",
  [PROP.WILL_DELAY_INTERVAL]: "u32",
  [PROP.REQUEST_RESPONSE_INFORMATION]: "byte",
  [PROP.RESPONSE_INFORMATION]: "utf8",
  [PROP.SERVER_REFERENCE]: "utf8",
  [PROP.REASON_STRING]: "utf8",
  [PROP.RECEIVE_MAXIMUM]: "u16",
  [PROP.TOPIC_ALIAS_MAXIMUM]: "u16",
  [PROP.TOPIC_ALIAS]: "u16",
  [PROP.MAXIMUM_QOS]: "byte",
  [PROP.RETAIN_AVAILABLE]: "byte",
  [PROP.USER_PROPERTY]: "pair",
  [PROP.MAXIMUM_PACKET_SIZE]: "u32",
  [PROP.WILDCARD_SUBSCRIPTION_AVAILABLE]: "byte",
  [PROP.SUBSCRIPTION_IDENTIFIER_AVAILABLE]: "byte",
  [PROP.SHARED_SUBSCRIPTION_AVAILABLE]: "byte",
};

/** A property value: integers, a UTF-8 string, binary data or a user property pair. */
export type PropValue = number | string | Uint8Array | [string, string];

/** One property: `[PROP.MESSAGE_EXPIRY_INTERVAL, 60]`, `[PROP.USER_PROPERTY, ["k", "v"]]`. */
export type Property = [id: number, value: PropValue];

/**
 * Properties to write, in order. A `Uint8Array` entry is copied verbatim (a property with a wrong
 * type, an unknown id or a truncated value, written on purpose).
 */
export type PropertyList = (Property | Uint8Array)[];

/** A Variable Byte Integer [MQTT-1.5.5-1] (1 to 4 bytes). */
export function varint(n: number): Uint8Array {
  return remainingLength(n);
}

function u32(n: number): Uint8Array {
  return Uint8Array.of((n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
}

/** One property, written with the wire type of its id (`type` overrides it, to break it). */
export function property(id: number, value: PropValue, type = PROP_TYPES[id]): Uint8Array {
  const head = varint(id);
  switch (type) {
    case "byte":
      return concat(head, [value as number]);
    case "u16":
      return concat(head, u16(value as number));
    case "u32":
      return concat(head, u32(value as number));
    case "varint":
      return concat(head, varint(value as number));
    case "utf8":
    case "binary":
      return concat(head, str(value as string | Uint8Array));
    case "pair": {
      const [k, v] = value as [string, string];
      return concat(head, str(k), str(v));
    }
    default:
      throw new Error(`no wire type for property id ${id}; pass the bytes instead`);
  }
}

/** A property block: its length as a Variable Byte Integer, then the properties [MQTT-2.2.2-1]. */
export function properties(list: PropertyList): Uint8Array {
  const body = concat(...list.map((p) => p instanceof Uint8Array ? p : property(p[0], p[1])));
  return concat(varint(body.length), body);
}

/** 5.0 reason codes used by the tests (section 2.4). */
export const RC = {
  SUCCESS: 0x00,
  GRANTED_QOS_1: 0x01,
  GRANTED_QOS_2: 0x02,
  DISCONNECT_WITH_WILL: 0x04,
  NO_MATCHING_SUBSCRIBERS: 0x10,
  NO_SUBSCRIPTION_EXISTED: 0x11,
  CONTINUE_AUTHENTICATION: 0x18,
  RE_AUTHENTICATE: 0x19,
  UNSPECIFIED_ERROR: 0x80,
  MALFORMED_PACKET: 0x81,
  PROTOCOL_ERROR: 0x82,
  IMPLEMENTATION_SPECIFIC_ERROR: 0x83,
  UNSUPPORTED_PROTOCOL_VERSION: 0x84,
  CLIENT_IDENTIFIER_NOT_VALID: 0x85,
  BAD_USER_NAME_OR_PASSWORD: 0x86,
  NOT_AUTHORIZED: 0x87,
  SERVER_UNAVAILABLE: 0x88,
  SERVER_BUSY: 0x89,
  BANNED: 0x8a,
  SERVER_SHUTTING_DOWN: 0x8b,
  BAD_AUTHENTICATION_METHOD: 0x8c,
  KEEP_ALIVE_TIMEOUT: 0x8d,
  SESSION_TAKEN_OVER: 0x8e,
  TOPIC_FILTER_INVALID: 0x8f,
  TOPIC_NAME_INVALID: 0x90,
  PACKET_IDENTIFIER_IN_USE: 0x91,
  PACKET_IDENTIFIER_NOT_FOUND: 0x92,
  RECEIVE_MAXIMUM_EXCEEDED: 0x93,
  TOPIC_ALIAS_INVALID: 0x94,
  PACKET_TOO_LARGE: 0x95,
  MESSAGE_RATE_TOO_HIGH: 0x96,
  QUOTA_EXCEEDED: 0x97,
  ADMINISTRATIVE_ACTION: 0x98,
  PAYLOAD_FORMAT_INVALID: 0x99,
  RETAIN_NOT_SUPPORTED: 0x9a,
  QOS_NOT_SUPPORTED: 0x9b,
  USE_ANOTHER_SERVER: 0x9c,
  SERVER_MOVED: 0x9d,
  SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: 0x9e,
  CONNECTION_RATE_EXCEEDED: 0x9f,
  MAXIMUM_CONNECT_TIME: 0xa0,
  SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED: 0xa1,
  WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED: 0xa2,
} as const;

/** 5.0 Subscription Options (section 3.8.3.1). */
export interface SubOptions {
  qos?: number;
  noLocal?: boolean;
  retainAsPublished?: boolean;
  retainHandling?: number;
}

/** The Subscription Options byte. */
export function subOptions(o: SubOptions = {}): number {
  return ((o.qos ?? 0) & 0x03) | (o.noLocal ? 0x04 : 0) | (o.retainAsPublished ? 0x08 : 0) |
    ((o.retainHandling ?? 0) & 0x03) << 4;
}

/** A 5.0 topic filter with its options: `["a/+", { qos: 1, noLocal: true }]` or a raw byte. */
export type RawSubscription5 = [filter: string | Uint8Array, options: SubOptions | number];

/** A 5.0 SUBSCRIBE (a Subscription Identifier goes in `props`). */
export function subscribe5(
  packetId: number,
  subs: RawSubscription5[],
  props: PropertyList = [],
  flags = 0x02,
): Uint8Array {
  return packet(
    TYPE.SUBSCRIBE,
    flags,
    u16(packetId),
    properties(props),
    ...subs.map(([filter, o]) => concat(str(filter), [typeof o === "number" ? o : subOptions(o)])),
  );
}

/** A 5.0 UNSUBSCRIBE. */
export function unsubscribe5(
  packetId: number,
  filters: string[],
  props: PropertyList = [],
): Uint8Array {
  return packet(TYPE.UNSUBSCRIBE, 0x02, u16(packetId), properties(props), ...filters.map(str));
}

/** An AUTH (5.0 only); flags must be 0 [MQTT-3.15.1-1]. */
export function auth(reasonCode: number, props: PropertyList = [], flags = 0): Uint8Array {
  return packet(TYPE.AUTH, flags, [reasonCode], properties(props));
}

// ---------------------------------------------------------------------------------------------
// Reading

/** One packet as it came off the wire: fixed header split, body untouched. */
export interface RawPacket {
  type: number;
  flags: number;
  body: Uint8Array;
}

/** Describes a packet for assertion messages. */
export function describe(p: RawPacket): string {
  let extra = "";
  if (p.type === TYPE.PUBLISH) {
    try {
      const m = parsePublish(p);
      extra = ` topic=${JSON.stringify(m.topic)} qos=${m.qos} retain=${m.retain} dup=${m.dup}` +
        (m.packetId !== undefined ? ` id=${m.packetId}` : "") +
        ` payload=${JSON.stringify(m.text)}`;
    } catch {
      extra = " (unparsable)";
    }
  } else if (p.body.length <= 16) {
    extra = ` body=[${Array.from(p.body).join(",")}]`;
  }
  return `${typeName(p.type)}(flags=${p.flags}${extra})`;
}

/** Size of a packet on the wire: first byte, remaining length bytes, body. */
export function wireSize(p: RawPacket): number {
  return 1 + remainingLength(p.body.length).length + p.body.length;
}

/** Splits a byte stream into packets by fixed header and remaining length. */
export class PacketSplitter {
  #buf: Uint8Array = new Uint8Array(0);

  /** Adds bytes; returns the packets now complete. Throws on a remaining length over 4 bytes. */
  push(chunk: Uint8Array): RawPacket[] {
    this.#buf = this.#buf.length ? concat(this.#buf, chunk) : chunk.slice();
    const out: RawPacket[] = [];
    while (this.#buf.length >= 2) {
      let length = 0;
      let multiplier = 1;
      let i = 1;
      let complete = false;
      for (; i < this.#buf.length; i++) {
        if (i > 4) throw new Error("remaining length exceeds 4 bytes");
        length += (this.#buf[i] & 0x7f) * multiplier;
        multiplier *= 128;
        if ((this.#buf[i] & 0x80) === 0) {
          complete = true;
          break;
        }
      }
      if (!complete) break;
      const start = i + 1;
      if (this.#buf.length < start + length) break;
      out.push({
        type: this.#buf[0] >> 4,
        flags: this.#buf[0] & 0x0f,
        body: this.#buf.slice(start, start + length),
      });
      this.#buf = this.#buf.subarray(start + length);
    }
    return out;
  }
}

/** A CONNACK, checked for its fixed layout [MQTT-3.2.2-1]. */
export interface Connack {
  sessionPresent: boolean;
  returnCode: number;
}

/** Parses a CONNACK and checks its fixed header flags, length and reserved bits. */
export function parseConnack(p: RawPacket): Connack {
  assert.equal(p.type, TYPE.CONNACK, `expected CONNACK, got ${describe(p)}`);
  assert.equal(p.flags, 0, "CONNACK fixed header flags must be 0");
  assert.equal(p.body.length, 2, "CONNACK remaining length must be 2");
  assert.equal(p.body[0] & 0xfe, 0, "CONNACK acknowledge flags bits 7-1 are reserved (0)");
  return { sessionPresent: (p.body[0] & 1) === 1, returnCode: p.body[1] };
}

/** A parsed PUBLISH. */
export interface Publish {
  topic: string;
  payload: Uint8Array;
  /** The payload decoded as UTF-8, for convenience. */
  text: string;
  qos: number;
  retain: boolean;
  dup: boolean;
  packetId?: number;
}

const strictDecoder = new TextDecoder("utf-8", { fatal: true });

/** Parses a PUBLISH; rejects QoS 3 and a packet id 0 [MQTT-3.3.1-4] [MQTT-2.3.1-1]. */
export function parsePublish(p: RawPacket): Publish {
  assert.equal(p.type, TYPE.PUBLISH, `expected PUBLISH, got ${typeName(p.type)}`);
  const qos = (p.flags >> 1) & 0x03;
  assert.notEqual(qos, 3, "PUBLISH with QoS 3 [MQTT-3.3.1-4]");
  const topicLength = (p.body[0] << 8) | p.body[1];
  const topic = strictDecoder.decode(p.body.subarray(2, 2 + topicLength));
  let offset = 2 + topicLength;
  let packetId: number | undefined;
  if (qos > 0) {
    packetId = (p.body[offset] << 8) | p.body[offset + 1];
    offset += 2;
    assert.notEqual(
      packetId,
      0,
      "PUBLISH with QoS > 0 must have a non-zero packet id [MQTT-2.3.1-1]",
    );
  }
  const payload = p.body.slice(offset);
  return {
    topic,
    payload,
    text: new TextDecoder().decode(payload),
    qos,
    retain: (p.flags & 0x01) === 1,
    dup: (p.flags & 0x08) !== 0,
    packetId,
  };
}

/** Parses a SUBACK. */
export function parseSuback(p: RawPacket): { packetId: number; returnCodes: number[] } {
  assert.equal(p.type, TYPE.SUBACK, `expected SUBACK, got ${describe(p)}`);
  assert.equal(p.flags, 0, "SUBACK fixed header flags must be 0");
  assert.ok(p.body.length >= 3, "SUBACK must carry at least one return code");
  return { packetId: (p.body[0] << 8) | p.body[1], returnCodes: Array.from(p.body.subarray(2)) };
}

/**
 * The packet id of PUBACK, PUBREC, PUBREL, PUBCOMP or UNSUBACK, checking the fixed header:
 * flags 0b0010 for PUBREL and 0 for the others, remaining length 2.
 */
export function ackId(p: RawPacket): number {
  assert.equal(
    p.flags,
    p.type === TYPE.PUBREL ? 0x02 : 0,
    `${typeName(p.type)} fixed header flags`,
  );
  assert.equal(p.body.length, 2, `${typeName(p.type)} remaining length must be 2`);
  return (p.body[0] << 8) | p.body[1];
}

// ---------------------------------------------------------------------------------------------
// Reading 5.0, independently of src/codec

/** Properties as read: in wire order, with lookups. */
export class Props {
  readonly list: Property[];
  constructor(list: Property[]) {
    this.list = list;
  }
  /** The value of the (single) property `id`, or undefined. */
  get(id: number): PropValue | undefined {
    return this.list.find(([i]) => i === id)?.[1];
  }
  /** Every value of `id`, in order (User Property, Subscription Identifier). */
  all(id: number): PropValue[] {
    return this.list.filter(([i]) => i === id).map(([, v]) => v);
  }
  has(id: number): boolean {
    return this.list.some(([i]) => i === id);
  }
  /** The User Properties as `[key, value]` pairs, in order. */
  get user(): [string, string][] {
    return this.all(PROP.USER_PROPERTY) as [string, string][];
  }
  /** The ids present, for messages. */
  ids(): number[] {
    return this.list.map(([i]) => i);
  }
}

/** Reads a Variable Byte Integer at `offset`: [value, next offset]; checks the minimum length. */
export function readVarint(b: Uint8Array, offset: number): [number, number] {
  let value = 0;
  let multiplier = 1;
  for (let i = 0; i < 4; i++) {
    assert.ok(offset + i < b.length, "Variable Byte Integer runs past the packet");
    const byte = b[offset + i];
    value += (byte & 0x7f) * multiplier;
    if ((byte & 0x80) === 0) {
      assert.ok(i === 0 || byte !== 0, "Variable Byte Integer not minimal [MQTT-1.5.5-1]");
      return [value, offset + i + 1];
    }
    multiplier *= 128;
  }
  assert.fail("Variable Byte Integer longer than 4 bytes");
}

const MULTIPLE_ALLOWED: ReadonlySet<number> = new Set([
  PROP.USER_PROPERTY,
  PROP.SUBSCRIPTION_IDENTIFIER,
]);

/**
 * Reads a property block at `offset`: checks every id is known, every value fits its wire type
 * and length, and that a property other than User Property / Subscription Identifier appears at
 * most once. Returns the properties and the offset after the block.
 */
export function readProperties(b: Uint8Array, offset: number): [Props, number] {
  const [length, start] = readVarint(b, offset);
  const end = start + length;
  assert.ok(end <= b.length, `property length ${length} runs past the packet`);
  const out: Property[] = [];
  let i = start;
  const need = (n: number) => assert.ok(i + n <= end, "property value runs past its block");
  const readStr = (): Uint8Array => {
    need(2);
    const n = (b[i] << 8) | b[i + 1];
    i += 2;
    need(n);
    const v = b.slice(i, i + n);
    i += n;
    return v;
  };
  while (i < end) {
    let id: number;
    [id, i] = readVarint(b, i);
    const type = PROP_TYPES[id];
    assert.ok(type !== undefined, `unknown property id 0x${id.toString(16)}`);
    let value: PropValue;
    switch (type) {
      case "byte":
        need(1);
        value = b[i++];
        break;
      case "u16":
        need(2);
        value = (b[i] << 8) | b[i + 1];
        i += 2;
        break;
      case "u32":
        need(4);
        value = ((b[i] << 24) >>> 0) + (b[i + 1] << 16) + (b[i + 2] << 8) + b[i + 3];
        i += 4;
        break;
      case "varint":
        [value, i] = readVarint(b, i);
        break;
      case "utf8":
        value = strictDecoder.decode(readStr());
        break;
      case "binary":
        value = readStr();
        break;
      case "pair":
        value = [strictDecoder.decode(readStr()), strictDecoder.decode(readStr())];
        break;
    }
    if (!MULTIPLE_ALLOWED.has(id)) {
      assert.ok(
        !out.some(([x]) => x === id),
        `property 0x${id.toString(16)} appears twice (a protocol error)`,
      );
    }
    out.push([id, value]);
  }
  assert.equal(i, end, "properties end exactly at the block's length");
  return [new Props(out), end];
}

/** Reason codes each packet may carry (section 2.4 and each packet's table). */
export const ALLOWED_REASON_CODES: Readonly<Record<number, ReadonlySet<number>>> = {
  // [MQTT-3.2.2-8]
  [TYPE.CONNACK]: new Set([
    0x00,
    0x80,
    0x81,
    0x82,
    0x83,
    0x84,
    0x85,
    0x86,
    0x87,
    0x88,
    0x89,
    0x8a,
    0x8c,
    0x90,
    0x95,
    0x97,
    0x99,
    0x9a,
    0x9b,
    0x9c,
    0x9d,
    0x9f,
  ]),
  // [MQTT-3.4.2-1] [MQTT-3.5.2-1]
  [TYPE.PUBACK]: new Set([0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99]),
  [TYPE.PUBREC]: new Set([0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99]),
  // [MQTT-3.6.2-1] [MQTT-3.7.2.1-1]
  [TYPE.PUBREL]: new Set([0x00, 0x92]),
  [TYPE.PUBCOMP]: new Set([0x00, 0x92]),
  // [MQTT-3.9.3-2]
  [TYPE.SUBACK]: new Set([0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8f, 0x91, 0x97, 0x9e, 0xa1, 0xa2]),
  // [MQTT-3.11.3-2]
  [TYPE.UNSUBACK]: new Set([0x00, 0x11, 0x80, 0x83, 0x87, 0x8f, 0x91]),
  // [MQTT-3.14.2-1], those a server may send
  [TYPE.DISCONNECT]: new Set([
    0x00,
    0x80,
    0x81,
    0x82,
    0x83,
    0x87,
    0x89,
    0x8b,
    0x8d,
    0x8e,
    0x8f,
    0x90,
    0x93,
    0x94,
    0x95,
    0x96,
    0x97,
    0x98,
    0x99,
    0x9a,
    0x9b,
    0x9c,
    0x9d,
    0x9e,
    0x9f,
    0xa0,
    0xa1,
    0xa2,
  ]),
  // [MQTT-3.15.2-1]
  [TYPE.AUTH]: new Set([0x00, 0x18, 0x19]),
};

function checkReasonCode(type: number, code: number): void {
  assert.ok(
    ALLOWED_REASON_CODES[type]?.has(code),
    `${typeName(type)} reason code 0x${code.toString(16)} is not one the standard allows there`,
  );
}

/** A 5.0 CONNACK. */
export interface Connack5 {
  sessionPresent: boolean;
  reasonCode: number;
  properties: Props;
}

/** Parses a 5.0 CONNACK: flags 0, reserved bits 0 [MQTT-3.2.2-1], reason code, properties. */
export function parseConnack5(p: RawPacket): Connack5 {
  assert.equal(p.type, TYPE.CONNACK, `expected CONNACK, got ${describe(p)}`);
  assert.equal(p.flags, 0, "CONNACK fixed header flags must be 0");
  assert.ok(p.body.length >= 3, "a 5.0 CONNACK has flags, reason code and properties");
  assert.equal(
    p.body[0] & 0xfe,
    0,
    "CONNACK acknowledge flags bits 7-1 are reserved [MQTT-3.2.2-1]",
  );
  const [props, end] = readProperties(p.body, 2);
  assert.equal(end, p.body.length, "nothing follows the CONNACK properties");
  checkReasonCode(TYPE.CONNACK, p.body[1]);
  if (p.body[1] !== 0) assert.equal(p.body[0], 0, "Session Present 0 on a refusal [MQTT-3.2.2-6]");
  return { sessionPresent: (p.body[0] & 1) === 1, reasonCode: p.body[1], properties: props };
}

/** A parsed 5.0 PUBLISH. */
export interface Publish5 extends Publish {
  properties: Props;
}

/** Parses a 5.0 PUBLISH (topic may be empty when a Topic Alias stands for it). */
export function parsePublish5(p: RawPacket): Publish5 {
  assert.equal(p.type, TYPE.PUBLISH, `expected PUBLISH, got ${typeName(p.type)}`);
  const qos = (p.flags >> 1) & 0x03;
  assert.notEqual(qos, 3, "PUBLISH with QoS 3 [MQTT-3.3.1-4]");
  const topicLength = (p.body[0] << 8) | p.body[1];
  const topic = strictDecoder.decode(p.body.subarray(2, 2 + topicLength));
  let offset = 2 + topicLength;
  let packetId: number | undefined;
  if (qos > 0) {
    packetId = (p.body[offset] << 8) | p.body[offset + 1];
    offset += 2;
    assert.notEqual(packetId, 0, "PUBLISH with QoS > 0 must have a non-zero packet id");
  }
  const [props, end] = readProperties(p.body, offset);
  assert.ok(qos > 0 || (p.flags & 0x08) === 0, "DUP must be 0 on a QoS 0 PUBLISH [MQTT-3.3.1-2]");
  for (const id of props.all(PROP.SUBSCRIPTION_IDENTIFIER)) {
    assert.ok((id as number) > 0, "Subscription Identifier 0 is not allowed (3.3.2.3.8)");
  }
  if (props.has(PROP.TOPIC_ALIAS)) {
    assert.ok((props.get(PROP.TOPIC_ALIAS) as number) > 0, "Topic Alias 0 [MQTT-3.3.2-8]");
  }
  const payload = p.body.slice(end);
  return {
    topic,
    payload,
    text: new TextDecoder().decode(payload),
    qos,
    retain: (p.flags & 0x01) === 1,
    dup: (p.flags & 0x08) !== 0,
    packetId,
    properties: props,
  };
}

/** A 5.0 PUBACK, PUBREC, PUBREL, PUBCOMP. */
export interface Ack5 {
  packetId: number;
  reasonCode: number;
  properties: Props;
}

/** Parses a 5.0 PUBACK/PUBREC/PUBREL/PUBCOMP (2-byte form = reason 0x00) and checks its flags. */
export function parseAck5(p: RawPacket): Ack5 {
  assert.equal(p.flags, p.type === TYPE.PUBREL ? 0x02 : 0, `${typeName(p.type)} header flags`);
  assert.ok(p.body.length >= 2, `${typeName(p.type)} needs a packet id`);
  const packetId = (p.body[0] << 8) | p.body[1];
  if (p.body.length === 2) return { packetId, reasonCode: 0, properties: new Props([]) };
  checkReasonCode(p.type, p.body[2]);
  if (p.body.length === 3) return { packetId, reasonCode: p.body[2], properties: new Props([]) };
  const [props, end] = readProperties(p.body, 3);
  assert.equal(end, p.body.length, `nothing follows the ${typeName(p.type)} properties`);
  return { packetId, reasonCode: p.body[2], properties: props };
}

/** A 5.0 SUBACK or UNSUBACK. */
export interface Suback5 {
  packetId: number;
  reasonCodes: number[];
  properties: Props;
}

/** Parses a 5.0 SUBACK or UNSUBACK: packet id, properties, one reason code per filter. */
export function parseSuback5(p: RawPacket): Suback5 {
  assert.ok(
    p.type === TYPE.SUBACK || p.type === TYPE.UNSUBACK,
    `expected SUBACK/UNSUBACK, got ${describe(p)}`,
  );
  assert.equal(p.flags, 0, `${typeName(p.type)} fixed header flags must be 0`);
  const [props, end] = readProperties(p.body, 2);
  const reasonCodes = Array.from(p.body.subarray(end));
  for (const code of reasonCodes) checkReasonCode(p.type, code);
  return { packetId: (p.body[0] << 8) | p.body[1], reasonCodes, properties: props };
}

/** A 5.0 DISCONNECT or AUTH. */
export interface Disconnect5 {
  reasonCode: number;
  properties: Props;
}

/** Parses a 5.0 DISCONNECT or AUTH (empty body = reason 0x00). */
export function parseDisconnect5(p: RawPacket): Disconnect5 {
  assert.ok(
    p.type === TYPE.DISCONNECT || p.type === TYPE.AUTH,
    `expected DISCONNECT/AUTH, got ${describe(p)}`,
  );
  assert.equal(p.flags, 0, `${typeName(p.type)} fixed header flags must be 0`);
  if (p.body.length === 0) return { reasonCode: 0, properties: new Props([]) };
  checkReasonCode(p.type, p.body[0]);
  if (p.body.length === 1) return { reasonCode: p.body[0], properties: new Props([]) };
  const [props, end] = readProperties(p.body, 1);
  assert.equal(end, p.body.length, `nothing follows the ${typeName(p.type)} properties`);
  return { reasonCode: p.body[0], properties: props };
}

/** Hex of a reason code, for messages. */
export function hex(n: number | undefined): string {
  return n === undefined ? "undefined" : `0x${n.toString(16).padStart(2, "0")}`;
}

// ---------------------------------------------------------------------------------------------
// The raw client

const DEFAULT_TIMEOUT_MS = 3_000;

/**
 * A TCP connection that sends hand-built bytes and splits what comes back into packets.
 * A background loop reads; `expect*` wait with a deadline and fail with what arrived instead.
 */
export class RawClient {
  #conn: Pick<Deno.Conn, "read" | "write" | "close">;
  #splitter = new PacketSplitter();
  #queue: RawPacket[] = [];
  #waiters: (() => void)[] = [];
  #closed = false;
  #closeReason = "";
  #readLoop: Promise<void>;
  #disposed = false;
  #bytesIn = 0;
  #largest = 0;
  /** Free-form label for messages. */
  label: string;

  private constructor(conn: Pick<Deno.Conn, "read" | "write" | "close">, label: string) {
    this.#conn = conn;
    this.label = label;
    this.#readLoop = this.#read();
  }

  /** Opens a TCP connection to the broker (nothing is sent). */
  static async connect(port: number, label = "client", hostname = "127.0.0.1"): Promise<RawClient> {
    const conn = await Deno.connect({ hostname, port });
    conn.setNoDelay(true);
    return new RawClient(conn, label);
  }

  /** Wraps any byte stream (e.g. one end of tests/_memory_conn.ts's pair); nothing is sent. */
  static wrap(conn: Pick<Deno.Conn, "read" | "write" | "close">, label = "client"): RawClient {
    return new RawClient(conn, label);
  }

  /** Whether the broker has closed (or reset) the connection. */
  get closed(): boolean {
    return this.#closed;
  }

  #packetsIn = 0;

  /**
   * Every byte read so far and how many of them belong to whole packets (equal when nothing is
   * left half-received), and the largest whole packet in bytes (fixed header included).
   */
  get received(): { bytes: number; inPackets: number; largestPacket: number } {
    return { bytes: this.#bytesIn, inPackets: this.#packetsIn, largestPacket: this.#largest };
  }

  async #read(): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await this.#conn.read(buf);
        if (n === null) {
          this.#closeReason = "EOF";
          break;
        }
        this.#bytesIn += n;
        const packets = this.#splitter.push(buf.subarray(0, n));
        for (const p of packets) {
          this.#largest = Math.max(this.#largest, wireSize(p));
          this.#packetsIn += wireSize(p);
        }
        this.#queue.push(...packets);
        this.#notify();
      }
    } catch (e) {
      this.#closeReason = this.#disposed ? "closed locally" : `read error: ${String(e)}`;
    }
    this.#closed = true;
    this.#notify();
  }

  #notify(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  /** Waits until `done()` holds or the deadline passes; returns whether it holds. */
  async #waitUntil(done: () => boolean, deadline: number): Promise<boolean> {
    while (!done()) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) return false;
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        timer = setTimeout(resolve, remaining);
        this.#waiters.push(resolve);
      });
      clearTimeout(timer);
    }
    return true;
  }

  /** Writes all bytes. Throws if the connection is gone. */
  async send(data: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < data.length) offset += await this.#conn.write(data.subarray(offset));
  }

  /** Writes all bytes; returns false instead of throwing when the broker has closed the socket. */
  async trySend(data: Uint8Array): Promise<boolean> {
    try {
      await this.send(data);
      return true;
    } catch {
      return false;
    }
  }

  /** Takes the next packet, whatever it is; fails if none arrives in time or the socket closes. */
  async nextPacket(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<RawPacket> {
    const ok = await this.#waitUntil(
      () => this.#queue.length > 0 || this.#closed,
      Date.now() + timeoutMs,
    );
    const p = this.#queue.shift();
    if (p) return p;
    assert.fail(
      ok
        ? `${this.label}: connection closed (${this.#closeReason}) while waiting for a packet`
        : `${this.label}: no packet within ${timeoutMs} ms`,
    );
  }

  /** Takes the next packet and checks its type; fails with what came instead. */
  async expectPacket(type: number, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<RawPacket> {
    const ok = await this.#waitUntil(
      () => this.#queue.length > 0 || this.#closed,
      Date.now() + timeoutMs,
    );
    const p = this.#queue.shift();
    if (p) {
      if (p.type !== type) {
        assert.fail(`${this.label}: expected ${typeName(type)}, got ${describe(p)}`);
      }
      return p;
    }
    assert.fail(
      ok
        ? `${this.label}: expected ${typeName(type)}, connection closed (${this.#closeReason})`
        : `${this.label}: expected ${typeName(type)}, nothing arrived within ${timeoutMs} ms`,
    );
  }

  /** Expects a CONNACK and parses it. */
  async expectConnack(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Connack> {
    return parseConnack(await this.expectPacket(TYPE.CONNACK, timeoutMs));
  }

  /** Expects a PUBLISH and parses it. */
  async expectPublish(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Publish> {
    return parsePublish(await this.expectPacket(TYPE.PUBLISH, timeoutMs));
  }

  /** Expects an ack packet of `type` and returns its packet id. */
  async expectAck(type: number, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<number> {
    return ackId(await this.expectPacket(type, timeoutMs));
  }

  /**
   * The one legitimate bounded wait: asserts that nothing arrives (and the socket stays open)
   * for `ms` milliseconds. Used for "must not be delivered" checks.
   */
  async expectNothing(ms = 200): Promise<void> {
    await this.#waitUntil(() => this.#queue.length > 0 || this.#closed, Date.now() + ms);
    const p = this.#queue[0];
    if (p) assert.fail(`${this.label}: expected nothing, got ${describe(p)}`);
    if (this.#closed) {
      assert.fail(`${this.label}: expected nothing, connection closed (${this.#closeReason})`);
    }
  }

  /** Expects the broker to close the connection, with no packet before it. */
  async expectClosed(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<void> {
    await this.#waitUntil(() => this.#queue.length > 0 || this.#closed, Date.now() + timeoutMs);
    const p = this.#queue[0];
    if (p) assert.fail(`${this.label}: expected the connection to close, got ${describe(p)}`);
    if (!this.#closed) {
      assert.fail(`${this.label}: connection still open after ${timeoutMs} ms`);
    }
  }

  /** Closes the socket (idempotent) and waits for the read loop to end. */
  async close(): Promise<void> {
    if (!this.#disposed) {
      this.#disposed = true;
      try {
        this.#conn.close();
      } catch {
        // already closed
      }
    }
    await this.#readLoop;
  }

  /** Closes the socket (for `await using`). */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // -------------------------------------------------------------------------------------------
  // Conveniences built on the above

  /** Sends a CONNECT and expects CONNACK 0; returns the CONNACK. */
  async handshake(o: ConnectOptions = {}): Promise<Connack> {
    await this.send(connect(o));
    const ack = await this.expectConnack();
    assert.equal(ack.returnCode, 0, `${this.label}: CONNACK return code`);
    return ack;
  }

  /** Sends a SUBSCRIBE and returns the SUBACK return codes, checking the packet id [MQTT-3.8.4-2]. */
  async subscribe(packetId: number, subs: RawSubscription[]): Promise<number[]> {
    await this.send(subscribe(packetId, subs));
    const ack = parseSuback(await this.expectPacket(TYPE.SUBACK));
    assert.equal(ack.packetId, packetId, "SUBACK packet id [MQTT-3.8.4-2]");
    assert.equal(
      ack.returnCodes.length,
      subs.length,
      "one SUBACK return code per filter [MQTT-3.8.4-5]",
    );
    return ack.returnCodes;
  }

  /** Sends an UNSUBSCRIBE and expects the UNSUBACK with the same packet id [MQTT-3.10.4-4]. */
  async unsubscribe(packetId: number, filters: string[]): Promise<void> {
    await this.send(unsubscribe(packetId, filters));
    assert.equal(
      await this.expectAck(TYPE.UNSUBACK),
      packetId,
      "UNSUBACK packet id [MQTT-3.10.4-4]",
    );
  }

  /**
   * Publishes and completes the QoS handshake as sender: QoS 1 waits for PUBACK, QoS 2 for PUBREC,
   * sends PUBREL and waits for PUBCOMP, each with the same packet id.
   */
  async publish(o: PublishOptions): Promise<void> {
    const qos = o.qos ?? 0;
    const packetId = o.packetId ?? 1;
    await this.send(publish({ ...o, packetId }));
    if (qos === 1) {
      assert.equal(await this.expectAck(TYPE.PUBACK), packetId, "PUBACK packet id [MQTT-3.3.4-1]");
    } else if (qos === 2) {
      assert.equal(await this.expectAck(TYPE.PUBREC), packetId, "PUBREC packet id [MQTT-4.3.3-2]");
      await this.send(pubrel(packetId));
      assert.equal(
        await this.expectAck(TYPE.PUBCOMP),
        packetId,
        "PUBCOMP packet id [MQTT-4.3.3-2]",
      );
    }
  }

  /**
   * Expects a PUBLISH and completes the receiver side of its QoS handshake: PUBACK for QoS 1,
   * PUBREC → PUBREL → PUBCOMP for QoS 2.
   */
  async receive(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Publish> {
    const m = await this.expectPublish(timeoutMs);
    if (m.qos === 1) {
      await this.send(puback(m.packetId!));
    } else if (m.qos === 2) {
      await this.send(pubrec(m.packetId!));
      assert.equal(
        await this.expectAck(TYPE.PUBREL),
        m.packetId,
        "PUBREL packet id [MQTT-4.3.3-1]",
      );
      await this.send(pubcomp(m.packetId!));
    }
    return m;
  }

  /**
   * Receives `n` PUBLISHes and completes every handshake, also when several are in flight at once
   * (PUBACK or PUBREC as each PUBLISH arrives, PUBCOMP for each PUBREL). Returns them in arrival order.
   */
  async receiveMany(n: number, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Publish[]> {
    return await this.#receiveAll(n, parsePublish, ackId, timeoutMs);
  }

  // receiveMany and receiveMany5: the same handshakes, with each version's PUBLISH and PUBREL reader.
  async #receiveAll<T extends { qos: number; packetId?: number }>(
    n: number,
    parse: (p: RawPacket) => T,
    pubrelId: (p: RawPacket) => number,
    timeoutMs: number,
  ): Promise<T[]> {
    const got: T[] = [];
    const awaitingRel = new Set<number>();
    while (got.length < n || awaitingRel.size > 0) {
      const p = await this.nextPacket(timeoutMs);
      if (p.type === TYPE.PUBLISH) {
        const m = parse(p);
        got.push(m);
        if (m.qos === 1) await this.send(puback(m.packetId!));
        if (m.qos === 2) {
          awaitingRel.add(m.packetId!);
          await this.send(pubrec(m.packetId!));
        }
      } else if (p.type === TYPE.PUBREL) {
        const id = pubrelId(p);
        assert.ok(awaitingRel.delete(id), `${this.label}: PUBREL for unknown id ${id}`);
        await this.send(pubcomp(id));
      } else {
        assert.fail(`${this.label}: expected PUBLISH or PUBREL, got ${describe(p)}`);
      }
    }
    return got;
  }

  // -------------------------------------------------------------------------------------------
  // MQTT 5.0 conveniences (the packets above, parsed by the 5.0 readers)

  /** Expects a 5.0 CONNACK and parses it. */
  async expectConnack5(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Connack5> {
    return parseConnack5(await this.expectPacket(TYPE.CONNACK, timeoutMs));
  }

  /** Sends a 5.0 CONNECT and expects CONNACK 0x00; returns it. */
  async handshake5(o: ConnectOptions = {}): Promise<Connack5> {
    await this.send(connect({ ...o, version: 5 }));
    const ack = await this.expectConnack5();
    assert.equal(ack.reasonCode, 0, `${this.label}: CONNACK reason code ${hex(ack.reasonCode)}`);
    return ack;
  }

  /** Expects a 5.0 PUBLISH and parses it. */
  async expectPublish5(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Publish5> {
    return parsePublish5(await this.expectPacket(TYPE.PUBLISH, timeoutMs));
  }

  /** Expects a 5.0 PUBACK/PUBREC/PUBREL/PUBCOMP and parses it. */
  async expectAck5(type: number, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Ack5> {
    return parseAck5(await this.expectPacket(type, timeoutMs));
  }

  /**
   * Expects a DISCONNECT (with `reasonCode` when given) followed by the broker closing the
   * connection [MQTT-3.14.4-1] [MQTT-3.14.4-2]. Returns the DISCONNECT.
   */
  async expectDisconnect(
    reasonCode?: number,
    timeoutMs = DEFAULT_TIMEOUT_MS,
  ): Promise<Disconnect5> {
    const d = parseDisconnect5(await this.expectPacket(TYPE.DISCONNECT, timeoutMs));
    if (reasonCode !== undefined) {
      assert.equal(
        hex(d.reasonCode),
        hex(reasonCode),
        `${this.label}: DISCONNECT reason code`,
      );
    }
    assert.ok(
      !d.properties.has(PROP.SESSION_EXPIRY_INTERVAL),
      "a server DISCONNECT carries no Session Expiry Interval [MQTT-3.14.2-2]",
    );
    await this.expectClosed(timeoutMs);
    return d;
  }

  /**
   * A protocol violation: 3.1.1 closes the connection; 5.0 sends DISCONNECT `reasonCode` first
   * [MQTT-4.13.1-1].
   */
  async expectViolation(version: number, reasonCode: number): Promise<void> {
    if (version === 5) await this.expectDisconnect(reasonCode);
    else await this.expectClosed();
  }

  /** Sends a 5.0 SUBSCRIBE; returns the SUBACK, checking its id and one code per filter. */
  async subscribe5(
    packetId: number,
    subs: RawSubscription5[],
    props: PropertyList = [],
  ): Promise<Suback5> {
    await this.send(subscribe5(packetId, subs, props));
    const ack = parseSuback5(await this.expectPacket(TYPE.SUBACK));
    assert.equal(ack.packetId, packetId, "SUBACK packet id [MQTT-3.8.4-2]");
    assert.equal(ack.reasonCodes.length, subs.length, "one reason code per filter [MQTT-3.8.4-6]");
    return ack;
  }

  /** Sends a 5.0 UNSUBSCRIBE; returns the UNSUBACK, checking its id and one code per filter. */
  async unsubscribe5(
    packetId: number,
    filters: string[],
    props: PropertyList = [],
  ): Promise<Suback5> {
    await this.send(unsubscribe5(packetId, filters, props));
    const ack = parseSuback5(await this.expectPacket(TYPE.UNSUBACK));
    assert.equal(ack.packetId, packetId, "UNSUBACK packet id [MQTT-3.10.4-5]");
    assert.equal(
      ack.reasonCodes.length,
      filters.length,
      "one reason code per filter [MQTT-3.11.3-1]",
    );
    return ack;
  }

  /**
   * Publishes in 5.0 and completes the sender's handshake; returns the PUBACK (QoS 1) or PUBREC
   * (QoS 2), or undefined for QoS 0. A PUBREC ≥ 0x80 ends the exchange (no PUBREL).
   */
  async publish5(o: PublishOptions): Promise<Ack5 | undefined> {
    const qos = o.qos ?? 0;
    const packetId = o.packetId ?? 1;
    await this.send(publish({ ...o, packetId, version: 5 }));
    if (qos === 1) {
      const ack = await this.expectAck5(TYPE.PUBACK);
      assert.equal(ack.packetId, packetId, "PUBACK packet id");
      return ack;
    }
    if (qos === 2) {
      const rec = await this.expectAck5(TYPE.PUBREC);
      assert.equal(rec.packetId, packetId, "PUBREC packet id");
      if (rec.reasonCode < 0x80) {
        await this.send(pubrel(packetId));
        const comp = await this.expectAck5(TYPE.PUBCOMP);
        assert.equal(comp.packetId, packetId, "PUBCOMP packet id");
      }
      return rec;
    }
    return undefined;
  }

  /** `receiveMany` for 5.0: `n` PUBLISHes, every handshake completed, in arrival order. */
  async receiveMany5(n: number, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Publish5[]> {
    return await this.#receiveAll(n, parsePublish5, (p) => parseAck5(p).packetId, timeoutMs);
  }

  /** Expects a 5.0 PUBLISH and completes the receiver side of its QoS handshake. */
  async receive5(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Publish5> {
    const m = await this.expectPublish5(timeoutMs);
    if (m.qos === 1) {
      await this.send(puback(m.packetId!));
    } else if (m.qos === 2) {
      await this.send(pubrec(m.packetId!));
      assert.equal((await this.expectAck5(TYPE.PUBREL)).packetId, m.packetId, "PUBREL id");
      await this.send(pubcomp(m.packetId!));
    }
    return m;
  }
}

const RESET_SCRIPT = `
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.settimeout(5)
s.sendall(bytes.fromhex(sys.argv[2]))
want = int(sys.argv[4])
got = b""
while len(got) < want:
    chunk = s.recv(want - len(got))
    if not chunk:
        break
    got += chunk
s.sendall(bytes.fromhex(sys.argv[3]))
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
print(got.hex())
`;

/**
 * Opens a connection from a python3 child (Deno cannot set SO_LINGER), sends `first`, reads
 * `readBytes` bytes (e.g. 4 for a CONNACK), sends `then`, and closes with SO_LINGER 0 so that the
 * kernel sends an RST instead of a FIN. Returns the bytes read.
 */
export async function sendThenReset(
  port: number,
  first: Uint8Array,
  readBytes = 0,
  then: Uint8Array = new Uint8Array(0),
): Promise<Uint8Array> {
  const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  const out = await new Deno.Command("python3", {
    args: ["-c", RESET_SCRIPT, String(port), hex(first), hex(then), String(readBytes)],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`python3 reset helper failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  const text = new TextDecoder().decode(out.stdout).trim();
  return Uint8Array.from(text.match(/../g) ?? [], (h) => parseInt(h, 16));
}
