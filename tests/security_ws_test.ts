/**
 * MQTT over WebSocket through the CLI, end to end with npm:mqtt: `ws://` and `wss://` (with a
 * throwaway CA), QoS 1 both ways, and messages crossing between TCP and WebSocket clients.
 *
 * Permissions of the broker: `ws://` needs `--allow-net` only; `wss://` needs the certificate
 * too: `--allow-net --allow-read=cert.pem,key.pem`.
 */
import assert from "node:assert/strict";
import mqtt from "npm:mqtt@5.16.0";
import {
  HAVE,
  makeCertificates,
  type RunningCli,
  scratchDir,
  startCli,
  waitForLog,
  within,
} from "./_security.ts";

type Client = Awaited<ReturnType<typeof mqtt.connectAsync>>;

/** Messages a client receives, waited for one at a time. */
function inbox(client: Client) {
  const got: [string, string][] = [];
  client.on("message", (topic, payload) => got.push([topic, new TextDecoder().decode(payload)]));
  return got;
}

async function connect(
  cli: RunningCli,
  url: string,
  clientId: string,
  extra: Record<string, unknown> = {},
): Promise<Client> {
  return await within(
    cli,
    mqtt.connectAsync(url, { clientId, reconnectPeriod: 0, protocolVersion: 4, ...extra }),
    10_000,
    `${clientId} to connect to ${url}`,
  );
}

/**
 * A QoS 1 round trip on the WebSocket client itself, then TCP → WebSocket and WebSocket → TCP,
 * each message acknowledged (PUBACK) and delivered at QoS 1.
 */
async function crossTraffic(cli: RunningCli, ws: Client, tcp: Client, label: string) {
  const wsGot = inbox(ws);
  const tcpGot = inbox(tcp);
  const granted = await ws.subscribeAsync(`${label}/#`, { qos: 1 });
  assert.equal(granted[0].qos, 1);
  await tcp.subscribeAsync(`back/${label}`, { qos: 1 });

  await within(cli, ws.publishAsync(`${label}/self`, "echo", { qos: 1 }), 5_000, "PUBACK (ws)");
  await within(
    cli,
    tcp.publishAsync(`${label}/from-tcp`, "to ws", { qos: 1 }),
    5_000,
    "PUBACK (tcp)",
  );
  await within(
    cli,
    ws.publishAsync(`back/${label}`, "to tcp", { qos: 1 }),
    5_000,
    "PUBACK (ws → tcp)",
  );
  await within(
    cli,
    (async () => {
      while (wsGot.length < 2 || tcpGot.length < 1) await new Promise((r) => setTimeout(r, 5));
    })(),
    5_000,
    `deliveries (${label}: ws got ${JSON.stringify(wsGot)}, tcp got ${JSON.stringify(tcpGot)})`,
  );
  assert.deepEqual(wsGot, [[`${label}/self`, "echo"], [`${label}/from-tcp`, "to ws"]]);
  assert.deepEqual(tcpGot, [[`back/${label}`, "to tcp"]]);
}

Deno.test("WebSocket: npm:mqtt over ws:// (--allow-net only) round trips at QoS 1 and talks to TCP clients", async () => {
  await using dir = await scratchDir("security_ws_");
  await using cli = await startCli(
    dir.path,
    ["--allow-net"],
    ["--port", "0", "--ws-port", "0"],
    ["tcp", "ws"],
  );
  assert.match(cli.stderr(), /listening on ws 127\.0\.0\.1:\d+\/mqtt/);
  const ws = await connect(cli, `ws://127.0.0.1:${cli.ports.ws}/mqtt`, "js-ws");
  const tcp = await connect(cli, `mqtt://127.0.0.1:${cli.ports.tcp}`, "js-tcp");
  try {
    await crossTraffic(cli, ws, tcp, "ws");
  } finally {
    await Promise.all([ws.endAsync(), tcp.endAsync()]);
  }
  await waitForLog(cli, /client "js-ws" connected from 127\.0\.0\.1:\d+ over ws\b/);
  await waitForLog(cli, /client "js-tcp" connected from 127\.0\.0\.1:\d+ over tcp\b/);
  assert.equal((await cli.stop()).code, 0);
});

Deno.test({
  name:
    "WebSocket: npm:mqtt over wss:// (with the CA) round trips at QoS 1 and talks to TCP clients",
  ignore: !HAVE.openssl,
  async fn() {
    await using dir = await scratchDir("security_ws_");
    await makeCertificates(dir.path);
    await using cli = await startCli(dir.path, ["--allow-net", "--allow-read=cert.pem,key.pem"], [
      ...["--port", "0", "--wss-port", "0", "--tls-port", "0"],
      ...["--tls-cert", "cert.pem", "--tls-key", "key.pem"],
    ], ["tcp", "tls", "wss"]);
    const ca = await Deno.readTextFile(`${dir.path}/ca.pem`);
    const wss = await connect(cli, `wss://127.0.0.1:${cli.ports.wss}/mqtt`, "js-wss", {
      ca,
      rejectUnauthorized: true,
    });
    const tcp = await connect(cli, `mqtt://127.0.0.1:${cli.ports.tcp}`, "js-tcp");
    try {
      await crossTraffic(cli, wss, tcp, "wss");
    } finally {
      await Promise.all([wss.endAsync(), tcp.endAsync()]);
    }
    await waitForLog(cli, /client "js-wss" connected from 127\.0\.0\.1:\d+ over wss\b/);
    // Without the CA, the certificate is refused.
    await assert.rejects(
      mqtt.connectAsync(`wss://127.0.0.1:${cli.ports.wss}/mqtt`, {
        clientId: "no-ca",
        reconnectPeriod: 0,
        connectTimeout: 5_000,
      }),
      (error: Error) => {
        assert.match(String(error), /certificate|issuer/i);
        return true;
      },
    );
    assert.equal((await cli.stop()).code, 0);
  },
});
