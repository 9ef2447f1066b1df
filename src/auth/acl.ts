/**
 * Mosquitto's `acl_file`: which topics each client may publish to, subscribe to and receive.
 *
 * ```text
 * # Lines before the first "user" line: clients without a user name (anonymous) only.
 * topic read $SYS/#
 *
 * user alice                     # the rules below apply to user name "alice"
 * topic readwrite alice/#        # no access word means readwrite
 * topic deny alice/secret/#      # deny wins over any grant
 *
 * pattern write sensor/%u/data   # every client; %u = user name, %c = client id
 * ```
 *
 * Semantics, checked against mosquitto 2.0.11 where noted in the tests:
 * - `topic` lines before any `user` line apply to anonymous clients only (mosquitto's man page:
 *   "The first set of topics are applied to anonymous clients"); `topic` lines after `user NAME`
 *   apply to clients with that user name; `pattern` lines apply to every client, wherever they
 *   are. A `user` section may be repeated; its rules add up.
 * - With an ACL loaded, anything not granted is denied. A matching `deny` rule (a `topic` or a
 *   `pattern`) wins over every grant. Mosquitto 2.0 checks the user's `topic` rules before the
 *   patterns, so there a `pattern deny` does not override a `topic` grant; the man page says
 *   "deny topics are handled before topics that grant" and we follow that, which is stricter.
 * - `%u` and `%c` must each be a whole topic level (the man page requires it). A pattern with `%u`
 *   never applies to a client without a user name. A client whose user name or client id contains
 *   `+` or `#` gets no access from any pattern (as mosquitto), and a pattern grant is also skipped
 *   when the value it would substitute contains `/` or is empty, so no name can widen access or
 *   reach into another user's levels. `deny` patterns are still applied, by plain substitution:
 *   that can only narrow what the client may do.
 * - The `$` rule: a rule whose first level is a wildcard does not match topics or filters that
 *   start with `$` (`#` does not grant `$SYS/...`).
 * - SUBSCRIBE: a filter is granted when a `read` (or `readwrite`) rule covers it, that is matches
 *   every topic the filter matches (`a/#` covers `a/+/c`; `a/b` does not cover `a/#`), and no
 *   `deny` rule covers it. Mosquitto 2.0 (up to its development branch) grants every SUBSCRIBE
 *   and only filters at delivery; our check refuses such filters up front with SUBACK 0x80.
 *   Delivery is still checked per message with {@link ClientAcl.canRead}, so a filter that only
 *   overlaps a `deny` rule gets the allowed messages and not the denied ones.
 *
 * @module
 */

import { validateTopicFilter } from "../topic/topic.ts";

/** What one client may do, compiled from an {@link Acl} for its user name and client id. */
export interface ClientAcl {
  /**
   * Whether the client may publish to a topic (write access).
   *
   * @param topic A valid topic name.
   */
  canPublish(topic: string): boolean;
  /**
   * Whether the client may subscribe to a filter: a read rule covers the filter and no deny rule
   * does.
   *
   * @param filter A valid topic filter.
   */
  canSubscribe(filter: string): boolean;
  /**
   * Whether the client may receive a message on a topic (read access). Cheap: called per
   * delivery.
   *
   * @param topic A valid topic name.
   */
  canRead(topic: string): boolean;
}

const READ = 1;
const WRITE = 2;
const ACCESS: Record<string, number> = {
  read: READ,
  write: WRITE,
  readwrite: READ | WRITE,
  deny: 0,
};
const USERNAME = "%u";
const CLIENT_ID = "%c";
const NOTHING: readonly Rule[] = [];

interface Rule {
  /** The filter split into levels; for patterns, `%u`/`%c` levels are substituted later. */
  levels: string[];
  /** READ and/or WRITE bits; 0 for deny. */
  access: number;
  /** Pattern only: it has a `%u` level. */
  usesUsername?: boolean;
}

/**
 * A parsed ACL file. Immutable; a reload parses a new one.
 *
 * @example Decide for one client
 * ```ts
 * import { Acl } from "./acl.ts";
 *
 * const acl = Acl.parse("user alice\ntopic readwrite alice/#\npattern read status/%c\n", "acl");
 * const alice = acl.forClient("alice", "phone");
 * alice.canPublish("alice/x"); // true
 * alice.canRead("status/phone"); // true
 * alice.canSubscribe("status/#"); // false: "status/phone" does not cover it
 * ```
 */
export class Acl {
  #anonymous: Rule[];
  #users: Map<string, Rule[]>;
  #patterns: Rule[];

  private constructor(anonymous: Rule[], users: Map<string, Rule[]>, patterns: Rule[]) {
    this.#anonymous = anonymous;
    this.#users = users;
    this.#patterns = patterns;
  }

  /**
   * Parses the text of an ACL file. Blank lines and lines starting with `#` are ignored.
   *
   * @param text The file's contents.
   * @param source Names the file in error messages.
   * @returns The parsed ACL.
   * @throws {SyntaxError} `source:line: reason` for an unknown keyword, a `user` line without a
   * name, a missing topic filter, a bad access word, an invalid topic filter, or a `%u`/`%c` that
   * is not a whole level of a pattern.
   */
  static parse(text: string, source = "<acl file>"): Acl {
    const anonymous: Rule[] = [];
    const users = new Map<string, Rule[]>();
    const patterns: Rule[] = [];
    let section = anonymous;
    const lines = text.split("\n");
    for (let i = 0; i < lines.length; i++) {
      const fail = (why: string): never => {
        throw new SyntaxError(`${source}:${i + 1}: ${why}`);
      };
      const line = lines[i].trim();
      if (line === "" || line.startsWith("#")) continue;
      const [keyword, rest] = splitWord(line);
      if (keyword === "user") {
        if (rest === "") fail('"user" needs a user name');
        const rules = users.get(rest) ?? [];
        users.set(rest, rules);
        section = rules;
      } else if (keyword === "topic" || keyword === "pattern") {
        if (rest === "") fail(`"${keyword}" needs a topic filter`);
        let [word, filter] = splitWord(rest);
        let access: number | undefined = READ | WRITE;
        if (filter === "") {
          // Mosquitto would take "topic read" as the topic "read": almost surely a mistake.
          if (Object.hasOwn(ACCESS, word)) fail(`"${keyword} ${word}" needs a topic filter`);
          filter = word;
        } else {
          access = Object.hasOwn(ACCESS, word) ? ACCESS[word] : undefined;
          if (access === undefined) {
            fail(`bad access "${word}" (expected read, write, readwrite or deny)`);
          }
        }
        const invalid = validateTopicFilter(filter, 65_535, Number.MAX_SAFE_INTEGER);
        if (invalid !== undefined) fail(`invalid topic filter "${filter}": ${invalid}`);
        const levels = filter.split("/");
        if (keyword === "topic") {
          section.push({ levels, access: access! });
        } else {
          for (const level of levels) {
            if (
              level !== USERNAME && level !== CLIENT_ID &&
              (level.includes(USERNAME) || level.includes(CLIENT_ID))
            ) {
              fail(`"${level}" in "${filter}": %u and %c must be a whole topic level`);
            }
          }
          patterns.push({ levels, access: access!, usesUsername: levels.includes(USERNAME) });
        }
      } else {
        fail(`unknown keyword "${keyword}" (expected user, topic or pattern)`);
      }
    }
    return new Acl(anonymous, users, patterns);
  }

  /**
   * Reads and parses an ACL file.
   *
   * @param path The file to read; error messages name it.
   * @returns The parsed ACL.
   * @throws {SyntaxError} As {@link Acl.parse}, naming `path`.
   * @throws {Deno.errors.NotFound} and other read errors (their messages name `path`).
   */
  static async load(path: string): Promise<Acl> {
    return Acl.parse(await Deno.readTextFile(path), path);
  }

  /**
   * Compiles the rules that apply to one client into a small object with the three checks.
   * Compile once per connection and keep it: checks then do no substitution.
   *
   * @param username The client's user name; `undefined` for an anonymous client.
   * @param clientId The client's id.
   * @returns The client's checks.
   */
  forClient(username: string | undefined, clientId: string): ClientAcl {
    const denies: string[][] = [];
    const reads: string[][] = [];
    const writes: string[][] = [];
    const add = (levels: string[], access: number) => {
      if (access === 0) denies.push(levels);
      if (access & READ) reads.push(levels);
      if (access & WRITE) writes.push(levels);
    };
    const own = username === undefined ? this.#anonymous : this.#users.get(username) ?? NOTHING;
    for (const rule of own) add(rule.levels, rule.access);

    // Mosquitto gives no pattern access at all to such a client (CVE-2017-7650).
    const wildcardName = (username !== undefined && hasWildcard(username)) ||
      hasWildcard(clientId);
    for (const pattern of this.#patterns) {
      if (pattern.usesUsername && username === undefined) continue;
      if (pattern.access === 0) {
        // Plain substitution: a value with '/', '+' or '#' can only make the deny wider.
        const text = pattern.levels.map((l) =>
          l === USERNAME ? username! : l === CLIENT_ID ? clientId : l
        ).join("/");
        denies.push(text.split("/"));
        continue;
      }
      if (wildcardName) continue;
      let usable = true;
      const levels = pattern.levels.map((level) => {
        if (level !== USERNAME && level !== CLIENT_ID) return level;
        const value = level === USERNAME ? username! : clientId;
        if (value === "" || value.includes("/")) usable = false;
        return value;
      });
      if (usable) add(levels, pattern.access);
    }
    return new CompiledClientAcl(denies, reads, writes);
  }
}

class CompiledClientAcl implements ClientAcl {
  #denies: string[][];
  #reads: string[][];
  #writes: string[][];

  constructor(denies: string[][], reads: string[][], writes: string[][]) {
    this.#denies = denies;
    this.#reads = reads;
    this.#writes = writes;
  }

  canPublish(topic: string): boolean {
    return this.#check(this.#writes, topic);
  }

  canRead(topic: string): boolean {
    return this.#check(this.#reads, topic);
  }

  canSubscribe(filter: string): boolean {
    if (this.#reads.length === 0) return false;
    const levels = filter.split("/");
    for (const deny of this.#denies) if (covers(deny, levels)) return false;
    for (const grant of this.#reads) if (covers(grant, levels)) return true;
    return false;
  }

  #check(grants: string[][], topic: string): boolean {
    if (grants.length === 0) return false;
    const levels = topic.split("/");
    for (const deny of this.#denies) if (matches(deny, levels)) return false;
    for (const grant of grants) if (matches(grant, levels)) return true;
    return false;
  }
}

/** Whether a rule's filter matches a topic name, with the `$` rule [MQTT-4.7.2-1]. */
function matches(rule: string[], topic: string[]): boolean {
  if (topic[0].startsWith("$") && (rule[0] === "+" || rule[0] === "#")) return false;
  for (let i = 0; i < rule.length; i++) {
    const level = rule[i];
    if (level === "#") return true; // also matches the parent: "a/#" matches "a"
    if (i >= topic.length) return false;
    if (level !== "+" && level !== topic[i]) return false;
  }
  return rule.length === topic.length;
}

/** Whether a rule's filter matches every topic a subscription filter matches. */
function covers(rule: string[], filter: string[]): boolean {
  if (filter[0].startsWith("$") && (rule[0] === "+" || rule[0] === "#")) return false;
  for (let i = 0; i < rule.length; i++) {
    const level = rule[i];
    if (level === "#") return true;
    if (i >= filter.length) return false;
    const wanted = filter[i];
    if (level === "+") {
      if (wanted === "#") return false;
    } else if (level !== wanted) {
      return false; // also when wanted is '+' or '#': the rule is narrower
    }
  }
  return rule.length === filter.length;
}

function hasWildcard(value: string): boolean {
  return value.includes("+") || value.includes("#");
}

/** Splits off the first word (up to a space or tab) and returns it and the trimmed rest. */
function splitWord(text: string): [string, string] {
  const match = /^(\S+)(?:[ \t]+(.*))?$/.exec(text);
  if (match === null) return [text, ""];
  return [match[1], (match[2] ?? "").trim()];
}
