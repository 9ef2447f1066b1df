/**
 * The field reader shared by the 3.1.1 and 5.0 packet bodies (private to the codec).
 *
 * @module
 */

import { DecodeError, REASON } from "./packet.ts";
import { decodeUtf8 } from "./_utf8.ts";

/** An empty buffer, so that a reader never keeps a caller's buffer alive. */
export const EMPTY: Uint8Array = new Uint8Array(0);

/** {@linkcode Reader.payloads}: copy the payload. */
export const COPY = 0;
/** {@linkcode Reader.payloads}: a view of the caller's chunk, valid until it is overwritten. */
export const LEND = 1;
/** {@linkcode Reader.payloads}: a view of a buffer the decoder allocated for this packet alone. */
export const KEEP = 2;
/** One of {@linkcode COPY}, {@linkcode LEND}, {@linkcode KEEP}. */
export type PayloadMode = typeof COPY | typeof LEND | typeof KEEP;

/** Cursor over one packet's body; every read is bounds-checked against `end`. */
export class Reader {
  buf: Uint8Array = EMPTY;
  pos = 0;
  end = 0;
  /** Set while a 5.0 body is read: picks the 5.0 spec tags for the shared rules. */
  v5 = false;
  /**
   * How a PUBLISH payload leaves the buffer: COPY (a copy of its own), LEND (a view of the
   * caller's chunk, marked `borrowed`) or KEEP (a view of a buffer that belongs to this packet).
   */
  payloads: PayloadMode = COPY;

  /** The PUBLISH payload `buf[pos, end)`, as `payloads` says. */
  payload(end: number): Uint8Array {
    return this.payloads === COPY
      ? this.buf.slice(this.pos, end)
      : this.buf.subarray(this.pos, end);
  }

  u8(what: string): number {
    if (this.pos >= this.end) throw truncated(what);
    return this.buf[this.pos++];
  }

  u16(what: string): number {
    const p = this.pos;
    if (p + 2 > this.end) throw truncated(what);
    this.pos = p + 2;
    return (this.buf[p] << 8) | this.buf[p + 1];
  }

  u32(what: string): number {
    const p = this.pos;
    if (p + 4 > this.end) throw truncated(what);
    this.pos = p + 4;
    const b = this.buf;
    return ((b[p] << 24) >>> 0) + ((b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]);
  }

  /** A Variable Byte Integer (1..4 bytes, 0..268 435 455). */
  varint(what: string): number {
    let value = 0;
    let multiplier = 1;
    for (let i = 0; i < 4; i++) {
      if (this.pos >= this.end) throw truncated(what);
      const b = this.buf[this.pos++];
      value += (b & 0x7f) * multiplier;
      if ((b & 0x80) === 0) {
        // [MQTT-1.5.5-1] the encoding uses the fewest bytes: a last byte of 0 after others is not
        if (b === 0 && i > 0) {
          throw new DecodeError(
            `Cannot decode packet: ${what} is not in its shortest encoding`,
            "[MQTT-1.5.5-1]",
          );
        }
        return value;
      }
      multiplier *= 128;
    }
    throw new DecodeError(`Cannot decode packet: ${what} exceeds 4 bytes`);
  }

  packetId(): number {
    const id = this.u16("packet identifier");
    if (id === 0) {
      // [MQTT-2.3.1-1] (3.1.1) [MQTT-2.2.1-3] (5.0) a packet identifier is non-zero; it parses,
      // so 5.0 calls it a protocol error (as mosquitto answers it)
      throw new DecodeError(
        "Cannot decode packet: packet identifier 0",
        this.v5 ? "[MQTT-2.2.1-3]" : "[MQTT-2.3.1-1]",
        this.v5 ? REASON.protocolError : REASON.malformedPacket,
      );
    }
    return id;
  }

  string(what: string): string {
    const len = this.u16(what);
    const p = this.pos;
    if (p + len > this.end) throw truncated(what);
    this.pos = p + len;
    return decodeUtf8(this.buf, p, p + len, this.v5);
  }

  bytes(what: string): Uint8Array {
    const len = this.u16(what);
    const p = this.pos;
    if (p + len > this.end) throw truncated(what);
    this.pos = p + len;
    return this.buf.slice(p, p + len);
  }
}

/** One reader for every decoder: decoding is synchronous and never re-entered, and a reader per
 * connection would cost memory on every idle client. */
export const READER: Reader = new Reader();

/** The error for a field that runs past the end of its packet (or property block). */
export function truncated(what: string): DecodeError {
  return new DecodeError(`Cannot decode packet: truncated ${what}`);
}
