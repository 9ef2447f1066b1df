/**
 * 03 (5.0): acknowledgements with reason codes: 0x10 no matching subscribers, 0x87 not authorized,
 * 0x92 packet identifier not found, acks ≥ 0x80 from the subscriber ending an exchange.
 *
 * @module
 */
import assert from "node:assert/strict";
import { MOSQUITTO, startBroker } from "./_harness.ts";
import { connect, hex, PROP, puback, pubcomp, publish, pubrec, pubrel, RC, TYPE } from "./_raw.ts";

Deno.test(
  "PUBACK 5.0: 0x10 when no subscription matches, 0x00 when one does [MQTT-3.4.2-1]",
  async () => {
    await using b = await startBroker();
    const pub = await b.connect5({ clientId: "nms-pub" }, "pub");
    const none = await pub.publish5({ topic: "nms/t", qos: 1, packetId: 1, payload: "x" });
    assert.equal(hex(none!.reasonCode), hex(RC.NO_MATCHING_SUBSCRIBERS));
    const sub = await b.connect5({ clientId: "nms-sub" }, "sub");
    await sub.subscribe5(1, [["nms/t", { qos: 1 }]]);
    const some = await pub.publish5({ topic: "nms/t", qos: 1, packetId: 2, payload: "x" });
    assert.equal(hex(some!.reasonCode), hex(RC.SUCCESS));
    assert.equal((await sub.receive5()).text, "x");
  },
);

Deno.test(
  "PUBREC 5.0: 0x10 when no subscription matches; the exchange still completes with PUBREL/PUBCOMP [MQTT-3.5.2-1]",
  async () => {
    await using b = await startBroker();
    const pub = await b.connect5({ clientId: "nms2" });
    const rec = await pub.publish5({ topic: "nms2/t", qos: 2, packetId: 1, payload: "x" });
    // 0x10 is a MAY; mosquitto 2.0.11 uses it on PUBACK but answers PUBREC with 0x00.
    const expected = MOSQUITTO ? RC.SUCCESS : RC.NO_MATCHING_SUBSCRIBERS;
    assert.equal(hex(rec!.reasonCode), hex(expected));
  },
);

Deno.test(
  "PUBACK/PUBREC 5.0: a PUBLISH refused by authorization gets 0x87 and is not delivered; 3.1.1 keeps acknowledging it as accepted",
  async () => {
    await using b = await startBroker({ v5: { denyTopic: "deny/t" } });
    const sub = await b.connect5({ clientId: "deny-sub" }, "sub");
    await sub.subscribe5(1, [["deny/#", { qos: 2 }]]);
    const pub = await b.connect5({ clientId: "deny-pub" }, "pub");
    const ack = await pub.publish5({ topic: "deny/t", qos: 1, packetId: 1, payload: "x" });
    assert.equal(hex(ack!.reasonCode), hex(RC.NOT_AUTHORIZED));
    const rec = await pub.publish5({ topic: "deny/t", qos: 2, packetId: 2, payload: "x" });
    assert.equal(hex(rec!.reasonCode), hex(RC.NOT_AUTHORIZED));
    // PUBREC ≥ 0x80 ended the exchange: the same id starts a new message [MQTT-4.3.3-9].
    const again = await pub.publish5({ topic: "deny/t", qos: 2, packetId: 2, payload: "y" });
    assert.equal(hex(again!.reasonCode), hex(RC.NOT_AUTHORIZED));
    const old = await b.connect({ clientId: "deny-311" }, "v311");
    await old.publish({ topic: "deny/t", qos: 1, packetId: 3, payload: "x" }); // PUBACK, 2 bytes
    await sub.expectNothing();
  },
);

Deno.test({
  // mosquitto 2.0.11 answers PUBCOMP 0x00.
  name: "PUBCOMP 5.0: a PUBREL for an unknown packet id gets PUBCOMP 0x92 (3.7.2.1) (ours)",
  ignore: MOSQUITTO,
  async fn() {
    await using b = await startBroker();
    const c = await b.connect5({ clientId: "unknown-rel" });
    await c.send(pubrel(42));
    const comp = await c.expectAck5(TYPE.PUBCOMP);
    assert.deepEqual([comp.packetId, hex(comp.reasonCode)], [
      42,
      hex(RC.PACKET_IDENTIFIER_NOT_FOUND),
    ]);
  },
});

Deno.test(
  "QoS 2 5.0: a repeated PUBLISH before PUBREL gets PUBREC again and is delivered once [MQTT-4.3.3-10]",
  async () => {
    await using b = await startBroker();
    const sub = await b.connect5({ clientId: "dup2-sub" }, "sub");
    await sub.subscribe5(1, [["dup2/t", { qos: 2 }]]);
    const pub = await b.connect5({ clientId: "dup2-pub" }, "pub");
    await pub.send(publish({ version: 5, topic: "dup2/t", qos: 2, packetId: 5, payload: "once" }));
    assert.equal((await pub.expectAck5(TYPE.PUBREC)).packetId, 5);
    await pub.send(
      publish({ version: 5, topic: "dup2/t", qos: 2, packetId: 5, dup: true, payload: "once" }),
    );
    assert.equal((await pub.expectAck5(TYPE.PUBREC)).packetId, 5);
    await pub.send(pubrel(5));
    assert.equal((await pub.expectAck5(TYPE.PUBCOMP)).packetId, 5);
    assert.equal((await sub.receive5()).text, "once");
    await sub.expectNothing();
  },
);

for (const [name, qos] of [["PUBACK", 1], ["PUBREC", 2]] as const) {
  Deno.test(
    `${name} 5.0 ≥ 0x80 from the subscriber: the message counts as acknowledged and is not sent again on reconnect [MQTT-4.4.0-2]`,
    async () => {
      await using b = await startBroker();
      const session = [[PROP.SESSION_EXPIRY_INTERVAL, 300]] as [number, number][];
      const sub = await b.connect5({ clientId: "refuser", properties: session }, "sub");
      await sub.subscribe5(1, [["refuse/t", { qos }]]);
      const pub = await b.connect5({ clientId: "refuse-pub" }, "pub");
      await pub.publish5({ topic: "refuse/t", qos, packetId: 1, payload: "no thanks" });
      const m = await sub.expectPublish5();
      await sub.send(
        qos === 1
          ? puback(m.packetId!, RC.IMPLEMENTATION_SPECIFIC_ERROR)
          : pubrec(m.packetId!, RC.IMPLEMENTATION_SPECIFIC_ERROR),
      );
      // No PUBREL follows a refused PUBREC [MQTT-4.3.3-4].
      await pub.publish5({ topic: "refuse/t", qos, packetId: 2, payload: "next" });
      const next = await sub.expectPublish5();
      assert.equal(next.text, "next");
      await sub.close();
      const back = await b.client("back");
      await back.send(
        connect({ version: 5, clientId: "refuser", cleanSession: false, properties: session }),
      );
      assert.equal((await back.expectConnack5()).sessionPresent, true);
      // Only the unacknowledged "next" is sent again (with DUP), not the refused one.
      const again = await back.expectPublish5();
      assert.deepEqual([again.text, again.dup], ["next", true]);
      if (qos === 1) await back.send(puback(again.packetId!));
      else {
        await back.send(pubrec(again.packetId!));
        await back.expectAck5(TYPE.PUBREL);
        await back.send(pubcomp(again.packetId!));
      }
      await back.expectNothing();
    },
  );
}
