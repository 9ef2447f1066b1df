/**
 * The admin API's bearer token: read from a file that only its owner may read, and compared in
 * constant time.
 *
 * @module
 */
import { createHash, timingSafeEqual } from "node:crypto";

/**
 * Reads the token from `path` (surrounding white space removed). Throws when the file is
 * readable or writable by group or others (`chmod 600` it), or holds no token.
 */
export async function loadTokenFile(path: string): Promise<string> {
  const info = await Deno.stat(path);
  if (!info.isFile) throw new TypeError(`${path}: not a file`);
  if (info.mode !== null && (info.mode & 0o077) !== 0) {
    throw new TypeError(
      `${path}: mode ${
        (info.mode & 0o777).toString(8).padStart(3, "0")
      } lets other users read it; make it private: chmod 600 ${path}`,
    );
  }
  const token = (await Deno.readTextFile(path)).trim();
  if (token === "") throw new TypeError(`${path}: the file holds no token`);
  if (/\s/.test(token)) throw new TypeError(`${path}: the token must be one word (no white space)`);
  return token;
}

const digest = (text: string) => createHash("sha256").update(text).digest();

/** A checker for `Authorization: Bearer …` headers; the time it takes does not depend on the guess. */
export function tokenChecker(token: string): (header: string | null) => boolean {
  const expected = digest(token);
  return (header) => {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
    // Hash even a missing token: same work either way.
    const given = digest(match?.[1] ?? "");
    return timingSafeEqual(given, expected) && match !== null;
  };
}
