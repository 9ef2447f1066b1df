/**
 * A lossless mapping of MQTT topic names and filters onto NATS subjects.
 *
 * A topic `l1/l2/…/ln` becomes `PREFIX.K.t1.t2.….tn`:
 * - `K` is `d` for a topic that starts with `$` and `n` otherwise, so that the filters `#` and
 *   `+/…` (which must not match `$` topics [MQTT-4.7.2-1]) map to `PREFIX.n.>` and `PREFIX.n.*…`;
 * - each level becomes one token: the characters `A-Z a-z 0-9 _ -` stay as they are, every other
 *   UTF-8 byte becomes `~` and two upper-case hex digits, and the empty level becomes `~` alone.
 *   So `.`, `*`, `>`, spaces and any Unicode survive, no token is empty, and no token is a NATS
 *   wildcard.
 *
 * A filter maps the same way with `+` → `*` and `#` → `>`; `a/#` maps to two subjects, `a` and
 * `a.>`, because `#` also matches its parent level [MQTT-4.7.1-2].
 *
 * @module
 */

const HEX = "0123456789ABCDEF";
const utf8 = new TextEncoder();
const text = new TextDecoder("utf-8", { fatal: true });

function isPlain(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 ||
    c === 45;
}

/** The NATS token of one MQTT topic level (never empty, never a wildcard). */
export function encodeLevel(level: string): string {
  if (level === "") return "~";
  let plain = true;
  for (let i = 0; i < level.length; i++) {
    if (!isPlain(level.charCodeAt(i))) {
      plain = false;
      break;
    }
  }
  if (plain) return level;
  let out = "";
  for (const byte of utf8.encode(level)) {
    out += isPlain(byte) ? String.fromCharCode(byte) : "~" + HEX[byte >> 4] + HEX[byte & 15];
  }
  return out;
}

/** The MQTT topic level of a token made by {@link encodeLevel}; throws on anything else. */
export function decodeLevel(token: string): string {
  if (token === "~") return "";
  if (!token.includes("~")) return token;
  const bytes: number[] = [];
  for (let i = 0; i < token.length; i++) {
    const c = token.charCodeAt(i);
    if (c === 126) {
      const byte = parseInt(token.slice(i + 1, i + 3), 16);
      if (Number.isNaN(byte) || i + 3 > token.length) {
        throw new TypeError(`Cannot decode subject token "${token}": bad escape`);
      }
      bytes.push(byte);
      i += 2;
    } else {
      bytes.push(c);
    }
  }
  return text.decode(new Uint8Array(bytes));
}

/** The NATS subject of an MQTT topic name, under `prefix`. */
export function topicToSubject(prefix: string, topic: string): string {
  const kind = topic.charCodeAt(0) === 36 ? ".d." : ".n.";
  const levels = topic.split("/");
  let out = prefix + kind + encodeLevel(levels[0]);
  for (let i = 1; i < levels.length; i++) out += "." + encodeLevel(levels[i]);
  return out;
}

/** The MQTT topic of a subject made by {@link topicToSubject} with this `prefix`. */
export function subjectToTopic(prefix: string, subject: string): string {
  const rest = subject.slice(prefix.length + 3);
  return rest.split(".").map(decodeLevel).join("/");
}

/**
 * The NATS subject filters that together match exactly the topics an MQTT filter matches: one,
 * or two for a filter ending in `/#`.
 */
export function filterToSubjects(prefix: string, filter: string): string[] {
  const levels = filter.split("/");
  const first = levels[0];
  // `+` and `#` first never match `$` topics; a literal first level says which kind it is.
  const kind = first === "+" || first === "#" || first.charCodeAt(0) !== 36 ? ".n" : ".d";
  let out = prefix + kind;
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i];
    if (level === "#") {
      // [MQTT-4.7.1-2] `a/#` also matches `a`.
      return i === 0 ? [out + ".>"] : [out, out + ".>"];
    }
    out += "." + (level === "+" ? "*" : encodeLevel(level));
  }
  return [out];
}

/** Whether a NATS subject filter (tokens, `*`, `>`) matches a subject: NATS's own rule. */
export function subjectMatches(filter: string, subject: string): boolean {
  const f = filter.split(".");
  const s = subject.split(".");
  for (let i = 0; i < f.length; i++) {
    if (f[i] === ">") return s.length > i;
    if (i >= s.length) return false;
    if (f[i] !== "*" && f[i] !== s[i]) return false;
  }
  return f.length === s.length;
}
