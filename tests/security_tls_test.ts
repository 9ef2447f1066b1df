/**
 * MQTT over TLS through the CLI, end to end: a throwaway CA made with openssl, mosquitto_pub/sub
 * with `--cafile` and npm:mqtt with `mqtts://`, and the one-line refusals of bad files.
 *
 * Permissions of the broker: `--allow-net --allow-read=cert.pem,key.pem`.
 */
import assert from "node:assert/strict";
import mqtt from "npm:mqtt@5.16.0";
import {
  assertOneLineRefusal,
  HAVE,
  makeCertificates,
  runCli,
  scratchDir,
  startCli,
  waitForLog,
  within,
} from "./_security.ts";
import { run, spawn } from "./_util.ts";

/** The narrowest permissions that serve TLS: the network and the two PEM files. */
const TLS_PERMISSIONS = ["--allow-net", "--allow-read=cert.pem,key.pem"];

Deno.test({
  name: "TLS: mosquitto_pub/sub (--cafile) and npm:mqtt (mqtts://, ca) round trip through the CLI",
  ignore: !HAVE.openssl || !HAVE.mosquittoClients,
  async fn() {
    await using dir = await scratchDir("security_tls_");
    await makeCertificates(dir.path);
    await using cli = await startCli(dir.path, TLS_PERMISSIONS, [
      ...["--no-tcp", "--tls-port", "0", "--tls-cert", "cert.pem", "--tls-key", "key.pem"],
      ...["--log-level", "debug"],
    ], ["tls"]);
    const port = cli.ports.tls;
    const ca = await Deno.readTextFile(`${dir.path}/ca.pem`);
    const tlsArgs = ["-h", "127.0.0.1", "-p", String(port), "--cafile", "ca.pem", "-V", "mqttv311"];

    const js = await within(
      cli,
      mqtt.connectAsync(`mqtts://127.0.0.1:${port}`, {
        ca,
        rejectUnauthorized: true,
        clientId: "js-tls",
        reconnectPeriod: 0,
      }),
      10_000,
      "npm:mqtt to connect over TLS",
    );
    try {
      // mosquitto_sub (TLS) ← npm:mqtt (TLS), QoS 1.
      const sub = spawn("mosquitto_sub", [
        ...tlsArgs,
        ...["-i", "sub-tls", "-t", "tls/to-mosquitto", "-q", "1", "-C", "1"],
      ], { cwd: dir.path, deadlineMs: 15_000 });
      await waitForLog(cli, /client "sub-tls" subscribed to "tls\/to-mosquitto"/);
      await within(
        cli,
        js.publishAsync("tls/to-mosquitto", "from mqtt.js", { qos: 1 }),
        10_000,
        "PUBACK to npm:mqtt",
      );
      const subResult = await within(cli, sub.finished, 15_000, "mosquitto_sub to exit");
      assert.equal(subResult.code, 0, subResult.stderr);
      assert.equal(subResult.stdout, "from mqtt.js\n");

      // npm:mqtt (TLS) ← mosquitto_pub (TLS), QoS 1.
      const received = new Promise<[string, string]>((resolve) =>
        js.on("message", (topic, payload) => resolve([topic, new TextDecoder().decode(payload)]))
      );
      await within(cli, js.subscribeAsync("tls/to-js", { qos: 1 }), 10_000, "SUBACK to npm:mqtt");
      const pub = await run("mosquitto_pub", [
        ...tlsArgs,
        ...["-i", "pub-tls", "-t", "tls/to-js", "-m", "from mosquitto", "-q", "1"],
      ], { cwd: dir.path, deadlineMs: 15_000 });
      assert.equal(pub.code, 0, pub.stderr);
      assert.deepEqual(
        await within(cli, received, 10_000, "the message at npm:mqtt"),
        ["tls/to-js", "from mosquitto"],
      );
    } finally {
      await js.endAsync();
    }

    // Certificate checking is real: without the CA, mosquitto_pub refuses the broker.
    const untrusted = await run("mosquitto_pub", [
      ...["-h", "127.0.0.1", "-p", String(port), "--capath", dir.path, "-t", "x", "-m", "x"],
    ], { cwd: dir.path, deadlineMs: 15_000 });
    assert.notEqual(untrusted.code, 0, "a client without the CA must not connect");

    await waitForLog(cli, /client "sub-tls" connected from 127\.0\.0\.1:\d+ over tls/);
    await waitForLog(cli, /client "js-tls" connected from 127\.0\.0\.1:\d+ over tls/);
    const result = await cli.stop();
    assert.equal(result.code, 0, result.stderr);
  },
});

Deno.test({
  name:
    "TLS: a missing or unreadable certificate and a key that does not match are one line, exit 2",
  ignore: !HAVE.openssl,
  async fn() {
    await using dir = await scratchDir("security_tls_");
    await makeCertificates(dir.path);
    await Deno.writeTextFile(`${dir.path}/garbage.pem`, "not a PEM file\n");
    const tls = (cert: string, key: string) => [
      ...["--no-tcp", "--tls-port", "0", "--tls-cert", cert, "--tls-key", key],
    ];
    const [missing, denied, mismatch, noKey] = await Promise.all([
      runCli(
        dir.path,
        ["--allow-net", "--allow-read=missing.pem,key.pem"],
        tls("missing.pem", "key.pem"),
      ),
      // Not readable by the process: Deno's permission refuses it like the OS would.
      runCli(dir.path, ["--allow-net", "--allow-read=key.pem"], tls("cert.pem", "key.pem")),
      runCli(
        dir.path,
        ["--allow-net", "--allow-read=cert.pem,other.key"],
        tls("cert.pem", "other.key"),
      ),
      runCli(
        dir.path,
        ["--allow-net", "--allow-read=cert.pem,garbage.pem"],
        tls("cert.pem", "garbage.pem"),
      ),
    ]);
    assert.match(
      assertOneLineRefusal(missing, ["--tls-cert missing.pem"]),
      /No such file or directory/,
    );
    assert.match(assertOneLineRefusal(denied, ["--tls-cert cert.pem"]), /read access/);
    assert.equal(
      assertOneLineRefusal(mismatch, ["--tls-key other.key", "--tls-cert cert.pem"]),
      "error: --tls-key other.key: the private key does not match the certificate in " +
        "--tls-cert cert.pem",
    );
    assert.equal(
      assertOneLineRefusal(noKey, ["--tls-key garbage.pem"]),
      "error: --tls-key garbage.pem: no PEM private key in the file",
    );
    if (Deno.uid() !== 0) {
      // root reads mode 000 files anyway.
      await Deno.chmod(`${dir.path}/cert.pem`, 0o000);
      const unreadable = await runCli(
        dir.path,
        ["--allow-net", "--allow-read=cert.pem,key.pem"],
        tls("cert.pem", "key.pem"),
      );
      assert.match(assertOneLineRefusal(unreadable, ["--tls-cert cert.pem"]), /ermission denied/);
    }
  },
});
