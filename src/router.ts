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
 * What the trie holds per (filter, session), flattened from the options for the per-PUBLISH path:
 * the grant with Retain As Published in bit 2 (so one number per target carries both), No Local,
 * and the subscription identifier as a one-element array made once at subscribe time, so a
 * delivery with one identifier allocates nothing.
 */
class Route {
  readonly options: SubscriptionOptions;
  /** Granted QoS | (Retain As Published ? RAP : 0). */
  readonly grant: number;
  readonly noLocal: boolean;
  readonly ids: readonly number[] | undefined;

  constructor(options: SubscriptionOptions) {
    this.options = options;
    this.grant = options.qos | (options.retainAsPublished ? RAP : 0);
    this.noLocal = options.noLocal;
    this.ids = options.subscriptionId === undefined ? undefined : [options.subscriptionId];
  }
}

/** Bit of a packed grant: Retain As Published. The low two bits are the QoS. */
const RAP = 4;

/** Whether a plain subscription needs route()'s slower path. */
function isSpecial(o: SubscriptionOptions): boolean {
  return o.noLocal || o.retainAsPublished || o.subscriptionId !== undefined;
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

  /** The ShareName. */
  readonly group: string;

  constructor(key: string, group: string, filter: string) {
    this.key = key;
    this.group = group;
    this.filter = filter;
  }

  indexOf(session: Session): number {
    return this.members.indexOf(session);
  }
}

/** The subscription table of one broker. */
export class Router {
  /** A plain QoS for a subscription without 5.0 options (most), else its Route. */
  #trie: TopicTrie<Session, Route | QoS> = new TopicTrie();
  /** Shared groups by their inner filter; the trie's value is unused (the key is the group). */
  #sharedTrie: TopicTrie<SharedGroup, true> = new TopicTrie();
  #groups = new Map<string, SharedGroup>();
  #sharedSize = 0;
  /**
   * Plain subscriptions with No Local, Retain As Published or an identifier. While there are none
   * (3.1.1 brokers, most 5.0 ones), route() takes the path that ignores them.
   */
  #special = 0;
  #generation = 0;
  // Per-route scratch, reused by the outermost route(); a nested route() gets its own.
  #targets: Session[] = [];
  #grants: number[] = [];
  #ids: (readonly number[] | undefined)[] = [];
  #matchedGroups: SharedGroup[] = [];
  #depth = 0;
  /**
   * Told of each (session, filter) pair added (+1) or removed (-1) of a plain subscription: a
   * cluster subscribes on its transport only to what the local subscriptions need.
   */
  interest: ((filter: string, change: 1 | -1) => void) | undefined;
  /**
   * Told of each (session, group, filter) member added (+1) or removed (-1) of a shared
   * subscription `$share/{group}/{filter}`. Once set (a cluster), route() no longer delivers to
   * shared groups: the cluster picks one member cluster-wide and hands this node its share through
   * {@linkcode Router.deliverShared}, local publishes included.
   */
  sharedInterest: ((group: string, filter: string, change: 1 | -1) => void) | undefined;

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
    const previous = session.subscriptions.get(filter);
    session.setSubscription(filter, opts);
    const shared = parseSharedFilter(filter);
    if (shared === undefined) {
      if (previous !== undefined && isSpecial(previous)) this.#special--;
      let added: boolean;
      if (!isSpecial(opts)) added = this.#trie.add(filter, session, opts.qos);
      else {
        this.#special++;
        added = this.#trie.add(filter, session, new Route(opts));
      }
      if (added) this.interest?.(filter, 1);
      return added;
    }
    const route = new Route(opts);
    let group = this.#groups.get(filter);
    if (group === undefined) {
      group = new SharedGroup(filter, shared.group, shared.filter);
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
    this.sharedInterest?.(shared.group, shared.filter, 1);
    return true;
  }

  /** Removes a subscription (a shared one by its full `$share/…` filter); true if it existed. */
  unsubscribe(session: Session, filter: string): boolean {
    const previous = session.subscriptions.get(filter);
    session.deleteSubscription(filter);
    return this.#remove(session, filter, previous);
  }

  /** Removes every subscription of a session. */
  unsubscribeAll(session: Session): void {
    if (session.subscriptions.size === 0) return;
    for (const [filter, options] of session.subscriptions) this.#remove(session, filter, options);
    session.clearSubscriptions();
  }

  #remove(session: Session, filter: string, previous: SubscriptionOptions | undefined): boolean {
    const group = this.#groups.get(filter);
    if (group === undefined) {
      if (parseSharedFilter(filter) !== undefined || !this.#trie.remove(filter, session)) {
        return false;
      }
      if (previous !== undefined && isSpecial(previous)) this.#special--;
      this.interest?.(filter, -1);
      return true;
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
    this.sharedInterest?.(group.group, group.filter, -1);
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
    return this.#special === 0 && (this.#groups.size === 0 || this.sharedInterest !== undefined)
      ? this.#routePlain(message)
      : this.#routeFull(message);
  }

  /**
   * route() while every subscription is a plain QoS (3.1.1 brokers, and most 5.0 ones): the path
   * of bfa01d4, nothing more per target.
   */
  #routePlain(message: Message): number {
    const generation = ++this.#generation;
    // Delivery can call hooks that publish again; a nested route gets its own lists, and the
    // grants are kept here, not read back from the sessions a nested route may re-mark.
    const outer = this.#depth++ === 0;
    const targets = outer ? this.#targets : [];
    const grants = outer ? this.#grants : [];
    try {
      this.#trie.match(message.topic, (session, value) => {
        const qos = value as QoS;
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

  /** route() with 5.0 options on some subscription, or shared groups. */
  #routeFull(message: Message): number {
    const generation = ++this.#generation;
    const outer = this.#depth++ === 0;
    const targets = outer ? this.#targets : [];
    const grants = outer ? this.#grants : [];
    // Filled only once some matching subscription has an identifier (most routes have none).
    const ids = outer ? this.#ids : [];
    const groups = outer ? this.#matchedGroups : [];
    const origin = message.origin;
    let withIds = false;
    try {
      this.#trie.match(message.topic, (session, value) => {
        let grant: number;
        let routeIds: readonly number[] | undefined;
        if (typeof value === "number") {
          grant = value;
          routeIds = undefined;
        } else {
          if (value.noLocal && session.clientId === origin) return;
          grant = value.grant;
          routeIds = value.ids;
        }
        if (session.mark !== generation) {
          session.mark = generation;
          session.markIndex = targets.length;
          targets.push(session);
          grants.push(grant);
          if (routeIds !== undefined && !withIds) {
            withIds = true;
            for (let k = ids.length; k < targets.length - 1; k++) ids.push(undefined);
          }
          if (withIds) ids.push(routeIds);
          return;
        }
        const i = session.markIndex;
        const had = grants[i];
        // The highest QoS; Retain As Published if any matching subscription has it.
        grants[i] = ((grant & 3) > (had & 3) ? grant & 3 : had & 3) | ((grant | had) & RAP);
        if (routeIds !== undefined) {
          if (!withIds) {
            withIds = true;
            for (let k = ids.length; k < targets.length; k++) ids.push(undefined);
          }
          const before = ids[i];
          ids[i] = before === undefined ? routeIds : [...before, ...routeIds];
        }
      });
      if (this.#groups.size !== 0 && this.sharedInterest === undefined) {
        this.#sharedTrie.match(message.topic, (group) => {
          groups.push(group);
        });
      }
      const published = message.qos;
      const retained = message.retain;
      for (let i = 0; i < targets.length; i++) {
        const grant = grants[i];
        const granted = (grant & 3) as QoS;
        targets[i].deliver(
          message,
          granted < published ? granted : published,
          retained && (grant & RAP) !== 0,
          withIds ? ids[i] : undefined,
        );
      }
      for (let i = 0; i < groups.length; i++) this.#deliverShared(groups[i], message);
      return targets.length + groups.length;
    } finally {
      targets.length = 0;
      grants.length = 0;
      ids.length = 0;
      groups.length = 0;
      this.#depth--;
    }
  }

  /**
   * In a cluster: a message the cluster gave this node for `$share/{group}/{filter}` goes to one
   * local member (as route() would pick it). Returns false when the group has no member here.
   */
  deliverShared(group: string, filter: string, message: Message): boolean {
    const found = this.#groups.get(`$share/${group}/${filter}`);
    if (found === undefined || found.members.length === 0) return false;
    this.#deliverShared(found, message);
    return true;
  }

  /**
   * Gives a message to one member of a group, round-robin from the cursor: the first member that
   * can send it at once (online, writable, window room, nothing queued); failing that, the first
   * online one that can queue it; failing that, the first that can queue it while offline (a
   * persistent session, QoS > 0), as mosquitto queues to an offline member; failing that, the
   * member whose turn it is, whose session then counts the drop. The cursor moves past the chosen
   * member.
   */
  #deliverShared(group: SharedGroup, message: Message): void {
    const members = group.members;
    const n = members.length;
    if (n === 0) return; // emptied by a nested unsubscribe
    const start = group.next < n ? group.next : 0;
    const published = message.qos;
    let chosen = -1;
    for (let pass = 0; pass < 3 && chosen < 0; pass++) {
      for (let k = 0; k < n; k++) {
        const i = start + k < n ? start + k : start + k - n;
        const session = members[i];
        const granted = group.routes[i].options.qos;
        const qos = granted < published ? granted : published;
        if (
          pass === 0
            ? session.canSendNow(qos)
            : (pass === 2 || session.link !== undefined) && session.canTake(message, qos)
        ) {
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
