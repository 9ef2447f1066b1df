/**
 * The one MQTT 5.0 property table (section 2.2.2.2): id, field name, wire type, the packets that
 * allow it and whether it may repeat. Decoding and encoding both read it (private to the codec).
 *
 * @module
 */

import { DecodeError, type Properties, REASON } from "./packet.ts";
import { type Reader, truncated } from "./_reader.ts";
import { utf8Length, writeUtf8 } from "./_utf8.ts";
import { MAX_FIELD_LENGTH, MAX_VARINT, varintLength, writeU32, writeVarint } from "./_writer.ts";

/** Wire types of properties (section 1.5). */
export const WIRE = {
  byte: 1,
  /** A byte that must be 0 or 1; a boolean in {@linkcode Properties}. */
  flag: 2,
  u16: 3,
  u32: 4,
  varint: 5,
  string: 6,
  binary: 7,
  pair: 8,
} as const;

/** Where a property may appear: a bit per packet type (`1 << type`), and one for Will Properties. */
export const KIND = {
  connect: 1 << 1,
  connack: 1 << 2,
  publish: 1 << 3,
  puback: 1 << 4,
  pubrec: 1 << 5,
  pubrel: 1 << 6,
  pubcomp: 1 << 7,
  subscribe: 1 << 8,
  suback: 1 << 9,
  unsubscribe: 1 << 10,
  unsuback: 1 << 11,
  disconnect: 1 << 14,
  auth: 1 << 15,
  will: 1 << 16,
} as const;

const K = KIND;
const ACKS = K.puback | K.pubrec | K.pubrel | K.pubcomp;
const MESSAGE = K.publish | K.will;

/** One row of the property table. */
export interface PropertyDef {
  /** Property identifier. */
  readonly id: number;
  /** Field of {@linkcode Properties}. */
  readonly key: keyof Properties;
  /** One of {@linkcode WIRE}. */
  readonly wire: number;
  /** Packets that allow it, as {@linkcode KIND} bits. */
  readonly kinds: number;
  /** Whether it may appear more than once (then the field is an array). */
  readonly multi: boolean;
  /** Set per delivery by the publish frame, not encoded with the message. */
  readonly perDelivery: boolean;
}

function def(
  id: number,
  key: keyof Properties,
  wire: number,
  kinds: number,
  multi = false,
  perDelivery = false,
): PropertyDef {
  return { id, key, wire, kinds, multi, perDelivery };
}

/** Every MQTT 5.0 property. 0x0B has two rows: repeated on PUBLISH, once on SUBSCRIBE. */
export const PROPERTY_TABLE: readonly PropertyDef[] = [
  def(0x01, "payloadFormatIndicator", WIRE.flag, MESSAGE),
  def(0x02, "messageExpiryInterval", WIRE.u32, MESSAGE, false, true),
  def(0x03, "contentType", WIRE.string, MESSAGE),
  def(0x08, "responseTopic", WIRE.string, MESSAGE),
  def(0x09, "correlationData", WIRE.binary, MESSAGE),
  def(0x0b, "subscriptionIdentifiers", WIRE.varint, K.publish, true, true),
  def(0x0b, "subscriptionIdentifier", WIRE.varint, K.subscribe),
  def(0x11, "sessionExpiryInterval", WIRE.u32, K.connect | K.connack | K.disconnect),
  def(0x12, "assignedClientIdentifier", WIRE.string, K.connack),
  def(0x13, "serverKeepAlive", WIRE.u16, K.connack),
  def(0x15, "authenticationMethod", WIRE.string, K.connect | K.connack | K.auth),
  def(0x16, "authenticationData", WIRE.binary, K.connect | K.connack | K.auth),
  def(0x17, "requestProblemInformation", WIRE.flag, K.connect),
  def(0x18, "willDelayInterval", WIRE.u32, K.will),
  def(0x19, "requestResponseInformation", WIRE.flag, K.connect),
  def(0x1a, "responseInformation", WIRE.string, K.connack),
  def(0x1c, "serverReference", WIRE.string, K.connack | K.disconnect),
  def(
    0x1f,
    "reasonString",
    WIRE.string,
    K.connack | ACKS | K.suback | K.unsuback | K.disconnect | K.auth,
  ),
  def(0x21, "receiveMaximum", WIRE.u16, K.connect | K.connack),
  def(0x22, "topicAliasMaximum", WIRE.u16, K.connect | K.connack),
  def(0x23, "topicAlias", WIRE.u16, K.publish, false, true),
  def(0x24, "maximumQos", WIRE.byte, K.connack),
  def(0x25, "retainAvailable", WIRE.flag, K.connack),
  def(
    0x26,
    "userProperties",
    WIRE.pair,
    K.connect | K.connack | MESSAGE | ACKS | K.subscribe | K.suback | K.unsubscribe |
      K.unsuback | K.disconnect | K.auth,
    true,
  ),
  def(0x27, "maximumPacketSize", WIRE.u32, K.connect | K.connack),
  def(0x28, "wildcardSubscriptionAvailable", WIRE.flag, K.connack),
  def(0x29, "subscriptionIdentifierAvailable", WIRE.flag, K.connack),
  def(0x2a, "sharedSubscriptionAvailable", WIRE.flag, K.connack),
];

/** Rows by identifier (one or two each). */
const BY_ID: (PropertyDef[] | undefined)[] = [];
for (const row of PROPERTY_TABLE) (BY_ID[row.id] ??= []).push(row);

function hex(n: number): string {
  return `0x${n.toString(16).padStart(2, "0").toUpperCase()}`;
}

function protocolError(message: string, specRef = ""): DecodeError {
  return new DecodeError(`Cannot decode packet: ${message}`, specRef, REASON.protocolError);
}

/**
 * Reads a property block (its Variable Byte Integer length and the properties) of a packet of
 * `kind`. Returns `undefined`, allocating nothing, when the block is empty.
 *
 * @throws {DecodeError} 0x81 for an unknown identifier, a property the packet does not allow
 * (2.2.2.2) or a block that does not parse; 0x82 for a repeated once-only property or a value out
 * of its range.
 */
export function readProperties(
  r: Reader,
  kind: number,
  packetName: string,
): Properties | undefined {
  const length = r.varint("property length");
  if (length === 0) return undefined;
  const end = r.pos + length;
  // A property block longer than what is left of the packet is malformed.
  if (end > r.end) throw truncated("properties");
  const outerEnd = r.end;
  r.end = end;
  const props: Record<string, unknown> = {};
  let seenLow = 0;
  let seenHigh = 0;
  while (r.pos < end) {
    const id = r.buf[r.pos++];
    const rows = BY_ID[id];
    if (rows === undefined) {
      throw new DecodeError(`Cannot decode packet: unknown property identifier ${hex(id)}`);
    }
    let row = rows[0];
    if ((row.kinds & kind) === 0) {
      const other = rows[1];
      if (other === undefined || (other.kinds & kind) === 0) {
        // 2.2.2.2: "an Identifier which is not valid for its packet type ... is a Malformed Packet"
        throw new DecodeError(
          `Cannot decode packet: property ${row.key} (${hex(id)}) is not allowed in ${packetName}`,
        );
      }
      row = other;
    }
    if (!row.multi) {
      // "It is a Protocol Error to include the <property> more than once" (section 3.x.2.x)
      const bit = 1 << (id & 31);
      if (id < 32) {
        if ((seenLow & bit) !== 0) throw duplicate(row, packetName);
        seenLow |= bit;
      } else {
        if ((seenHigh & bit) !== 0) throw duplicate(row, packetName);
        seenHigh |= bit;
      }
    }
    let value: unknown;
    switch (row.wire) {
      case WIRE.byte:
      case WIRE.flag: {
        const b = r.u8(row.key);
        // Every byte property is 0 or 1: flags, Payload Format Indicator and Maximum QoS
        if (b > 1) throw protocolError(`property ${row.key} has value ${b}, not 0 or 1`);
        value = row.wire === WIRE.flag ? b === 1 : b;
        break;
      }
      case WIRE.u16: {
        const n = r.u16(row.key);
        if (n === 0) {
          if (id === 0x23) {
            // [MQTT-3.3.2-8] a Topic Alias of 0 is not permitted
            throw new DecodeError(
              "Cannot decode packet: Topic Alias 0",
              "[MQTT-3.3.2-8]",
              REASON.topicAliasInvalid,
            );
          }
          // Receive Maximum 0 is a Protocol Error (3.1.2.11.3, 3.2.2.3.3)
          if (id === 0x21) throw protocolError("Receive Maximum 0");
        }
        value = n;
        break;
      }
      case WIRE.u32: {
        const n = r.u32(row.key);
        // Maximum Packet Size 0 is a Protocol Error (3.1.2.11.4, 3.2.2.3.6)
        if (n === 0 && id === 0x27) throw protocolError("Maximum Packet Size 0");
        value = n;
        break;
      }
      case WIRE.varint: {
        const n = r.varint(row.key);
        // Subscription Identifier 0 is a Protocol Error (3.3.2.3.8, 3.8.2.1.2); the 4-byte
        // encoding caps it at 268 435 455
        if (n === 0) throw protocolError("Subscription Identifier 0");
        value = n;
        break;
      }
      case WIRE.string: {
        const s = r.string(row.key);
        // [MQTT-3.3.2-14] the Response Topic is a topic name: no wildcards, not empty [MQTT-4.7.3-1]
        if (id === 0x08) {
          if (s.length === 0) throw protocolError("empty Response Topic", "[MQTT-4.7.3-1]");
          if (s.indexOf("+") !== -1 || s.indexOf("#") !== -1) {
            throw protocolError("Response Topic with a wildcard", "[MQTT-3.3.2-14]");
          }
        }
        value = s;
        break;
      }
      case WIRE.binary:
        value = r.bytes(row.key);
        break;
      default: {
        // [MQTT-1.5.7-1] both strings of a pair follow the UTF-8 string rules
        const name = r.string("user property name");
        value = [name, r.string("user property value")];
      }
    }
    if (row.multi) {
      const list = props[row.key] as unknown[] | undefined;
      if (list === undefined) props[row.key] = [value];
      else list.push(value);
    } else {
      props[row.key] = value;
    }
  }
  r.end = outerEnd;
  // Authentication Data without an Authentication Method is a Protocol Error (3.1.2.11.10)
  if (props.authenticationData !== undefined && props.authenticationMethod === undefined) {
    throw protocolError("Authentication Data without Authentication Method");
  }
  return props as Properties;
}

function duplicate(row: PropertyDef, packetName: string): DecodeError {
  return protocolError(`property ${row.key} appears twice in ${packetName}`);
}

/**
 * Bytes of the property block content for `props` in a packet of `kind` (without the length
 * prefix). `perDelivery` false leaves out what a publish frame adds per delivery.
 *
 * @throws {TypeError} for a property the packet does not allow or a value out of its range.
 */
export function propertiesLength(
  props: Properties | undefined,
  kind: number,
  packetName: string,
  perDelivery = true,
): number {
  if (props === undefined) return 0;
  const p = props as Record<string, unknown>;
  let n = 0;
  for (const row of PROPERTY_TABLE) {
    const v = p[row.key];
    if (v === undefined || (!perDelivery && row.perDelivery)) continue;
    if ((row.kinds & kind) === 0) {
      throw new TypeError(
        `Cannot encode packet: property ${row.key} is not allowed in ${packetName}`,
      );
    }
    if (row.multi) {
      if (!Array.isArray(v)) throw badValue(row, v);
      for (const item of v) n += 1 + valueLength(row, item);
    } else {
      n += 1 + valueLength(row, v);
    }
  }
  return n;
}

function badValue(row: PropertyDef, v: unknown): TypeError {
  return new TypeError(`Cannot encode packet: property ${row.key} has a bad value ${String(v)}`);
}

function stringLength(row: PropertyDef, s: unknown): number {
  if (typeof s !== "string") throw badValue(row, s);
  const n = utf8Length(s);
  if (n > MAX_FIELD_LENGTH) throw badValue(row, `of ${n} bytes`);
  return n;
}

function valueLength(row: PropertyDef, v: unknown): number {
  switch (row.wire) {
    case WIRE.byte:
      if (v !== 0 && v !== 1) throw badValue(row, v);
      return 1;
    case WIRE.flag:
      if (typeof v !== "boolean") throw badValue(row, v);
      return 1;
    case WIRE.u16:
      if (!Number.isInteger(v) || (v as number) < 1 || (v as number) > 0xffff) {
        // 0 is allowed only for Server Keep Alive and Topic Alias Maximum
        if (!(v === 0 && (row.id === 0x13 || row.id === 0x22))) throw badValue(row, v);
      }
      return 2;
    case WIRE.u32:
      if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > 0xffff_ffff) {
        throw badValue(row, v);
      }
      if (v === 0 && row.id === 0x27) throw badValue(row, v);
      return 4;
    case WIRE.varint:
      if (!Number.isInteger(v) || (v as number) < 1 || (v as number) > MAX_VARINT) {
        throw badValue(row, v);
      }
      return varintLength(v as number);
    case WIRE.string:
      return 2 + stringLength(row, v);
    case WIRE.binary:
      if (!(v instanceof Uint8Array) || v.length > MAX_FIELD_LENGTH) throw badValue(row, v);
      return 2 + v.length;
    default: {
      if (!Array.isArray(v) || v.length !== 2) throw badValue(row, v);
      return 4 + stringLength(row, v[0]) + stringLength(row, v[1]);
    }
  }
}

/**
 * Writes the property block content (no length prefix) at `out[pos]`; `propertiesLength` with the
 * same arguments must have been called first (it validates). Returns the position after it.
 */
export function writeProperties(
  out: Uint8Array,
  pos: number,
  props: Properties | undefined,
  perDelivery = true,
): number {
  if (props === undefined) return pos;
  const p = props as Record<string, unknown>;
  for (const row of PROPERTY_TABLE) {
    const v = p[row.key];
    if (v === undefined || (!perDelivery && row.perDelivery)) continue;
    if (row.multi) {
      for (const item of v as unknown[]) pos = writeValue(out, pos, row, item);
    } else {
      pos = writeValue(out, pos, row, v);
    }
  }
  return pos;
}

function writeString(out: Uint8Array, pos: number, s: string): number {
  const n = utf8Length(s);
  out[pos] = n >> 8;
  out[pos + 1] = n & 0xff;
  return writeUtf8(s, n, out, pos + 2);
}

function writeValue(out: Uint8Array, pos: number, row: PropertyDef, v: unknown): number {
  out[pos++] = row.id;
  switch (row.wire) {
    case WIRE.byte:
      out[pos] = v as number;
      return pos + 1;
    case WIRE.flag:
      out[pos] = v ? 1 : 0;
      return pos + 1;
    case WIRE.u16:
      out[pos] = (v as number) >> 8;
      out[pos + 1] = (v as number) & 0xff;
      return pos + 2;
    case WIRE.u32:
      return writeU32(out, pos, v as number);
    case WIRE.varint:
      return writeVarint(out, pos, v as number);
    case WIRE.string:
      return writeString(out, pos, v as string);
    case WIRE.binary: {
      const b = v as Uint8Array;
      out[pos] = b.length >> 8;
      out[pos + 1] = b.length & 0xff;
      out.set(b, pos + 2);
      return pos + 2 + b.length;
    }
    default: {
      const [name, value] = v as [string, string];
      return writeString(out, writeString(out, pos, name), value);
    }
  }
}
