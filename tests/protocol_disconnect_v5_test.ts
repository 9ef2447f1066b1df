/**
 * 01/07 (5.0): DISCONNECT both ways: the client's reason codes (0x00 discards the will, 0x04 sends
 * it) and Session Expiry changes; the broker's DISCONNECT before it closes (0x8E takeover, 0x8B
 * shutdown, 0x81 malformed).
 *
 * @module
 */
import assert from "node:assert/strict";
import { expectDisconnectOrMosquittoClose, MOSQUITTO, startBroker } from "./_harness.ts";
import type { RunningBroker } from "./_harness.ts";
import { connect, disconnect, packet, PROP, RC, TYPE } from "./_raw.ts";
import type { RawClient } from "./_raw.ts";

async function watcher(b: RunningBroker): Promise<RawClient> {
  const w = await b.connect5({ clientId: "watcher" }, "watcher");
  await w.subscribe5(1, [["will/#", { qos: 1 }]]);
  return w;
}

async function sessionPresent(b: RunningBroker, clientId: string): Promise<boolean> {
  const c = await b.client(`${clientId}-probe`);
  await c.send(connect({ version: 5, clientId, cleanSession: false }));
  const ack = await c.expectConnack5();
  assert.equal(ack.reasonCode, 0);
  await c.send(disconnect());
  await c.expectClosed();
  return ack.sessionPresent;
}

Deno.test(
  "DISCONNECT 5.0: reason 0x00 closes without the will [MQTT-3.14.4-3] [MQTT-3.1.2-10]",
  async () => {
    await using b = await startBroker();
    const w = await watcher(b);
    const c = await b.connect5({ clientId: "normal", will: { topic: "will/normal", qos: 1 } });
    await c.send(disconnect(RC.SUCCESS, [[PROP.REASON_STRING, "bye"], [PROP.USER_PROPERTY, [
      "k",
      "v",
    ]]]));
    await c.expectClosed(); // the broker sends nothing after a client's DISCONNECT
    await w.expectNothing();
  },
);

Deno.test(
  "DISCONNECT 5.0: reason 0x04 (disconnect with will message) publishes the will (3.14.2.1)",
  async () => {
    await using b = await startBroker();
    const w = await watcher(b);
    const c = await b.connect5({
      clientId: "withwill",
      will: { topic: "will/withwill", payload: "gone", qos: 1 },
    });
    await c.send(disconnect(RC.DISCONNECT_WITH_WILL));
    await c.expectClosed();
    const m = await w.receive5();
    assert.deepEqual([m.topic, m.text], ["will/withwill", "gone"]);
  },
);

Deno.test(
  "DISCONNECT 5.0: Session Expiry Interval on DISCONNECT replaces the CONNECT's: 0 ends the session (3.14.2.2.2)",
  async () => {
    await using b = await startBroker();
    const c = await b.connect5({
      clientId: "ends",
      properties: [[PROP.SESSION_EXPIRY_INTERVAL, 300]],
    });
    await c.subscribe5(1, [["ends/t", { qos: 1 }]]);
    await c.send(disconnect(RC.SUCCESS, [[PROP.SESSION_EXPIRY_INTERVAL, 0]]));
    await c.expectClosed();
    assert.equal(await sessionPresent(b, "ends"), false);
  },
);

Deno.test(
  "DISCONNECT 5.0: a longer Session Expiry Interval on DISCONNECT keeps the session (3.14.2.2.2)",
  async () => {
    await using b = await startBroker();
    const c = await b.connect5({
      clientId: "keeps",
      properties: [[PROP.SESSION_EXPIRY_INTERVAL, 10]],
    });
    await c.subscribe5(1, [["keeps/t", { qos: 1 }]]);
    await c.send(disconnect(RC.SUCCESS, [[PROP.SESSION_EXPIRY_INTERVAL, 600]]));
    await c.expectClosed();
    assert.equal(await sessionPresent(b, "keeps"), true);
  },
);

Deno.test(
  "DISCONNECT 5.0: a non-zero Session Expiry Interval after CONNECT's 0 is a protocol error: DISCONNECT 0x82, the will is sent (3.14.2.2.2)",
  async () => {
    await using b = await startBroker();
    const w = await watcher(b);
    const c = await b.connect5({ clientId: "zero", will: { topic: "will/zero", payload: "w" } });
    await c.send(disconnect(RC.SUCCESS, [[PROP.SESSION_EXPIRY_INTERVAL, 60]]));
    await expectDisconnectOrMosquittoClose(c, RC.PROTOCOL_ERROR);
    // Not a valid DISCONNECT: the connection ended abnormally, so the will goes out.
    assert.equal((await w.receive5()).text, "w");
    assert.equal(await sessionPresent(b, "zero"), false, "the session still ended");
  },
);

Deno.test(
  "takeover 5.0: the existing connection gets DISCONNECT 0x8E, then is closed [MQTT-3.1.4-3]",
  async () => {
    await using b = await startBroker();
    const older = await b.connect5({ clientId: "same5" }, "older");
    const newer = await b.connect5({ clientId: "same5" }, "newer");
    // mosquitto 2.0.11 closes the older connection without the DISCONNECT.
    await expectDisconnectOrMosquittoClose(older, RC.SESSION_TAKEN_OVER);
    await newer.send(packet(TYPE.PINGREQ, 0));
    await newer.expectPacket(TYPE.PINGRESP);
  },
);

Deno.test(
  "takeover: a 3.1.1 connection taken over by a 5.0 one is closed without a DISCONNECT; a 5.0 one taken over by 3.1.1 gets 0x8E",
  async () => {
    await using b = await startBroker();
    const old311 = await b.connect({ clientId: "mixed" }, "old311");
    const new5 = await b.connect5({ clientId: "mixed" }, "new5");
    await old311.expectClosed();
    await b.connect({ clientId: "mixed" }, "new311");
    await expectDisconnectOrMosquittoClose(new5, RC.SESSION_TAKEN_OVER);
  },
);

Deno.test({
  name:
    "shutdown 5.0: broker.close() sends DISCONNECT 0x8B to 5.0 clients, closes 3.1.1 ones (ours)",
  ignore: MOSQUITTO,
  async fn() {
    await using b = await startBroker();
    const v5 = await b.connect5({ clientId: "shut5" }, "v5");
    const v4 = await b.connect({ clientId: "shut4" }, "v4");
    const closing = b.broker!.close();
    await v5.expectDisconnect(RC.SERVER_SHUTTING_DOWN);
    await v4.expectClosed();
    await closing;
  },
});

Deno.test(
  "DISCONNECT 5.0: a malformed packet gets DISCONNECT 0x81, then close [MQTT-4.13.1-1]",
  async () => {
    await using b = await startBroker();
    const c = await b.connect5({ clientId: "malformed" });
    // PUBLISH with QoS 3 [MQTT-3.3.1-4].
    await c.send(Uint8Array.of(0x36, 0x04, 0x00, 0x01, 0x74, 0x00));
    await expectDisconnectOrMosquittoClose(c, RC.MALFORMED_PACKET);
  },
);

Deno.test(
  "DISCONNECT 5.0: reserved fixed header flags on a client DISCONNECT are malformed [MQTT-3.14.1-1]",
  async () => {
    await using b = await startBroker();
    const w = await watcher(b);
    const c = await b.connect5({
      clientId: "dflags",
      will: { topic: "will/dflags", payload: "w" },
    });
    await c.send(packet(TYPE.DISCONNECT, 0x01));
    await expectDisconnectOrMosquittoClose(c, RC.MALFORMED_PACKET);
    // Not a normal disconnection: the will is sent.
    assert.equal((await w.receive5()).text, "w");
  },
);
