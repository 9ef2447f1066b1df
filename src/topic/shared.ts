/**
 * Shared subscriptions: `$share/{ShareName}/{filter}` (MQTT 5.0 section 4.8.2), accepted from 5.0
 * and 3.1.1 clients alike, as mosquitto does.
 *
 * @module
 */
import { validateTopicFilter } from "./topic.ts";

/** The prefix of a shared subscription's topic filter. */
export const SHARE_PREFIX = "$share/";

/** Reason code 0x8F, Topic Filter invalid. */
const TOPIC_FILTER_INVALID = 0x8f;
/** Reason code 0x9E, Shared Subscriptions not supported. */
const SHARED_NOT_SUPPORTED = 0x9e;

/** A shared subscription's filter split into its parts. */
export interface SharedFilter {
  /** The ShareName: non-empty, without `/`, `+` or `#`. */
  group: string;
  /** The topic filter after the ShareName (wildcards allowed). */
  filter: string;
}

/**
 * Whether a topic filter names a shared subscription (starts with `$share/`). The test is cheap
 * and exact: a filter such as `$share` or `$sharex/a` is an ordinary one.
 *
 * @example
 * ```ts
 * import { isSharedFilter } from "./shared.ts";
 *
 * isSharedFilter("$share/workers/jobs/+"); // true
 * isSharedFilter("$SYS/#"); // false
 * ```
 *
 * @param filter A topic filter.
 * @returns `true` when it starts with `$share/`.
 */
export function isSharedFilter(filter: string): boolean {
  return filter.startsWith(SHARE_PREFIX);
}

/**
 * Splits `$share/{group}/{filter}` into its group and filter, without validating them (see
 * {@linkcode subscriptionFilterError}).
 *
 * @example
 * ```ts
 * import { parseSharedFilter } from "./shared.ts";
 *
 * parseSharedFilter("$share/g/a/#"); // { group: "g", filter: "a/#" }
 * parseSharedFilter("$share/g"); // { group: "g", filter: "" }: invalid, no filter
 * parseSharedFilter("a/#"); // undefined: not shared
 * ```
 *
 * @param filter A topic filter.
 * @returns The parts, or `undefined` when it is not a shared subscription.
 */
export function parseSharedFilter(filter: string): SharedFilter | undefined {
  if (!isSharedFilter(filter)) return undefined;
  const slash = filter.indexOf("/", SHARE_PREFIX.length);
  if (slash < 0) return { group: filter.substring(SHARE_PREFIX.length), filter: "" };
  return {
    group: filter.substring(SHARE_PREFIX.length, slash),
    filter: filter.substring(slash + 1),
  };
}

/** Why a SUBSCRIBE filter is refused: the 5.0 reason code and a short text. */
export interface FilterError {
  /**
   * 0x8F Topic Filter invalid, or 0x9E Shared Subscriptions not supported. A 3.1.1 SUBACK sends
   * 0x80 for either.
   */
  reasonCode: number;
  /** A short reason naming the rule. */
  reason: string;
}

/** The features {@linkcode subscriptionFilterError} needs to know about. */
export interface FilterFeatures {
  /** Whether `$share/` filters are accepted; when false they are refused with 0x9E. */
  sharedSubscriptions: boolean;
}

/**
 * Checks a SUBSCRIBE topic filter, a shared one included: for `$share/{group}/{filter}` the group
 * must be non-empty and contain none of `/`, `+`, `#` [MQTT-4.8.2-1] [MQTT-4.8.2-2], and a valid
 * filter must follow (`$share/g` alone is invalid). The length and level limits apply to the
 * whole string. UNSUBSCRIBE names the same full string.
 *
 * @example
 * ```ts
 * import { subscriptionFilterError } from "./shared.ts";
 *
 * const on = { sharedSubscriptions: true };
 * subscriptionFilterError("$share/g/a/+", 65_535, 128, on); // undefined: valid
 * subscriptionFilterError("$share/g", 65_535, 128, on)?.reasonCode; // 0x8F
 * subscriptionFilterError("$share/g/a", 65_535, 128, { sharedSubscriptions: false })?.reasonCode; // 0x9E
 * ```
 *
 * @param filter The topic filter as subscribed.
 * @param maxLength Longest accepted filter, in UTF-8 bytes.
 * @param maxLevels Most accepted levels.
 * @param features Which features are on.
 * @returns `undefined` when it may be subscribed, else why not.
 */
export function subscriptionFilterError(
  filter: string,
  maxLength: number,
  maxLevels: number,
  features: FilterFeatures,
): FilterError | undefined {
  const invalid = validateTopicFilter(filter, maxLength, maxLevels);
  const shared = parseSharedFilter(filter);
  if (shared === undefined) {
    return invalid === undefined
      ? undefined
      : { reasonCode: TOPIC_FILTER_INVALID, reason: invalid };
  }
  if (!features.sharedSubscriptions) {
    return { reasonCode: SHARED_NOT_SUPPORTED, reason: "Shared subscriptions are not supported" };
  }
  if (invalid !== undefined) return { reasonCode: TOPIC_FILTER_INVALID, reason: invalid };
  const { group } = shared;
  // [MQTT-4.8.2-1] at least one character; [MQTT-4.8.2-2] no '/', '+' or '#'.
  if (group === "") {
    return {
      reasonCode: TOPIC_FILTER_INVALID,
      reason: "Shared subscription needs a non-empty ShareName [MQTT-4.8.2-1]",
    };
  }
  if (group.includes("+") || group.includes("#")) {
    return {
      reasonCode: TOPIC_FILTER_INVALID,
      reason: "ShareName must not contain '+' or '#' [MQTT-4.8.2-2]",
    };
  }
  if (shared.filter === "") {
    return {
      reasonCode: TOPIC_FILTER_INVALID,
      reason: "Shared subscription needs a topic filter after the ShareName [MQTT-4.8.2-2]",
    };
  }
  return undefined;
}
