/**
 * An application message as the broker routes it, with its PUBLISH encodings made once and
 * shared by every subscriber that receives it at the same QoS.
 *
 * @module
 */
import { encodePublish } from "./codec/encoder.ts";
import type { QoS } from "./codec/packet.ts";

/** UTF-8 length of a string without encoding it (a lone surrogate counts as 3, as it encodes). */
export function utf8Length(text: string): number {
  let bytes = text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) bytes += 1;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 2; // the pair is 2 UTF-16 units, 4 UTF-8 bytes
        i++;
      } else bytes += 2;
    } else bytes += 2;
  }
  return bytes;
}

/** A message on its way through the broker. */
export class Message {
  readonly topic: string;
  readonly payload: Uint8Array;
  readonly qos: QoS;
  readonly retain: boolean;
  #forwarded: (Uint8Array | undefined)[] = [undefined, undefined, undefined];
  #retained: (Uint8Array | undefined)[] | undefined;

  constructor(topic: string, payload: Uint8Array, qos: QoS, retain: boolean) {
    this.topic = topic;
    this.payload = payload;
    this.qos = qos;
    this.retain = retain;
  }

  /** Topic (UTF-8) and payload bytes: what the queue and retained limits count. */
  get size(): number {
    return utf8Length(this.topic) + this.payload.length;
  }

  /**
   * The PUBLISH bytes at `qos` with DUP 0, retain 0 (forwarded) or 1 (sent from the retained
   * store). For QoS > 0 a placeholder packet id (1) sits at `length - payload.length - 2`; the
   * connection writes the real id into its own copy.
   */
  encoded(qos: QoS, retain: boolean): Uint8Array {
    const cache = retain ? (this.#retained ??= [undefined, undefined, undefined]) : this.#forwarded;
    return cache[qos] ??= encodePublish(
      this.topic,
      this.payload,
      qos,
      retain,
      false,
      qos ? 1 : undefined,
    );
  }
}
