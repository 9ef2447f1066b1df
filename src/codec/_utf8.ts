/**
 * UTF-8 helpers shared by the decoder and the encoder (private to the codec).
 *
 * MQTT strings must be well-formed UTF-8 without U+0000 [MQTT-1.5.3-1] [MQTT-1.5.3-2], and a
 * leading U+FEFF must be kept as is [MQTT-1.5.3-3], hence `ignoreBOM`. MQTT 5.0 has the same
 * rules under [MQTT-1.5.4-1] [MQTT-1.5.4-2] [MQTT-1.5.4-3].
 *
 * @module
 */

import { DecodeError } from "./packet.ts";

// `fatal` rejects ill-formed sequences, overlongs and encoded surrogates (ED A0..BF xx).
const FATAL_DECODER = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const ENCODER = new TextEncoder();

/** Up to this many bytes, an all-ASCII string is built with String.fromCharCode (measured faster). */
const ASCII_FAST_PATH_MAX = 64;

/**
 * Decodes the MQTT string in `buf[start, end)`; `v5` picks the MQTT 5.0 spec tags.
 *
 * @throws {DecodeError} on ill-formed UTF-8 [MQTT-1.5.3-1] or U+0000 [MQTT-1.5.3-2].
 */
export function decodeUtf8(buf: Uint8Array, start: number, end: number, v5 = false): string {
  if (end - start <= ASCII_FAST_PATH_MAX) {
    let i = start;
    for (; i < end; i++) {
      const c = buf[i];
      if (c >= 0x80) break;
      if (c === 0) throw nulError(v5);
    }
    if (i === end) {
      return String.fromCharCode.apply(null, buf.subarray(start, end) as unknown as number[]);
    }
  }
  let s: string;
  try {
    s = FATAL_DECODER.decode(buf.subarray(start, end));
  } catch {
    throw new DecodeError(
      "Cannot decode packet: string is not well-formed UTF-8",
      v5 ? "[MQTT-1.5.4-1]" : "[MQTT-1.5.3-1]",
    );
  }
  if (s.indexOf("\0") !== -1) throw nulError(v5);
  return s;
}

/**
 * Whether `bytes` are well-formed UTF-8 without U+0000: what a PUBLISH with Payload Format
 * Indicator 1 promises (5.0 section 3.3.2.3.2; a receiver may answer 0x99 otherwise).
 */
export function isUtf8(bytes: Uint8Array): boolean {
  let i = 0;
  const n = bytes.length;
  for (; i < n; i++) {
    const c = bytes[i];
    if (c === 0) return false;
    if (c >= 0x80) break;
  }
  if (i === n) return true;
  try {
    return FATAL_DECODER.decode(bytes.subarray(i)).indexOf("\0") === -1;
  } catch {
    return false;
  }
}

function nulError(v5: boolean): DecodeError {
  return new DecodeError(
    "Cannot decode packet: string contains U+0000",
    v5 ? "[MQTT-1.5.4-2]" : "[MQTT-1.5.3-2]",
  );
}

/**
 * Number of UTF-8 bytes of `s`; equals `s.length` exactly when `s` is all ASCII.
 *
 * @throws {TypeError} when `s` holds a lone surrogate [MQTT-1.5.3-1] or U+0000 [MQTT-1.5.3-2]:
 * the peer would have to close the connection, so such a string is not encodable.
 */
export function utf8Length(s: string): number {
  const n = s.length;
  let bytes = n;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) {
      if (c === 0) throw new TypeError("Cannot encode string: it contains U+0000");
      continue;
    }
    if (c < 0x800) {
      bytes += 1;
    } else if (c >= 0xd800 && c <= 0xdfff) {
      const d = i + 1 < n ? s.charCodeAt(i + 1) : 0;
      if (c > 0xdbff || d < 0xdc00 || d > 0xdfff) {
        throw new TypeError("Cannot encode string: it contains a lone surrogate");
      }
      bytes += 2; // the pair is 2 UTF-16 units and 4 UTF-8 bytes
      i++;
    } else {
      bytes += 2;
    }
  }
  return bytes;
}

/**
 * Writes `s`, whose UTF-8 length `byteLength` came from {@linkcode utf8Length}, at `out[pos]`.
 * Returns the position after it.
 */
export function writeUtf8(s: string, byteLength: number, out: Uint8Array, pos: number): number {
  const n = s.length;
  if (byteLength === n) {
    for (let i = 0; i < n; i++) out[pos + i] = s.charCodeAt(i);
  } else {
    ENCODER.encodeInto(s, out.subarray(pos, pos + byteLength));
  }
  return pos + byteLength;
}
