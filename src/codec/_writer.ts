/**
 * The field writer and size helpers shared by the 3.1.1 and 5.0 encoders (private to the codec).
 *
 * @module
 */

import { utf8Length, writeUtf8 } from "./_utf8.ts";

/** Largest remaining length (and Variable Byte Integer) the 4-byte encoding can carry. */
export const MAX_VARINT = 268_435_455;
/** Largest string or binary field (2-byte length prefix). */
export const MAX_FIELD_LENGTH = 65_535;

/** Writes one packet into a buffer sized up front from its remaining length. */
export class Writer {
  readonly out: Uint8Array;
  pos: number;

  constructor(firstByte: number, remaining: number) {
    this.out = new Uint8Array(1 + varintLength(remaining) + remaining);
    this.out[0] = firstByte;
    this.pos = writeVarint(this.out, 1, remaining);
  }

  u8(n: number): void {
    this.out[this.pos++] = n;
  }

  u16(n: number): void {
    this.out[this.pos++] = n >> 8;
    this.out[this.pos++] = n & 0xff;
  }

  u32(n: number): void {
    this.pos = writeU32(this.out, this.pos, n);
  }

  varint(n: number): void {
    this.pos = writeVarint(this.out, this.pos, n);
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

/**
 * Bytes of the Variable Byte Integer for `n` (the remaining length is one).
 *
 * @throws {TypeError} when `n` exceeds 268 435 455.
 */
export function varintLength(n: number): number {
  if (n < 128) return 1;
  if (n < 16_384) return 2;
  if (n < 2_097_152) return 3;
  if (n <= MAX_VARINT) return 4;
  throw new TypeError(`Cannot encode packet: remaining length ${n} exceeds ${MAX_VARINT}`);
}

/** Writes `n` as a Variable Byte Integer at `out[pos]`; returns the position after it. */
export function writeVarint(out: Uint8Array, pos: number, n: number): number {
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out[pos++] = b;
  } while (n > 0);
  return pos;
}

/** Writes `n` as a big-endian Four Byte Integer at `out[pos]`; returns the position after it. */
export function writeU32(out: Uint8Array, pos: number, n: number): number {
  out[pos] = n >>> 24;
  out[pos + 1] = (n >>> 16) & 0xff;
  out[pos + 2] = (n >>> 8) & 0xff;
  out[pos + 3] = n & 0xff;
  return pos + 4;
}

/** UTF-8 length of a string field, checked against 65 535. */
export function fieldLength(s: string): number {
  const n = utf8Length(s);
  if (n > MAX_FIELD_LENGTH) {
    throw new TypeError(`Cannot encode packet: string of ${n} bytes exceeds 65535`);
  }
  return n;
}

/** Length of a binary field, checked against 65 535. */
export function binaryLength(b: Uint8Array): number {
  if (b.length > MAX_FIELD_LENGTH) {
    throw new TypeError(`Cannot encode packet: binary field of ${b.length} bytes exceeds 65535`);
  }
  return b.length;
}

/** @throws {TypeError} unless `id` is an integer in 0..65535. */
export function checkPacketId(id: number): void {
  if (!Number.isInteger(id) || id < 0 || id > 0xffff) {
    throw new TypeError(`Cannot encode packet: packet identifier must be in 0..65535, got ${id}`);
  }
}

/** @throws {TypeError} unless `n` is an integer in 0..65535. */
export function checkUint16(n: number, what: string): void {
  if (!Number.isInteger(n) || n < 0 || n > 0xffff) {
    throw new TypeError(`Cannot encode packet: ${what} must be in 0..65535, got ${n}`);
  }
}

/** @throws {TypeError} unless `n` is an integer in 0..255. */
export function checkByte(n: number, what: string): void {
  if (!Number.isInteger(n) || n < 0 || n > 0xff) {
    throw new TypeError(`Cannot encode packet: ${what} must be in 0..255, got ${n}`);
  }
}

/** @throws {TypeError} unless `n` is an integer in 0..2^32-1. */
export function checkUint32(n: number, what: string): void {
  if (!Number.isInteger(n) || n < 0 || n > 0xffff_ffff) {
    throw new TypeError(`Cannot encode packet: ${what} must be in 0..4294967295, got ${n}`);
  }
}
