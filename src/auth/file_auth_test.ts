import assert from "node:assert/strict";
import { CONNACK } from "../codec/packet.ts";
import type { ClientInfo } from "../hooks.ts";
import { FileAuth, type FileAuthOptions } from "./file_auth.ts";
import { hashPassword } from "./password_file.ts";

const utf8 = (s: string) => new TextEncoder().encode(s);

async function withFiles(
  files: { passwords?: string; acl?: string },
  fn: (paths: { passwordFile: string; aclFile: string; dir: string }) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "file_auth_test_" });
  const paths = { passwordFile: `${dir}/passwords`, aclFile: `${dir}/acl`, dir };
  try {
    if (files.passwords !== undefined) {
      await Deno.writeTextFile(paths.passwordFile, files.passwords);
    }
    if (files.acl !== undefined) await Deno.writeTextFile(paths.aclFile, files.acl);
    await fn(paths);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const PASSWORDS = `alice:${await hashPassword("wonderland", 1000)}\nbob:${await hashPassword(
  "builder",
  1000,
)}\n`;

type Connect = { username?: string; password?: string };

async function decide(auth: FileAuth, connect: Connect) {
  return await auth.authenticate({
    clientId: "c",
    username: connect.username,
    password: connect.password === undefined ? undefined : utf8(connect.password),
  });
}

Deno.test("FileAuth CONNECT decisions with a password file (CONNACK 0x04 / 0x05)", async () => {
  await withFiles({ passwords: PASSWORDS }, async ({ passwordFile }) => {
    const rows: [FileAuthOptions["allowAnonymous"], Connect, true | number, string][] = [
      [undefined, { username: "alice", password: "wonderland" }, true, "right password"],
      [undefined, { username: "bob", password: "builder" }, true, "right password"],
      [
        undefined,
        { username: "alice", password: "builder" },
        CONNACK.badUsernameOrPassword,
        "wrong password",
      ],
      [
        undefined,
        { username: "alice", password: "" },
        CONNACK.badUsernameOrPassword,
        "empty password",
      ],
      [undefined, { username: "alice" }, CONNACK.badUsernameOrPassword, "no password"],
      [
        undefined,
        { username: "carol", password: "x" },
        CONNACK.badUsernameOrPassword,
        "unknown user",
      ],
      [undefined, {}, CONNACK.notAuthorized, "anonymous refused by default"],
      [false, {}, CONNACK.notAuthorized, "anonymous refused"],
      [true, {}, true, "anonymous allowed"],
      [true, { username: "carol", password: "x" }, CONNACK.badUsernameOrPassword, "unknown user"],
      [true, { username: "alice", password: "wonderland" }, true, "right password"],
    ];
    for (const [allowAnonymous, connect, expected, why] of rows) {
      const auth = await FileAuth.load({ passwordFile, allowAnonymous });
      assert.equal(await decide(auth, connect), expected, `${why}: ${JSON.stringify(connect)}`);
    }
  });
});

Deno.test("FileAuth CONNECT decisions without a password file", async () => {
  const rows: [FileAuthOptions["allowAnonymous"], Connect, true | number][] = [
    [undefined, {}, true],
    [undefined, { username: "anyone", password: "anything" }, true],
    [true, {}, true],
    [false, {}, CONNACK.notAuthorized],
    // As mosquitto 2.0.11: nothing can check a user name, so nobody gets in.
    [false, { username: "anyone", password: "anything" }, CONNACK.notAuthorized],
  ];
  for (const [allowAnonymous, connect, expected] of rows) {
    const auth = await FileAuth.load({ allowAnonymous });
    assert.equal(
      await decide(auth, connect),
      expected,
      `${allowAnonymous} ${JSON.stringify(connect)}`,
    );
  }
});

Deno.test("FileAuth without an ACL file allows every topic", async () => {
  const auth = await FileAuth.load({});
  const client: ClientInfo = { clientId: "c" };
  assert.equal(await auth.authorizePublish(client, "any/topic", 0, false), true);
  assert.equal(await auth.authorizeSubscribe(client, "#", 1), true);
  assert.equal(auth.authorizeForward(client, "$SYS/x"), true);
});

Deno.test("FileAuth hooks apply the ACL per client", async () => {
  const acl = "topic read public/#\nuser alice\ntopic readwrite alice/#\npattern write dev/%c/#\n";
  await withFiles({ acl }, async ({ aclFile }) => {
    const auth = await FileAuth.load({ aclFile });
    const alice: ClientInfo = { clientId: "phone", username: "alice" };
    const anonymous: ClientInfo = { clientId: "sensor" };
    assert.equal(await auth.authorizePublish(alice, "alice/x", 1, false), true);
    assert.equal(await auth.authorizePublish(alice, "public/x", 1, false), false);
    assert.equal(await auth.authorizePublish(alice, "dev/phone/x", 0, true), true);
    assert.equal(await auth.authorizeSubscribe(alice, "alice/+", 2), true);
    assert.equal(await auth.authorizeSubscribe(alice, "#", 2), false);
    assert.equal(auth.authorizeForward(alice, "alice/y"), true);
    assert.equal(auth.authorizeForward(alice, "public/y"), false);
    assert.equal(await auth.authorizeSubscribe(anonymous, "public/#", 0), true);
    assert.equal(auth.authorizeForward(anonymous, "public/y"), true);
    assert.equal(await auth.authorizePublish(anonymous, "public/y", 0, false), false);
    assert.equal(await auth.authorizePublish(anonymous, "dev/sensor/t", 0, false), true);
    // A fresh ClientInfo per call (no object identity) gets the same answers.
    assert.equal(auth.authorizeForward({ clientId: "phone", username: "alice" }, "alice/z"), true);
    assert.equal(auth.authorizeForward({ clientId: "phone" }, "alice/z"), false);
    // The cache follows a change of user name on the same object.
    const changing: ClientInfo = { clientId: "phone", username: "alice" };
    assert.equal(auth.authorizeForward(changing, "alice/z"), true);
    changing.username = "mallory";
    assert.equal(auth.authorizeForward(changing, "alice/z"), false);
  });
});

Deno.test("FileAuth.load names the file and line of a bad file", async () => {
  await withFiles(
    { passwords: "alice\n", acl: "user a\ntopic nope a/b\n" },
    async ({ passwordFile, aclFile }) => {
      await assert.rejects(FileAuth.load({ passwordFile }), SyntaxError, `${passwordFile}:1:`);
      await assert.rejects(FileAuth.load({ aclFile }), SyntaxError, `${aclFile}:2: bad access`);
      await assert.rejects(FileAuth.load({ aclFile: `${aclFile}.missing` }), Deno.errors.NotFound);
    },
  );
});

Deno.test("FileAuth.load refuses options of the wrong type", async () => {
  const bad = [{ passwordFile: "" }, { aclFile: 3 }, { allowAnonymous: "yes" }];
  for (const options of bad) {
    await assert.rejects(
      FileAuth.load(options as unknown as FileAuthOptions),
      TypeError,
      Object.keys(options)[0],
    );
  }
});

Deno.test("FileAuth.reload keeps the old rules when a new file is bad, then takes good ones", async () => {
  await withFiles(
    { passwords: PASSWORDS, acl: "user alice\ntopic readwrite old/#\n" },
    async ({ passwordFile, aclFile }) => {
      const auth = await FileAuth.load({ passwordFile, aclFile });
      const alice: ClientInfo = { clientId: "c", username: "alice" };
      assert.equal(auth.authorizeForward(alice, "old/x"), true);

      // A bad ACL: reload refused, old ACL (and passwords) stay.
      await Deno.writeTextFile(aclFile, "user alice\ntopic readwrite new/#\nbogus line\n");
      const badAcl = await auth.reload();
      assert.equal(badAcl.ok, false);
      assert.match(badAcl.error!, new RegExp(`^${aclFile}:3: unknown keyword "bogus"`));
      assert.equal(auth.authorizeForward(alice, "old/x"), true);
      assert.equal(auth.authorizeForward(alice, "new/x"), false);

      // Good ACL but a bad password file: all or nothing, the ACL is not swapped either.
      await Deno.writeTextFile(aclFile, "user alice\ntopic readwrite new/#\n");
      await Deno.writeTextFile(passwordFile, `alice:${await hashPassword("new", 1000)}\nalice:x\n`);
      const badPasswords = await auth.reload();
      assert.equal(badPasswords.ok, false);
      assert.match(badPasswords.error!, new RegExp(`^${passwordFile}:2: `));
      assert.equal(auth.authorizeForward(alice, "old/x"), true);
      assert.equal(await decide(auth, { username: "alice", password: "wonderland" }), true);

      // A missing file is refused too.
      await Deno.remove(passwordFile);
      const missing = await auth.reload();
      assert.equal(missing.ok, false);
      assert.match(missing.error!, /passwords/);

      // Both good: new rules in force, for the same ClientInfo object as before.
      await Deno.writeTextFile(passwordFile, `alice:${await hashPassword("new", 1000)}\n`);
      assert.deepEqual(await auth.reload(), { ok: true });
      assert.equal(auth.authorizeForward(alice, "old/x"), false);
      assert.equal(auth.authorizeForward(alice, "new/x"), true);
      assert.equal(await decide(auth, { username: "alice", password: "new" }), true);
      assert.equal(
        await decide(auth, { username: "alice", password: "wonderland" }),
        CONNACK.badUsernameOrPassword,
      );
      assert.equal(await decide(auth, { username: "bob", password: "builder" }), 0x04);
    },
  );
});
