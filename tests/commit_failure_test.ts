/**
 * A store commit that fails behaves the same in every handler: the client's connection closes
 * without its ack and without its will (ARCHITECTURE.md, "Errors → wire actions"). Before the one
 * `afterCommit()` path, a failed commit during SUBSCRIBE published the will.
 */
import assert from "node:assert/strict";
import { Broker, MemoryPersistence } from "../mod.ts";
import {
  connect,
  pingreq,
  publish,
  RawClient,
  subscribe,
  subscribe5,
  TYPE,
  unsubscribe,
  unsubscribe5,
} from "./_raw.ts";
import { waitFor } from "./_util.ts";

/** A memory store whose commits can be made to fail. */
class FailingPersistence extends MemoryPersistence {
  fail = false;
  override commit(): Promise<void> {
    if (this.fail) return Promise.reject(new Error("disk full (test)"));
    return super.commit();
  }
}

const CASES: { name: string; packet: (version: number) => Uint8Array }[] = [
  {
    name: "SUBSCRIBE",
    packet: (v) => v === 5 ? subscribe5(7, [["x/#", 1]]) : subscribe(7, [["x/#", 1]]),
  },
  {
    name: "UNSUBSCRIBE",
    packet: (v) => v === 5 ? unsubscribe5(7, ["x/#"]) : unsubscribe(7, ["x/#"]),
  },
  {
    name: "QoS 1 PUBLISH",
    packet: (version) => publish({ topic: "x/y", payload: "p", qos: 1, packetId: 7, version }),
  },
];

for (const version of [4, 5]) {
  for (const { name, packet } of CASES) {
    Deno.test(`v${version}: a failed store commit during ${name} closes without ack and without will`, async () => {
      const store = new FailingPersistence();
      await using broker = new Broker({ persistence: store, logLevel: "silent" });
      const listener = await broker.listen({ hostname: "127.0.0.1", port: 0 });
      const disconnects: { clientId: string; willPublished: boolean }[] = [];
      broker.addEventListener("disconnect", (e) => {
        disconnects.push({
          clientId: e.detail.client.clientId,
          willPublished: e.detail.willPublished,
        });
      });
      const watcher = await RawClient.connect(listener.port, "watcher");
      const victim = await RawClient.connect(listener.port, "victim");
      try {
        await watcher.send(connect({ clientId: "watcher", version }));
        await watcher.expectPacket(TYPE.CONNACK);
        await watcher.send(
          version === 5 ? subscribe5(1, [["will/#", 0]]) : subscribe(1, [["will/#", 0]]),
        );
        await watcher.expectPacket(TYPE.SUBACK);
        await victim.send(
          connect({
            clientId: "victim",
            cleanSession: false,
            version,
            properties: version === 5 ? [[0x11, 3600]] : undefined,
            will: { topic: "will/victim", payload: "gone" },
          }),
        );
        await victim.expectPacket(TYPE.CONNACK);
        store.fail = true;
        await victim.send(packet(version));
        // No ack: the connection closes [and the will stays unpublished].
        await victim.expectClosed();
        await waitFor(() => disconnects.some((d) => d.clientId === "victim"), 5_000);
        store.fail = false;
        assert.deepEqual(
          disconnects.find((d) => d.clientId === "victim"),
          { clientId: "victim", willPublished: false },
        );
        // The watcher saw no will: its PINGRESP is the next packet.
        await watcher.send(pingreq());
        await watcher.expectPacket(TYPE.PINGRESP);
      } finally {
        await watcher.close();
        await victim.close();
        await listener.close();
      }
    });
  }
}
