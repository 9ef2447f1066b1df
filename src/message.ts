/**
 * An application message as the broker routes it, with its PUBLISH encodings made once and
 * shared by every subscriber that receives it at the same QoS.
 *
 * @module
 */
import { encodePublish, utf8Length } from "./codec/encoder.ts";
import type { QoS } from "./codec/packet.ts";

/** A message on its way through the broker. */
export class Message {
  readonly topic: string;
  readonly payload: Uint8Array;
  readonly qos: QoS;
  readonly retain: boolean;
  #forwarded: (Uint8Array | undefined)[] = [undefined, undefined, undefined];
  #retained: (Uint8Array | undefined)[] | undefined;
  // Counted on first use: queue and retained accounting ask for it on the way in and out.
  #size = -1;

  constructor(topic: string, payload: Uint8Array, qos: QoS, retain: boolean) {
    this.topic = topic;
    this.payload = payload;
    this.qos = qos;
    this.retain = retain;
  }

  /**
   * Topic (UTF-8) and payload bytes: what the queue and retained limits count. Topics reach a
   * Message validated, so the count never throws.
   */
  get size(): number {
    if (this.#size < 0) this.#size = utf8Length(this.topic) + this.payload.length;
    return this.#size;
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
