/**
 * An application message as the broker routes it, with its 3.1.1 PUBLISH encodings made once and
 * shared by every subscriber that receives it at the same QoS. 5.0 deliveries are framed per
 * delivery by the connection (subscription identifiers, remaining expiry).
 *
 * @module
 */
import { encodePublish, PublishFrame, utf8Length } from "./codec/encoder.ts";
import type { Properties, QoS } from "./codec/packet.ts";

/**
 * The properties of a PUBLISH that travel with the message to every subscriber unchanged
 * [MQTT-3.3.2-15..20]: payload format, content type, response topic, correlation data and user
 * properties (in order). Topic alias, subscription identifiers and the expiry interval are per
 * delivery, not part of it.
 */
export type MessageProperties = Pick<
  Properties,
  | "payloadFormatIndicator"
  | "contentType"
  | "responseTopic"
  | "correlationData"
  | "userProperties"
>;

/** Keeps only the properties a message carries to subscribers; undefined when there are none. */
export function forwardedProperties(
  properties: Properties | undefined,
): MessageProperties | undefined {
  if (properties === undefined) return undefined;
  const { payloadFormatIndicator, contentType, responseTopic, correlationData, userProperties } =
    properties;
  if (
    payloadFormatIndicator === undefined && contentType === undefined &&
    responseTopic === undefined && correlationData === undefined && userProperties === undefined
  ) return undefined;
  const out: MessageProperties = {};
  if (payloadFormatIndicator !== undefined) out.payloadFormatIndicator = payloadFormatIndicator;
  if (contentType !== undefined) out.contentType = contentType;
  if (responseTopic !== undefined) out.responseTopic = responseTopic;
  if (correlationData !== undefined) out.correlationData = correlationData;
  if (userProperties !== undefined) out.userProperties = userProperties;
  return out;
}

/**
 * A message on its way through the broker.
 *
 * A client's PUBLISH arrives with its payload lent: a view of the connection's read buffer, good
 * until that connection reads again (see {@linkcode Message.lend}). Whatever keeps the message
 * past that, or hands its payload to a write that has not happened yet, calls
 * {@linkcode Message.own} first: a queue, an in-flight window, the retained store, the store, the
 * cluster, event listeners, a write of the payload as it is. A message dropped by every
 * subscriber is then never copied.
 */
export class Message {
  readonly topic: string;
  /** The application payload; read only. */
  payload: Uint8Array;
  readonly qos: QoS;
  readonly retain: boolean;
  /** 5.0 properties forwarded to subscribers; undefined for a 3.1.1 publisher's message. */
  properties: MessageProperties | undefined;
  /** Epoch ms at which the message expires (5.0 Message Expiry Interval); 0 = never. */
  expiresAt: number;
  /** Client id of the publisher, for No Local; undefined for the broker's own messages. */
  origin: string | undefined;
  #forwarded: (Uint8Array | undefined)[] = [undefined, undefined, undefined];
  #retained: (Uint8Array | undefined)[] | undefined;
  #frame: PublishFrame | undefined;
  // Counted on first use: queue and retained accounting ask for it on the way in and out.
  #size = -1;
  #lent = false;

  constructor(
    topic: string,
    payload: Uint8Array,
    qos: QoS,
    retain: boolean,
    properties?: MessageProperties,
    expiresAt = 0,
    origin?: string,
  ) {
    this.topic = topic;
    this.payload = payload;
    this.qos = qos;
    this.retain = retain;
    this.properties = properties;
    this.expiresAt = expiresAt;
    this.origin = origin;
  }

  /**
   * Topic (UTF-8) and payload bytes: what the queue and retained limits count. Topics reach a
   * Message validated, so the count never throws.
   */
  get size(): number {
    if (this.#size < 0) this.#size = utf8Length(this.topic) + this.payload.length;
    return this.#size;
  }

  /** Whether the Message Expiry Interval has passed at `now` (epoch ms). */
  isExpired(now: number): boolean {
    return this.expiresAt !== 0 && this.expiresAt <= now;
  }

  /**
   * Seconds left of the Message Expiry Interval at `now`, rounded up, for the copy sent on
   * [MQTT-3.3.2-6]; undefined when the message does not expire.
   */
  remainingExpiryS(now: number): number | undefined {
    if (this.expiresAt === 0) return undefined;
    return Math.max(0, Math.ceil((this.expiresAt - now) / 1000));
  }

  /**
   * Marks the payload as a view of a read buffer that its connection overwrites at its next read.
   * Returns the message.
   */
  lend(): this {
    this.#lent = true;
    return this;
  }

  /** Makes the payload a copy of its own if it is lent; a no-op otherwise. */
  own(): void {
    if (this.#lent) {
      this.#lent = false;
      this.payload = this.payload.slice();
    }
  }

  /** Topic, payload and properties encoded once, framed per 5.0 delivery by the connection. */
  frame(): PublishFrame {
    if (this.#frame === undefined) {
      this.own();
      this.#frame = new PublishFrame(this.topic, this.payload, this.properties);
    }
    return this.#frame;
  }

  /**
   * The 3.1.1 PUBLISH bytes at `qos` with DUP 0, retain 0 (forwarded) or 1 (sent from the retained
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
