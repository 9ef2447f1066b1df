/**
 * 01 (5.0): Session Expiry Interval: 0 ends the session with the connection, n keeps it n
 * seconds, 0xFFFFFFFF keeps it; Clean Start; what a resumed session brings back.
 *
 * @module
 */
import assert from "node:assert/strict";
import { MOSQUITTO, startBroker, waitFor } from "./_harness.ts";
import type { RunningBroker } from "./_harness.ts";
import { connect, disconnect, PROP, puback, pubcomp, pubrec, TYPE } from "./_raw.ts";
import type { Connack5, RawClient } from "./_raw.ts";

const expiry = (s: number) => [[PROP.SESSION_EXPIRY_INTERVAL, s]] as [number, number][];

async function resume(
  b: RunningBroker,
  clientId: string,
  s?: number,
): Promise<[RawClient, Connack5]> {
  const c = await b.client(`${clientId}-again`);
  await c.send(connect({
    version: 5,
    clientId,
    cleanSession: false,
    properties: s === undefined ? [] : expiry(s),
  }));
  const ack = await c.expectConnack5();
  assert.equal(ack.reasonCode, 0);
  return [c, ack];
}

async function leave(c: RawClient): Promise<void> {
  await c.send(disconnect());
  await c.expectClosed();
}

Deno.test(
  "session expiry: absent (0) ends the session when the connection closes [MQTT-3.1.2-23] [MQTT-3.2.2-3]",
  async () => {
    await using b = await startBroker();
    const c = await b.connect5({ clientId: "se0", cleanSession: false });
    await c.subscribe5(1, [["se0/t", { qos: 1 }]]);
    await leave(c);
    const [, ack] = await resume(b, "se0");
    assert.equal(ack.sessionPresent, false);
  },
);

Deno.test(
  "session expiry: n > 0 keeps subscriptions and queues messages while offline [MQTT-3.1.2-23] [MQTT-3.1.2-5] [MQTT-4.5.0-1]",
  async () => {
    await using b = await startBroker();
    const c = await b.connect5({ clientId: "se300", properties: expiry(300) });
    await c.subscribe5(1, [["se300/t", { qos: 1 }]], [[PROP.SUBSCRIPTION_IDENTIFIER, 9]]);
    await leave(c);
    const pub = await b.connect5({ clientId: "se300-pub" }, "pub");
    await pub.publish5({ topic: "se300/t", qos: 1, packetId: 1, payload: "while away" });
    const [back, ack] = await resume(b, "se300", 300);
    assert.equal(ack.sessionPresent, true);
    const m = await back.receive5();
    assert.equal(m.text, "while away");
    assert.deepEqual(m.properties.all(PROP.SUBSCRIPTION_IDENTIFIER), [9], "options kept too");
  },
);

Deno.test(
  "session expiry: the session is discarded once its interval has passed [MQTT-4.1.0-2]",
  async () => {
    await using b = await startBroker();
    const c = await b.connect5({ clientId: "se1", properties: expiry(1) });
    await c.subscribe5(1, [["se1/t", { qos: 1 }]]);
    await leave(c);
    const left = Date.now();
    await waitFor(() => Date.now() - left >= 2_200, "the session expiry to pass", 5_000);
    const [, ack] = await resume(b, "se1", 1);
    assert.equal(ack.sessionPresent, false);
  },
);

Deno.test(
  "session expiry: 0xFFFFFFFF keeps the session (does not expire) [MQTT-3.1.2-23]",
  async () => {
    await using b = await startBroker();
    const c = await b.connect5({ clientId: "semax", properties: expiry(0xffffffff) });
    await c.subscribe5(1, [["semax/t", { qos: 1 }]]);
    await leave(c);
    const left = Date.now();
    await waitFor(() => Date.now() - left >= 1_200, "a second to pass", 5_000);
    const [, ack] = await resume(b, "semax");
    assert.equal(ack.sessionPresent, true);
  },
);

Deno.test(
  "session expiry: Clean Start 0 without a stored session creates one, Session Present 0 [MQTT-3.1.2-6] [MQTT-3.2.2-3]",
  async () => {
    await using b = await startBroker();
    const [, ack] = await resume(b, "fresh", 60);
    assert.equal(ack.sessionPresent, false);
  },
);

Deno.test(
  "session expiry: an unacknowledged QoS 1 message is sent again with DUP on resume, same packet id [MQTT-4.4.0-1] [MQTT-3.3.1-1]",
  async () => {
    await using b = await startBroker();
    const c = await b.connect5({ clientId: "redeliver", properties: expiry(60) });
    await c.subscribe5(1, [["rd/t", { qos: 1 }]]);
    const pub = await b.connect5({ clientId: "rd-pub" }, "pub");
    await pub.publish5({
      topic: "rd/t",
      qos: 1,
      packetId: 1,
      payload: "again",
      properties: [[PROP.USER_PROPERTY, ["k", "v"]]],
    });
    const first = await c.expectPublish5();
    assert.equal(first.dup, false);
    await c.close(); // no PUBACK
    const [back] = await resume(b, "redeliver", 60);
    const second = await back.expectPublish5();
    assert.deepEqual(
      [second.text, second.dup, second.packetId, second.properties.user],
      ["again", true, first.packetId, [["k", "v"]]],
    );
    await back.send(puback(second.packetId!));
    await back.expectNothing();
  },
);

Deno.test({
  name:
    "session expiry: maxSessionExpiry caps the interval; CONNACK says which one the broker uses (ours)",
  ignore: MOSQUITTO,
  async fn() {
    await using b = await startBroker({ v5: { maxSessionExpiry: 1 } });
    const c = await b.connect5({ clientId: "capped", properties: expiry(0xffffffff) });
    assert.equal(c.connack.properties.get(PROP.SESSION_EXPIRY_INTERVAL), 1);
    await c.subscribe5(1, [["capped/t", { qos: 1 }]]);
    await leave(c);
    const left = Date.now();
    await waitFor(() => Date.now() - left >= 2_200, "the capped expiry to pass", 5_000);
    const [, ack] = await resume(b, "capped");
    assert.equal(ack.sessionPresent, false);
  },
});

Deno.test(
  "session expiry: a QoS 2 message PUBRECed before the disconnect gets its PUBREL again on resume, not the PUBLISH [MQTT-4.4.0-1] [MQTT-4.3.3-6]",
  async () => {
    await using b = await startBroker();
    const c = await b.connect5({ clientId: "rel-again", properties: expiry(60) });
    await c.subscribe5(1, [["rel/t", { qos: 2 }]]);
    const pub = await b.connect5({ clientId: "rel-pub" }, "pub");
    await pub.publish5({ topic: "rel/t", qos: 2, packetId: 1, payload: "once" });
    const m = await c.expectPublish5();
    await c.send(pubrec(m.packetId!));
    assert.equal((await c.expectAck5(TYPE.PUBREL)).packetId, m.packetId);
    await c.close(); // no PUBCOMP
    const [back] = await resume(b, "rel-again", 60);
    assert.equal((await back.expectAck5(TYPE.PUBREL)).packetId, m.packetId);
    await back.send(pubcomp(m.packetId!));
    await back.expectNothing();
  },
);
