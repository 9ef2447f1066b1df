/**
 * mosquitto's bridge flag (its `try_private`): a CONNECT whose protocol level has the top bit set
 * (0x84 for 3.1.1, 0x83 for MQIsdp 3.1, 0x85 for 5.0: ours only, mosquitto 2.0.11 closes on it).
 * The session's subscriptions then all get No Local and Retain As Published, so a bridge gets
 * neither its own messages back nor live messages stripped of their retain flag. Raw sockets.
 *
 * @module
 */
import assert from "node:assert/strict";
import { MOSQUITTO, startBroker } from "./_harness.ts";
import { connect, publish, RC, TYPE } from "./_raw.ts";

for (const [name, level] of [["MQTT", 0x84], ["MQIsdp", 0x83]] as const) {
  Deno.test(
    `bridge flag: CONNECT ${name} level 0x${level.toString(16)} is accepted; ` +
      "its subscriptions get No Local and Retain As Published",
    async () => {
      await using b = await startBroker();
      const bridge = await b.connect(
        { clientId: `bf-${level}`, protocolName: name, protocolLevel: level },
        "bridge",
      );
      const plain = await b.connect({ clientId: `plain-${level}` }, "plain");
      assert.deepEqual(await bridge.subscribe(1, [["bf/#", 1]]), [1]);
      assert.deepEqual(await plain.subscribe(1, [["bf/#", 1]]), [1]);
      // Its own message reaches others, not itself (an echo would come before the PUBACK or
      // before the next message).
      await bridge.publish({ topic: "bf/own", payload: "own", qos: 1, packetId: 2 });
      assert.equal((await plain.receive()).text, "own");
      // A live retained message keeps its retain flag for the bridge only [MQTT-3.3.1-12/13].
      const other = await b.connect({ clientId: `other-${level}` }, "other");
      await other.publish({ topic: "bf/live", payload: "live", qos: 1, packetId: 3, retain: true });
      const atBridge = await bridge.receive();
      assert.equal(atBridge.text, "live", "the bridge's next message is the other client's");
      assert.equal(atBridge.retain, true, "retain as published for the bridge");
      const atPlain = await plain.receive();
      assert.equal(atPlain.text, "live");
      assert.equal(
        atPlain.retain,
        false,
        "a plain 3.1.1 subscriber gets a live message with retain 0",
      );
      // Nothing of its own arrived in between either: its QoS 0 publish, then a marker.
      await bridge.send(publish({ topic: "bf/own0", payload: "own0" }));
      await other.publish({ topic: "bf/marker", payload: "marker", qos: 1, packetId: 4 });
      assert.equal((await plain.receive()).text, "own0");
      assert.equal((await plain.receive()).text, "marker");
      assert.equal((await bridge.receive()).text, "marker");
    },
  );
}

Deno.test({
  name: "bridge flag: a plain 3.1.1 CONNECT (level 4) still gets its own messages back",
  async fn() {
    await using b = await startBroker();
    const c = await b.connect({ clientId: "nobridge" });
    await c.subscribe(1, [["nb/#", 0]]);
    await c.send(publish({ topic: "nb/t", payload: "echo" }));
    assert.equal((await c.expectPublish()).text, "echo");
  },
});

Deno.test({
  name: "bridge flag: CONNECT 5.0 with level 0x85 is accepted; No Local and Retain As Published " +
    "on every subscription (ours)",
  ignore: MOSQUITTO,
  async fn() {
    await using b = await startBroker();
    const bridge = await b.client("bridge");
    await bridge.send(connect({ clientId: "bf5", version: 5, protocolLevel: 0x85 }));
    const ack = await bridge.expectPacket(TYPE.CONNACK);
    assert.equal(ack.body[1], RC.SUCCESS, "CONNACK reason code");
    const plain = await b.connect5({ clientId: "plain5" }, "plain");
    assert.deepEqual((await bridge.subscribe5(1, [["bf5/#", { qos: 1 }]])).reasonCodes, [1]);
    assert.deepEqual((await plain.subscribe5(1, [["bf5/#", { qos: 1 }]])).reasonCodes, [1]);
    await bridge.publish5({ topic: "bf5/own", payload: "own", qos: 1, packetId: 2 });
    assert.equal((await plain.receive5()).text, "own");
    const other = await b.connect5({ clientId: "other5" }, "other");
    await other.publish5({ topic: "bf5/live", payload: "live", qos: 1, packetId: 3, retain: true });
    const atBridge = await bridge.receive5();
    assert.equal(atBridge.text, "live");
    assert.equal(atBridge.retain, true);
    assert.equal((await plain.receive5()).retain, false);
  },
});

Deno.test({
  name: "bridge flag: an unknown level with the flag (MQTT 0x86) still gets CONNACK 0x01",
  async fn() {
    await using b = await startBroker();
    const c = await b.client();
    await c.send(connect({ clientId: "bf6", protocolLevel: 0x86 }));
    const ack = await c.expectConnack();
    assert.equal(ack.returnCode, 0x01);
  },
});
