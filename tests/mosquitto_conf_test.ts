/**
 * The same mosquitto.conf under the real mosquitto and under `cli.ts --mosquitto-conf`: two
 * listeners with per-listener settings (anonymous on one, passwords and an ACL on the other),
 * and the behaviour compared: who gets in where, what the ACL lets through, which addresses
 * listen. Also the CLI's one-line errors (file:line, exit 2) and the permissions it needs.
 */
import assert from "node:assert/strict";
import type mqtt from "npm:mqtt@5.16.0";
import { connectMqtt } from "./_mqttjs.ts";
import { HAVE_MOSQUITTO, startMosquitto, startOurs } from "./_conf_brokers.ts";
import { freePort, run, spawn, waitFor, which } from "./_util.ts";
import { makeCertificates } from "./_security.ts";

const CLI = new URL("../cli.ts", import.meta.url).pathname;
const HAVE_PASSWD = which("mosquitto_passwd") !== undefined;

/** Connects and returns the client, or the CONNACK refusal as "refused". */
async function tryConnect(
  port: number,
  options: mqtt.IClientOptions,
): Promise<mqtt.MqttClient | "refused"> {
  try {
    return await connectMqtt(port, { connectTimeout: 5_000, ...options });
  } catch {
    return "refused";
  }
}

/** What one broker did with the scenario; compared between the two. */
interface Outcome {
  anonymousOnOpen: string;
  anonymousOnSecured: string;
  wrongPassword: string;
  aliceOnSecured: string;
  aliceReceived: string[];
  openReceived: string[];
}

async function scenario(open: number, secured: number): Promise<Outcome> {
  const clients: mqtt.MqttClient[] = [];
  const state = (c: mqtt.MqttClient | "refused") => {
    if (c === "refused") return "refused";
    clients.push(c);
    return "accepted";
  };
  try {
    const anonOpen = await tryConnect(open, { clientId: "anon-open" });
    const anonymousOnOpen = state(anonOpen);
    const anonymousOnSecured = state(await tryConnect(secured, { clientId: "anon-sec" }));
    const wrongPassword = state(
      await tryConnect(secured, { clientId: "wrong", username: "alice", password: "nope" }),
    );
    const alice = await tryConnect(secured, {
      clientId: "alice",
      username: "alice",
      password: "alice-pw",
    });
    const aliceOnSecured = state(alice);
    assert.ok(anonOpen !== "refused" && alice !== "refused");
    const aliceReceived: string[] = [];
    const openReceived: string[] = [];
    alice.on("message", (t, p) => aliceReceived.push(`${t}=${p}`));
    anonOpen.on("message", (t, p) => openReceived.push(`${t}=${p}`));
    // Denied subscriptions are not compared by code (mosquitto 2.0 grants some it then filters).
    for (const filter of ["alice/#", "public/#", "secret/#"]) {
      await alice.subscribeAsync(filter, { qos: 1 }).catch(() => {});
    }
    await anonOpen.subscribeAsync("#", { qos: 1 });
    for (const topic of ["alice/a", "public/p", "secret/s", "public/end"]) {
      await anonOpen.publishAsync(topic, "from-open", { qos: 1 });
    }
    await waitFor(() => aliceReceived.includes("public/end=from-open"), 10_000, "public/end");
    for (const topic of ["alice/mine", "public/readonly", "secret/x"]) {
      await alice.publishAsync(topic, "from-alice", { qos: 1 });
    }
    await alice.publishAsync("alice/end", "from-alice", { qos: 1 });
    await waitFor(() => openReceived.includes("alice/end=from-alice"), 10_000, "alice/end");
    return {
      anonymousOnOpen,
      anonymousOnSecured,
      wrongPassword,
      aliceOnSecured,
      aliceReceived: aliceReceived.filter((m) => m.endsWith("from-open")).sort(),
      openReceived: openReceived.filter((m) => m.endsWith("from-alice")).sort(),
    };
  } finally {
    await Promise.all(clients.map((c) => c.endAsync()));
  }
}

Deno.test({
  name:
    "mosquitto.conf: per-listener settings behave as under mosquitto (anonymous refused, ACL applied, addresses)",
  ignore: !HAVE_MOSQUITTO || !HAVE_PASSWD,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "denomq-conf-" });
    try {
      const made = await run("mosquitto_passwd", ["-c", "-b", `${dir}/pw`, "alice", "alice-pw"]);
      assert.equal(made.code, 0, made.stderr);
      await Deno.writeTextFile(
        `${dir}/acl`,
        "user alice\ntopic readwrite alice/#\ntopic read public/#\n",
      );
      const results: Outcome[] = [];
      for (const kind of ["mosquitto", "ours"] as const) {
        const open = freePort();
        const secured = freePort();
        const file = `${dir}/${kind}.conf`;
        await Deno.writeTextFile(
          file,
          [
            "# The same file for both brokers.",
            "per_listener_settings true",
            "user root",
            `listener ${open} 127.0.0.1`,
            "allow_anonymous true",
            "",
            `listener ${secured} 127.0.0.1`,
            `password_file ${dir}/pw`,
            `acl_file ${dir}/acl`,
            "allow_anonymous false",
            "sys_interval 0",
          ].join("\n") + "\n",
        );
        await using broker = kind === "mosquitto"
          ? await startMosquitto(file, [open, secured])
          : await startOurs(file, [open, secured], ["--allow-net", `--allow-read=${dir}`]);
        results.push(await scenario(open, secured));
        if (kind === "ours") {
          // One line per listener, with its address.
          await broker.stop();
          const lines = broker.process.stderr().split("\n").filter((l) => /listening on/.test(l));
          assert.equal(lines.length, 2, broker.process.stderr());
          assert.match(lines[0], new RegExp(`listening on tcp 127\\.0\\.0\\.1:${open} `));
          assert.match(lines[1], new RegExp(`listening on tcp 127\\.0\\.0\\.1:${secured} `));
        }
      }
      const expected: Outcome = {
        anonymousOnOpen: "accepted",
        anonymousOnSecured: "refused",
        wrongPassword: "refused",
        aliceOnSecured: "accepted",
        aliceReceived: ["alice/a=from-open", "public/end=from-open", "public/p=from-open"],
        openReceived: ["alice/end=from-alice", "alice/mine=from-alice"],
      };
      assert.deepEqual(results[0], expected, "mosquitto");
      assert.deepEqual(results[1], results[0], "ours behaves as mosquitto");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("cli: --mosquitto-conf errors are one line naming file:line and the directive, exit 2", async () => {
  const dir = await Deno.makeTempDir({ prefix: "denomq-conf-" });
  try {
    const cases: [string, RegExp][] = [
      [
        "listener 1883\nbogus_directive 1\n",
        /^error: .*bad\.conf:2: bogus_directive: unknown directive/,
      ],
      [
        "listener 8883\ncertfile c\nkeyfile k\nuse_identity_as_username true\n",
        /^error: .*bad\.conf:4: use_identity_as_username: cannot be honoured/,
      ],
      ["allow_anonymous maybe\n", /^error: .*bad\.conf:1: allow_anonymous: expected true or false/],
    ];
    for (const [text, pattern] of cases) {
      await Deno.writeTextFile(`${dir}/bad.conf`, text);
      const result = await run(Deno.execPath(), [
        "run",
        "--allow-net",
        `--allow-read=${dir}`,
        CLI,
        "--mosquitto-conf",
        `${dir}/bad.conf`,
      ]);
      assert.equal(result.code, 2, result.stderr);
      assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
      assert.match(result.stderr.trim(), pattern);
    }
    // Listener flags do not mix with the file's listeners.
    await Deno.writeTextFile(`${dir}/ok.conf`, "listener 0 127.0.0.1\n");
    const clash = await run(Deno.execPath(), [
      "run",
      "--allow-net",
      `--allow-read=${dir}`,
      CLI,
      "--mosquitto-conf",
      `${dir}/ok.conf`,
      "--port",
      "1999",
    ]);
    assert.equal(clash.code, 2);
    assert.match(clash.stderr, /--port: cannot be combined with --mosquitto-conf/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * Writes `config` to DIR/broker.json (with whatever files `files` names, in DIR), runs the CLI
 * with `--config` from the repository folder, waits for `ready` on stderr, runs `check`, then
 * stops it with SIGTERM and expects exit code 0.
 */
async function withJsonConfig(
  config: Record<string, unknown>,
  files: Record<string, string>,
  ready: string,
  check: () => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "denomq-conf-" });
  try {
    for (const [name, text] of Object.entries(files)) {
      await Deno.writeTextFile(`${dir}/${name}`, text);
    }
    await Deno.writeTextFile(`${dir}/broker.json`, JSON.stringify(config));
    const process = spawn(Deno.execPath(), [
      "run",
      "--allow-net",
      `--allow-read=${dir}`,
      CLI,
      "--config",
      `${dir}/broker.json`,
    ], { deadlineMs: 60_000, cwd: new URL("..", import.meta.url).pathname });
    try {
      await process.waitForOutput("stderr", ready, 20_000);
      await check();
    } finally {
      process.kill("SIGTERM");
      const result = await process.finished;
      assert.equal(result.code, 0, result.stderr);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("cli: a JSON config's listeners array, each with its own auth", async () => {
  const open = freePort();
  const closed = freePort();
  await withJsonConfig(
    {
      sysInterval: 0,
      listeners: [
        { host: "127.0.0.1", port: open, name: "open" },
        { host: "127.0.0.1", port: closed, name: "closed", auth: { allowAnonymous: false } },
      ],
    },
    {},
    `listening on tcp 127.0.0.1:${closed} (listener closed)`,
    async () => {
      const ok = await tryConnect(open, { clientId: "a" });
      assert.notEqual(ok, "refused");
      await (ok as mqtt.MqttClient).endAsync();
      assert.equal(await tryConnect(closed, { clientId: "b" }), "refused");
    },
  );
});

Deno.test("mosquitto.conf: a listener without address that lets anonymous clients in is warned about", async () => {
  const dir = await Deno.makeTempDir({ prefix: "denomq-conf-anon-" });
  try {
    for (const [anonymous, warned] of [["true", true], ["false", false]] as const) {
      const port = freePort();
      const file = `${dir}/${anonymous}.conf`;
      // No address: every interface, as mosquitto binds it.
      await Deno.writeTextFile(file, `listener ${port}\nallow_anonymous ${anonymous}\n`);
      const broker = await startOurs(file, [port], ["--allow-net", `--allow-read=${dir}`]);
      // Start-up lines are printed once every listener is up, which is after the port answers.
      await broker.process.waitForOutput("stderr", `listening on tcp 0.0.0.0:${port}`, 20_000);
      await broker.stop();
      const stderr = broker.process.stderr();
      assert.equal(
        /warn.*anonymous clients are allowed on 0\.0\.0\.0/.test(stderr),
        warned,
        `allow_anonymous ${anonymous}: ${stderr}`,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: a JSON config's listener reads its relative aclFile from the config's folder", async () => {
  const port = freePort();
  // The CLI runs in the repository, where ./acl does not exist: it must be the config's.
  await withJsonConfig(
    {
      sysInterval: 0,
      listeners: [{ host: "127.0.0.1", port, auth: { aclFile: "acl", allowAnonymous: true } }],
    },
    { acl: "topic readwrite open/#\n" },
    `listening on tcp 127.0.0.1:${port}`,
    async () => {
      const ok = await tryConnect(port, { clientId: "a" });
      assert.notEqual(ok, "refused");
      await (ok as mqtt.MqttClient).endAsync();
    },
  );
});

Deno.test({
  name:
    "mosquitto.conf: a psk_hint/psk_file listener takes the right key and refuses a wrong one, as mosquitto",
  ignore: !HAVE_MOSQUITTO || which("stunnel") === undefined || which("mosquitto_pub") === undefined,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "denomq-conf-psk-" });
    try {
      const key = "00112233445566778899aabbccddeeff";
      await Deno.writeTextFile(`${dir}/psk`, `id1:${key}\n`, { mode: 0o600 });
      const outcomes: Record<string, number>[] = [];
      for (const kind of ["mosquitto", "ours"] as const) {
        const port = freePort();
        const file = `${dir}/${kind}.conf`;
        await Deno.writeTextFile(
          file,
          [
            "user root",
            `listener ${port} 127.0.0.1`,
            "psk_hint denomq",
            `psk_file ${dir}/psk`,
            "allow_anonymous true",
          ].join("\n") + "\n",
        );
        await using _broker = kind === "mosquitto"
          ? await startMosquitto(file, [port])
          : await startOurs(file, [port], [
            "--allow-net",
            `--allow-read=${dir}`,
            "--allow-run=stunnel",
          ]);
        const pub = (k: string) =>
          run("mosquitto_pub", [
            ...["-h", "127.0.0.1", "-p", String(port), "-q", "1", "-t", "t", "-m", "m"],
            ...["--psk-identity", "id1", "--psk", k],
          ]);
        outcomes.push({
          right: (await pub(key)).code,
          wrong: (await pub("ffeeddccbbaa99887766554433221100")).code,
        });
      }
      assert.equal(outcomes[0].right, 0, "mosquitto takes the right key");
      assert.notEqual(outcomes[0].wrong, 0, "mosquitto refuses a wrong key");
      assert.equal(outcomes[1].right, 0, "ours takes the right key");
      assert.notEqual(outcomes[1].wrong, 0, "ours refuses a wrong key");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "mosquitto.conf: require_certificate true takes a CA-signed client and refuses others, as mosquitto",
  ignore: !HAVE_MOSQUITTO || which("openssl") === undefined || which("mosquitto_pub") === undefined,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "denomq-conf-mtls-" });
    try {
      await makeCertificates(dir);
      const ssl = async (args: string[]) => {
        const r = await run("openssl", args, { cwd: dir });
        assert.equal(r.code, 0, r.stderr);
      };
      const ec = ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out"];
      await Deno.writeTextFile(
        `${dir}/client.ext`,
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
      );
      await ssl([...ec, "client.key"]);
      await ssl([
        "req",
        "-new",
        "-key",
        "client.key",
        "-out",
        "client.csr",
        "-subj",
        "/CN=client1",
      ]);
      await ssl([
        ...["x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key"],
        ...["-CAcreateserial", "-out", "client.pem", "-days", "1", "-extfile", "client.ext"],
      ]);
      await ssl([...ec, "intruder.key"]);
      await ssl([
        ...["req", "-x509", "-new", "-key", "intruder.key", "-out", "intruder.pem", "-days", "1"],
        ...["-subj", "/CN=intruder"],
      ]);
      const outcomes: Record<string, number>[] = [];
      for (const kind of ["mosquitto", "ours"] as const) {
        const port = freePort();
        const file = `${dir}/${kind}.conf`;
        await Deno.writeTextFile(
          file,
          [
            "user root",
            `listener ${port} 127.0.0.1`,
            `certfile ${dir}/cert.pem`,
            `keyfile ${dir}/key.pem`,
            `cafile ${dir}/ca.pem`,
            "require_certificate true",
            "allow_anonymous true",
          ].join("\n") + "\n",
        );
        await using _broker = kind === "mosquitto"
          ? await startMosquitto(file, [port])
          : await startOurs(file, [port], ["--allow-net", `--allow-read=${dir}`]);
        const pub = (extra: string[]) =>
          run("mosquitto_pub", [
            ...["-h", "127.0.0.1", "-p", String(port), "-q", "1", "-t", "t", "-m", "m"],
            ...["--cafile", `${dir}/ca.pem`, ...extra],
          ]);
        outcomes.push({
          signed: (await pub(["--cert", `${dir}/client.pem`, "--key", `${dir}/client.key`])).code,
          none: (await pub([])).code,
          intruder: (await pub(["--cert", `${dir}/intruder.pem`, "--key", `${dir}/intruder.key`]))
            .code,
        });
      }
      for (const [i, who] of ["mosquitto", "ours"].entries()) {
        assert.equal(outcomes[i].signed, 0, `${who} takes the CA-signed client`);
        assert.notEqual(outcomes[i].none, 0, `${who} refuses a client without a certificate`);
        assert.notEqual(outcomes[i].intruder, 0, `${who} refuses a self-signed certificate`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
