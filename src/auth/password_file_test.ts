import assert from "node:assert/strict";
import {
  DEFAULT_ITERATIONS,
  hashPassword,
  PasswordFile,
  setPasswordInFile,
} from "./password_file.ts";
import { runTool, withMosquitto } from "./_mosquitto_testing.ts";

const utf8 = (s: string) => new TextEncoder().encode(s);

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "password_file_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("PasswordFile reads $7$ (PBKDF2-SHA512) files written by mosquitto_passwd", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/passwords`;
    assert.equal(
      (await runTool("mosquitto_passwd", ["-c", "-b", path, "alice", "secret"])).code,
      0,
    );
    assert.equal((await runTool("mosquitto_passwd", ["-b", path, "carol", "pässwörd ✓"])).code, 0);
    const text = await Deno.readTextFile(path);
    assert.match(text, /^alice:\$7\$\d+\$[A-Za-z0-9+/]+=*\$[A-Za-z0-9+/]+=*$/m);
    const file = await PasswordFile.load(path);
    assert.equal(file.size, 2);
    assert.ok(file.has("alice") && file.has("carol") && !file.has("bob"));
    assert.equal(await file.verify("alice", utf8("secret")), true);
    assert.equal(await file.verify("alice", utf8("Secret")), false);
    assert.equal(await file.verify("alice", utf8("secret ")), false);
    assert.equal(await file.verify("alice", utf8("")), false);
    assert.equal(await file.verify("carol", utf8("pässwörd ✓")), true);
    assert.equal(await file.verify("carol", utf8("secret")), false);
    assert.equal(await file.verify("bob", utf8("secret")), false, "unknown user");
  });
});

Deno.test("PasswordFile reads $6$ (salted SHA-512) files written by mosquitto_passwd -H sha512", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/passwords`;
    const made = await runTool("mosquitto_passwd", [
      "-H",
      "sha512",
      "-c",
      "-b",
      path,
      "bob",
      "hunter2",
    ]);
    assert.equal(made.code, 0, made.output);
    assert.match(await Deno.readTextFile(path), /^bob:\$6\$[A-Za-z0-9+/]+=*\$[A-Za-z0-9+/]+=*$/m);
    const file = await PasswordFile.load(path);
    assert.equal(await file.verify("bob", utf8("hunter2")), true);
    assert.equal(await file.verify("bob", utf8("hunter3")), false);
    assert.equal(await file.verify("alice", utf8("hunter2")), false);
  });
});

Deno.test("hashPassword writes $7$ with the default iterations and a 12-byte salt", async () => {
  const hash = await hashPassword("secret");
  const match = /^\$7\$(\d+)\$([A-Za-z0-9+/]+=*)\$([A-Za-z0-9+/]+=*)$/.exec(hash);
  assert.ok(match, hash);
  assert.equal(Number(match[1]), DEFAULT_ITERATIONS);
  assert.equal(DEFAULT_ITERATIONS, 210_000);
  assert.equal(atob(match[2]).length, 12);
  assert.equal(atob(match[3]).length, 64);
  assert.notEqual(await hashPassword("secret"), hash, "a fresh salt each time");

  const file = PasswordFile.parse(`alice:${hash}\nbob:${await hashPassword(utf8("x"), 1000)}\n`);
  assert.equal(await file.verify("alice", utf8("secret")), true);
  assert.equal(await file.verify("alice", utf8("secreT")), false);
  assert.equal(await file.verify("bob", utf8("x")), true);
});

Deno.test("hashPassword refuses a bad iteration count", async () => {
  for (const iterations of [0, -1, 1.5, NaN, 10_000_001]) {
    await assert.rejects(hashPassword("x", iterations), RangeError, String(iterations));
  }
});

Deno.test("PasswordFile verifies an empty password", async () => {
  const file = PasswordFile.parse(`u:${await hashPassword("", 1000)}`);
  assert.equal(await file.verify("u", new Uint8Array(0)), true);
  assert.equal(await file.verify("u", utf8(" ")), false);
});

Deno.test("PasswordFile ignores comments, blank lines, CRLF and spaces around fields", async () => {
  const hash = await hashPassword("pw", 1000);
  const file = PasswordFile.parse(
    `# users\r\n\r\n   \n  # indented comment\n alice : ${hash} \r\nbob:${hash}\n`,
  );
  assert.equal(file.size, 2);
  assert.equal(await file.verify("alice", utf8("pw")), true);
  assert.equal(await file.verify("bob", utf8("pw")), true);
  assert.equal(PasswordFile.parse("").size, 0);
});

Deno.test("PasswordFile.parse refuses the whole file and names the file and line", async () => {
  const good = await hashPassword("pw", 1000);
  const [, , iterations, salt, hash] = good.split("$");
  const rows: [string, RegExp][] = [
    [`a:${good}\n\njustaname\n`, /^passwords\.txt:3: not "user:hash"$/],
    [`:${good}`, /^passwords\.txt:1: empty user name$/],
    ["a:", /^passwords\.txt:1: no hash for user "a"$/],
    ["a:plaintext", /^passwords\.txt:1: user "a": not a hash \(plain-text/],
    [`a:$5$${salt}$${hash}`, /^passwords\.txt:1: user "a": unknown hash type "\$5\$"/],
    [`a:$argon2id$v=19$m=1`, /^passwords\.txt:1: user "a": unknown hash type "\$argon2id\$"/],
    [`a:$7$${iterations}$${salt}$${hash}$x`, /:1: user "a": bad \$7\$ hash/],
    [`a:$7$${iterations}$${salt}`, /:1: user "a": bad \$7\$ hash/],
    [`a:$6$${salt}`, /:1: user "a": bad \$6\$ hash/],
    [`a:$7$0$${salt}$${hash}`, /:1: user "a": bad iteration count "0"/],
    [`a:$7$x1$${salt}$${hash}`, /:1: user "a": bad iteration count "x1"/],
    [`a:$7$99999999$${salt}$${hash}`, /:1: user "a": bad iteration count "99999999"/],
    [`a:$7$${iterations}$sa!t$${hash}`, /:1: user "a": bad base64 in salt$/],
    [`a:$7$${iterations}$${salt}$${hash.slice(1)}`, /:1: user "a": bad base64 in hash$/],
    [`a:$7$${iterations}$${salt}$${btoa("short")}`, /:1: user "a": hash is 5 bytes, expected 64$/],
    [`a:$6$${salt}$${btoa("x".repeat(32))}`, /:1: user "a": hash is 32 bytes, expected 64$/],
    [`a:${good}\n# c\nb:${good}\na:${good}\n`, /:4: duplicate user "a" \(first on line 1\)$/],
  ];
  for (const [text, expected] of rows) {
    assert.throws(() => PasswordFile.parse(text, "passwords.txt"), (error: unknown) => {
      assert.ok(error instanceof SyntaxError, `${text}: ${error}`);
      assert.match(error.message, expected, text);
      return true;
    });
  }
});

Deno.test("PasswordFile.load names the missing file", async () => {
  await assert.rejects(PasswordFile.load("/nonexistent/passwords"), (error: unknown) => {
    assert.ok(error instanceof Deno.errors.NotFound);
    assert.match(error.message, /\/nonexistent\/passwords/);
    return true;
  });
});

Deno.test("setPasswordInFile creates (0600), adds, changes, and keeps other lines", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/passwords`;
    await setPasswordInFile(path, "alice", "one");
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
    assert.equal(await (await PasswordFile.load(path)).verify("alice", utf8("one")), true);

    // A file made by mosquitto_passwd, with a comment and a $6$ user: all kept as they were.
    assert.equal((await runTool("mosquitto_passwd", ["-c", "-b", path, "bob", "two"])).code, 0);
    await Deno.chmod(path, 0o644);
    assert.equal(
      (await runTool("mosquitto_passwd", ["-H", "sha512", "-b", path, "carol", "3"])).code,
      0,
    );
    const before = "# managed by hand\n" + await Deno.readTextFile(path);
    await Deno.writeTextFile(path, before);
    await setPasswordInFile(path, "alice", "four");
    await setPasswordInFile(path, "bob", "five");
    const after = await Deno.readTextFile(path);
    const lines = after.split("\n");
    assert.equal(lines[0], "# managed by hand");
    assert.ok(lines[1].startsWith("bob:$7$210000$"), "bob changed in place");
    assert.equal(lines[2], before.split("\n")[2], "carol untouched");
    assert.ok(lines[3].startsWith("alice:$7$"), "alice appended");
    assert.equal(lines.length, 5, "ends with one newline");
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);

    const file = await PasswordFile.load(path);
    assert.equal(file.size, 3);
    assert.equal(await file.verify("alice", utf8("four")), true);
    assert.equal(await file.verify("bob", utf8("five")), true);
    assert.equal(await file.verify("bob", utf8("two")), false);
    assert.equal(await file.verify("carol", utf8("3")), true);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["passwords"], "no temp left");
  });
});

Deno.test("setPasswordInFile refuses to overwrite a FILE.tmp left by another run", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/passwords`;
    await setPasswordInFile(path, "alice", "one");
    const before = await Deno.readTextFile(path);
    await Deno.writeTextFile(`${path}.tmp`, "someone else's\n");
    await assert.rejects(
      setPasswordInFile(path, "bob", "two"),
      /passwords\.tmp exists: another passwd is running, or one was interrupted/,
    );
    assert.equal(await Deno.readTextFile(path), before, "left untouched");
    assert.equal(await Deno.readTextFile(`${path}.tmp`), "someone else's\n", "not removed");
  });
});

Deno.test("setPasswordInFile refuses bad user names and broken files", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/passwords`;
    for (const name of ["", "a:b", "a\nb", " a", "a ", "#a"]) {
      await assert.rejects(setPasswordInFile(path, name, "x"), TypeError, JSON.stringify(name));
    }
    await Deno.writeTextFile(path, "alice:plaintext\n");
    await assert.rejects(setPasswordInFile(path, "bob", "x"), SyntaxError, `${path}:1:`);
    assert.equal(await Deno.readTextFile(path), "alice:plaintext\n", "left untouched");
  });
});

Deno.test("mosquitto accepts password files we write, and refuses wrong passwords", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/passwords`;
    await setPasswordInFile(path, "dave", "correct horse");
    await setPasswordInFile(path, "erin", "battery");
    await withMosquitto(dir, ["allow_anonymous false", `password_file ${path}`], async (port) => {
      const publish = (user: string, password: string) =>
        runTool("mosquitto_pub", [
          ...["-h", "127.0.0.1", "-p", String(port), "-V", "mqttv311"],
          ...["-u", user, "-P", password, "-t", "t", "-m", "m"],
        ]);
      const good = await publish("dave", "correct horse");
      assert.equal(good.code, 0, good.output);
      assert.equal((await publish("erin", "battery")).code, 0);
      const wrong = await publish("dave", "battery");
      assert.notEqual(wrong.code, 0);
      assert.match(wrong.output, /not authori[sz]ed|bad user name or password/i);
      assert.notEqual((await publish("frank", "battery")).code, 0);
    });
  });
});
