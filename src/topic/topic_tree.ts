/**
 * Exact topic names in a tree by level: the index of the retained store, where a new
 * subscription's filter must find every stored topic it matches.
 *
 * @module
 */

const SLASH = "/";
const DOLLAR = 0x24; // '$'
/** Stack marker of matchFilter(): the node and its whole subtree match (a '#' was reached). */
const SUBTREE = -1;

/** One level of the tree. Every field is set in the constructor so all nodes share one shape. */
class TreeNode<V> {
  children: Map<string, TreeNode<V>> | undefined = undefined;
  /** Whether a topic ends here (`value` may legitimately be `undefined`). */
  has = false;
  value: V | undefined = undefined;
  /** The topic ending here, kept so visitors get it without rebuilding it from the path. */
  topic = "";
}

/**
 * A map from topic names to values, stored by level so that a topic filter finds its matches by
 * walking only the branches it can reach: an exact level follows one child, `+` every child of
 * that level, `#` a whole subtree.
 *
 * Topics must already pass `validateTopicName`; filters `validateTopicFilter`.
 *
 * @example Find the retained messages of a new subscription
 * ```ts
 * import { TopicTree } from "./topic_tree.ts";
 *
 * const retained = new TopicTree<string>();
 * retained.set("sport/tennis/player1", "15-0");
 * retained.set("sport/golf/player2", "par");
 * retained.set("$SYS/uptime", "42");
 * const found: string[] = [];
 * retained.matchFilter("sport/+/player1", (topic, value) => found.push(`${topic}=${value}`));
 * // found: ["sport/tennis/player1=15-0"]
 * retained.matchFilter("#", (topic) => found.push(topic)); // not "$SYS/uptime" [MQTT-4.7.2-1]
 * ```
 *
 * @typeParam V The value stored per topic.
 */
export class TopicTree<V> {
  #root: TreeNode<V> = new TreeNode();
  #size = 0;

  /**
   * Stores a value under a topic.
   *
   * @param topic A topic name.
   * @param value The value to store.
   * @returns The value it replaces, or `undefined`.
   */
  set(topic: string, value: V): V | undefined {
    let node = this.#root;
    let start = 0;
    for (;;) {
      let end = topic.indexOf(SLASH, start);
      if (end < 0) end = topic.length;
      const level = topic.substring(start, end);
      const children = node.children ??= new Map();
      let next = children.get(level);
      if (next === undefined) {
        next = new TreeNode();
        children.set(level, next);
      }
      node = next;
      if (end === topic.length) break;
      start = end + 1;
    }
    const previous = node.value;
    node.value = value;
    if (node.has) return previous;
    node.has = true;
    node.topic = topic;
    this.#size++;
    return undefined;
  }

  /**
   * Looks a topic up.
   *
   * @param topic A topic name.
   * @returns Its value, or `undefined`.
   */
  get(topic: string): V | undefined {
    let node: TreeNode<V> | undefined = this.#root;
    let start = 0;
    for (;;) {
      let end = topic.indexOf(SLASH, start);
      if (end < 0) end = topic.length;
      node = node.children?.get(topic.substring(start, end));
      if (node === undefined) return undefined;
      if (end === topic.length) return node.value;
      start = end + 1;
    }
  }

  /**
   * Removes a topic and prunes the nodes left empty.
   *
   * @param topic A topic name.
   * @returns The value removed, or `undefined`.
   */
  delete(topic: string): V | undefined {
    // The path is kept so that pruning needs no recursion: depth is bounded only by
    // maxTopicLevels.
    const path: TreeNode<V>[] = [];
    const levels: string[] = [];
    let node: TreeNode<V> | undefined = this.#root;
    let start = 0;
    for (;;) {
      let end = topic.indexOf(SLASH, start);
      if (end < 0) end = topic.length;
      const level = topic.substring(start, end);
      path.push(node);
      levels.push(level);
      node = node.children?.get(level);
      if (node === undefined) return undefined;
      if (end === topic.length) break;
      start = end + 1;
    }
    if (!node.has) return undefined;
    const previous = node.value;
    node.has = false;
    node.value = undefined;
    node.topic = "";
    this.#size--;
    for (let i = path.length - 1; i >= 0; i--) {
      if (node.has || node.children !== undefined) break;
      const parent: TreeNode<V> = path[i];
      parent.children!.delete(levels[i]);
      if (parent.children!.size === 0) parent.children = undefined;
      node = parent;
    }
    return previous;
  }

  /**
   * Visits every stored topic that a filter matches, with the `$`-topic rule applied
   * [MQTT-4.7.2-1]. The visitor may set and delete topics: a topic deleted before it is reached
   * is not visited, one set meanwhile may or may not be.
   *
   * @param filter A topic filter.
   * @param visit Called with each matching topic and its value.
   */
  matchFilter(filter: string, visit: (topic: string, value: V) => void): void {
    const length = filter.length;
    const nodes: TreeNode<V>[] = [this.#root];
    const starts: number[] = [0];
    for (let node = nodes.pop(); node !== undefined; node = nodes.pop()) {
      const start = starts.pop()!;
      if (start === SUBTREE || start > length) {
        if (node.has) visit(node.topic, node.value as V);
        if (start === SUBTREE && node.children !== undefined) {
          for (const child of node.children.values()) {
            nodes.push(child);
            starts.push(SUBTREE);
          }
        }
        continue;
      }
      let end = filter.indexOf(SLASH, start);
      if (end < 0) end = length;
      // [MQTT-4.7.2-1] wildcards at the first level skip topics starting with '$'.
      const skipSys = start === 0;
      if (end - start === 1 && filter.charCodeAt(start) === 0x23) {
        // '#' matches the parent level too ("sport/#" matches "sport") [MQTT-4.7.1-2].
        if (node.has) visit(node.topic, node.value as V);
        pushChildren(node, nodes, starts, SUBTREE, skipSys);
      } else if (end - start === 1 && filter.charCodeAt(start) === 0x2b) {
        pushChildren(node, nodes, starts, end + 1, skipSys);
      } else {
        const child = node.children?.get(filter.substring(start, end));
        if (child !== undefined) {
          nodes.push(child);
          starts.push(end + 1);
        }
      }
    }
  }

  /** Number of topics stored. */
  get size(): number {
    return this.#size;
  }

  /**
   * Number of tree nodes besides the root, counted by walking the tree (O(nodes)): for
   * diagnostics and tests of pruning; it is 0 once every topic is deleted.
   */
  get nodeCount(): number {
    let count = -1;
    const stack: TreeNode<V>[] = [this.#root];
    for (let node = stack.pop(); node !== undefined; node = stack.pop()) {
      count++;
      if (node.children !== undefined) {
        for (const child of node.children.values()) stack.push(child);
      }
    }
    return count;
  }

  /**
   * Every stored (topic, value) pair, in no particular order.
   *
   * @returns An iterator of `[topic, value]`.
   */
  *entries(): IterableIterator<[string, V]> {
    const stack: TreeNode<V>[] = [this.#root];
    for (let node = stack.pop(); node !== undefined; node = stack.pop()) {
      if (node.has) yield [node.topic, node.value as V];
      if (node.children !== undefined) {
        for (const child of node.children.values()) stack.push(child);
      }
    }
  }
}

function pushChildren<V>(
  node: TreeNode<V>,
  nodes: TreeNode<V>[],
  starts: number[],
  start: number,
  skipSys: boolean,
): void {
  if (node.children === undefined) return;
  for (const [level, child] of node.children) {
    if (skipSys && level.charCodeAt(0) === DOLLAR) continue;
    nodes.push(child);
    starts.push(start);
  }
}
