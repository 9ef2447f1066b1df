/**
 * Feature switches and their limits, looped over 3.1.1 and 5.0: Maximum QoS, Retain Available,
 * wildcard and shared subscriptions switched off. 5.0 names the reason; 3.1.1 closes or answers
 * SUBACK 0x80.
 *
 * @module
 */
import assert from "node:assert/strict";
import { MOSQUITTO, startBroker } from "./_harness.ts";
import { hex, publish, RC, subscribe, subscribe5, TYPE } from "./_raw.ts";

const name = (v: number) => (v === 5 ? "5.0" : "3.1.1");

for (const v of [4, 5]) {
  Deno.test(
    `features ${name(v)}: a PUBLISH above Maximum QoS 1 closes the connection${
      v === 5 ? " with DISCONNECT 0x9B" : ""
    }`,
    async () => {
      await using b = await startBroker({ v5: { maxQos: 1 } });
      const c = await b.connectV(v, { clientId: `mq-${v}` });
      await c.send(publish({ version: v, topic: "mq/t", qos: 2, packetId: 1, payload: "x" }));
      if (v === 5) await c.expectDisconnect(RC.QOS_NOT_SUPPORTED);
      else await c.expectClosed();
    },
  );

  Deno.test(
    `features ${name(v)}: a subscription is granted at most Maximum QoS 1, and delivery follows it`,
    async () => {
      await using b = await startBroker({ v5: { maxQos: 1 } });
      const c = await b.connectV(v, { clientId: `mqs-${v}` });
      await c.send(
        v === 5 ? subscribe5(1, [["mqs/t", { qos: 2 }]]) : subscribe(1, [["mqs/t", 2]]),
      );
      const ack = await c.expectPacket(TYPE.SUBACK);
      assert.equal(ack.body.at(-1), 1);
      const pub = await b.connectV(v, { clientId: `mqs-pub-${v}` }, "pub");
      await pub.send(publish({ version: v, topic: "mqs/t", qos: 1, packetId: 1, payload: "x" }));
      const m = await c.expectPacket(TYPE.PUBLISH);
      assert.equal((m.flags >> 1) & 3, 1);
    },
  );

  Deno.test(
    `features ${name(v)}: with Retain Available off a retained PUBLISH closes the connection${
      v === 5 ? " with DISCONNECT 0x9A" : ""
    }`,
    async () => {
      await using b = await startBroker({ v5: { retainAvailable: false } });
      const c = await b.connectV(v, { clientId: `ra-${v}` });
      await c.send(publish({ version: v, topic: "ra/t", retain: true, payload: "x" }));
      if (v === 5) await c.expectDisconnect(RC.RETAIN_NOT_SUPPORTED);
      else await c.expectClosed();
    },
  );

  for (
    const [what, knob, filter, code] of [
      [
        "wildcard",
        { wildcardSubscriptions: false },
        "w/#",
        RC.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
      ],
      [
        "shared",
        { sharedSubscriptions: false },
        "$share/g/s",
        RC.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED,
      ],
    ] as const
  ) {
    Deno.test({
      name: `features ${name(v)}: ${what} subscriptions off: SUBACK ${
        v === 5 ? hex(code) : "0x80"
      }, other filters granted (ours)`,
      ignore: MOSQUITTO,
      async fn() {
        await using b = await startBroker({ v5: knob });
        const c = await b.connectV(v, { clientId: `${what}-${v}` });
        const codes = v === 5
          ? (await c.subscribe5(1, [[filter, { qos: 1 }], ["plain/t", { qos: 1 }]])).reasonCodes
          : await c.subscribe(1, [[filter, 1], ["plain/t", 1]]);
        assert.deepEqual(codes.map(hex), [v === 5 ? code : 0x80, 1].map(hex));
      },
    });
  }
}
