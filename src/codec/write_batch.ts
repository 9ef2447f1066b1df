/**
 * A batch of outgoing packets gathered into one write. Packets already encoded are queued as they
 * are; a PUBLISH is queued as its {@linkcode PublishFrame} and delivery fields, and its header is
 * written straight into the batch's buffer when the batch is taken. So a connection can queue
 * deliveries of shared messages without allocating per delivery and without knowing where in a
 * PUBLISH the packet identifier sits. Pure: no I/O.
 *
 * @module
 */

import type { ProtocolVersion, QoS } from "./packet.ts";
import type { PublishDelivery, PublishFrame } from "./publish_frame.ts";

const NONE: never[] = [];

/**
 * Outgoing packets of one connection, taken as one buffer per write.
 *
 * @example One ack and two deliveries of a message, in one write
 * ```ts
 * import { WriteBatch } from "./write_batch.ts";
 * import { encodeAck, PublishFrame } from "./encoder.ts";
 * import assert from "node:assert/strict";
 *
 * const frame = new PublishFrame("t", new Uint8Array([9]));
 * const batch = new WriteBatch();
 * batch.push(encodeAck("puback", 1));
 * batch.pushPublish(frame, 4, 1, false, false, 7);
 * batch.pushPublish(frame, 4, 0, false, false, 0);
 * assert.equal(batch.byteLength, 4 + 8 + 6);
 * const bytes = batch.take();
 * assert.deepEqual([...bytes.subarray(4, 12)], [0x32, 6, 0, 1, 0x74, 0, 7, 9]);
 * assert.equal(batch.byteLength, 0);
 * ```
 */
export class WriteBatch {
  /** Encoded packets, or frames whose header is written at `take()`. */
  #items: (Uint8Array | PublishFrame)[] = NONE;
  /** Per item: 0 for encoded bytes, else `1 + version * 4 + qos` … packed with the flags below. */
  #codes: number[] = NONE;
  #deliveries: (PublishDelivery | undefined)[] = NONE;
  /** A lone encoded packet, the usual case on a quiet connection: no arrays at all. */
  #single: Uint8Array | undefined = undefined;
  #byteLength = 0;

  /** Bytes that `take()` returns. */
  get byteLength(): number {
    return this.#byteLength;
  }

  /** Queues encoded bytes (kept by reference: do not change them until taken). */
  push(bytes: Uint8Array): void {
    if (this.#single === undefined && this.#items === NONE) {
      this.#single = bytes;
    } else {
      this.#grow();
      this.#items.push(bytes);
      this.#codes.push(0);
      this.#deliveries.push(undefined);
    }
    this.#byteLength += bytes.length;
  }

  /**
   * Queues one delivery of `frame`; returns its size in bytes (for a peer's Maximum Packet Size,
   * check `frame.size(...)` before).
   *
   * @throws {TypeError} as {@linkcode PublishFrame.header}, now rather than at `take()`.
   */
  pushPublish(
    frame: PublishFrame,
    version: ProtocolVersion,
    qos: QoS,
    retain: boolean,
    dup: boolean,
    packetId: number,
    delivery?: PublishDelivery,
  ): number {
    const size = frame.size(version, qos, delivery);
    if (qos !== 0 && (!Number.isInteger(packetId) || packetId < 1 || packetId > 0xffff)) {
      throw new TypeError(
        `Cannot encode packet: packet identifier must be in 1..65535, got ${packetId}`,
      );
    }
    this.#grow();
    this.#items.push(frame);
    // packetId (16 bits) | qos (2) | retain (1) | dup (1) | version (3): fits a small integer
    this.#codes.push(
      1 + (qos === 0 ? 0 : packetId) * 128 + qos * 32 + (retain ? 16 : 0) + (dup ? 8 : 0) +
        version,
    );
    this.#deliveries.push(delivery);
    this.#byteLength += size;
    return size;
  }

  /** Returns everything queued as one buffer (a lone encoded packet as is) and empties the batch. */
  take(): Uint8Array {
    const single = this.#single;
    const items = this.#items;
    const codes = this.#codes;
    const deliveries = this.#deliveries;
    const length = this.#byteLength;
    this.#single = undefined;
    this.#items = NONE;
    this.#codes = NONE;
    this.#deliveries = NONE;
    this.#byteLength = 0;
    if (items.length === 0) return single ?? new Uint8Array(0);
    if (items.length === 1 && codes[0] === 0) return items[0] as Uint8Array;
    const out = new Uint8Array(length);
    let pos = 0;
    for (let i = 0; i < items.length; i++) {
      const item = items[i];
      const code = codes[i];
      if (code === 0) {
        const bytes = item as Uint8Array;
        out.set(bytes, pos);
        pos += bytes.length;
        continue;
      }
      const frame = item as PublishFrame;
      const c = code - 1;
      const version = (c & 7) as ProtocolVersion;
      const qos = ((c >> 5) & 3) as QoS;
      pos = frame.writeHeader(
        out,
        pos,
        version,
        qos,
        (c & 16) !== 0,
        (c & 8) !== 0,
        Math.floor(c / 128),
        deliveries[i],
      );
      out.set(frame.payload, pos);
      pos += frame.payload.length;
    }
    return out;
  }

  #grow(): void {
    if (this.#items !== NONE) return;
    this.#items = [];
    this.#codes = [];
    this.#deliveries = [];
    const single = this.#single;
    if (single !== undefined) {
      this.#items.push(single);
      this.#codes.push(0);
      this.#deliveries.push(undefined);
      this.#single = undefined;
    }
  }
}
