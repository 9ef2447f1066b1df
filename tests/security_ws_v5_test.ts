/**
 * MQTT 5.0 over WebSocket through the CLI: npm:mqtt with `protocolVersion: 5` on `ws://` talks to
 * a 5.0 client on TCP with properties intact both ways.
 *
 * @module
 */
import assert from "node:assert/strict";
// Inline and exactly versioned, like every dependency here (see tests/imports_test.ts).
// deno-lint-ignore no-import-prefix
import mqtt from "npm:mqtt@5.16.0";
import { scratchDir, startCli, within } from "./_security.ts";

Deno.test("WebSocket 5.0: npm:mqtt v5 over ws:// and a v5 TCP client exchange messages with user properties, topic aliases and a response topic", async () => {
  await using dir = await scratchDir("security_ws_v5_");
  await using cli = await startCli(
    dir.path,
    ["--allow-net"],
    ["--port", "0", "--ws-port", "0"],
    ["tcp", "ws"],
  );
  const open = (url: string, clientId: string, extra: mqtt.IClientOptions = {}) =>
    within(
      cli,
      mqtt.connectAsync(url, { clientId, reconnectPeriod: 0, protocolVersion: 5, ...extra }),
      10_000,
      `${clientId} to connect`,
    );
  const ws = await open(`ws://127.0.0.1:${cli.ports.ws}/mqtt`, "js5-ws", {
    autoAssignTopicAlias: true,
  });
  const tcp = await open(`mqtt://127.0.0.1:${cli.ports.tcp}`, "js5-tcp");
  try {
    const tcpGot: mqtt.IPublishPacket[] = [];
    const wsGot: mqtt.IPublishPacket[] = [];
    tcp.on("message", (_t, _p, packet) => tcpGot.push(packet));
    ws.on("message", (_t, _p, packet) => wsGot.push(packet));
    await tcp.subscribeAsync("ws5/up/#", { qos: 1 });
    await ws.subscribeAsync("ws5/down", { qos: 1 });
    for (let i = 0; i < 3; i++) {
      await ws.publishAsync("ws5/up/long/topic", `m${i}`, {
        qos: 1,
        properties: { userProperties: { n: String(i) }, responseTopic: "ws5/down" },
      });
    }
    await within(
      cli,
      (async () => {
        while (tcpGot.length < 3) await new Promise((r) => setTimeout(r, 5));
      })(),
      5_000,
      "deliveries to the TCP client",
    );
    assert.deepEqual(
      tcpGot.map((p) => [p.topic, String(p.payload), p.properties?.userProperties?.n]),
      [["ws5/up/long/topic", "m0", "0"], ["ws5/up/long/topic", "m1", "1"], [
        "ws5/up/long/topic",
        "m2",
        "2",
      ]],
    );
    const reply = tcpGot[0].properties?.responseTopic as string;
    await tcp.publishAsync(reply, "answer", { qos: 1, properties: { contentType: "text/plain" } });
    await within(
      cli,
      (async () => {
        while (wsGot.length < 1) await new Promise((r) => setTimeout(r, 5));
      })(),
      5_000,
      "the answer over ws",
    );
    assert.equal(String(wsGot[0].payload), "answer");
    assert.equal(wsGot[0].properties?.contentType, "text/plain");
  } finally {
    await Promise.all([ws.endAsync(), tcp.endAsync()]);
  }
  assert.equal((await cli.stop()).code, 0);
});
