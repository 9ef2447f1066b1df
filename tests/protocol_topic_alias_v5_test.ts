/**
 * 02 (5.0): Topic Alias from the client (per connection, up to the broker's Topic Alias Maximum,
 * DISCONNECT 0x94 otherwise) and to the client (never above its Topic Alias Maximum).
 *
 * @module
 */
import assert from "node:assert/strict";
import { expectDisconnectOrMosquittoClose, MOSQUITTO, startBroker } from "./_harness.ts";
import { disconnect, hex, PROP, publish, RC } from "./_raw.ts";
import type { Publish5 } from "./_raw.ts";

const alias = (n: number) => [[PROP.TOPIC_ALIAS, n]] as [number, number][];

Deno.test(
  "topic alias: CONNACK advertises the broker's Topic Alias Maximum; aliases up to it work [MQTT-3.3.2-12]",
  async () => {
    await using b = await startBroker({ v5: { topicAliasMaximum: 5 } });
    const sub = await b.connect5({ clientId: "ta-sub" }, "sub");
    await sub.subscribe5(1, [["ta/#", { qos: 1 }]]);
    const pub = await b.connect5({ clientId: "ta-pub" }, "pub");
    assert.equal(pub.connack.properties.get(PROP.TOPIC_ALIAS_MAXIMUM), 5);
    await pub.publish5({
      topic: "ta/one",
      qos: 1,
      packetId: 1,
      payload: "1",
      properties: alias(1),
    });
    await pub.publish5({ topic: "", qos: 1, packetId: 2, payload: "2", properties: alias(1) });
    await pub.publish5({
      topic: "ta/five",
      qos: 1,
      packetId: 3,
      payload: "3",
      properties: alias(5),
    });
    await pub.publish5({ topic: "", qos: 0, payload: "4", properties: alias(5) });
    // An alias can be remapped to another topic.
    await pub.publish5({ topic: "ta/re", qos: 1, packetId: 5, payload: "5", properties: alias(1) });
    await pub.publish5({ topic: "", qos: 1, packetId: 6, payload: "6", properties: alias(1) });
    const got: Publish5[] = [];
    for (let i = 0; i < 6; i++) got.push(await sub.receive5());
    assert.deepEqual(got.map((m) => [m.topic, m.text]), [
      ["ta/one", "1"],
      ["ta/one", "2"],
      ["ta/five", "3"],
      ["ta/five", "4"],
      ["ta/re", "5"],
      ["ta/re", "6"],
    ]);
    for (const m of got) {
      assert.ok(!m.properties.has(PROP.TOPIC_ALIAS), "the subscriber did not allow aliases");
    }
  },
);

Deno.test(
  "topic alias: Topic Alias 0 is a protocol error: DISCONNECT 0x94 [MQTT-3.3.2-8]",
  async () => {
    await using b = await startBroker({ v5: { topicAliasMaximum: 5 } });
    const c = await b.connect5({ clientId: "ta0" });
    await c.send(publish({ topic: "ta/x", payload: "x", properties: alias(0) }));
    // mosquitto 2.0.11 names it 0x81 (malformed).
    await expectDisconnectOrMosquittoClose(c, RC.TOPIC_ALIAS_INVALID);
  },
);

Deno.test(
  "topic alias: a Topic Alias above the broker's Topic Alias Maximum: DISCONNECT 0x94 [MQTT-3.3.2-9] [MQTT-3.2.2-17]",
  async () => {
    await using b = await startBroker({ v5: { topicAliasMaximum: 5 } });
    const c = await b.connect5({ clientId: "ta6" });
    await c.send(publish({ topic: "ta/x", payload: "x", properties: alias(6) }));
    await c.expectDisconnect(RC.TOPIC_ALIAS_INVALID);
  },
);

Deno.test(
  "topic alias: with Topic Alias Maximum 0 none is advertised and any alias gets DISCONNECT 0x94 [MQTT-3.2.2-18]",
  async () => {
    await using b = await startBroker({ v5: { topicAliasMaximum: 0 } });
    const c = await b.connect5({ clientId: "tanone" });
    const max = c.connack.properties.get(PROP.TOPIC_ALIAS_MAXIMUM);
    assert.ok(max === undefined || max === 0, `Topic Alias Maximum ${max}`);
    await c.send(publish({ topic: "ta/x", payload: "x", properties: alias(1) }));
    await c.expectDisconnect(RC.TOPIC_ALIAS_INVALID);
  },
);

Deno.test(
  "topic alias: an empty topic with an alias never set is a protocol error (DISCONNECT 0x82 or 0x94)",
  async () => {
    await using b = await startBroker({ v5: { topicAliasMaximum: 5 } });
    const c = await b.connect5({ clientId: "taunknown" });
    await c.send(publish({ topic: "", payload: "x", properties: alias(3) }));
    if (MOSQUITTO) await expectDisconnectOrMosquittoClose(c, RC.PROTOCOL_ERROR);
    else {
      const d = await c.expectDisconnect();
      assert.ok([RC.PROTOCOL_ERROR, RC.TOPIC_ALIAS_INVALID].includes(d.reasonCode as 0x82));
    }
  },
);

Deno.test(
  "topic alias: an empty topic without an alias is a protocol error: DISCONNECT 0x82 (3.3.2.1)",
  async () => {
    await using b = await startBroker();
    const c = await b.connect5({ clientId: "taempty" });
    await c.send(publish({ version: 5, topic: "", payload: "x" }));
    await expectDisconnectOrMosquittoClose(c, RC.PROTOCOL_ERROR);
  },
);

Deno.test(
  "topic alias: mappings do not carry over to a new connection [MQTT-3.3.2-7]",
  async () => {
    await using b = await startBroker({ v5: { topicAliasMaximum: 5 } });
    const first = await b.connect5({
      clientId: "tacarry",
      properties: [[PROP.SESSION_EXPIRY_INTERVAL, 60]],
    });
    await first.publish5({
      topic: "ta/c",
      qos: 1,
      packetId: 1,
      payload: "1",
      properties: alias(2),
    });
    await first.send(disconnect());
    await first.expectClosed();
    const second = await b.connect5({
      clientId: "tacarry",
      cleanSession: false,
      properties: [[PROP.SESSION_EXPIRY_INTERVAL, 60]],
    }, "second");
    await second.send(publish({ topic: "", payload: "2", properties: alias(2) }));
    if (MOSQUITTO) await expectDisconnectOrMosquittoClose(second, RC.PROTOCOL_ERROR);
    else {
      const d = await second.expectDisconnect();
      assert.ok([RC.PROTOCOL_ERROR, RC.TOPIC_ALIAS_INVALID].includes(d.reasonCode as 0x82));
    }
  },
);

Deno.test(
  "topic alias: the broker never sends a Topic Alias above the client's Topic Alias Maximum, and every alias it uses resolves [MQTT-3.1.2-26] [MQTT-3.3.2-11]",
  async () => {
    await using b = await startBroker();
    const sub = await b.connect5({
      clientId: "ta-out",
      properties: [[PROP.TOPIC_ALIAS_MAXIMUM, 2]],
    }, "sub");
    await sub.subscribe5(1, [["tao/#", { qos: 1 }]]);
    const pub = await b.connect5({ clientId: "ta-out-pub" }, "pub");
    const topics = ["tao/a", "tao/b", "tao/c", "tao/a", "tao/b", "tao/c", "tao/a", "tao/a"];
    for (const [i, topic] of topics.entries()) {
      await pub.publish5({ topic, qos: 1, packetId: i + 1, payload: String(i) });
    }
    const map = new Map<number, string>();
    const seen: string[] = [];
    for (let i = 0; i < topics.length; i++) {
      const m = await sub.receive5();
      const a = m.properties.get(PROP.TOPIC_ALIAS) as number | undefined;
      if (a !== undefined) {
        assert.ok(a >= 1 && a <= 2, `Topic Alias ${a} outside 1..2`);
        if (m.topic !== "") map.set(a, m.topic);
      }
      const topic = m.topic !== "" ? m.topic : map.get(a!);
      assert.ok(topic !== undefined, `alias ${a} used before it was set`);
      seen.push(topic);
    }
    assert.deepEqual(seen, topics);
  },
);

Deno.test(
  "topic alias: a client that sent no Topic Alias Maximum gets no Topic Alias [MQTT-3.1.2-27]",
  async () => {
    await using b = await startBroker();
    const sub = await b.connect5({ clientId: "ta-none" }, "sub");
    await sub.subscribe5(1, [["tan/#", { qos: 0 }]]);
    const pub = await b.connect5({ clientId: "ta-none-pub" }, "pub");
    for (let i = 0; i < 4; i++) {
      await pub.publish5({ topic: "tan/same", qos: 1, packetId: i + 1, payload: String(i) });
    }
    for (let i = 0; i < 4; i++) {
      const m = await sub.expectPublish5();
      assert.equal(m.topic, "tan/same");
      assert.ok(!m.properties.has(PROP.TOPIC_ALIAS), `Topic Alias ${hex(0)} sent`);
    }
  },
);
