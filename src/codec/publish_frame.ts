/**
 * Per-delivery PUBLISH encoding: what a message has in common across its deliveries (topic,
 * payload, its own 5.0 properties) is encoded once; what differs per delivery (packet identifier,
 * QoS, DUP, RETAIN and, in 5.0, subscription identifiers, topic alias and the remaining message
 * expiry) goes into a small header. The caller writes the header, then the payload; it needs no
 * knowledge of the byte layout.
 *
 * @module
 */

import type { Properties, ProtocolVersion, QoS } from "./packet.ts";
import { KIND, propertiesLength, writeProperties } from "./_properties.ts";
import { utf8Length, writeUtf8 } from "./_utf8.ts";
import { MAX_FIELD_LENGTH, MAX_VARINT, varintLength, writeU32, writeVarint } from "./_writer.ts";

/** What one 5.0 delivery of a message adds to its PUBLISH; ignored by 3.1.1. */
export interface PublishDelivery {
  /** Identifiers of the subscriptions the message matched, each 1..268 435 455 [MQTT-3.3.4-3]. */
  subscriptionIdentifiers?: readonly number[];
  /** Topic alias for this connection, 1..the client's Topic Alias Maximum [MQTT-3.3.2-11]. */
  topicAlias?: number;
  /** The alias is already known to the client: send an empty topic name (needs `topicAlias`). */
  omitTopic?: boolean;
  /**
   * Remaining Message Expiry Interval in seconds [MQTT-3.3.2-6]; without it, the message's own
   * `messageExpiryInterval` (if any) is sent.
   */
  messageExpiryInterval?: number;
}

const EMPTY = new Uint8Array(0);

function checkId(packetId: number): void {
  if (!Number.isInteger(packetId) || packetId < 1 || packetId > 0xffff) {
    throw new TypeError(
      `Cannot encode packet: packet identifier must be in 1..65535, got ${packetId}`,
    );
  }
}

/**
 * A message's PUBLISH, encoded once and framed per delivery.
 *
 * @example Two deliveries of one message, at QoS 1 and QoS 0
 * ```ts
 * import { PublishFrame } from "./publish_frame.ts";
 * import assert from "node:assert/strict";
 *
 * const frame = new PublishFrame("a/b", new Uint8Array([1, 2]));
 * const header = frame.header(4, 1, false, false, 7);
 * assert.deepEqual([...header], [0x32, 9, 0, 3, 0x61, 0x2f, 0x62, 0, 7]);
 * assert.equal(header.length + frame.payload.length, frame.size(4, 1));
 * assert.equal(frame.header(4, 0, false, false, 0), frame.header(4, 0, false, false, 0)); // cached
 * ```
 */
export class PublishFrame {
  /** Topic name. */
  readonly topic: string;
  /** Application message: the chunk that follows every header. */
  readonly payload: Uint8Array;
  /**
   * The message's own 5.0 properties. `topicAlias` and `subscriptionIdentifiers` in it are ignored
   * (they are per delivery); `messageExpiryInterval` is sent unless a delivery gives its own.
   */
  readonly properties: Properties | undefined;
  readonly #topicBytes: Uint8Array;
  /** The message's 5.0 property block content without the per-delivery ones; built on first use. */
  #static: Uint8Array | undefined = undefined;
  /**
   * 3.1.1 header templates by `qos * 4 + (retain ? 2 : 0) + (dup ? 1 : 0)`, packet identifier 0:
   * a delivery copies one and writes its identifier into the copy's last two bytes.
   */
  #v4: (Uint8Array | undefined)[] | undefined = undefined;
  /** 5.0 QoS 0 headers without delivery (they cannot vary), by `retain ? 1 : 0`. */
  #v5: (Uint8Array | undefined)[] | undefined = undefined;

  /**
   * Encodes the topic (and, on first 5.0 use, the properties) once.
   *
   * @throws {TypeError} when the topic is over 65 535 UTF-8 bytes or holds U+0000 or a lone
   * surrogate, or (on first 5.0 use) when a property cannot be encoded in a PUBLISH.
   */
  constructor(topic: string, payload: Uint8Array, properties?: Properties) {
    const n = utf8Length(topic);
    if (n > MAX_FIELD_LENGTH) {
      throw new TypeError(`Cannot encode packet: topic is ${n} bytes, over 65535`);
    }
    this.topic = topic;
    this.payload = payload;
    this.properties = properties;
    const bytes = new Uint8Array(n);
    writeUtf8(topic, n, bytes, 0);
    this.#topicBytes = bytes;
  }

  /**
   * Size in bytes of the whole PUBLISH of this delivery: what a client's Maximum Packet Size is
   * compared with [MQTT-3.1.2-24].
   */
  size(version: ProtocolVersion, qos: QoS, delivery?: PublishDelivery): number {
    if (version !== 5) return this.#template(qos, false, false).length + this.payload.length;
    const remaining = this.#remaining(version, qos, delivery);
    return 1 + varintLength(remaining) + remaining;
  }

  /** Bytes of the header of this delivery: `size(...) - payload.length`. */
  headerLength(version: ProtocolVersion, qos: QoS, delivery?: PublishDelivery): number {
    return this.size(version, qos, delivery) - this.payload.length;
  }

  /**
   * The header of one delivery: everything before the payload. For QoS 0 (3.1.1) or QoS 0 without
   * `delivery` (5.0) the same bytes are returned every time (shared: never mutate them).
   *
   * @param packetId 1..65535 for QoS 1 and 2; ignored for QoS 0, and so is `dup` [MQTT-3.3.1-2].
   * @throws {TypeError} for a QoS, packet identifier or delivery field out of range, an empty
   * topic name without a topic alias in 5.0, or a packet over 268 435 455 bytes of remaining length.
   */
  header(
    version: ProtocolVersion,
    qos: QoS,
    retain: boolean,
    dup: boolean,
    packetId: number,
    delivery?: PublishDelivery,
  ): Uint8Array {
    if (version !== 5) {
      const template = this.#template(qos, retain, dup);
      if (qos === 0) return template;
      checkId(packetId);
      const out = template.slice();
      out[out.length - 2] = packetId >> 8;
      out[out.length - 1] = packetId & 0xff;
      return out;
    }
    if (qos === 0 && delivery === undefined) {
      const fixed = this.#v5 ??= [undefined, undefined];
      const i = retain ? 1 : 0;
      let h = fixed[i];
      if (h === undefined) {
        h = new Uint8Array(this.headerLength(5, 0));
        this.writeHeader(h, 0, 5, 0, retain, false, 0);
        fixed[i] = h;
      }
      return h;
    }
    const out = new Uint8Array(this.headerLength(version, qos, delivery));
    this.writeHeader(out, 0, version, qos, retain, dup, packetId, delivery);
    return out;
  }

  /**
   * Writes the header of one delivery at `out[pos]` (it takes `headerLength(...)` bytes) and
   * returns the position after it, where the payload goes. For callers that gather a whole write
   * in one buffer.
   *
   * @throws {TypeError} as {@linkcode PublishFrame.header}.
   */
  writeHeader(
    out: Uint8Array,
    pos: number,
    version: ProtocolVersion,
    qos: QoS,
    retain: boolean,
    dup: boolean,
    packetId: number,
    delivery?: PublishDelivery,
  ): number {
    if (version !== 5) {
      const template = this.#template(qos, retain, dup);
      if (qos !== 0) checkId(packetId);
      out.set(template, pos);
      pos += template.length;
      if (qos !== 0) {
        out[pos - 2] = packetId >> 8;
        out[pos - 1] = packetId & 0xff;
      }
      return pos;
    }
    if (qos !== 0 && qos !== 1 && qos !== 2) {
      throw new TypeError(`Cannot encode packet: PUBLISH QoS must be 0, 1 or 2, got ${qos}`);
    }
    if (qos !== 0) checkId(packetId);
    const remaining = this.#remaining(version, qos, delivery);
    // [MQTT-3.3.1-2] DUP is 0 for QoS 0 messages
    out[pos++] = 0x30 | (dup && qos !== 0 ? 8 : 0) | (qos << 1) | (retain ? 1 : 0);
    pos = writeVarint(out, pos, remaining);
    const topic = delivery?.omitTopic === true ? EMPTY : this.#topicBytes;
    const n = topic.length;
    out[pos++] = n >> 8;
    out[pos++] = n & 0xff;
    if (n <= 32) {
      for (let i = 0; i < n; i++) out[pos + i] = topic[i];
    } else {
      out.set(topic, pos);
    }
    pos += n;
    if (qos !== 0) {
      out[pos++] = packetId >> 8;
      out[pos++] = packetId & 0xff;
    }
    const block = this.#static!; // built by #remaining
    pos = writeVarint(out, pos, this.#propertiesLength(delivery));
    out.set(block, pos);
    pos += block.length;
    const expiry = delivery?.messageExpiryInterval ?? this.properties?.messageExpiryInterval;
    if (expiry !== undefined) {
      out[pos++] = 0x02;
      pos = writeU32(out, pos, expiry);
    }
    if (delivery !== undefined) {
      const alias = delivery.topicAlias;
      if (alias !== undefined) {
        out[pos++] = 0x23;
        out[pos++] = alias >> 8;
        out[pos++] = alias & 0xff;
      }
      const ids = delivery.subscriptionIdentifiers;
      if (ids !== undefined) {
        for (let i = 0; i < ids.length; i++) {
          out[pos++] = 0x0b;
          pos = writeVarint(out, pos, ids[i]);
        }
      }
    }
    return pos;
  }

  /** The 3.1.1 header for `qos`, `retain` and `dup` with packet identifier 0, made once. */
  #template(qos: QoS, retain: boolean, dup: boolean): Uint8Array {
    if (qos !== 0 && qos !== 1 && qos !== 2) {
      throw new TypeError(`Cannot encode packet: PUBLISH QoS must be 0, 1 or 2, got ${qos}`);
    }
    // [MQTT-3.3.1-2] DUP is 0 for QoS 0 messages
    const d = dup && qos !== 0;
    const templates = this.#v4 ??= new Array(12).fill(undefined);
    const i = qos * 4 + (retain ? 2 : 0) + (d ? 1 : 0);
    let t = templates[i];
    if (t === undefined) {
      const topic = this.#topicBytes;
      const remaining = this.#remaining(4, qos, undefined);
      t = new Uint8Array(1 + varintLength(remaining) + remaining - this.payload.length);
      t[0] = 0x30 | (d ? 8 : 0) | (qos << 1) | (retain ? 1 : 0);
      let pos = writeVarint(t, 1, remaining);
      t[pos++] = topic.length >> 8;
      t[pos++] = topic.length & 0xff;
      t.set(topic, pos); // the packet identifier, if any, stays 0 here
      templates[i] = t;
    }
    return t;
  }

  #remaining(version: ProtocolVersion, qos: QoS, delivery: PublishDelivery | undefined): number {
    let n = 2 + (qos === 0 ? 0 : 2) + this.payload.length;
    if (version !== 5) return n + this.#topicBytes.length;
    if (delivery?.omitTopic === true) {
      if (delivery.topicAlias === undefined) {
        throw new TypeError("Cannot encode packet: PUBLISH omits its topic without a topic alias");
      }
    } else {
      n += this.#topicBytes.length;
      if (this.#topicBytes.length === 0 && delivery?.topicAlias === undefined) {
        // 3.3.2.1: an empty topic name without a Topic Alias is a Protocol Error
        throw new TypeError("Cannot encode packet: PUBLISH with an empty topic and no topic alias");
      }
    }
    const p = this.#propertiesLength(delivery);
    return n + varintLength(p) + p;
  }

  /** Property block content length of one 5.0 delivery; validates the delivery fields. */
  #propertiesLength(delivery: PublishDelivery | undefined): number {
    let block = this.#static;
    if (block === undefined) {
      const props = this.properties;
      const length = propertiesLength(props, KIND.publish, "PUBLISH", false);
      block = length === 0 ? EMPTY : new Uint8Array(length);
      if (length !== 0) writeProperties(block, 0, props, false);
      this.#static = block;
    }
    let n = block.length;
    const expiry = delivery?.messageExpiryInterval ?? this.properties?.messageExpiryInterval;
    if (expiry !== undefined) {
      if (!Number.isInteger(expiry) || expiry < 0 || expiry > 0xffff_ffff) {
        throw new TypeError(`Cannot encode packet: message expiry interval ${expiry}`);
      }
      n += 5;
    }
    if (delivery !== undefined) {
      const alias = delivery.topicAlias;
      if (alias !== undefined) {
        // [MQTT-3.3.2-8] a topic alias is never 0
        if (!Number.isInteger(alias) || alias < 1 || alias > 0xffff) {
          throw new TypeError(
            `Cannot encode packet: topic alias must be in 1..65535, got ${alias}`,
          );
        }
        n += 3;
      }
      const ids = delivery.subscriptionIdentifiers;
      if (ids !== undefined) {
        for (let i = 0; i < ids.length; i++) {
          const id = ids[i];
          if (!Number.isInteger(id) || id < 1 || id > MAX_VARINT) {
            throw new TypeError(
              `Cannot encode packet: subscription identifier must be in 1..268435455, got ${id}`,
            );
          }
          n += 1 + varintLength(id);
        }
      }
    }
    return n;
  }
}

/**
 * The header of one delivery of `frame` (the same as `frame.header(...)`): write it, then
 * `frame.payload`.
 */
export function encodePublishHeader(
  frame: PublishFrame,
  version: ProtocolVersion,
  qos: QoS,
  retain: boolean,
  dup: boolean,
  packetId: number,
  delivery?: PublishDelivery,
): Uint8Array {
  return frame.header(version, qos, retain, dup, packetId, delivery);
}
