/**
 * Topic names and topic filters: validation, the `$`-topic rule and a reference matcher.
 *
 * Validation runs on every PUBLISH, so it is one `charCodeAt` loop with no allocation: no
 * `split`, no regular expression, no `TextEncoder`.
 *
 * @module
 */

const SLASH = 0x2f; // '/'
const PLUS = 0x2b; // '+'
const HASH = 0x23; // '#'
const DOLLAR = 0x24; // '$'

/**
 * Checks a topic name (the topic of a PUBLISH or of a will).
 *
 * Lengths are counted in UTF-8 bytes, as on the wire; levels are the parts between `/`
 * ("a//b" has three levels, the middle one empty).
 *
 * @example Validate the topic of a PUBLISH
 * ```ts
 * import { validateTopicName } from "./topic.ts";
 *
 * validateTopicName("sport/tennis", 65_535, 128); // undefined: valid
 * validateTopicName("sport/+", 65_535, 128); // "Topic name must not contain wildcards [MQTT-3.3.2-2]"
 * ```
 *
 * @param topic The topic name.
 * @param maxLength Longest accepted name, in UTF-8 bytes.
 * @param maxLevels Most accepted levels.
 * @returns `undefined` when valid, otherwise a short reason naming the rule that is broken.
 */
export function validateTopicName(
  topic: string,
  maxLength: number,
  maxLevels: number,
): string | undefined {
  const length = topic.length;
  // [MQTT-4.7.3-1]
  if (length === 0) return "Topic name must not be empty [MQTT-4.7.3-1]";
  // A string has at least as many UTF-8 bytes as UTF-16 code units.
  if (length > maxLength) return `Topic name is longer than ${maxLength} bytes`;
  // At most 3 UTF-8 bytes per UTF-16 code unit: short names skip the byte count.
  const countBytes = length * 3 > maxLength;
  let bytes = 0;
  let levels = 1;
  for (let i = 0; i < length; i++) {
    const c = topic.charCodeAt(i);
    if (c < 0x80) {
      if (c === SLASH) {
        if (++levels > maxLevels) return `Topic name has more than ${maxLevels} levels`;
      } else if (c === PLUS || c === HASH) {
        return "Topic name must not contain wildcards [MQTT-3.3.2-2]"; // [MQTT-3.3.2-2]
      } else if (c === 0) {
        return "Topic name must not contain U+0000 [MQTT-4.7.3-2]"; // [MQTT-4.7.3-2]
      }
      bytes += 1;
    } else {
      const n = nonAsciiBytes(topic, i, c);
      if (n === 0) return "Topic name must not contain unpaired surrogates [MQTT-1.5.3-1]";
      if (n === 4) i++;
      bytes += n;
    }
    if (countBytes && bytes > maxLength) return `Topic name is longer than ${maxLength} bytes`;
  }
  return undefined;
}

/**
 * Checks a topic filter (one entry of a SUBSCRIBE or UNSUBSCRIBE).
 *
 * `#` must be the last level and alone in it; `+` must be alone in its level.
 *
 * @example Validate a subscription
 * ```ts
 * import { validateTopicFilter } from "./topic.ts";
 *
 * validateTopicFilter("sport/+/player1/#", 65_535, 128); // undefined: valid
 * validateTopicFilter("sport/tennis#", 65_535, 128); // a reason citing [MQTT-4.7.1-2]
 * ```
 *
 * @param filter The topic filter.
 * @param maxLength Longest accepted filter, in UTF-8 bytes.
 * @param maxLevels Most accepted levels.
 * @returns `undefined` when valid, otherwise a short reason naming the rule that is broken.
 */
export function validateTopicFilter(
  filter: string,
  maxLength: number,
  maxLevels: number,
): string | undefined {
  const length = filter.length;
  // [MQTT-4.7.3-1]
  if (length === 0) return "Topic filter must not be empty [MQTT-4.7.3-1]";
  if (length > maxLength) return `Topic filter is longer than ${maxLength} bytes`;
  const countBytes = length * 3 > maxLength;
  let bytes = 0;
  let levels = 1;
  let levelStart = 0;
  for (let i = 0; i < length; i++) {
    const c = filter.charCodeAt(i);
    if (c < 0x80) {
      if (c === SLASH) {
        if (++levels > maxLevels) return `Topic filter has more than ${maxLevels} levels`;
        levelStart = i + 1;
      } else if (c === HASH) {
        // [MQTT-4.7.1-2]
        if (i !== levelStart || i !== length - 1) {
          return "Topic filter may contain '#' only as the whole last level [MQTT-4.7.1-2]";
        }
      } else if (c === PLUS) {
        // [MQTT-4.7.1-3]
        if (i !== levelStart || (i + 1 < length && filter.charCodeAt(i + 1) !== SLASH)) {
          return "Topic filter may contain '+' only as a whole level [MQTT-4.7.1-3]";
        }
      } else if (c === 0) {
        return "Topic filter must not contain U+0000 [MQTT-4.7.3-2]"; // [MQTT-4.7.3-2]
      }
      bytes += 1;
    } else {
      const n = nonAsciiBytes(filter, i, c);
      if (n === 0) return "Topic filter must not contain unpaired surrogates [MQTT-1.5.3-1]";
      if (n === 4) i++;
      bytes += n;
    }
    if (countBytes && bytes > maxLength) return `Topic filter is longer than ${maxLength} bytes`;
  }
  return undefined;
}

/**
 * UTF-8 length of the character whose first UTF-16 unit `c` (≥ 0x80) is at `i`; 4 for a
 * surrogate pair (the caller skips the low half); 0 for an unpaired surrogate, which has no
 * UTF-8 encoding [MQTT-1.5.3-1]. The wire decoder never produces one, but `Broker.publish()`
 * takes any JavaScript string.
 */
function nonAsciiBytes(s: string, i: number, c: number): number {
  if (c < 0x800) return 2;
  if (c < 0xd800 || c > 0xdfff) return 3;
  if (c <= 0xdbff) {
    const d = s.charCodeAt(i + 1); // NaN past the end: fails the test below
    if (d >= 0xdc00 && d <= 0xdfff) return 4;
  }
  return 0;
}

/**
 * Whether a topic is a `$`-topic (such as `$SYS/...`), which filters starting with a wildcard
 * do not match [MQTT-4.7.2-1].
 *
 * @example
 * ```ts
 * import { isSysTopic } from "./topic.ts";
 *
 * isSysTopic("$SYS/broker/uptime"); // true
 * isSysTopic("sport/$x"); // false
 * ```
 *
 * @param topic A topic name or filter.
 * @returns `true` when it starts with `$`.
 */
export function isSysTopic(topic: string): boolean {
  return topic.charCodeAt(0) === DOLLAR;
}

/**
 * Reference matcher: whether a valid topic filter matches a valid topic name.
 *
 * Deliberately simple (it splits both strings); the broker's hot path is `TopicTrie.match`,
 * which tests check against this function.
 *
 * @example The examples of section 4.7 of the standard
 * ```ts
 * import { matchTopic } from "./topic.ts";
 *
 * matchTopic("sport/tennis/player1/#", "sport/tennis/player1/ranking"); // true
 * matchTopic("sport/#", "sport"); // true
 * matchTopic("+/monitor/Clients", "$SYS/monitor/Clients"); // false
 * ```
 *
 * @param filter A topic filter that passes `validateTopicFilter`.
 * @param topic A topic name that passes `validateTopicName`.
 * @returns `true` when the filter matches the topic.
 */
export function matchTopic(filter: string, topic: string): boolean {
  // [MQTT-4.7.2-1]
  if (isSysTopic(topic)) {
    const f0 = filter.charCodeAt(0);
    if (f0 === PLUS || f0 === HASH) return false;
  }
  const f = filter.split("/");
  const t = topic.split("/");
  for (let i = 0; i < f.length; i++) {
    // '#' also matches the parent level: "sport/#" matches "sport" [MQTT-4.7.1-2].
    if (f[i] === "#") return true;
    if (i >= t.length) return false;
    if (f[i] !== "+" && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}
