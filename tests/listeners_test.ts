/**
 * Several listeners through the API (`startListeners`, `loadListenerAuth`): each with its own
 * address, protocol and authentication; a connection knows the listener it came in on; a
 * listener's `maxConnections`.
 */
import assert from "node:assert/strict";
import type mqtt from "npm:mqtt@5.16.0";
import {
  Broker,
  createLogger,
  type ListenerConfig,
  loadListenerAuth,
  startListeners,
} from "../mod.ts";
import type { Stopper } from "../src/config/listen.ts";
import { connectMqtt } from "./_mqttjs.ts";
import { freePort, RawSocket, waitFor } from "./_util.ts";

Deno.test("listeners: per-listener auth picks the listener a connection came in on", async () => {
  const dir = await Deno.makeTempDir({ prefix: "denomq-listeners-" });
  const stoppers: Stopper[] = [];
  const tcp = freePort();
  const ws = freePort();
  const closed = freePort();
  const listeners: ListenerConfig[] = [
    { name: "open", host: "127.0.0.1", port: tcp, auth: { allowAnonymous: true } },
    {
      name: "web",
      host: "127.0.0.1",
      port: ws,
      protocol: "websockets",
      auth: { allowAnonymous: true },
    },
    { name: "closed", host: "127.0.0.1", port: closed, auth: { allowAnonymous: false } },
  ];
  const auth = await loadListenerAuth({ allowAnonymous: true }, listeners);
  const seen: (string | undefined)[] = [];
  const broker = new Broker({ logLevel: "silent", ...auth.hooks });
  broker.addEventListener("connect", (e) => seen.push(e.detail.client.remoteAddress?.listener));
  const clients: mqtt.MqttClient[] = [];
  try {
    await startListeners(broker, listeners, {
      log: createLogger("silent"),
      stoppers,
      fail: (reason) => assert.fail(reason),
    });
    clients.push(await connectMqtt(tcp, { clientId: "a" }));
    const mqttjs = (await import("npm:mqtt@5.16.0")).default;
    clients.push(
      await mqttjs.connectAsync(`ws://127.0.0.1:${ws}/mqtt`, {
        clientId: "b",
        protocolVersion: 4,
        reconnectPeriod: 0,
      }),
    );
    const socket = await RawSocket.open(closed);
    const [, code] = await socket.connect({ clientId: "c" });
    await socket.close();
    assert.equal(code, 5, "anonymous refused on the closed listener only");
    assert.deepEqual(seen, ["open", "web"]);
  } finally {
    await Promise.all(clients.map((c) => c.endAsync()));
    for (const stop of stoppers.reverse()) await stop();
    await broker.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("listeners: maxConnections of one listener closes the connection past it", async () => {
  const broker = new Broker({ logLevel: "silent" });
  try {
    const limited = await broker.listen({
      hostname: "127.0.0.1",
      port: 0,
      maxConnections: 1,
      name: "one",
    });
    const other = await broker.listen({ hostname: "127.0.0.1", port: 0 });
    const first = await RawSocket.open(limited.port);
    const [code] = await first.connect({ clientId: "first" }).then(([, c]) => [c]);
    assert.equal(code, 0);
    const second = await RawSocket.open(limited.port);
    assert.equal(await second.closedByPeer(), true, "closed without CONNACK");
    await second.close();
    // Another listener is not affected; and the slot comes back once the first one leaves.
    const third = await RawSocket.open(other.port);
    assert.equal((await third.connect({ clientId: "third" }))[1], 0);
    await third.close();
    await first.close();
    await waitFor(() => broker.stats().connections === 0, 5_000, "first closed");
    const again = await RawSocket.open(limited.port);
    assert.equal((await again.connect({ clientId: "again" }))[1], 0);
    await again.close();
  } finally {
    await broker.close();
  }
});
