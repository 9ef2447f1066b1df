/**
 * The PSK secrets file: `identity:hexkey` per line, the format stunnel's `PSKsecrets` reads
 * (mosquitto's `psk_file` too). Empty lines are skipped.
 *
 * stunnel reads the file itself (so the broker needs no write permission for a copy), and
 * stunnel 5.68 reads it literally: a `#` line is an error, a space before the colon is part of
 * the identity and a space after the key turns it into a 33-byte ASCII key. So every line is
 * checked here against what stunnel will make of it, and anything it would read differently
 * from how it looks is refused at start with the file and line, instead of stunnel failing later
 * with "Failed to read PSK secrets" and no line, or silently using another key.
 *
 * @module
 */

/** One identity and its pre-shared key. */
export interface PskEntry {
  /** What the client sends as its PSK identity (`--psk-identity` of mosquitto_pub). */
  identity: string;
  /** The key as bytes (the file holds it as hex). */
  key: Uint8Array;
}

/** Shortest key accepted, in bytes: stunnel refuses shorter keys (32 hex digits). */
export const MIN_PSK_KEY_BYTES = 16;
/** Longest key stunnel 5.68 reads, in bytes. */
export const MAX_PSK_KEY_BYTES = 512;
/** Longest identity stunnel 5.68 reads, in UTF-8 bytes. */
export const MAX_PSK_IDENTITY_BYTES = 255;

const HEX = /^[0-9a-fA-F]*$/;

/**
 * Parses the text of a PSK secrets file. Empty lines are skipped; a line may end in CRLF.
 *
 * Throws a `SyntaxError` naming `source` and the line for: a comment (`#`, which stunnel does
 * not skip), a missing colon, an empty identity, leading or trailing whitespace (stunnel would
 * keep it as part of the identity or read the key as ASCII), an identity longer than 255 bytes,
 * a key that is not hex (odd length, non-hex digit), a key shorter than 16 bytes or longer than
 * 512 bytes, and a duplicate identity.
 *
 * @example Parse one entry
 * ```ts
 * import { parsePskFile } from "./psk_file.ts";
 *
 * const [entry] = parsePskFile("sensor-1:00112233445566778899aabbccddeeff\n");
 * console.log(entry.identity, entry.key.length); // "sensor-1" 16
 * ```
 */
export function parsePskFile(text: string, source = "PSK file"): PskEntry[] {
  const entries: PskEntry[] = [];
  const seen = new Map<string, number>();
  const encoder = new TextEncoder();
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const fail = (why: string): never => {
      throw new SyntaxError(`Cannot read ${source}: line ${lineNo}: ${why}`);
    };
    const line = lines[i].replace(/\r$/, "");
    if (line === "") continue;
    if (line.trimStart().startsWith("#")) {
      fail("comments are not allowed (stunnel reads this file as it is)");
    }
    if (line !== line.trim()) fail("leading or trailing whitespace (stunnel would keep it)");
    const colon = line.indexOf(":");
    if (colon < 0) fail('missing ":" between identity and key');
    const identity = line.slice(0, colon);
    const hex = line.slice(colon + 1);
    if (identity === "") fail("empty identity");
    if (identity !== identity.trim()) fail("identity has leading or trailing whitespace");
    if (hex !== hex.trim()) fail(`key of "${identity}" has leading or trailing whitespace`);
    if (encoder.encode(identity).length > MAX_PSK_IDENTITY_BYTES) {
      fail(`identity longer than ${MAX_PSK_IDENTITY_BYTES} bytes`);
    }
    if (!HEX.test(hex)) fail(`key of "${identity}" is not hex (only 0-9, a-f allowed)`);
    if (hex.length % 2 !== 0) fail(`key of "${identity}" has an odd number of hex digits`);
    const bytes = hex.length / 2;
    if (bytes < MIN_PSK_KEY_BYTES) {
      fail(
        `key of "${identity}" is ${bytes} bytes; at least ${MIN_PSK_KEY_BYTES} bytes ` +
          `(${MIN_PSK_KEY_BYTES * 2} hex digits) are required`,
      );
    }
    if (bytes > MAX_PSK_KEY_BYTES) {
      fail(`key of "${identity}" is ${bytes} bytes; at most ${MAX_PSK_KEY_BYTES} are allowed`);
    }
    const first = seen.get(identity);
    if (first !== undefined) fail(`duplicate identity "${identity}" (first on line ${first})`);
    seen.set(identity, lineNo);
    const key = new Uint8Array(bytes);
    for (let j = 0; j < bytes; j++) key[j] = parseInt(hex.slice(j * 2, j * 2 + 2), 16);
    entries.push({ identity, key });
  }
  return entries;
}

/**
 * Reads and parses a PSK secrets file (see {@linkcode parsePskFile}); errors name the path.
 * A file without any entry is refused too: a PSK listener nobody can use is a mistake.
 *
 * @example Load the file given on the command line
 * ```ts ignore
 * import { loadPskFile } from "./psk_file.ts";
 *
 * const entries = await loadPskFile("/etc/denomq/psk.txt");
 * ```
 */
export async function loadPskFile(path: string): Promise<PskEntry[]> {
  let text: string;
  try {
    // Keep a byte order mark: stunnel would read it as part of the first identity.
    text = new TextDecoder("utf-8", { ignoreBOM: true }).decode(await Deno.readFile(path));
  } catch (error) {
    throw new Error(`Cannot read PSK file ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const entries = parsePskFile(text, path);
  if (entries.length === 0) {
    throw new SyntaxError(`Cannot read ${path}: no "identity:hexkey" entry`);
  }
  return entries;
}

/** Formats entries back into the `identity:hexkey` lines stunnel reads. */
export function formatPskFile(entries: readonly PskEntry[]): string {
  return entries.map(({ identity, key }) =>
    `${identity}:${Array.from(key, (b) => b.toString(16).padStart(2, "0")).join("")}\n`
  ).join("");
}
