/**
 * The program as the "done when" starts it: `deno run --allow-net cli.ts --host 127.0.0.1
 * --port P --acl-file F --max-keepalive 60`, spoken to in 5.0 over a raw socket.
 *
 * @module
 */
import assert from "node:assert/strict";
import { hex, PROP, RawClient, RC } from "./_raw.ts";
import { freePort, spawn } from "./_util.ts";

const CLI = new URL("../cli.ts", import.meta.url).pathname;
const ROOT = new URL("..", import.meta.url).pathname;

Deno.test("cli 5.0: --max-keepalive 60 gives Server Keep Alive 60; --acl-file denies test/nosubscribe with SUBACK 0x87", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cli_v5_" });
  const acl = `${dir}/acl`;
  await Deno.writeTextFile(acl, "topic deny test/nosubscribe\ntopic readwrite #\n");
  const port = freePort();
  const cli = spawn(Deno.execPath(), [
    "run",
    "--allow-net",
    "--allow-read",
    CLI,
    ...["--host", "127.0.0.1", "--port", String(port), "--acl-file", acl, "--max-keepalive", "60"],
  ], { cwd: ROOT, deadlineMs: 30_000 });
  const clients: RawClient[] = [];
  try {
    await cli.waitForOutput("stderr", `listening on tcp 127.0.0.1:${port}`);
    const open = async (label: string) => {
      const c = await RawClient.connect(port, label);
      clients.push(c);
      return c;
    };
    const high = await open("high");
    const ack = await high.handshake5({ clientId: "cli5-high", keepAlive: 300 });
    assert.equal(ack.properties.get(PROP.SERVER_KEEP_ALIVE), 60);
    const none = await open("none");
    const ack0 = await none.handshake5({ clientId: "cli5-none", keepAlive: 0 });
    assert.equal(ack0.properties.get(PROP.SERVER_KEEP_ALIVE), 60);
    const low = await open("low");
    const ackLow = await low.handshake5({ clientId: "cli5-low", keepAlive: 20 });
    const sent = ackLow.properties.get(PROP.SERVER_KEEP_ALIVE);
    assert.ok(sent === undefined || sent === 20, `Server Keep Alive ${sent}`);
    const sub = await high.subscribe5(1, [["test/nosubscribe", { qos: 1 }], ["test/ok", {
      qos: 1,
    }]]);
    assert.deepEqual(sub.reasonCodes.map(hex), [RC.NOT_AUTHORIZED, 1].map(hex));
    await low.publish5({ topic: "test/ok", qos: 1, packetId: 1, payload: "through the CLI" });
    assert.equal((await high.receive5()).text, "through the CLI");
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    cli.kill("SIGTERM");
    await cli.finished;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli 5.0: the 5.0 flags show in CONNACK (Receive Maximum, Topic Alias Maximum, Maximum QoS, Retain/Wildcard/Shared/Subscription Identifier Available, Session Expiry, Response Information)", async () => {
  const port = freePort();
  const cli = spawn(Deno.execPath(), [
    "run",
    "--allow-net",
    CLI,
    ...["--host", "127.0.0.1", "--port", String(port)],
    ...["--receive-maximum", "7", "--topic-alias-maximum", "3", "--max-qos", "1"],
    ...["--retain-available", "false", "--wildcard-subscription-available", "false"],
    ...["--shared-subscription-available", "false"],
    ...["--subscription-identifier-available", "false"],
    ...["--max-session-expiry", "30", "--response-information", "rsp/"],
  ], { cwd: ROOT, deadlineMs: 30_000 });
  const c = await (async () => {
    await cli.waitForOutput("stderr", `listening on tcp 127.0.0.1:${port}`);
    return await RawClient.connect(port, "flags");
  })();
  try {
    const ack = await c.handshake5({
      clientId: "cli5-flags",
      properties: [[PROP.SESSION_EXPIRY_INTERVAL, 3600], [PROP.REQUEST_RESPONSE_INFORMATION, 1]],
    });
    const p = ack.properties;
    assert.equal(p.get(PROP.RECEIVE_MAXIMUM), 7);
    assert.equal(p.get(PROP.TOPIC_ALIAS_MAXIMUM), 3);
    assert.equal(p.get(PROP.MAXIMUM_QOS), 1);
    assert.equal(p.get(PROP.RETAIN_AVAILABLE), 0);
    assert.equal(p.get(PROP.WILDCARD_SUBSCRIPTION_AVAILABLE), 0);
    assert.equal(p.get(PROP.SHARED_SUBSCRIPTION_AVAILABLE), 0);
    assert.equal(p.get(PROP.SUBSCRIPTION_IDENTIFIER_AVAILABLE), 0);
    assert.equal(p.get(PROP.SESSION_EXPIRY_INTERVAL), 30);
    assert.ok(String(p.get(PROP.RESPONSE_INFORMATION)).startsWith("rsp/"));
  } finally {
    await c.close();
    cli.kill("SIGTERM");
    await cli.finished;
  }
});
