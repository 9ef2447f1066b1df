/**
 * The subscription trie: topic filters by level, each node holding the subscribers of the
 * filter that ends there.
 *
 * @module
 */

const SLASH = "/";
const DOLLAR = 0x24; // '$'

/** One level of the trie. Every field is set in the constructor so all nodes share one shape. */
class TrieNode<K, V> {
  /** Exact-level children. Created on first use. */
  children: Map<string, TrieNode<K, V>> | undefined = undefined;
  /** The '+' child, kept apart so a publish needs no map lookup to find it. */
  plus: TrieNode<K, V> | undefined = undefined;
  /** The '#' child. It has subscribers only: '#' is always the last level. */
  hash: TrieNode<K, V> | undefined = undefined;
  /** The filter ending at this node ("" until the first subscriber). */
  filter = "";
  /** Subscribers in parallel arrays: match() walks them with an index, allocating nothing. */
  keys: K[] = [];
  values: V[] = [];
  /** Position of each key in `keys`/`values`, for O(1) replace and swap-remove. */
  index: Map<K, number> = new Map();

  isEmpty(): boolean {
    return this.keys.length === 0 && this.plus === undefined && this.hash === undefined &&
      (this.children === undefined || this.children.size === 0);
  }
}

/**
 * Topic filters mapped to subscribers: a trie with one node per filter level.
 *
 * `K` identifies a subscriber (a session); `V` is what it subscribed with (its granted QoS,
 * say). One subscriber has at most one entry per filter; filters must already pass
 * `validateTopicFilter`.
 *
 * `match()` is the broker's per-PUBLISH path: it walks the topic with `indexOf("/")`, keeps
 * its work stack in arrays owned by the trie, and visits subscribers by index, so it allocates
 * only the level substrings it looks up.
 *
 * @example Route a publish
 * ```ts
 * import { TopicTrie } from "./topic_trie.ts";
 *
 * const trie = new TopicTrie<string, number>();
 * trie.add("sport/tennis/+", "client-a", 1);
 * trie.add("sport/#", "client-b", 0);
 * const hits: string[] = [];
 * trie.match("sport/tennis/player1", (key, qos, filter) => hits.push(`${key} ${qos} ${filter}`));
 * // hits: ["client-b 0 sport/#", "client-a 1 sport/tennis/+"], in no particular order
 * ```
 *
 * @typeParam K The subscriber key.
 * @typeParam V The value stored per (filter, key).
 */
export class TopicTrie<K, V> {
  #root: TrieNode<K, V> = new TrieNode();
  #size = 0;
  #filterCount = 0;
  /** Work stack of match(), shared by calls; a nested call (from a visitor) stacks above. */
  #stackNodes: (TrieNode<K, V> | undefined)[] = [];
  #stackStarts: number[] = [];
  #stackTop = 0;

  /**
   * Adds a subscriber to a filter, or replaces its value when it is already there.
   *
   * @param filter A topic filter that passes `validateTopicFilter`.
   * @param key The subscriber.
   * @param value Stored with the subscription and handed to `match()` visitors.
   * @returns `true` when (filter, key) is new, `false` when its value was replaced.
   */
  add(filter: string, key: K, value: V): boolean {
    let node = this.#root;
    let start = 0;
    for (;;) {
      let end = filter.indexOf(SLASH, start);
      if (end < 0) end = filter.length;
      const level = filter.substring(start, end);
      let next: TrieNode<K, V> | undefined;
      if (level === "+") {
        next = node.plus ??= new TrieNode();
      } else if (level === "#") {
        next = node.hash ??= new TrieNode();
      } else {
        const children = node.children ??= new Map();
        next = children.get(level);
        if (next === undefined) {
          next = new TrieNode();
          children.set(level, next);
        }
      }
      node = next;
      if (end === filter.length) break;
      start = end + 1;
    }
    const at = node.index.get(key);
    if (at !== undefined) {
      node.values[at] = value;
      return false;
    }
    if (node.keys.length === 0) {
      node.filter = filter;
      this.#filterCount++;
    }
    node.index.set(key, node.keys.length);
    node.keys.push(key);
    node.values.push(value);
    this.#size++;
    return true;
  }

  /**
   * Removes a subscriber from a filter and prunes the nodes left empty.
   *
   * @param filter The topic filter it was added with.
   * @param key The subscriber.
   * @returns `true` when (filter, key) was there.
   */
  remove(filter: string, key: K): boolean {
    // The path is kept so that empty nodes can be pruned bottom-up without recursion: the depth
    // of a filter is bounded only by maxTopicLevels.
    const path: TrieNode<K, V>[] = [];
    const levels: string[] = [];
    let node: TrieNode<K, V> | undefined = this.#root;
    let start = 0;
    for (;;) {
      let end = filter.indexOf(SLASH, start);
      if (end < 0) end = filter.length;
      const level = filter.substring(start, end);
      path.push(node);
      levels.push(level);
      node = level === "+" ? node.plus : level === "#" ? node.hash : node.children?.get(level);
      if (node === undefined) return false;
      if (end === filter.length) break;
      start = end + 1;
    }
    const at = node.index.get(key);
    if (at === undefined) return false;
    const last = node.keys.length - 1;
    if (at !== last) {
      const movedKey = node.keys[last];
      node.keys[at] = movedKey;
      node.values[at] = node.values[last];
      node.index.set(movedKey, at);
    }
    node.keys.pop();
    node.values.pop();
    node.index.delete(key);
    this.#size--;
    if (node.keys.length === 0) {
      node.filter = "";
      this.#filterCount--;
    }
    for (let i = path.length - 1; i >= 0 && node.isEmpty(); i--) {
      const parent: TrieNode<K, V> = path[i];
      const level = levels[i];
      if (level === "+") parent.plus = undefined;
      else if (level === "#") parent.hash = undefined;
      else {
        parent.children!.delete(level);
        if (parent.children!.size === 0) parent.children = undefined;
      }
      node = parent;
    }
    return true;
  }

  /**
   * Visits every (filter, key) whose filter matches a topic, with the `$`-topic rule applied
   * [MQTT-4.7.2-1]. A key subscribed through several overlapping filters is visited once per
   * filter: the caller deduplicates (keeping the highest QoS, [MQTT-3.3.5-1]).
   *
   * The visitor may add or remove subscriptions: a subscriber removed before it is reached is
   * not visited, one added meanwhile may or may not be.
   *
   * @param topic A topic name that passes `validateTopicName`.
   * @param visit Called with the key, its value and the matching filter.
   */
  match(topic: string, visit: (key: K, value: V, filter: string) => void): void {
    const nodes = this.#stackNodes;
    const starts = this.#stackStarts;
    const base = this.#stackTop;
    const length = topic.length;
    // [MQTT-4.7.2-1] wildcards at the first level do not match a topic starting with '$'.
    const sys = topic.charCodeAt(0) === DOLLAR;
    let top = base;
    nodes[top] = this.#root;
    starts[top] = 0;
    top++;
    try {
      while (top > base) {
        top--;
        const node = nodes[top]!;
        const start = starts[top];
        nodes[top] = undefined; // do not keep pruned nodes alive
        this.#stackTop = top; // a visitor that calls match() stacks above this frame
        if (start > length) {
          // Every level consumed: the filter ending here matches, and so does "<it>/#", since
          // '#' also matches the parent level ("sport/#" matches "sport") [MQTT-4.7.1-2].
          if (node.keys.length !== 0) emit(node, visit);
          if (node.hash !== undefined && node.hash.keys.length !== 0) emit(node.hash, visit);
          continue;
        }
        const wildcards = start !== 0 || !sys;
        if (wildcards && node.hash !== undefined && node.hash.keys.length !== 0) {
          emit(node.hash, visit);
        }
        let end = topic.indexOf(SLASH, start);
        if (end < 0) end = length;
        // '+' matches any one level, the empty one included.
        if (wildcards && node.plus !== undefined) {
          nodes[top] = node.plus;
          starts[top] = end + 1;
          top++;
        }
        if (node.children !== undefined) {
          const child = node.children.get(topic.substring(start, end));
          if (child !== undefined) {
            nodes[top] = child;
            starts[top] = end + 1;
            top++;
          }
        }
      }
    } finally {
      // On a throwing visitor, drop this call's frames.
      for (let i = base; i < top; i++) nodes[i] = undefined;
      this.#stackTop = base;
    }
  }

  /** Number of (filter, key) entries. */
  get size(): number {
    return this.#size;
  }

  /** Number of distinct filters with at least one subscriber. */
  get filterCount(): number {
    return this.#filterCount;
  }

  /**
   * Number of trie nodes besides the root, counted by walking the trie (O(nodes)): for
   * diagnostics and tests of pruning; it is 0 once every subscription is removed.
   */
  get nodeCount(): number {
    let count = 0;
    const stack: TrieNode<K, V>[] = [this.#root];
    for (let node = stack.pop(); node !== undefined; node = stack.pop()) {
      if (node.plus !== undefined) stack.push(node.plus);
      if (node.hash !== undefined) stack.push(node.hash);
      if (node.children !== undefined) {
        for (const child of node.children.values()) stack.push(child);
      }
      if (node !== this.#root) count++;
    }
    return count;
  }
}

/**
 * Visits the subscribers of one node, last to first: a visitor's swap-remove then only moves
 * an already-visited entry, so nothing is skipped (at worst one is visited twice).
 */
function emit<K, V>(node: TrieNode<K, V>, visit: (key: K, value: V, filter: string) => void) {
  const keys = node.keys;
  const values = node.values;
  const filter = node.filter;
  for (let i = keys.length - 1; i >= 0; i--) {
    if (i < keys.length) visit(keys[i], values[i], filter);
  }
}
