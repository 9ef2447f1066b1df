/**
 * Versions mix on one port: a 5.0 publisher reaches a 3.1.1 subscriber (properties dropped) and
 * back, live, retained and as a will.
 *
 * @module
 */
import assert from "node:assert/strict";
import { startBroker } from "./_harness.ts";
import { connect, PROP } from "./_raw.ts";

const props: [number, number | string | Uint8Array | [string, string]][] = [
  [PROP.USER_PROPERTY, ["k", "v"]],
  [PROP.CONTENT_TYPE, "text/plain"],
  [PROP.MESSAGE_EXPIRY_INTERVAL, 60],
  [PROP.RESPONSE_TOPIC, "mix/reply"],
  [PROP.CORRELATION_DATA, Uint8Array.of(1)],
  [PROP.PAYLOAD_FORMAT_INDICATOR, 1],
];

for (const qos of [0, 1, 2] as const) {
  Deno.test(
    `versions: a 5.0 PUBLISH with properties reaches a 3.1.1 subscriber as a plain 3.1.1 PUBLISH at QoS ${qos}`,
    async () => {
      await using b = await startBroker();
      const sub = await b.connect({ clientId: "v4-sub" }, "v4");
      await sub.subscribe(1, [["mix/t", 2]]);
      const pub = await b.connect5({ clientId: "v5-pub" }, "v5");
      await pub.publish5({
        topic: "mix/t",
        qos,
        packetId: 1,
        payload: "from five",
        properties: props,
      });
      const m = await sub.receive(); // the 3.1.1 parser: payload right after topic / packet id
      assert.deepEqual([m.topic, m.text, m.qos], ["mix/t", "from five", qos]);
    },
  );

  Deno.test(
    `versions: a 3.1.1 PUBLISH reaches a 5.0 subscriber with no properties at QoS ${qos}`,
    async () => {
      await using b = await startBroker();
      const sub = await b.connect5({ clientId: "v5-sub" }, "v5");
      await sub.subscribe5(1, [["mix/t", { qos: 2 }]]);
      const pub = await b.connect({ clientId: "v4-pub" }, "v4");
      await pub.publish({ topic: "mix/t", qos, packetId: 1, payload: "from four" });
      const m = await sub.receive5();
      assert.deepEqual([m.topic, m.text, m.qos], ["mix/t", "from four", qos]);
      assert.deepEqual(m.properties.ids(), []);
    },
  );
}

Deno.test("versions: retained messages cross versions both ways", async () => {
  await using b = await startBroker();
  const p5 = await b.connect5({ clientId: "r5" }, "p5");
  await p5.publish5({
    topic: "mixr/five",
    qos: 1,
    packetId: 1,
    retain: true,
    payload: "5",
    properties: props,
  });
  const p4 = await b.connect({ clientId: "r4" }, "p4");
  await p4.publish({ topic: "mixr/four", qos: 1, packetId: 1, retain: true, payload: "4" });
  const s4 = await b.connect({ clientId: "s4" }, "s4");
  await s4.subscribe(1, [["mixr/five", 1]]);
  const m4 = await s4.receive();
  assert.deepEqual([m4.text, m4.retain], ["5", true]);
  const s5 = await b.connect5({ clientId: "s5" }, "s5");
  await s5.subscribe5(1, [["mixr/four", { qos: 1 }]]);
  const m5 = await s5.receive5();
  assert.deepEqual([m5.text, m5.retain, m5.properties.ids()], ["4", true, []]);
});

Deno.test("versions: a 5.0 will reaches a 3.1.1 subscriber", async () => {
  await using b = await startBroker();
  const s4 = await b.connect({ clientId: "ws4" }, "s4");
  await s4.subscribe(1, [["mixw/#", 1]]);
  const c = await b.connect5({
    clientId: "w5",
    will: { topic: "mixw/t", payload: "bye", qos: 1, properties: props.slice(0, 2) },
  });
  await c.close();
  const m = await s4.receive();
  assert.deepEqual([m.topic, m.text], ["mixw/t", "bye"]);
});

Deno.test("versions: 3.1.1 and 5.0 clients resume each other's session id", async () => {
  await using b = await startBroker();
  const c4 = await b.connect({ clientId: "both", cleanSession: false }, "c4");
  await c4.subscribe(1, [["both/t", 1]]);
  await c4.close();
  const c5 = await b.client("c5");
  await c5.send(connect({
    version: 5,
    clientId: "both",
    cleanSession: false,
    properties: [[PROP.SESSION_EXPIRY_INTERVAL, 60]],
  }));
  const ack = await c5.expectConnack5();
  assert.deepEqual([ack.reasonCode, ack.sessionPresent], [0, true]);
  const pub = await b.connect({ clientId: "both-pub" }, "pub");
  await pub.publish({ topic: "both/t", qos: 1, packetId: 1, payload: "x" });
  assert.equal((await c5.receive5()).text, "x", "the 3.1.1 subscription serves the 5.0 client");
});

Deno.test("versions: a 5.0 session (Session Expiry 60) is resumed by a 3.1.1 client without clean session", async () => {
  await using b = await startBroker();
  const c5 = await b.connect5({
    clientId: "both5",
    properties: [[PROP.SESSION_EXPIRY_INTERVAL, 60]],
  }, "c5");
  await c5.subscribe5(1, [["both5/t", { qos: 1 }]]);
  await c5.close();
  const pub = await b.connect5({ clientId: "both5-pub" }, "pub");
  await pub.publish5({
    topic: "both5/t",
    qos: 1,
    packetId: 1,
    payload: "queued",
    properties: [[PROP.USER_PROPERTY, ["k", "v"]]],
  });
  const c4 = await b.client("c4");
  await c4.send(connect({ clientId: "both5", cleanSession: false }));
  assert.deepEqual(await c4.expectConnack(), { sessionPresent: true, returnCode: 0 });
  const m = await c4.receive();
  assert.equal(m.text, "queued", "a plain 3.1.1 PUBLISH, no property bytes");
});
