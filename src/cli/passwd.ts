/**
 * `cli.ts passwd`: what `mosquitto_passwd` users reach for, on the same file format.
 *
 * ```
 * cli.ts passwd [-c] FILE USER           add or change USER; password from the terminal or stdin
 * cli.ts passwd [-c] -b FILE USER PASS   batch: the password on the command line
 * cli.ts passwd -D FILE USER             delete USER
 * cli.ts passwd -U FILE                  hash a plain-text "user:password" file in place
 * cli.ts passwd --help
 * ```
 *
 * Permissions: `--allow-read=FILE --allow-write=FILE` (and of `FILE.tmp` for an atomic rename).
 *
 * @module
 */
import { deleteUserFromFile, hashPlainTextFile, setPasswordInFile } from "../auth/password_file.ts";

/** `cli.ts passwd --help`. */
export const PASSWD_HELP =
  `Usage: deno run --allow-read=FILE --allow-write=FILE cli.ts passwd [-c] FILE USER
       ... cli.ts passwd [-c] -b FILE USER PASSWORD
       ... cli.ts passwd -D FILE USER
       ... cli.ts passwd -U FILE

Manages a password file in mosquitto_passwd's format ($7$ PBKDF2-SHA512); mosquitto and this
broker read each other's files.
 -b : batch mode: the password is the last argument (it shows in the process list).
 -c : create a new file, overwriting an existing one.
 -D : delete the user.
 -U : hash a plain-text "user:password" file in place (lines already hashed are kept).
Without -b the password is read from the terminal (twice) or from stdin (one line).
`;

function fail(message: string): number {
  console.error(`error: passwd: ${message}`);
  return 2;
}

async function readPasswordLine(prompt: string): Promise<string> {
  const encoder = new TextEncoder();
  const stdin = Deno.stdin;
  const terminal = stdin.isTerminal();
  if (terminal) {
    Deno.stderr.writeSync(encoder.encode(prompt));
    stdin.setRaw(true);
  }
  const bytes: number[] = [];
  const buffer = new Uint8Array(1);
  try {
    for (;;) {
      const n = await stdin.read(buffer);
      if (n === null) break;
      const c = buffer[0];
      if (c === 10 || c === 13) break;
      if (terminal && c === 3) throw new Error("interrupted");
      if (terminal && (c === 127 || c === 8)) {
        bytes.pop();
        continue;
      }
      bytes.push(c);
    }
  } finally {
    if (terminal) {
      stdin.setRaw(false);
      Deno.stderr.writeSync(encoder.encode("\n"));
    }
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

function checkUser(user: string): string | undefined {
  if (user === "" || user.includes(":")) {
    return `user name must be non-empty and must not contain ":"`;
  }
  return undefined;
}

/** Runs `passwd` with its arguments (after "passwd"); returns the exit code. */
export async function passwd(args: string[]): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(PASSWD_HELP);
    return 0;
  }
  const flags = new Set<string>();
  const rest: string[] = [];
  for (const a of args) {
    if (/^-[bcDU]$/.test(a) && rest.length === 0) flags.add(a);
    else if (a.startsWith("-") && rest.length === 0) {
      return fail(`unknown option ${a} (see --help)`);
    } else rest.push(a);
  }
  const modes = ["-b", "-D", "-U"].filter((f) => flags.has(f));
  if (modes.length > 1 || (flags.has("-c") && (flags.has("-D") || flags.has("-U")))) {
    return fail(`${[...flags].join(" ")}: these options do not go together (see --help)`);
  }
  const expected = flags.has("-U") ? 1 : flags.has("-b") ? 3 : 2;
  if (rest.length !== expected) {
    return fail(
      flags.has("-U")
        ? "usage: cli.ts passwd -U FILE"
        : flags.has("-b")
        ? "usage: cli.ts passwd -b FILE USER PASSWORD"
        : flags.has("-D")
        ? "usage: cli.ts passwd -D FILE USER"
        : "usage: cli.ts passwd FILE USER (the password is read from the terminal or stdin)",
    );
  }
  const [file, user] = rest;
  try {
    if (flags.has("-U")) {
      const { hashed, kept } = await hashPlainTextFile(file);
      if (kept > 0) console.error(`passwd: ${kept} line(s) already hashed, kept as they were`);
      void hashed;
      return 0;
    }
    const bad = checkUser(user);
    if (bad !== undefined) return fail(bad);
    if (flags.has("-D")) {
      if (!await deleteUserFromFile(file, user)) {
        console.error(`warning: passwd: user ${user} not found in ${file}`);
        return 1;
      }
      return 0;
    }
    let password: string;
    if (flags.has("-b")) {
      password = rest[2];
    } else {
      password = await readPasswordLine("Password: ");
      if (Deno.stdin.isTerminal() && (await readPasswordLine("Reenter password: ")) !== password) {
        return fail("the passwords do not match");
      }
    }
    if (password === "") return fail("empty password");
    if (flags.has("-c")) await Deno.writeTextFile(file, "", { mode: 0o600 });
    await setPasswordInFile(file, user, password);
  } catch (error) {
    const text = (error instanceof Error ? error.message : String(error)).split("\n")[0];
    console.error(`error: passwd ${file}: ${text}`);
    return error instanceof TypeError || error instanceof SyntaxError ? 2 : 1;
  }
  return 0;
}
