/**
 * 02 (5.0): request / response: Response Topic and Correlation Data carried from requester to
 * responder and back; Response Information when requested (ours: a configured prefix).
 *
 * @module
 */
import assert from "node:assert/strict";
import { MOSQUITTO, startBroker } from "./_harness.ts";
import { PROP } from "./_raw.ts";

Deno.test(
  "request/response 5.0: the responder gets Response Topic and Correlation Data and answers on it [MQTT-3.3.2-15] [MQTT-3.3.2-16]",
  async () => {
    await using b = await startBroker();
    const responder = await b.connect5({ clientId: "responder" }, "responder");
    await responder.subscribe5(1, [["svc/echo", { qos: 1 }]]);
    const requester = await b.connect5({ clientId: "requester" }, "requester");
    await requester.subscribe5(1, [["reply/requester", { qos: 1 }]]);
    for (const [i, corr] of [Uint8Array.of(1, 2, 3), Uint8Array.of(0, 0xff)].entries()) {
      await requester.publish5({
        topic: "svc/echo",
        qos: 1,
        packetId: 10 + i,
        payload: `ping ${i}`,
        properties: [[PROP.RESPONSE_TOPIC, "reply/requester"], [PROP.CORRELATION_DATA, corr]],
      });
      const req = await responder.receive5();
      const topic = req.properties.get(PROP.RESPONSE_TOPIC) as string;
      const correlation = req.properties.get(PROP.CORRELATION_DATA) as Uint8Array;
      assert.equal(topic, "reply/requester");
      await responder.publish5({
        topic,
        qos: 1,
        packetId: 20 + i,
        payload: req.text.replace("ping", "pong"),
        properties: [[PROP.CORRELATION_DATA, correlation]],
      });
      const res = await requester.receive5();
      assert.equal(res.text, `pong ${i}`);
      assert.deepEqual(res.properties.get(PROP.CORRELATION_DATA), corr);
    }
  },
);

Deno.test({
  name:
    "request/response 5.0: Request Response Information 1 gets Response Information to build a response topic on (ours)",
  ignore: MOSQUITTO,
  async fn() {
    await using b = await startBroker({ v5: { responseInformation: "responses/" } });
    const c = await b.connect5({
      clientId: "asker",
      properties: [[PROP.REQUEST_RESPONSE_INFORMATION, 1]],
    });
    const info = c.connack.properties.get(PROP.RESPONSE_INFORMATION) as string;
    assert.ok(info.startsWith("responses/"), `Response Information ${info}`);
    // It is usable as a topic prefix: subscribe under it and get a message published there.
    const topic = `${info.replace(/\/$/, "")}/answer`;
    await c.subscribe5(1, [[topic, { qos: 1 }]]);
    const other = await b.connect5({ clientId: "answerer" }, "answerer");
    await other.publish5({ topic, qos: 1, packetId: 1, payload: "42" });
    assert.equal((await c.receive5()).text, "42");
    // Without the request, none.
    const quiet = await b.connect5({ clientId: "quiet" }, "quiet");
    assert.ok(!quiet.connack.properties.has(PROP.RESPONSE_INFORMATION));
  },
});
