/**
 * Password file and ACL through the CLI, end to end: users added by `cli.ts passwd` (password on
 * stdin) and by the real `mosquitto_passwd` in one file, CONNACK codes seen on a raw socket and
 * by mosquitto_pub, mosquitto-format ACL rules at SUBSCRIBE, PUBLISH and delivery, and SIGHUP
 * reloads that change the rules without dropping anyone, or keep them when a file is broken.
 *
 * Permissions: the broker `--allow-net --allow-read=passwords.txt,acl.txt`; `cli.ts passwd`
 * `--allow-read=passwords.txt --allow-write=passwords.txt` (rewrites in place), or with
 * `passwords.txt.tmp` added to both (writes a temporary file and renames it over).
 */
import assert from "node:assert/strict";
import {
  CLI,
  DENO,
  HAVE,
  type RunningCli,
  scratchDir,
  startCli,
  waitForLog,
  within,
} from "./_security.ts";
import { parsePublish, raw, type RawConnect, RawSocket, run } from "./_util.ts";

const BROKER_PERMISSIONS = ["--allow-net", "--allow-read=passwords.txt,acl.txt"];

const CONNACK_BAD_CREDENTIALS = 0x04;
const CONNACK_NOT_AUTHORIZED = 0x05;
const SUBACK_FAILURE = 0x80;

/** `cli.ts passwd passwords.txt USER` with the password on stdin. */
function passwd(dir: string, user: string, password: string, permissions: string[]) {
  return run(DENO, ["run", ...permissions, CLI, "passwd", "passwords.txt", user], {
    cwd: dir,
    stdin: `${password}\n`,
    deadlineMs: 30_000,
  });
}

/** The CONNACK return code a raw CONNECT gets; the socket is closed. */
async function connackCode(port: number, o: RawConnect): Promise<number> {
  const socket = await RawSocket.open(port);
  try {
    return (await socket.connect(o))[1];
  } finally {
    await socket.close();
  }
}

/** A connected raw client; fails the test unless CONNACK is 0. */
async function connected(port: number, o: RawConnect): Promise<RawSocket> {
  const socket = await RawSocket.open(port);
  const [, code] = await socket.connect(o);
  assert.equal(code, 0, `CONNACK for ${o.clientId}`);
  return socket;
}

let nextPacketId = 1;

/** Publishes at QoS 1 and waits for the PUBACK: the broker has decided on the message. */
async function publishAcked(socket: RawSocket, topic: string, payload: string): Promise<void> {
  const packetId = nextPacketId++;
  await socket.send(raw.publish(topic, payload, { qos: 1, packetId }));
  const ack = await socket.next();
  assert.equal(ack.type, 4, `PUBACK for ${topic}`);
  assert.equal((ack.body[0] << 8) | ack.body[1], packetId);
}

/** The next PUBLISH a subscriber gets, acknowledged: [topic, payload]. */
async function received(socket: RawSocket): Promise<[string, string]> {
  const message = parsePublish(await socket.next());
  if (message.qos === 1) await socket.send(raw.puback(message.packetId!));
  return [message.topic, message.payload];
}

/** Sends SIGHUP and waits for the reload's log line; returns it. */
async function reload(cli: RunningCli): Promise<string> {
  const from = cli.stderr().length;
  cli.process.kill("SIGHUP");
  return (await waitForLog(
    cli,
    /SIGHUP: (password and ACL files reloaded|kept the previous.*)/,
    from,
  ))[0];
}

Deno.test({
  name:
    "auth: users from cli.ts passwd and mosquitto_passwd; CONNACK 0x04, 0x05; --allow-anonymous",
  ignore: !HAVE.mosquittoPasswd || !HAVE.mosquittoClients,
  async fn() {
    await using dir = await scratchDir("security_auth_");
    // Written in place with permission for the file only; atomically with FILE.tmp too.
    const fileOnly = ["--allow-read=passwords.txt", "--allow-write=passwords.txt"];
    const withTemp = [
      "--allow-read=passwords.txt,passwords.txt.tmp",
      "--allow-write=passwords.txt,passwords.txt.tmp",
    ];
    const alice = await passwd(dir.path, "alice", "alice's secret", fileOnly);
    assert.equal(alice.code, 0, alice.stderr);
    const bob = await run("mosquitto_passwd", ["-b", "passwords.txt", "bob", "bob's secret"], {
      cwd: dir.path,
    });
    assert.equal(bob.code, 0, bob.stderr);
    const carol = await passwd(dir.path, "carol", "carol's secret", withTemp);
    assert.equal(carol.code, 0, carol.stderr);
    const names = [...Deno.readDirSync(dir.path)].map((e) => e.name);
    assert.deepEqual(names, ["passwords.txt"], "no temporary file left");
    assert.equal((await Deno.stat(`${dir.path}/passwords.txt`)).mode! & 0o777, 0o600);
    const users = (await Deno.readTextFile(`${dir.path}/passwords.txt`)).trim().split("\n");
    assert.deepEqual(users.map((l) => l.split(":")[0]), ["alice", "bob", "carol"]);
    assert.match(users[0], /^alice:\$7\$210000\$/);
    assert.match(users[1], /^bob:\$7\$101\$/, "mosquitto_passwd's own format");
    // A refused passwd: no password on stdin.
    const empty = await passwd(dir.path, "dave", "", fileOnly);
    assert.equal(empty.code, 2);
    assert.equal(empty.stderr.trim(), "error: passwd: empty password");

    await using cli = await startCli(
      dir.path,
      ["--allow-net", "--allow-read=passwords.txt"],
      ["--port", "0", "--password-file", "passwords.txt"],
      ["tcp"],
    );
    const port = cli.ports.tcp;
    const cases: [string, RawConnect, number][] = [
      ["alice, right password", { username: "alice", password: "alice's secret" }, 0],
      ["bob (mosquitto_passwd), right", { username: "bob", password: "bob's secret" }, 0],
      ["carol, right password", { username: "carol", password: "carol's secret" }, 0],
      ["alice, wrong password", { username: "alice", password: "bob's secret" }, 0x04],
      ["bob, wrong password", { username: "bob", password: "nope" }, 0x04],
      ["alice, no password", { username: "alice" }, 0x04],
      ["unknown user", { username: "mallory", password: "x" }, 0x04],
      ["anonymous", {}, CONNACK_NOT_AUTHORIZED],
    ];
    for (const [label, o, expected] of cases) {
      assert.equal(await connackCode(port, { clientId: "c", ...o }), expected, label);
    }
    assert.equal(cases.filter((c) => c[2] === CONNACK_BAD_CREDENTIALS).length, 4);

    // mosquitto_pub sees the same answers.
    const pub = (user: string, password: string) =>
      run("mosquitto_pub", [
        ...["-h", "127.0.0.1", "-p", String(port), "-V", "mqttv311"],
        ...["-u", user, "-P", password, "-t", "t", "-m", "m"],
      ], { deadlineMs: 15_000 });
    const [good, wrong] = await Promise.all([pub("bob", "bob's secret"), pub("bob", "wrong")]);
    assert.equal(good.code, 0, good.stderr);
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, /bad user name or password/i);
    assert.equal((await cli.stop()).code, 0);

    await using open = await startCli(
      dir.path,
      ["--allow-net", "--allow-read=passwords.txt"],
      ["--port", "0", "--password-file", "passwords.txt", "--allow-anonymous"],
      ["tcp"],
    );
    assert.equal(await connackCode(open.ports.tcp, { clientId: "anon" }), 0, "--allow-anonymous");
    assert.equal(
      await connackCode(open.ports.tcp, { clientId: "c", username: "bob", password: "x" }),
      CONNACK_BAD_CREDENTIALS,
      "a user name is still checked",
    );
    assert.equal((await open.stop()).code, 0);
  },
});

const ACL_V1 = `# mosquitto acl_file format
user alice
topic readwrite sensors/#
topic deny sensors/secret
topic write cmd/#

user bob
topic read sensors/+/temp

user carol
topic write sensors/#
`;

Deno.test({
  name:
    "auth: --acl-file at SUBSCRIBE (0x80), PUBLISH (acked, not delivered) and delivery; SIGHUP reloads",
  ignore: !HAVE.mosquittoPasswd,
  async fn() {
    await using dir = await scratchDir("security_auth_");
    for (const user of ["alice", "bob", "carol"]) {
      const made = await run(
        "mosquitto_passwd",
        [...(user === "alice" ? ["-c"] : []), "-b", "passwords.txt", user, `${user}-pw`],
        { cwd: dir.path },
      );
      assert.equal(made.code, 0, made.stderr);
    }
    await Deno.writeTextFile(`${dir.path}/acl.txt`, ACL_V1);
    await using cli = await startCli(dir.path, BROKER_PERMISSIONS, [
      ...["--port", "0", "--password-file", "passwords.txt", "--acl-file", "acl.txt"],
      ...["--log-level", "debug"],
    ], ["tcp"]);
    const port = cli.ports.tcp;
    const login = (user: string, clientId = user) =>
      connected(port, { clientId, username: user, password: `${user}-pw` });
    const alice = await login("alice");
    // Publishes from a connection of alice's that subscribes to nothing, so that its PUBACKs
    // are the only packets it gets.
    const alicePub = await login("alice", "alice-pub");
    const bob = await login("bob");
    const carol = await login("carol");
    try {
      // SUBSCRIBE: one SUBACK code per filter.
      assert.deepEqual(
        await alice.subscribe(1, [["sensors/#", 1], ["cmd/#", 1], ["sensors/secret", 1]]),
        [1, SUBACK_FAILURE, SUBACK_FAILURE],
        "readwrite: granted; write only: 0x80; covered by deny: 0x80",
      );
      assert.deepEqual(await bob.subscribe(2, [["sensors/+/temp", 1], ["sensors/#", 1]]), [
        1,
        SUBACK_FAILURE,
      ]);

      // PUBLISH without write access: acknowledged, not delivered. Publishes are acked in order,
      // so when the allowed message arrives, a delivered denied one would have come first.
      await publishAcked(bob, "sensors/kitchen/temp", "bob may only read");
      await publishAcked(alicePub, "sensors/kitchen/temp", "21.5");
      assert.deepEqual(await received(alice), ["sensors/kitchen/temp", "21.5"]);
      assert.deepEqual(await received(bob), ["sensors/kitchen/temp", "21.5"]);

      // Read rules at delivery: carol may write sensors/secret; alice's sensors/# does not get it.
      await publishAcked(carol, "sensors/secret", "hidden");
      await publishAcked(carol, "sensors/door", "open");
      assert.deepEqual(await received(alice), ["sensors/door", "open"]);

      // SIGHUP with edited files: alice may now read cmd/# and sensors/secret; bob's password
      // changes. Nobody connected is dropped.
      await Deno.writeTextFile(
        `${dir.path}/acl.txt`,
        ACL_V1.replace("topic deny sensors/secret\n", "").replace(
          "topic write cmd/#",
          "topic readwrite cmd/#",
        ),
      );
      const changed = await run("mosquitto_passwd", ["-b", "passwords.txt", "bob", "new-pw"], {
        cwd: dir.path,
      });
      assert.equal(changed.code, 0, changed.stderr);
      assert.equal(await reload(cli), "SIGHUP: password and ACL files reloaded");
      assert.deepEqual(await alice.subscribe(3, [["cmd/#", 1]]), [1], "granted after reload");
      await publishAcked(carol, "sensors/secret", "now visible");
      assert.deepEqual(await received(alice), ["sensors/secret", "now visible"]);
      assert.equal(
        await connackCode(port, { clientId: "bob2", username: "bob", password: "bob-pw" }),
        CONNACK_BAD_CREDENTIALS,
        "the old password is refused after reload",
      );
      assert.equal(
        await connackCode(port, { clientId: "bob2", username: "bob", password: "new-pw" }),
        0,
      );

      // A broken file on SIGHUP: the old rules stay, and the log names the file and line.
      await Deno.writeTextFile(
        `${dir.path}/acl.txt`,
        "user alice\ntopic readwrite #\ntopic sometimes sensors/#\n",
      );
      const kept = await reload(cli);
      assert.match(kept, /SIGHUP: kept the previous rules: acl\.txt:3: bad access "sometimes"/);
      assert.deepEqual(
        await alice.subscribe(4, [["other/#", 1], ["cmd/#", 1]]),
        [SUBACK_FAILURE, 1],
        "the broken file's rules are not in force",
      );

      // Everyone is still connected on the sockets they started with.
      for (const socket of [alice, alicePub, bob, carol]) {
        await socket.send(raw.pingreq());
        assert.equal((await within(cli, socket.next(), 5_000, "PINGRESP")).type, 13);
      }
      assert.doesNotMatch(cli.stderr(), /client "(alice|alice-pub|bob|carol)" disconnected/);
      await waitForLog(cli, /client "bob2" disconnected/); // the log would show it
    } finally {
      await Promise.all([alice.close(), alicePub.close(), bob.close(), carol.close()]);
    }
    assert.equal((await cli.stop()).code, 0);
  },
});
