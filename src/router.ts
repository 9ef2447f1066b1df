/**
 * Routing: publish → match the subscription trie → deliver once per session at the highest
 * granted QoS. No I/O.
 *
 * @module
 */
import type { QoS } from "./codec/packet.ts";
import type { Message } from "./message.ts";
import type { Session } from "./session/session.ts";
import { TopicTrie } from "./topic/topic_trie.ts";

/** The subscription table of one broker. */
export class Router {
  #trie: TopicTrie<Session, QoS> = new TopicTrie();
  #generation = 0;
  #targets: Session[] = [];
  #grants: number[] = [];
  #depth = 0;
  /**
   * Told of each (session, filter) pair added (+1) or removed (-1): a cluster subscribes on
   * its transport only to what the local subscriptions need.
   */
  interest: ((filter: string, change: 1 | -1) => void) | undefined;

  /** Subscriptions over all sessions. */
  get size(): number {
    return this.#trie.size;
  }

  /** Adds or replaces a subscription; returns true if it is new [MQTT-3.8.4-3]. */
  subscribe(session: Session, filter: string, qos: QoS): boolean {
    session.setSubscription(filter, qos);
    const added = this.#trie.add(filter, session, qos);
    if (added) this.interest?.(filter, 1);
    return added;
  }

  /** Removes a subscription; returns true if it existed. */
  unsubscribe(session: Session, filter: string): boolean {
    session.deleteSubscription(filter);
    const removed = this.#trie.remove(filter, session);
    if (removed) this.interest?.(filter, -1);
    return removed;
  }

  /** Removes every subscription of a session. */
  unsubscribeAll(session: Session): void {
    if (session.subscriptions.size === 0) return;
    for (const filter of session.subscriptions.keys()) {
      if (this.#trie.remove(filter, session)) this.interest?.(filter, -1);
    }
    session.clearSubscriptions();
  }

  /**
   * Delivers `message` to every matching session once, at min(message QoS, highest granted QoS
   * over its matching filters). Returns the number of sessions it went to.
   */
  route(message: Message): number {
    const generation = ++this.#generation;
    // Delivery can call hooks that publish again; a nested route gets its own lists, and the
    // grants are kept here, not read back from the sessions a nested route may re-mark.
    const outer = this.#depth++ === 0;
    const targets = outer ? this.#targets : [];
    const grants = outer ? this.#grants : [];
    try {
      this.#trie.match(message.topic, (session, qos) => {
        if (session.mark !== generation) {
          session.mark = generation;
          session.markIndex = targets.length;
          targets.push(session);
          grants.push(qos);
        } else if (qos > grants[session.markIndex]) {
          grants[session.markIndex] = qos;
        }
      });
      const published = message.qos;
      for (let i = 0; i < targets.length; i++) {
        const granted = grants[i] as QoS;
        targets[i].deliver(message, granted < published ? granted : published);
      }
      return targets.length;
    } finally {
      targets.length = 0;
      grants.length = 0;
      this.#depth--;
    }
  }
}
