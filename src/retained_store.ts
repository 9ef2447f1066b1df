/**
 * Retained messages, one per topic, bounded by `maxRetained` and `maxRetainedBytes`.
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
    this.#bytes = bytes;
    return previous === undefined ? "stored" : "replaced";
  }

  /** Calls `visit` for every retained message whose topic matches `filter`. */
  match(filter: string, visit: (message: Message) => void): void {
    this.#tree.matchFilter(filter, (_topic, message) => visit(message));
  }

  /** Every retained message. */
  values(): IterableIterator<Message> {
    const entries = this.#tree.entries();
    return (function* () {
      for (const [, message] of entries) yield message;
    })();
  }
}
