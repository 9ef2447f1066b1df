/**
 * `cli.ts passwd` with what mosquitto_passwd users reach for: -b (batch), -D (delete), -U (hash a
 * plain-text file), -c, --help; files checked by our reader and by the real mosquitto_passwd.
 *
 * Permissions: `--allow-read=FILE --allow-write=FILE` only.
 */
import assert from "node:assert/strict";
import { PasswordFile } from "../src/auth/password_file.ts";
import { run, which } from "./_util.ts";

const CLI = new URL("../cli.ts", import.meta.url).pathname;
const HAVE_PASSWD = which("mosquitto_passwd") !== undefined;
const enc = new TextEncoder();

function passwd(dir: string, args: string[]) {
  return run(Deno.execPath(), [
    "run",
    "--allow-read=pw.txt",
    "--allow-write=pw.txt",
    CLI,
    "passwd",
    ...args,
  ], { cwd: dir, deadlineMs: 30_000 });
}

async function users(path: string): Promise<string[]> {
  const text = await Deno.readTextFile(path);
  return text.split("\n").filter((l) => l !== "" && !l.startsWith("#")).map((l) => l.split(":")[0]);
}

Deno.test("passwd --help exits 0 and names every mode", async () => {
  const result = await run(Deno.execPath(), ["run", CLI, "passwd", "--help"]);
  assert.equal(result.code, 0, result.stderr);
  for (const mode of ["-b", "-c", "-D", "-U"]) assert.match(result.stdout, new RegExp(` ${mode} `));
});

Deno.test("passwd -b adds and changes, -D deletes, a missing user exits 1", async () => {
  const dir = await Deno.makeTempDir({ prefix: "denomq-passwd-" });
  const file = `${dir}/pw.txt`;
  try {
    assert.equal((await passwd(dir, ["-c", "-b", "pw.txt", "alice", "a1"])).code, 0);
    assert.equal((await passwd(dir, ["-b", "pw.txt", "bob", "b1"])).code, 0);
    assert.equal((await passwd(dir, ["-b", "pw.txt", "alice", "a2"])).code, 0);
    assert.deepEqual(await users(file), ["alice", "bob"]);
    const loaded = await PasswordFile.load(file);
    assert.equal(await loaded.verify("alice", enc.encode("a2")), true);
    assert.equal(await loaded.verify("alice", enc.encode("a1")), false);
    assert.equal(Deno.statSync(file).mode! & 0o777, 0o600);
    const deleted = await passwd(dir, ["-D", "pw.txt", "alice"]);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.deepEqual(await users(file), ["bob"]);
    const missing = await passwd(dir, ["-D", "pw.txt", "alice"]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /user alice not found/);
    const bad = await passwd(dir, ["-b", "pw.txt", "a:b", "x"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /must not contain ":"/);
    const usage = await passwd(dir, ["-D", "pw.txt"]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /usage: cli\.ts passwd -D FILE USER/);
    assert.equal((await passwd(dir, ["-x", "pw.txt", "u"])).code, 2);
    assert.equal((await passwd(dir, ["-D", "-U", "pw.txt"])).code, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("passwd -U hashes a plain-text file in place; hashes already there are kept", async () => {
  const dir = await Deno.makeTempDir({ prefix: "denomq-passwd-" });
  const file = `${dir}/pw.txt`;
  try {
    await Deno.writeTextFile(file, "# users\nalice:secret one\nbob:two\n");
    const first = await passwd(dir, ["-U", "pw.txt"]);
    assert.equal(first.code, 0, first.stderr);
    const hashed = await Deno.readTextFile(file);
    assert.match(hashed, /^# users\nalice:\$7\$\d+\$[^$]+\$[^$]+\nbob:\$7\$/);
    // mosquitto_passwd -U would hash the hashes again; ours keeps them.
    const again = await passwd(dir, ["-U", "pw.txt"]);
    assert.equal(again.code, 0);
    assert.equal(await Deno.readTextFile(file), hashed);
    assert.match(again.stderr, /2 line\(s\) already hashed/);
    const loaded = await PasswordFile.load(file);
    assert.equal(await loaded.verify("alice", enc.encode("secret one")), true);
    assert.equal(await loaded.verify("bob", enc.encode("two")), true);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "passwd: files made by mosquitto_passwd and by us, deleted by the other one",
  ignore: !HAVE_PASSWD,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "denomq-passwd-" });
    const file = `${dir}/pw.txt`;
    try {
      let made = await run("mosquitto_passwd", ["-c", "-b", file, "carol", "c1"]);
      assert.equal(made.code, 0, made.stderr);
      assert.equal((await passwd(dir, ["-b", "pw.txt", "dave", "d1"])).code, 0);
      // The real tool reads our line (it rewrites the whole file) and deletes its own user.
      made = await run("mosquitto_passwd", ["-D", file, "carol"]);
      assert.equal(made.code, 0, made.stderr);
      assert.deepEqual(await users(file), ["dave"]);
      made = await run("mosquitto_passwd", ["-b", file, "erin", "e1"]);
      assert.equal(made.code, 0, made.stderr);
      // We delete a user it wrote, and still verify the others.
      assert.equal((await passwd(dir, ["-D", "pw.txt", "erin"])).code, 0);
      const loaded = await PasswordFile.load(file);
      assert.equal(await loaded.verify("dave", enc.encode("d1")), true);
      assert.deepEqual(await users(file), ["dave"]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
