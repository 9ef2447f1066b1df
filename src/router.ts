/**
 * Routing: publish → match the subscription trie → deliver once per session at the highest
 * granted QoS, and once per shared subscription group to one of its members. No I/O.
 *
 * @module
 */
import type { QoS } from "./codec/packet.ts";
import type { Message } from "./message.ts";
import { plainSubscription, type Session, type SubscriptionOptions } from "./session/session.ts";
import { parseSharedFilter } from "./topic/shared.ts";
import { TopicTrie } from "./topic/topic_trie.ts";

/**
 * What the trie holds per (filter, session): the options, and the subscription identifier as a
 * one-element array made once at subscribe time, so a delivery with one identifier allocates
 * nothing.
 */
interface Route {
  options: SubscriptionOptions;
  ids: readonly number[] | undefined;
}

/**
 * One shared subscription `$share/{group}/{filter}`: its members in subscription order, each with
 * its own options, and the round-robin cursor.
 */
class SharedGroup {
  /** The full filter, `$share/` included: the key of the group. */
  readonly key: string;
  /** The filter after the ShareName, as matched against topics. */
  readonly filter: string;
  readonly members: Session[] = [];
  readonly routes: Route[] = [];
  /** Index of the member whose turn is next. */
  next = 0;

  constructor(key: string, filter: string) {
    this.key = key;
    this.filter = filter;
  }

  indexOf(session: Session): number {
    return this.members.indexOf(session);
  }
}

/** The subscription table of one broker. */
export class Router {
  #trie: TopicTrie<Session, Route> = new TopicTrie();
  /** Shared groups by their inner filter; the trie's value is unused (the key is the group). */
  #sharedTrie: TopicTrie<SharedGroup, true> = new TopicTrie();
  #groups = new Map<string, SharedGroup>();
  #sharedSize = 0;
  #generation = 0;
  // Per-route scratch, reused by the outermost route(); a nested route() gets its own.
  #targets: Session[] = [];
  #grants: number[] = [];
  #retains: boolean[] = [];
  #ids: (readonly number[] | undefined)[] = [];
  #matchedGroups: SharedGroup[] = [];
  #depth = 0;

  /** Subscriptions over all sessions, shared ones included. */
  get size(): number {
    return this.#trie.size + this.#sharedSize;
  }

  /** Shared subscription groups (distinct `$share/{group}/{filter}` with a member). */
  get sharedGroups(): number {
    return this.#groups.size;
  }

  /**
   * Adds or replaces a subscription; returns true if it is new [MQTT-3.8.4-3]. A
   * `$share/{group}/{filter}` filter (already validated) joins that group; the same session may be
   * in several groups, and in a group and a plain subscription at once. A plain QoS stands for a
   * 3.1.1 subscription.
   */
  subscribe(session: Session, filter: string, options: SubscriptionOptions | QoS): boolean {
    const opts = typeof options === "number" ? plainSubscription(options) : options;
    session.setSubscription(filter, opts);
    const route: Route = {
      options: opts,
      ids: opts.subscriptionId === undefined ? undefined : [opts.subscriptionId],
    };
    const shared = parseSharedFilter(filter);
    if (shared === undefined) return this.#trie.add(filter, session, route);
    let group = this.#groups.get(filter);
    if (group === undefined) {
      group = new SharedGroup(filter, shared.filter);
      this.#groups.set(filter, group);
      this.#sharedTrie.add(shared.filter, group, true);
    }
    const at = group.indexOf(session);
    if (at >= 0) {
      group.routes[at] = route;
      return false;
    }
    group.members.push(session);
    group.routes.push(route);
    this.#sharedSize++;
    return true;
  }

  /** Removes a subscription (a shared one by its full `$share/…` filter); true if it existed. */
  unsubscribe(session: Session, filter: string): boolean {
    session.deleteSubscription(filter);
    return this.#remove(session, filter);
  }

  /** Removes every subscription of a session. */
  unsubscribeAll(session: Session): void {
    if (session.subscriptions.size === 0) return;
    for (const filter of session.subscriptions.keys()) this.#remove(session, filter);
    session.clearSubscriptions();
  }

  #remove(session: Session, filter: string): boolean {
    const group = this.#groups.get(filter);
    if (group === undefined) {
      return parseSharedFilter(filter) === undefined && this.#trie.remove(filter, session);
    }
    const at = group.indexOf(session);
    if (at < 0) return false;
    group.members.splice(at, 1);
    group.routes.splice(at, 1);
    this.#sharedSize--;
    // Keep the turn where it was: the member after the removed one moved down by one.
    if (at < group.next) group.next--;
    if (group.next >= group.members.length) group.next = 0;
    if (group.members.length === 0) {
      this.#groups.delete(filter);
      this.#sharedTrie.remove(group.filter, group);
    }
    return true;
  }

  /**
   * Delivers `message` to every matching session once, at min(message QoS, highest granted QoS
   * over its matching filters), and to one member of every matching shared group at that member's
   * grant. A subscription with No Local does not match its own session's messages
   * [MQTT-3.8.3-3]; Retain As Published keeps the message's retain flag [MQTT-3.3.1-12], which is
   * otherwise cleared on forwarding; the subscription identifiers of every matching subscription
   * go with the delivery [MQTT-3.3.4-3]. Returns the number of deliveries.
   */
  route(message: Message): number {
    const generation = ++this.#generation;
    // Delivery can call hooks that publish again; a nested route gets its own lists, and the
    // grants are kept here, not read back from the sessions a nested route may re-mark.
    const outer = this.#depth++ === 0;
    const targets = outer ? this.#targets : [];
    const grants = outer ? this.#grants : [];
    const retains = outer ? this.#retains : [];
    const ids = outer ? this.#ids : [];
    const groups = outer ? this.#matchedGroups : [];
    const origin = message.origin;
    try {
      this.#trie.match(message.topic, (session, route) => {
        const o = route.options;
        if (o.noLocal && session.clientId === origin) return;
        if (session.mark !== generation) {
          session.mark = generation;
          session.markIndex = targets.length;
          targets.push(session);
          grants.push(o.qos);
          retains.push(o.retainAsPublished);
          ids.push(route.ids);
          return;
        }
        const i = session.markIndex;
        if (o.qos > grants[i]) grants[i] = o.qos;
        if (o.retainAsPublished) retains[i] = true;
        if (route.ids !== undefined) {
          const had = ids[i];
          ids[i] = had === undefined ? route.ids : [...had, ...route.ids];
        }
      });
      if (this.#groups.size !== 0) {
        this.#sharedTrie.match(message.topic, (group) => {
          groups.push(group);
        });
      }
      const published = message.qos;
      const retained = message.retain;
      for (let i = 0; i < targets.length; i++) {
        const granted = grants[i] as QoS;
        targets[i].deliver(
          message,
          granted < published ? granted : published,
          retained && retains[i],
          ids[i],
        );
      }
      for (let i = 0; i < groups.length; i++) this.#deliverShared(groups[i], message);
      return targets.length + groups.length;
    } finally {
      targets.length = 0;
      grants.length = 0;
      retains.length = 0;
      ids.length = 0;
      groups.length = 0;
      this.#depth--;
    }
  }

  /**
   * Gives a message to one member of a group, round-robin: the first member from the cursor on
   * that is online and can take it now (send, or queue without dropping); failing that, the first
   * that can queue it while offline (a persistent session, QoS > 0), as mosquitto queues to an
   * offline member; failing that, the member whose turn it is, whose session then counts the drop.
   * The cursor moves past the chosen member.
   */
  #deliverShared(group: SharedGroup, message: Message): void {
    const members = group.members;
    const n = members.length;
    if (n === 0) return; // emptied by a nested unsubscribe
    const start = group.next < n ? group.next : 0;
    const published = message.qos;
    let chosen = -1;
    for (let pass = 0; pass < 2 && chosen < 0; pass++) {
      for (let k = 0; k < n; k++) {
        const i = start + k < n ? start + k : start + k - n;
        const session = members[i];
        if (pass === 0 && session.link === undefined) continue;
        const granted = group.routes[i].options.qos;
        if (session.canTake(message, granted < published ? granted : published)) {
          chosen = i;
          break;
        }
      }
    }
    if (chosen < 0) chosen = start;
    group.next = chosen + 1 < n ? chosen + 1 : 0;
    const route = group.routes[chosen];
    const granted = route.options.qos;
    members[chosen].deliver(
      message,
      granted < published ? granted : published,
      message.retain && route.options.retainAsPublished,
      route.ids,
    );
  }
}
