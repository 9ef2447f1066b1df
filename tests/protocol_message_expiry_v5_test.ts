/**
 * 04/03 (5.0): Message Expiry Interval: forwarded with the remaining lifetime, expired messages
 * not delivered from session queues or the retained store.
 *
 * @module
 */
import assert from "node:assert/strict";
import { MOSQUITTO, startBroker, waitFor } from "./_harness.ts";
import type { RunningBroker } from "./_harness.ts";
import { connect, disconnect, PROP } from "./_raw.ts";
import type { RawClient } from "./_raw.ts";

/** Waits until `ms` have passed since `since` (the expiry under test needs real time to pass). */
async function until(since: number, ms: number): Promise<void> {
  await waitFor(() => Date.now() - since >= ms, `${ms} ms to pass`, ms + 2_000);
}

/** A subscriber with a session that outlives its connection, then offline. */
async function offlineSubscriber(b: RunningBroker, clientId: string, filter: string) {
  const sub = await b.connect5({
    clientId,
    properties: [[PROP.SESSION_EXPIRY_INTERVAL, 300]],
  }, clientId);
  await sub.subscribe5(1, [[filter, { qos: 1 }]]);
  await sub.send(disconnect());
  await sub.expectClosed();
}

async function resume(b: RunningBroker, clientId: string): Promise<RawClient> {
  const c = await b.client(`${clientId}-back`);
  await c.send(
    connect({
      version: 5,
      clientId,
      cleanSession: false,
      properties: [[PROP.SESSION_EXPIRY_INTERVAL, 300]],
    }),
  );
  const ack = await c.expectConnack5();
  assert.equal(ack.reasonCode, 0);
  assert.equal(ack.sessionPresent, true);
  return c;
}

Deno.test(
  "message expiry: a live message is forwarded with its Message Expiry Interval (at most the one sent) [MQTT-3.3.2-6]",
  async () => {
    await using b = await startBroker();
    const sub = await b.connect5({ clientId: "me-live" }, "sub");
    await sub.subscribe5(1, [["me/live", { qos: 1 }]]);
    const pub = await b.connect5({ clientId: "me-pub" }, "pub");
    await pub.publish5({
      topic: "me/live",
      qos: 1,
      packetId: 1,
      payload: "x",
      properties: [[PROP.MESSAGE_EXPIRY_INTERVAL, 60]],
    });
    const left = (await sub.receive5()).properties.get(PROP.MESSAGE_EXPIRY_INTERVAL) as number;
    assert.ok(left >= 58 && left <= 60, `Message Expiry Interval ${left}`);
  },
);

Deno.test(
  "message expiry: a queued message is forwarded with the lifetime it has left [MQTT-3.3.2-6]",
  async () => {
    await using b = await startBroker();
    await offlineSubscriber(b, "me-q", "me/q");
    const pub = await b.connect5({ clientId: "me-q-pub" }, "pub");
    await pub.publish5({
      topic: "me/q",
      qos: 1,
      packetId: 1,
      payload: "waited",
      properties: [[PROP.MESSAGE_EXPIRY_INTERVAL, 60]],
    });
    const sent = Date.now();
    await until(sent, 2_100);
    const c = await resume(b, "me-q");
    const m = await c.receive5();
    assert.equal(m.text, "waited");
    const left = m.properties.get(PROP.MESSAGE_EXPIRY_INTERVAL) as number;
    assert.ok(left <= 58 && left >= 50, `Message Expiry Interval ${left} after >2 s in the queue`);
  },
);

Deno.test(
  "message expiry: an expired queued message is not delivered, the others are [MQTT-3.3.2-5]",
  async () => {
    await using b = await startBroker();
    await offlineSubscriber(b, "me-x", "me/x");
    const pub = await b.connect5({ clientId: "me-x-pub" }, "pub");
    await pub.publish5({
      topic: "me/x",
      qos: 1,
      packetId: 1,
      payload: "expires",
      properties: [[PROP.MESSAGE_EXPIRY_INTERVAL, 1]],
    });
    await pub.publish5({ topic: "me/x", qos: 1, packetId: 2, payload: "stays" });
    const sent = Date.now();
    await until(sent, 2_200);
    const c = await resume(b, "me-x");
    const m = await c.receive5();
    assert.equal(m.text, "stays");
    await c.expectNothing();
  },
);

Deno.test(
  "message expiry: an expired retained message is not sent to new subscribers [MQTT-3.3.2-5]",
  async () => {
    await using b = await startBroker();
    const pub = await b.connect5({ clientId: "me-r-pub" }, "pub");
    await pub.publish5({
      topic: "me/r/short",
      qos: 1,
      packetId: 1,
      retain: true,
      payload: "short",
      properties: [[PROP.MESSAGE_EXPIRY_INTERVAL, 1]],
    });
    await pub.publish5({
      topic: "me/r/long",
      qos: 1,
      packetId: 2,
      retain: true,
      payload: "long",
      properties: [[PROP.MESSAGE_EXPIRY_INTERVAL, 100]],
    });
    const sent = Date.now();
    await until(sent, 2_200);
    const sub = await b.connect5({ clientId: "me-r-sub" }, "sub");
    await sub.subscribe5(1, [["me/r/#", { qos: 1 }]]);
    const m = await sub.receive5();
    assert.equal(m.text, "long");
    const left = m.properties.get(PROP.MESSAGE_EXPIRY_INTERVAL) as number;
    assert.ok(left <= 98 && left >= 90, `retained Message Expiry Interval ${left}`);
    await sub.expectNothing();
  },
);

Deno.test({
  name: "message expiry: maxMessageExpiry caps the interval a client asks for (ours)",
  ignore: MOSQUITTO,
  async fn() {
    await using b = await startBroker({ v5: { maxMessageExpiry: 10 } });
    const sub = await b.connect5({ clientId: "me-cap" }, "sub");
    await sub.subscribe5(1, [["me/cap", { qos: 1 }]]);
    const pub = await b.connect5({ clientId: "me-cap-pub" }, "pub");
    await pub.publish5({
      topic: "me/cap",
      qos: 1,
      packetId: 1,
      payload: "x",
      properties: [[PROP.MESSAGE_EXPIRY_INTERVAL, 1000]],
    });
    const left = (await sub.receive5()).properties.get(PROP.MESSAGE_EXPIRY_INTERVAL) as number;
    assert.ok(left <= 10 && left >= 8, `Message Expiry Interval ${left}`);
  },
});

Deno.test(
  "message expiry: a 3.1.1 subscriber gets a 5.0 message with an expiry (and no properties)",
  async () => {
    await using b = await startBroker();
    const sub = await b.connect({ clientId: "me-311" }, "sub");
    await sub.subscribe(1, [["me/311", 1]]);
    const pub = await b.connect5({ clientId: "me-311-pub" }, "pub");
    await pub.publish5({
      topic: "me/311",
      qos: 1,
      packetId: 1,
      payload: "x",
      properties: [[PROP.MESSAGE_EXPIRY_INTERVAL, 60], [PROP.USER_PROPERTY, ["k", "v"]]],
    });
    const m = await sub.receive();
    assert.equal(m.text, "x", "3.1.1 PUBLISH: the payload starts right after the packet id");
  },
);

Deno.test({
  // mosquitto 2.0.11 expires it and never sends it again.
  name:
    "message expiry: a QoS 2 message already sent is not expired: it is sent again on resume [MQTT-4.3.3-7] [MQTT-4.4.0-1] (ours)",
  ignore: MOSQUITTO,
  async fn() {
    await using b = await startBroker();
    const sub = await b.connect5({
      clientId: "me-sent",
      properties: [[PROP.SESSION_EXPIRY_INTERVAL, 300]],
    }, "sub");
    await sub.subscribe5(1, [["me/sent", { qos: 2 }]]);
    const pub = await b.connect5({ clientId: "me-sent-pub" }, "pub");
    await pub.publish5({
      topic: "me/sent",
      qos: 2,
      packetId: 1,
      payload: "in flight",
      properties: [[PROP.MESSAGE_EXPIRY_INTERVAL, 1]],
    });
    const first = await sub.expectPublish5();
    await sub.close(); // no PUBREC
    const left = Date.now();
    await until(left, 2_200);
    const c = await resume(b, "me-sent");
    const again = await c.expectPublish5();
    assert.deepEqual([again.text, again.dup, again.packetId], ["in flight", true, first.packetId]);
  },
});
