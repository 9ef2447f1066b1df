/**
 * Retained messages, one per topic, bounded by `maxRetained` and `maxRetainedBytes`. A message
 * whose Message Expiry Interval (5.0) has passed is not delivered any more and is removed.
 *
 * @module
 */
import type { Message } from "./message.ts";
import type { Limits } from "./options.ts";
import type { Counters } from "./stats.ts";
import { TopicTree } from "./topic/topic_tree.ts";

/** What happened to a retained PUBLISH. */
export type RetainResult = "stored" | "replaced" | "cleared" | "full" | "none";

/** The retained store. */
export class RetainedStore {
  #tree: TopicTree<Message> = new TopicTree();
  #bytes = 0;
  #limits: Limits;
  #counters: Counters;
  /**
   * Called with each message removed because it expired (not for replaced or cleared ones), so
   * that a durable store can delete it too.
   */
  onExpired: ((message: Message) => void) | undefined = undefined;

  constructor(limits: Limits, counters: Counters) {
    this.#limits = limits;
    this.#counters = counters;
  }

  /** Retained topics held. */
  get size(): number {
    return this.#tree.size;
  }

  /** Topic+payload bytes held. */
  get bytes(): number {
    return this.#bytes;
  }

  /**
   * Stores, replaces or, for an empty payload, clears the retained message of its topic
   * [MQTT-3.3.1-5] [MQTT-3.3.1-10] [MQTT-3.3.1-11]. A new topic past `maxRetained`, or a message
   * that would take the bytes past `maxRetainedBytes`, is not stored and is counted as
   * `retainedFull`; the old value of its topic, if any, stays.
   */
  set(message: Message): RetainResult {
    const previous = this.#tree.get(message.topic);
    if (message.payload.length === 0) {
      if (previous === undefined) return "none";
      this.#tree.delete(message.topic);
      this.#bytes -= previous.size;
      this.#counters.memory.release(previous.size);
      return "cleared";
    }
    const bytes = this.#bytes - (previous?.size ?? 0) + message.size;
    if (
      (previous === undefined && this.#tree.size >= this.#limits.maxRetained) ||
      bytes > this.#limits.maxRetainedBytes
    ) {
      this.#counters.dropped.retainedFull++;
      return "full";
    }
    this.#tree.set(message.topic, message);
    if (bytes >= this.#bytes) this.#counters.memory.charge(bytes - this.#bytes);
    else this.#counters.memory.release(this.#bytes - bytes);
    this.#bytes = bytes;
    return previous === undefined ? "stored" : "replaced";
  }

  /**
   * Calls `visit` for every retained message whose topic matches `filter`. Messages expired at
   * `now` (epoch ms) are not visited, and are removed [MQTT-3.3.2-5]; the subscriber of one that is
   * visited gets its remaining lifetime from `message.remainingExpiryS(now)`.
   */
  match(filter: string, visit: (message: Message) => void, now: number = Date.now()): void {
    let expired: Message[] | undefined;
    this.#tree.matchFilter(filter, (_topic, message) => {
      if (message.expiresAt !== 0 && message.expiresAt <= now) (expired ??= []).push(message);
      else visit(message);
    });
    if (expired !== undefined) { for (const message of expired) this.#expire(message); }
  }

  /** The retained message of one topic, unless it expired at `now` (then it is removed). */
  get(topic: string, now: number = Date.now()): Message | undefined {
    const message = this.#tree.get(topic);
    if (message === undefined || message.expiresAt === 0 || message.expiresAt > now) return message;
    this.#expire(message);
    return undefined;
  }

  /**
   * Removes every message expired at `now` and returns how many: for a periodic sweep, so that
   * expired messages nobody subscribes to do not hold memory and `maxRetained` room.
   */
  removeExpired(now: number = Date.now()): number {
    const expired: Message[] = [];
    for (const [, message] of this.#tree.entries()) {
      if (message.expiresAt !== 0 && message.expiresAt <= now) expired.push(message);
    }
    for (const message of expired) this.#expire(message);
    return expired.length;
  }

  #expire(message: Message): void {
    if (this.#tree.get(message.topic) !== message) return;
    this.#tree.delete(message.topic);
    this.#bytes -= message.size;
    this.#counters.memory.release(message.size);
    this.onExpired?.(message);
  }

  /** Every retained message not expired at `now` (expired ones are left for `removeExpired`). */
  values(now: number = Date.now()): IterableIterator<Message> {
    const entries = this.#tree.entries();
    return (function* () {
      for (const [, message] of entries) {
        if (message.expiresAt === 0 || message.expiresAt > now) yield message;
      }
    })();
  }
}
