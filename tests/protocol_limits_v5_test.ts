/**
 * Limits of src/options.ts hit on purpose by 5.0 clients, with the 5.0 form of the documented
 * action (the 3.1.1 forms are in protocol_limits_test.ts). Ours only, except the packet size.
 *
 * @module
 */
import assert from "node:assert/strict";
import { expectDisconnectOrMosquittoClose, MOSQUITTO, startBroker } from "./_harness.ts";
import { connect, disconnect, hex, PROP, publish, RC } from "./_raw.ts";

const ignore = MOSQUITTO;

for (
  const [limit, limits, longFilter, longTopic] of [
    ["maxTopicLength 10", { maxTopicLength: 10 }, "aaaaa/bbbbb/c", "aaaaa/bbbbb/c"],
    ["maxTopicLevels 3", { maxTopicLevels: 3 }, "a/b/c/+", "a/b/c/d"],
  ] as const
) {
  Deno.test({
    name: `limits 5.0: ${limit} → SUBACK 0x8F for a filter past it, the others granted (ours)`,
    ignore,
    async fn() {
      await using b = await startBroker({ limits });
      const c = await b.connect5({ clientId: "lim-sub" });
      const ack = await c.subscribe5(1, [[longFilter, { qos: 1 }], ["ok/t", { qos: 1 }]]);
      assert.deepEqual(ack.reasonCodes.map(hex), [RC.TOPIC_FILTER_INVALID, 1].map(hex));
    },
  });

  Deno.test({
    name:
      `limits 5.0: ${limit} → a PUBLISH past it gets DISCONNECT 0x90 (topic name invalid), nothing delivered (ours)`,
    ignore,
    async fn() {
      await using b = await startBroker({ limits });
      const watcher = await b.connect5({ clientId: "lim-watch" }, "watcher");
      await watcher.subscribe5(1, [["#", { qos: 1 }]]);
      const c = await b.connect5({ clientId: "lim-pub" });
      await c.send(publish({ version: 5, topic: longTopic, qos: 1, packetId: 1, payload: "x" }));
      await c.expectDisconnect(RC.TOPIC_NAME_INVALID);
      await watcher.expectNothing();
    },
  });
}

Deno.test({
  name:
    "limits 5.0: maxQueued 2 → an offline 5.0 session keeps the first 2 messages; the publisher still gets PUBACK 0x00 (ours)",
  ignore,
  async fn() {
    await using b = await startBroker({ limits: { maxQueued: 2 } });
    const session = [[PROP.SESSION_EXPIRY_INTERVAL, 60]] as [number, number][];
    const sub = await b.connect5({ clientId: "lim-q", properties: session }, "sub");
    await sub.subscribe5(1, [["limq/t", { qos: 1 }]]);
    await sub.send(disconnect());
    await sub.expectClosed();
    const pub = await b.connect5({ clientId: "lim-q-pub" }, "pub");
    for (let i = 0; i < 4; i++) {
      const ack = await pub.publish5({ topic: "limq/t", qos: 1, packetId: i + 1, payload: `${i}` });
      assert.equal(hex(ack!.reasonCode), hex(RC.SUCCESS));
    }
    const back = await b.client("back");
    await back.send(
      connect({ version: 5, clientId: "lim-q", cleanSession: false, properties: session }),
    );
    assert.equal((await back.expectConnack5()).sessionPresent, true);
    const got = await back.receiveMany5(2);
    assert.deepEqual(got.map((m) => m.text), ["0", "1"], "the newest are dropped, like mosquitto");
    await back.expectNothing();
  },
});

Deno.test({
  name:
    "limits 5.0: maxPacketSize → the CONNACK's Maximum Packet Size; a PUBLISH one byte over gets DISCONNECT 0x95, one at it passes",
  async fn() {
    await using b = await startBroker({ v5: { maxPacketSize: 100 } });
    const c = await b.connect5({ clientId: "lim-mps" });
    assert.equal(c.connack.properties.get(PROP.MAXIMUM_PACKET_SIZE), 100);
    // Fixed header 2 + topic 2+5 + packet id 2 + property length 1 = 12 bytes before the payload.
    const at = publish({
      version: 5,
      topic: "mps/t",
      qos: 1,
      packetId: 1,
      payload: "x".repeat(88),
    });
    assert.equal(at.length, 100);
    assert.equal(
      (await c.publish5({ topic: "mps/t", qos: 1, packetId: 1, payload: "x".repeat(88) }))!
        .reasonCode < 0x80,
      true,
    );
    // mosquitto 2.0.11 leaves the remaining length bytes out of its count: 101 bytes still pass.
    const over = MOSQUITTO ? 90 : 89;
    await c.send(
      publish({ version: 5, topic: "mps/t", qos: 1, packetId: 2, payload: "x".repeat(over) }),
    );
    await expectDisconnectOrMosquittoClose(c, RC.PACKET_TOO_LARGE);
  },
});
