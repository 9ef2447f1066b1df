/**
 * 02/04 (5.0): SUBSCRIBE options (No Local, Retain As Published, Retain Handling, Maximum QoS),
 * Subscription Identifiers, SUBACK and UNSUBACK reason codes, on raw sockets.
 *
 * @module
 */
import assert from "node:assert/strict";
import { expectDisconnectOrMosquittoClose, MOSQUITTO, startBroker } from "./_harness.ts";
import type { RunningBroker } from "./_harness.ts";
import { hex, PROP, publish, RC, subscribe5, TYPE } from "./_raw.ts";
import type { Publish5, RawClient } from "./_raw.ts";

/** Publishes a retained message from a fresh client and waits for its PUBACK. */
async function retain(b: RunningBroker, topic: string, payload: string): Promise<void> {
  const p = await b.connect5({ clientId: `retainer-${topic.replaceAll("/", "-")}` }, "retainer");
  await p.publish5({ topic, payload, qos: 1, packetId: 1, retain: true });
}

/** All PUBLISHes that arrive within `ms` (acknowledged). */
async function drain(c: RawClient, ms = 300): Promise<Publish5[]> {
  const got: Publish5[] = [];
  for (;;) {
    let m: Publish5;
    try {
      m = await c.receive5(ms);
    } catch {
      return got;
    }
    got.push(m);
  }
}

Deno.test(
  "SUBSCRIBE 5.0: No Local 1 does not forward a client's own messages [MQTT-3.8.3-3]",
  async () => {
    await using b = await startBroker();
    const me = await b.connect5({ clientId: "nl-me" }, "me");
    const other = await b.connect5({ clientId: "nl-other" }, "other");
    assert.deepEqual((await me.subscribe5(1, [["nl/t", { qos: 1, noLocal: true }]])).reasonCodes, [
      1,
    ]);
    assert.deepEqual((await other.subscribe5(1, [["nl/t", { qos: 1 }]])).reasonCodes, [1]);
    await me.publish5({ topic: "nl/t", qos: 1, packetId: 2, payload: "mine" });
    assert.equal((await other.receive5()).text, "mine");
    await me.expectNothing();
    // Others' messages still reach the No Local subscriber.
    const third = await b.connect5({ clientId: "nl-third" }, "third");
    await third.publish5({ topic: "nl/t", qos: 1, packetId: 3, payload: "theirs" });
    assert.equal((await me.receive5()).text, "theirs");
  },
);

Deno.test(
  "SUBSCRIBE 5.0: No Local 0 forwards a client's own messages back to it",
  async () => {
    await using b = await startBroker();
    const me = await b.connect5({ clientId: "nl0" });
    await me.subscribe5(1, [["nl0/t", { qos: 0 }]]);
    await me.send(publish({ version: 5, topic: "nl0/t", payload: "echo" }));
    assert.equal((await me.expectPublish5()).text, "echo");
  },
);

for (const rap of [false, true]) {
  Deno.test(
    `SUBSCRIBE 5.0: Retain As Published ${
      rap ? 1 : 0
    } forwards a live retained PUBLISH with RETAIN ${rap ? 1 : 0} [MQTT-3.3.1-${rap ? 13 : 12}]`,
    async () => {
      await using b = await startBroker();
      const sub = await b.connect5({ clientId: "rap-sub" }, "sub");
      await sub.subscribe5(1, [["rap/t", { qos: 1, retainAsPublished: rap }]]);
      const pub = await b.connect5({ clientId: "rap-pub" }, "pub");
      await pub.publish5({ topic: "rap/t", qos: 1, packetId: 1, retain: true, payload: "r" });
      await pub.publish5({ topic: "rap/t", qos: 1, packetId: 2, retain: false, payload: "n" });
      const [r, n] = [await sub.receive5(), await sub.receive5()];
      assert.deepEqual([r.text, r.retain], ["r", rap]);
      assert.deepEqual([n.text, n.retain], ["n", false]);
      // A retained message sent because of a new subscription always has RETAIN 1 (3.3.1.3).
      const late = await b.connect5({ clientId: "rap-late" }, "late");
      await late.subscribe5(1, [["rap/t", { qos: 1, retainAsPublished: rap }]]);
      const m = await late.receive5();
      assert.deepEqual([m.text, m.retain], ["r", true]);
    },
  );
}

Deno.test(
  "SUBSCRIBE 5.0: Retain Handling 0 sends retained messages on every SUBSCRIBE, also when it replaces one [MQTT-3.3.1-9] [MQTT-3.8.4-4]",
  async () => {
    await using b = await startBroker();
    await retain(b, "rh0/t", "kept");
    const c = await b.connect5({ clientId: "rh0" });
    await c.subscribe5(1, [["rh0/t", { qos: 1, retainHandling: 0 }]]);
    assert.deepEqual([(await c.receive5()).text], ["kept"]);
    await c.subscribe5(2, [["rh0/t", { qos: 1, retainHandling: 0 }]]);
    const again = await c.receive5();
    assert.deepEqual([again.text, again.retain], ["kept", true]);
  },
);

Deno.test(
  "SUBSCRIBE 5.0: Retain Handling 1 sends retained messages only when the subscription is new [MQTT-3.3.1-10]",
  async () => {
    await using b = await startBroker();
    await retain(b, "rh1/t", "kept");
    const c = await b.connect5({ clientId: "rh1" });
    await c.subscribe5(1, [["rh1/t", { qos: 1, retainHandling: 1 }]]);
    assert.equal((await c.receive5()).text, "kept");
    await c.subscribe5(2, [["rh1/t", { qos: 1, retainHandling: 1 }]]);
    await c.expectNothing();
  },
);

Deno.test(
  "SUBSCRIBE 5.0: Retain Handling 2 sends no retained messages [MQTT-3.3.1-11]",
  async () => {
    await using b = await startBroker();
    await retain(b, "rh2/t", "kept");
    const c = await b.connect5({ clientId: "rh2" });
    await c.subscribe5(1, [["rh2/t", { qos: 1, retainHandling: 2 }]]);
    await c.expectNothing();
    // Live messages still arrive.
    const pub = await b.connect5({ clientId: "rh2-pub" }, "pub");
    await pub.publish5({ topic: "rh2/t", qos: 1, packetId: 1, payload: "live" });
    assert.equal((await c.receive5()).text, "live");
  },
);

Deno.test(
  "SUBSCRIBE 5.0: Retain Handling 3 is a protocol error: DISCONNECT 0x82 (3.8.3.1)",
  async () => {
    await using b = await startBroker();
    const c = await b.connect5({ clientId: "rh3" });
    await c.send(subscribe5(1, [["rh3/t", 0x30]]));
    await expectDisconnectOrMosquittoClose(c, RC.PROTOCOL_ERROR);
  },
);

Deno.test(
  "SUBSCRIBE 5.0: reserved bits 6-7 of the Subscription Options set is malformed: DISCONNECT 0x81 [MQTT-3.8.3-5]",
  async () => {
    await using b = await startBroker();
    const c = await b.connect5({ clientId: "res" });
    await c.send(subscribe5(1, [["res/t", 0x41]]));
    await expectDisconnectOrMosquittoClose(c, RC.MALFORMED_PACKET);
  },
);

Deno.test(
  "SUBSCRIBE 5.0: delivery QoS is the minimum of published and granted QoS [MQTT-3.8.4-8]",
  async () => {
    await using b = await startBroker();
    const sub = await b.connect5({ clientId: "minq" }, "sub");
    await sub.subscribe5(1, [["minq/a", { qos: 1 }], ["minq/b", { qos: 2 }]]);
    const pub = await b.connect5({ clientId: "minq-pub" }, "pub");
    await pub.publish5({ topic: "minq/a", qos: 2, packetId: 1, payload: "a" });
    assert.equal((await sub.receive5()).qos, 1);
    await pub.publish5({ topic: "minq/b", qos: 1, packetId: 2, payload: "b" });
    assert.equal((await sub.receive5()).qos, 1);
  },
);

Deno.test(
  "SUBSCRIBE 5.0: the same filter again replaces the subscription and its options [MQTT-3.8.4-3]",
  async () => {
    await using b = await startBroker();
    const sub = await b.connect5({ clientId: "repl" }, "sub");
    await sub.subscribe5(1, [["repl/t", { qos: 2 }]], [[PROP.SUBSCRIPTION_IDENTIFIER, 5]]);
    await sub.subscribe5(2, [["repl/t", { qos: 0 }]], [[PROP.SUBSCRIPTION_IDENTIFIER, 6]]);
    const pub = await b.connect5({ clientId: "repl-pub" }, "pub");
    await pub.publish5({ topic: "repl/t", qos: 2, packetId: 1, payload: "x" });
    const got = await drain(sub);
    assert.equal(got.length, 1, "one subscription, one copy");
    assert.equal(got[0].qos, 0);
    assert.deepEqual(got[0].properties.all(PROP.SUBSCRIPTION_IDENTIFIER), [6]);
  },
);

Deno.test(
  "SUBSCRIBE 5.0: the Subscription Identifier is sent on each matching PUBLISH [MQTT-3.3.4-3]",
  async () => {
    await using b = await startBroker();
    const sub = await b.connect5({ clientId: "sid" }, "sub");
    await sub.subscribe5(1, [["sid/+", { qos: 1 }]], [[PROP.SUBSCRIPTION_IDENTIFIER, 268_435_455]]);
    await sub.subscribe5(2, [["other/t", { qos: 1 }]]);
    const pub = await b.connect5({ clientId: "sid-pub" }, "pub");
    await pub.publish5({ topic: "sid/x", qos: 1, packetId: 1, payload: "with id" });
    const m = await sub.receive5();
    assert.deepEqual(m.properties.all(PROP.SUBSCRIPTION_IDENTIFIER), [268_435_455]);
    await pub.publish5({ topic: "other/t", qos: 1, packetId: 2, payload: "without" });
    const n = await sub.receive5();
    assert.deepEqual(n.properties.all(PROP.SUBSCRIPTION_IDENTIFIER), [], "no id, none sent");
  },
);

Deno.test(
  "SUBSCRIBE 5.0: overlapping subscriptions carry every matching Subscription Identifier [MQTT-3.3.4-4] [MQTT-3.3.4-5]",
  async () => {
    await using b = await startBroker();
    const sub = await b.connect5({ clientId: "sids" }, "sub");
    await sub.subscribe5(1, [["ov5/#", { qos: 1 }]], [[PROP.SUBSCRIPTION_IDENTIFIER, 1]]);
    await sub.subscribe5(2, [["ov5/+/c", { qos: 1 }]], [[PROP.SUBSCRIPTION_IDENTIFIER, 2]]);
    await sub.subscribe5(3, [["ov5/b/c", { qos: 1 }]]);
    const pub = await b.connect5({ clientId: "sids-pub" }, "pub");
    await pub.publish5({ topic: "ov5/b/c", qos: 1, packetId: 1, payload: "x" });
    const got = await drain(sub);
    assert.ok(got.length >= 1 && got.length <= 3, `${got.length} copies`);
    const ids = got.map((m) => m.properties.all(PROP.SUBSCRIPTION_IDENTIFIER) as number[]);
    if (got.length === 1) assert.deepEqual([...ids[0]].sort(), [1, 2], "one copy has both ids");
    else {
      // One copy per subscription: each with its own id (or none for the one without).
      assert.deepEqual(ids.flat().sort(), [1, 2]);
      for (const list of ids) assert.ok(list.length <= 1, `copy with ids ${list}`);
    }
  },
);

Deno.test(
  "SUBSCRIBE 5.0: a retained message sent on SUBSCRIBE carries the Subscription Identifier",
  async () => {
    await using b = await startBroker();
    await retain(b, "sidr/t", "kept");
    const sub = await b.connect5({ clientId: "sidr" });
    await sub.subscribe5(1, [["sidr/#", { qos: 1 }]], [[PROP.SUBSCRIPTION_IDENTIFIER, 77]]);
    const m = await sub.receive5();
    assert.equal(m.text, "kept");
    assert.deepEqual(m.properties.all(PROP.SUBSCRIPTION_IDENTIFIER), [77]);
  },
);

Deno.test(
  "SUBSCRIBE 5.0: Subscription Identifier 0 is a protocol error: DISCONNECT 0x82 (3.8.2.1.2)",
  async () => {
    await using b = await startBroker();
    const c = await b.connect5({ clientId: "sid0" });
    await c.send(subscribe5(1, [["sid0/t", { qos: 0 }]], [[PROP.SUBSCRIPTION_IDENTIFIER, 0]]));
    await expectDisconnectOrMosquittoClose(c, RC.PROTOCOL_ERROR);
  },
);

Deno.test({
  // mosquitto 2.0.11 accepts it (and keeps the connection).
  name:
    "PUBLISH 5.0: a client PUBLISH with a Subscription Identifier is a protocol error: DISCONNECT 0x82 [MQTT-3.3.4-6] (ours)",
  ignore: MOSQUITTO,
  async fn() {
    await using b = await startBroker();
    const c = await b.connect5({ clientId: "pubsid" });
    await c.send(publish({ topic: "x", properties: [[PROP.SUBSCRIPTION_IDENTIFIER, 3]] }));
    await c.expectDisconnect(RC.PROTOCOL_ERROR);
  },
});

Deno.test(
  "SUBACK 5.0: one reason code per filter, in order, granted QoS each [MQTT-3.9.3-1] [MQTT-3.8.4-7]",
  async () => {
    await using b = await startBroker();
    const c = await b.connect5({ clientId: "order" });
    const ack = await c.subscribe5(7, [["o/2", { qos: 2 }], ["o/0", { qos: 0 }], ["o/1", {
      qos: 1,
    }]]);
    assert.deepEqual(ack.reasonCodes, [2, 0, 1]);
  },
);

Deno.test({
  // mosquitto 2.0.11 treats an invalid filter in a 5.0 SUBSCRIBE as malformed (DISCONNECT 0x81);
  // 5.0 has a per-filter code for it, and we keep the connection and the other filters.
  name: "SUBACK 5.0: an invalid topic filter gets 0x8F, the other filters are granted (ours)",
  ignore: MOSQUITTO,
  async fn() {
    await using b = await startBroker();
    const c = await b.connect5({ clientId: "badf" });
    const ack = await c.subscribe5(1, [["ok/a", { qos: 1 }], ["bad/#/x", { qos: 1 }], ["a+/b", {
      qos: 0,
    }]]);
    assert.deepEqual(
      ack.reasonCodes.map(hex),
      [1, RC.TOPIC_FILTER_INVALID, RC.TOPIC_FILTER_INVALID].map(hex),
    );
  },
});

Deno.test({
  // mosquitto's acl_file `topic deny` grants such a SUBSCRIBE (and filters what it delivers).
  name: "SUBACK 5.0: a filter refused by authorization gets 0x87 (ours)",
  ignore: MOSQUITTO,
  async fn() {
    await using b = await startBroker({ v5: { denyTopic: "test/nosubscribe" } });
    const c = await b.connect5({ clientId: "deny" });
    const ack = await c.subscribe5(1, [["test/nosubscribe", { qos: 1 }], ["test/ok", { qos: 1 }]]);
    assert.deepEqual(ack.reasonCodes.map(hex), [RC.NOT_AUTHORIZED, 1].map(hex));
  },
});

Deno.test({
  name: "SUBACK 5.0: a filter past maxSubscriptionsPerSession gets 0x97 quota exceeded (ours)",
  ignore: MOSQUITTO,
  async fn() {
    await using b = await startBroker({ limits: { maxSubscriptionsPerSession: 2 } });
    const c = await b.connect5({ clientId: "quota" });
    const ack = await c.subscribe5(1, [["q/a", { qos: 0 }], ["q/b", { qos: 1 }], ["q/c", {
      qos: 2,
    }]]);
    assert.deepEqual(ack.reasonCodes.map(hex), [0, 1, RC.QUOTA_EXCEEDED].map(hex));
  },
});

Deno.test({
  name:
    "SUBACK 5.0: SUBSCRIBE with a packet id still in use by an inbound QoS 2 PUBLISH gets 0x91 (ours)",
  ignore: MOSQUITTO,
  async fn() {
    await using b = await startBroker();
    const c = await b.connect5({ clientId: "inuse" });
    await c.send(publish({ version: 5, topic: "inuse/t", qos: 2, packetId: 9, payload: "x" }));
    await c.expectAck5(TYPE.PUBREC); // no PUBREL: id 9 stays in use
    await c.send(subscribe5(9, [["inuse/a", { qos: 1 }]]));
    const ack = await c.expectPacket(TYPE.SUBACK);
    assert.equal(hex(ack.body.at(-1)), hex(RC.PACKET_IDENTIFIER_IN_USE));
  },
});

const switchedOff: [string, Parameters<typeof startBroker>[0], string, number, number][] = [
  [
    "wildcards off → 0xA2",
    { v5: { wildcardSubscriptions: false } },
    "w/+",
    PROP
      .WILDCARD_SUBSCRIPTION_AVAILABLE,
    RC.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
  ],
  [
    "shared subscriptions off → 0x9E",
    { v5: { sharedSubscriptions: false } },
    "$share/g/t",
    PROP
      .SHARED_SUBSCRIPTION_AVAILABLE,
    RC.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED,
  ],
];
for (const [name, options, filter, prop, code] of switchedOff) {
  Deno.test({
    name: `SUBACK 5.0: ${name}, advertised 0 in CONNACK (ours)`,
    ignore: MOSQUITTO,
    async fn() {
      await using b = await startBroker(options);
      const c = await b.connect5({ clientId: "off" });
      assert.equal(c.connack.properties.get(prop), 0);
      await c.send(subscribe5(1, [[filter, { qos: 0 }]]));
      // The standard allows a SUBACK with the code or a DISCONNECT with it.
      const p = await c.nextPacket();
      if (p.type === TYPE.SUBACK) assert.equal(hex(p.body.at(-1)), hex(code));
      else {
        assert.equal(p.type, TYPE.DISCONNECT);
        assert.equal(hex(p.body[0]), hex(code));
      }
    },
  });
}

Deno.test({
  name:
    "SUBSCRIBE 5.0: subscription identifiers off: advertised 0, a SUBSCRIBE with one gets DISCONNECT 0xA1 (ours)",
  ignore: MOSQUITTO,
  async fn() {
    await using b = await startBroker({ v5: { subscriptionIdentifiers: false } });
    const c = await b.connect5({ clientId: "sidoff" });
    assert.equal(c.connack.properties.get(PROP.SUBSCRIPTION_IDENTIFIER_AVAILABLE), 0);
    await c.send(subscribe5(1, [["t", { qos: 0 }]], [[PROP.SUBSCRIPTION_IDENTIFIER, 1]]));
    await c.expectDisconnect(RC.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED);
  },
});

Deno.test(
  "UNSUBACK 5.0: 0x00 for a removed subscription, 0x11 for none, in filter order [MQTT-3.11.3-1] [MQTT-3.11.3-2]",
  async () => {
    await using b = await startBroker();
    const c = await b.connect5({ clientId: "unsub" });
    await c.subscribe5(1, [["u/a", { qos: 1 }], ["u/+", { qos: 0 }]]);
    const ack = await c.unsubscribe5(2, ["u/a", "u/none", "u/+"]);
    assert.deepEqual(ack.reasonCodes.map(hex), [0, RC.NO_SUBSCRIPTION_EXISTED, 0].map(hex));
    const again = await c.unsubscribe5(3, ["u/a"]);
    assert.deepEqual(again.reasonCodes.map(hex), [hex(RC.NO_SUBSCRIPTION_EXISTED)]);
    // Unsubscribed: nothing is delivered any more [MQTT-3.10.4-2].
    const pub = await b.connect5({ clientId: "unsub-pub" }, "pub");
    await pub.publish5({ topic: "u/a", qos: 1, packetId: 1, payload: "x" });
    await c.expectNothing();
  },
);

Deno.test(
  "SUBSCRIBE 5.0: User Properties on SUBSCRIBE and UNSUBSCRIBE are accepted",
  async () => {
    await using b = await startBroker();
    const c = await b.connect5({ clientId: "subup" });
    const ack = await c.subscribe5(1, [["up/t", { qos: 1 }]], [[PROP.USER_PROPERTY, ["a", "b"]]]);
    assert.deepEqual(ack.reasonCodes, [1]);
    const un = await c.unsubscribe5(2, ["up/t"], [[PROP.USER_PROPERTY, ["c", "d"]]]);
    assert.deepEqual(un.reasonCodes, [0]);
  },
);
