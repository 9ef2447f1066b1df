/**
 * The admin API's kick (`DELETE /api/v1/clients/ID`, `broker.disconnectClient`) on MQTT 5.0: the
 * client is told why (DISCONNECT 0x98 Administrative action) before the close; a 3.1.1 client is
 * closed without a packet. Raw sockets, our broker only.
 *
 * @module
 */
import assert from "node:assert/strict";
import { MOSQUITTO, startBroker } from "./_harness.ts";
import { parseDisconnect5, TYPE } from "./_raw.ts";
import { serveOps } from "./_ops.ts";

const TOKEN = "admin-v5-token-0123456789";

Deno.test({
  name:
    "admin API: kicking a 5.0 client sends DISCONNECT 0x98 first, then closes; its will goes out",
  ignore: MOSQUITTO,
  fn: async () => {
    await using b = await startBroker();
    await using ops = serveOps(b.broker!, { token: TOKEN });
    const watcher = await b.connect5({ clientId: "watcher5" }, "watcher");
    await watcher.subscribe5(1, [["wills/#", { qos: 0 }]]);
    const victim = await b.connect5({
      clientId: "victim5",
      will: { topic: "wills/victim5", payload: "gone" },
    }, "victim");
    const response = await ops.get("/api/v1/clients/victim5", {
      method: "DELETE",
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), {
      clientId: "victim5",
      disconnected: true,
      reasonCode: 0x98,
    });
    const disconnect = parseDisconnect5(await victim.expectPacket(TYPE.DISCONNECT));
    assert.equal(disconnect.reasonCode, 0x98, "Administrative action");
    await victim.expectClosed();
    assert.equal((await watcher.receive5()).text, "gone", "the will is published");
  },
});

Deno.test({
  name: "admin API: kicking a 3.1.1 client closes it without a packet",
  ignore: MOSQUITTO,
  fn: async () => {
    await using b = await startBroker();
    const victim = await b.connect({ clientId: "victim4" }, "victim");
    assert.equal(b.broker!.disconnectClient("victim4"), true);
    await victim.expectClosed();
    assert.equal(b.broker!.disconnectClient("victim4"), false, "no longer connected");
  },
});
