/**
 * Mosquitto's password file: one `username:hash` per line, read and written in the format
 * `mosquitto_passwd` uses, so either program can read the other's files.
 *
 * Two hash formats are read:
 * - `$7$ITERATIONS$SALT$HASH`: PBKDF2-HMAC-SHA512, what `mosquitto_passwd` writes by default
 *   (mosquitto 2.0 uses 101 iterations and a 12-byte salt);
 * - `$6$SALT$HASH`: SHA-512(password ‖ salt), what `mosquitto_passwd -H sha512` and mosquitto
 *   1.6 and earlier write.
 *
 * Salts and hashes are standard base64 of raw bytes; the hash is 64 bytes. We write `$7$` with
 * {@link DEFAULT_ITERATIONS} iterations and a 12-byte random salt, computed with WebCrypto.
 *
 * @module
 */

/** PBKDF2-HMAC-SHA512 iterations we write: OWASP's 2023 figure for that hash. */
export const DEFAULT_ITERATIONS = 210_000;

/**
 * Bytes of random salt we write. Exactly 12: mosquitto 2.0 refuses any other salt length
 * ("Unable to decode password salt ..., removing entry"), checked with mosquitto 2.0.11. We read
 * any length.
 */
const SALT_BYTES = 12;
/** SHA-512 output, and the hash length both mosquitto formats store. */
const HASH_BYTES = 64;
/** Iteration counts above this are refused: one CONNECT must not cost minutes of CPU. */
const MAX_ITERATIONS = 10_000_000;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

interface Sha512Entry {
  kind: 6;
  salt: Uint8Array<ArrayBuffer>;
  hash: Uint8Array<ArrayBuffer>;
}

interface Pbkdf2Entry {
  kind: 7;
  iterations: number;
  salt: Uint8Array<ArrayBuffer>;
  hash: Uint8Array<ArrayBuffer>;
}

type Entry = Sha512Entry | Pbkdf2Entry;

/**
 * The users of a mosquitto password file and their password hashes.
 *
 * Parsing is all or nothing: any bad line refuses the whole file, so a reload with a broken file
 * can keep the previous users.
 *
 * @example Check a CONNECT's credentials
 * ```ts
 * import { hashPassword, PasswordFile } from "./password_file.ts";
 *
 * const file = PasswordFile.parse(`alice:${await hashPassword("secret", 1_000)}\n`, "passwords");
 * await file.verify("alice", new TextEncoder().encode("secret")); // true
 * await file.verify("alice", new TextEncoder().encode("guess")); // false
 * ```
 */
export class PasswordFile {
  #users: Map<string, Entry>;
  /** Hashed for unknown users, so they cost as much time as known ones. */
  #dummy: Entry;

  private constructor(users: Map<string, Entry>) {
    this.#users = users;
    this.#dummy = dummyLike(users);
  }

  /**
   * Parses the text of a password file. Blank lines and lines starting with `#` are ignored;
   * whitespace around the user name and the hash is trimmed (as mosquitto does).
   *
   * @param text The file's contents.
   * @param source Names the file in error messages.
   * @returns The parsed file.
   * @throws {SyntaxError} `source:line: reason` for a line that is not `user:hash`, an empty
   * user name, an unknown hash type, bad base64, a bad iteration count, a hash that is not 64
   * bytes, or a duplicate user.
   */
  static parse(text: string, source = "<password file>"): PasswordFile {
    const users = new Map<string, Entry>();
    const firstLine = new Map<string, number>();
    const lines = text.split("\n");
    for (let i = 0; i < lines.length; i++) {
      const lineNo = i + 1;
      const fail = (why: string): never => {
        throw new SyntaxError(`${source}:${lineNo}: ${why}`);
      };
      const line = lines[i].trim();
      if (line === "" || line.startsWith("#")) continue;
      const colon = line.indexOf(":");
      if (colon < 0) fail('not "user:hash"');
      const username = line.slice(0, colon).trim();
      const encoded = line.slice(colon + 1).trim();
      if (username === "") fail("empty user name");
      if (encoded === "") fail(`no hash for user "${username}"`);
      const entry = decodeHash(encoded, (why) => fail(`user "${username}": ${why}`));
      const first = firstLine.get(username);
      if (first !== undefined) fail(`duplicate user "${username}" (first on line ${first})`);
      firstLine.set(username, lineNo);
      users.set(username, entry);
    }
    return new PasswordFile(users);
  }

  /**
   * Reads and parses a password file.
   *
   * @param path The file to read; error messages name it.
   * @returns The parsed file.
   * @throws {SyntaxError} As {@link PasswordFile.parse}, naming `path`.
   * @throws {Deno.errors.NotFound} and other read errors (their messages name `path`).
   */
  static async load(path: string): Promise<PasswordFile> {
    const text = await Deno.readTextFile(path); // Deno's errors name the path
    return PasswordFile.parse(text, path);
  }

  /**
   * Checks a password. Always computes one hash, also for an unknown user (with parameters like
   * the file's own), and compares every byte, so timing reveals neither which users exist nor
   * how much of a hash matched. No result is cached: the slow hash per CONNECT is the point.
   *
   * @param username The CONNECT's user name.
   * @param password The CONNECT's password bytes.
   * @returns `true` when the user exists and the password is right.
   */
  async verify(username: string, password: Uint8Array): Promise<boolean> {
    const entry = this.#users.get(username);
    const target = entry ?? this.#dummy;
    const computed = await computeHash(target, password);
    const same = constantTimeEqual(computed, target.hash);
    return same && entry !== undefined;
  }

  /**
   * Whether the file has this user.
   *
   * @param username A user name.
   * @returns `true` when the file has a line for it.
   */
  has(username: string): boolean {
    return this.#users.has(username);
  }

  /** How many users the file has. */
  get size(): number {
    return this.#users.size;
  }
}

/**
 * Hashes a password in mosquitto's default format, `$7$ITERATIONS$SALT$HASH`
 * (PBKDF2-HMAC-SHA512, 12-byte random salt, 64-byte hash).
 *
 * @example A line for a password file
 * ```ts
 * import { hashPassword } from "./password_file.ts";
 *
 * const line = `alice:${await hashPassword("secret")}`; // "alice:$7$210000$..."
 * ```
 *
 * @param password The password; a string is encoded as UTF-8 (as `mosquitto_passwd` does).
 * @param iterations PBKDF2 iterations, default {@link DEFAULT_ITERATIONS}.
 * @returns The encoded hash.
 * @throws {RangeError} When `iterations` is not an integer from 1 to 10 000 000.
 */
export async function hashPassword(
  password: string | Uint8Array,
  iterations: number = DEFAULT_ITERATIONS,
): Promise<string> {
  if (!Number.isInteger(iterations) || iterations < 1 || iterations > MAX_ITERATIONS) {
    throw new RangeError(
      `Cannot hash password: iterations must be an integer from 1 to ${MAX_ITERATIONS}, got ${iterations}`,
    );
  }
  const bytes = typeof password === "string" ? new TextEncoder().encode(password) : password;
  const salt = crypto.getRandomValues(new Uint8Array(SALT_BYTES));
  const hash = await pbkdf2(bytes, salt, iterations, HASH_BYTES);
  return `$7$${iterations}$${encodeBase64(salt)}$${encodeBase64(hash)}`;
}

/**
 * Adds a user to a password file or changes its password, like `mosquitto_passwd -b`.
 *
 * Creates the file (mode 0600) when missing. Every other line, comments included, is kept as it
 * was. The file ends up with mode 0600. Not safe against concurrent writers of the same file.
 *
 * Permissions: `--allow-read=FILE --allow-write=FILE` is enough; the file is then rewritten in
 * place (as `mosquitto_passwd` does). With read and write access to `FILE.tmp` too, the new
 * contents go to `FILE.tmp`, which is then renamed over the file, so a reader (or a crash) never
 * sees half a file. A `FILE.tmp` left by an interrupted run is refused, not overwritten.
 *
 * @example Add a user
 * ```ts
 * import { setPasswordInFile } from "./password_file.ts";
 *
 * await setPasswordInFile("/etc/denomq/passwords", "alice", "secret");
 * ```
 *
 * @param path The password file.
 * @param username The user; non-empty, without `:` or line breaks, not starting with `#`, and
 *   without surrounding whitespace.
 * @param password The new password.
 * @throws {TypeError} For a user name that cannot be stored.
 * @throws {SyntaxError} When the existing file does not parse (it is left untouched).
 */
export async function setPasswordInFile(
  path: string,
  username: string,
  password: string,
): Promise<void> {
  if (
    username === "" || /[:\r\n]/.test(username) || username !== username.trim() ||
    username.startsWith("#")
  ) {
    throw new TypeError(
      `Cannot store user "${username}": a user name must be non-empty, without ":" or line ` +
        'breaks, not start with "#", and have no leading or trailing whitespace',
    );
  }
  let text = "";
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  PasswordFile.parse(text, path); // refuse to rewrite a file we cannot read
  const line = `${username}:${await hashPassword(password)}`;
  const lines = text === "" ? [] : text.split("\n");
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  const at = lines.findIndex((l) => {
    const t = l.trim();
    if (t.startsWith("#")) return false;
    const colon = t.indexOf(":");
    return colon >= 0 && t.slice(0, colon).trim() === username;
  });
  if (at >= 0) lines[at] = line;
  else lines.push(line);
  await writeAtomically(path, lines.join("\n") + "\n");
}

/**
 * Removes a user from a password file, like `mosquitto_passwd -D`. Every other line is kept.
 *
 * @example
 * ```ts ignore
 * import { deleteUserFromFile } from "./password_file.ts";
 *
 * if (!await deleteUserFromFile("/etc/denomq/passwords", "alice")) console.error("no alice");
 * ```
 *
 * @param path The password file (it must exist and parse).
 * @param username The user to remove.
 * @returns `false` when the user was not in the file (the file is then left untouched).
 * @throws {SyntaxError} When the file does not parse (it is left untouched).
 */
export async function deleteUserFromFile(path: string, username: string): Promise<boolean> {
  const text = await Deno.readTextFile(path);
  PasswordFile.parse(text, path);
  const lines = text.split("\n");
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  const kept = lines.filter((l) => userOf(l) !== username);
  if (kept.length === lines.length) return false;
  await writeAtomically(path, kept.length === 0 ? "" : kept.join("\n") + "\n");
  return true;
}

/**
 * Hashes a plain-text `user:password` file in place, like `mosquitto_passwd -U`. Unlike
 * `mosquitto_passwd`, a line that already holds a `$6$` or `$7$` hash is kept as it is (hashing a
 * hash again would lock that user out); blank and `#` lines are kept.
 *
 * @param path The file.
 * @param iterations PBKDF2 iterations, default {@link DEFAULT_ITERATIONS}.
 * @returns How many lines were hashed, and how many were already hashes.
 * @throws {SyntaxError} `path:line: reason` for a line without `user:`.
 */
export async function hashPlainTextFile(
  path: string,
  iterations: number = DEFAULT_ITERATIONS,
): Promise<{ hashed: number; kept: number }> {
  const text = await Deno.readTextFile(path);
  const lines = text.split("\n");
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  let hashed = 0;
  let kept = 0;
  const out: string[] = [];
  for (const [i, line] of lines.entries()) {
    const t = line.trim();
    if (t === "" || t.startsWith("#")) {
      out.push(line);
      continue;
    }
    const colon = line.indexOf(":");
    const user = colon < 0 ? "" : line.slice(0, colon).trim();
    if (user === "") throw new SyntaxError(`${path}:${i + 1}: expected "user:password"`);
    const password = line.slice(colon + 1).replace(/\r$/, "");
    if (/^\$[67]\$/.test(password.trim())) {
      out.push(line);
      kept++;
      continue;
    }
    out.push(`${user}:${await hashPassword(password, iterations)}`);
    hashed++;
  }
  const result = out.join("\n") + (out.length > 0 ? "\n" : "");
  PasswordFile.parse(result, path); // never write a file the broker cannot read
  await writeAtomically(path, result);
  return { hashed, kept };
}

function userOf(line: string): string | undefined {
  const t = line.trim();
  if (t.startsWith("#")) return undefined;
  const colon = t.indexOf(":");
  return colon < 0 ? undefined : t.slice(0, colon).trim();
}

function granted(name: "read" | "write", path: string): boolean {
  try {
    return Deno.permissions.querySync({ name, path }).state === "granted";
  } catch {
    return false;
  }
}

async function writeAtomically(path: string, text: string): Promise<void> {
  const bytes = new TextEncoder().encode(text);
  // A fixed name, so that permission can be granted for exactly it.
  const temp = `${path}.tmp`;
  if (!granted("read", temp) || !granted("write", temp)) return await rewriteInPlace(path, bytes);
  let file: Deno.FsFile;
  try {
    file = await Deno.open(temp, { write: true, createNew: true, mode: 0o600 });
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) {
      throw new Error(
        `${temp} exists: another passwd is running, or one was interrupted (then remove it)`,
      );
    }
    throw error;
  }
  try {
    try {
      await writeAll(file, bytes);
      await file.sync();
    } finally {
      file.close();
    }
    if (Deno.build.os !== "windows") await Deno.chmod(temp, 0o600); // in case of a strange umask
    await Deno.rename(temp, path);
  } catch (error) {
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
}

// Without access to a temporary file: overwrite, then cut what is left of longer old contents.
async function rewriteInPlace(path: string, bytes: Uint8Array): Promise<void> {
  const file = await Deno.open(path, { write: true, create: true, mode: 0o600 });
  try {
    await writeAll(file, bytes);
    await file.truncate(bytes.length);
    await file.sync();
  } finally {
    file.close();
  }
  if (Deno.build.os !== "windows") await Deno.chmod(path, 0o600);
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await file.write(bytes.subarray(written));
}

function decodeHash(encoded: string, fail: (why: string) => never): Entry {
  if (!encoded.startsWith("$")) {
    fail("not a hash (plain-text passwords are not read; hash them with mosquitto_passwd -U)");
  }
  const parts = encoded.split("$");
  // "$7$I$S$H" splits into ["", "7", I, S, H]; "$6$S$H" into ["", "6", S, H].
  if (parts[1] === "7") {
    if (parts.length !== 5) fail('bad $7$ hash (expected "$7$ITERATIONS$SALT$HASH")');
    const iterations = /^[0-9]{1,9}$/.test(parts[2]) ? Number(parts[2]) : NaN;
    if (!(iterations >= 1 && iterations <= MAX_ITERATIONS)) {
      fail(`bad iteration count "${parts[2]}" (1 to ${MAX_ITERATIONS})`);
    }
    const salt = decodeBase64(parts[3], "salt", fail);
    const hash = decodeBase64(parts[4], "hash", fail);
    if (hash.length !== HASH_BYTES) fail(`hash is ${hash.length} bytes, expected ${HASH_BYTES}`);
    return { kind: 7, iterations, salt, hash };
  }
  if (parts[1] === "6") {
    if (parts.length !== 4) fail('bad $6$ hash (expected "$6$SALT$HASH")');
    const salt = decodeBase64(parts[2], "salt", fail);
    const hash = decodeBase64(parts[3], "hash", fail);
    if (hash.length !== HASH_BYTES) fail(`hash is ${hash.length} bytes, expected ${HASH_BYTES}`);
    return { kind: 6, salt, hash };
  }
  return fail(`unknown hash type "$${parts[1]}$" (expected $6$ or $7$)`);
}

function decodeBase64(
  text: string,
  what: string,
  fail: (why: string) => never,
): Uint8Array<ArrayBuffer> {
  if (!BASE64.test(text)) fail(`bad base64 in ${what}`);
  let binary: string;
  try {
    binary = atob(text);
  } catch {
    return fail(`bad base64 in ${what}`);
  }
  if (binary.length === 0) fail(`empty ${what}`);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function encodeBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
  return btoa(binary);
}

async function computeHash(
  entry: Entry,
  password: Uint8Array,
): Promise<Uint8Array<ArrayBuffer>> {
  if (entry.kind === 7) {
    return await pbkdf2(password, entry.salt, entry.iterations, entry.hash.length);
  }
  const input = new Uint8Array(password.length + entry.salt.length);
  input.set(password);
  input.set(entry.salt, password.length);
  return new Uint8Array(await crypto.subtle.digest("SHA-512", input));
}

async function pbkdf2(
  password: Uint8Array,
  salt: Uint8Array<ArrayBuffer>,
  iterations: number,
  bytes: number,
): Promise<Uint8Array<ArrayBuffer>> {
  const key = await crypto.subtle.importKey("raw", new Uint8Array(password), "PBKDF2", false, [
    "deriveBits",
  ]);
  const bits = await crypto.subtle.deriveBits(
    { name: "PBKDF2", hash: "SHA-512", salt, iterations },
    key,
    bytes * 8,
  );
  return new Uint8Array(bits);
}

/** Compares every byte whatever the differences, so the time taken does not depend on them. */
function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  let diff = a.length ^ b.length;
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) diff |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return diff === 0;
}

/**
 * A never-matching entry with the file's most common parameters (kind and iteration count), so
 * that an unknown user costs what a typical known user costs.
 */
function dummyLike(users: Map<string, Entry>): Entry {
  const counts = new Map<string, { n: number; entry: Entry }>();
  let best: { n: number; entry: Entry } | undefined;
  for (const entry of users.values()) {
    const key = entry.kind === 7 ? `7:${entry.iterations}` : "6";
    const slot = counts.get(key) ?? { n: 0, entry };
    slot.n++;
    counts.set(key, slot);
    if (best === undefined || slot.n > best.n) best = slot;
  }
  const salt = crypto.getRandomValues(new Uint8Array(SALT_BYTES));
  // A random target hash: no password matches it except with probability 2^-512.
  const hash = crypto.getRandomValues(new Uint8Array(HASH_BYTES));
  const model = best?.entry;
  if (model?.kind === 6) return { kind: 6, salt, hash };
  return { kind: 7, iterations: model?.iterations ?? DEFAULT_ITERATIONS, salt, hash };
}
