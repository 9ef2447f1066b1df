/**
 * 5.0 packets that break the property rules, and seeded random corruption of valid 5.0 packets:
 * each ends at most that one connection (with DISCONNECT ≥ 0x80 first in 5.0), never the broker.
 *
 * @module
 */
import assert from "node:assert/strict";
import { mulberry32 } from "../src/_test_prng.ts";
import { expectDisconnectOrMosquittoClose, healthyClient, startBroker } from "./_harness.ts";
import {
  auth,
  concat,
  describe,
  disconnect,
  hex,
  packet,
  pingreq,
  PROP,
  puback,
  publish,
  RC,
  remainingLength,
  str,
  subscribe5,
  TYPE,
  u16,
  unsubscribe5,
} from "./_raw.ts";

const misplaced: [string, Uint8Array, number][] = [
  [
    "SUBSCRIBE with a Message Expiry Interval",
    subscribe5(1, [["m/t", { qos: 0 }]], [[PROP.MESSAGE_EXPIRY_INTERVAL, 5]]),
    RC.MALFORMED_PACKET,
  ],
  [
    "SUBSCRIBE with two Subscription Identifiers",
    subscribe5(1, [["m/t", { qos: 0 }]], [[PROP.SUBSCRIPTION_IDENTIFIER, 1], [
      PROP.SUBSCRIPTION_IDENTIFIER,
      2,
    ]]),
    RC.PROTOCOL_ERROR,
  ],
  [
    "UNSUBSCRIBE with a Subscription Identifier",
    unsubscribe5(1, ["m/t"], [[PROP.SUBSCRIPTION_IDENTIFIER, 1]]),
    RC.MALFORMED_PACKET,
  ],
  ["PUBACK with a Topic Alias", puback(1, 0, [[PROP.TOPIC_ALIAS, 1]]), RC.MALFORMED_PACKET],
  ["DISCONNECT with a Topic Alias", disconnect(0, [[PROP.TOPIC_ALIAS, 1]]), RC.MALFORMED_PACKET],
  [
    "PUBLISH with a Will Delay Interval",
    publish({ topic: "m/t", properties: [[PROP.WILL_DELAY_INTERVAL, 1]] }),
    RC.MALFORMED_PACKET,
  ],
  [
    "PUBLISH whose User Property value runs past the property block",
    publish({
      topic: "m/t",
      properties: [Uint8Array.of(PROP.USER_PROPERTY, 0, 1, 0x6b, 0, 9, 0x76)],
    }),
    RC.MALFORMED_PACKET,
  ],
  [
    "PUBLISH whose property length is a 5-byte Variable Byte Integer [MQTT-1.5.5-1]",
    packet(TYPE.PUBLISH, 0, str("m/t"), [0xff, 0xff, 0xff, 0xff, 0x7f]),
    RC.MALFORMED_PACKET,
  ],
  [
    "SUBSCRIBE with no topic filter [MQTT-3.8.3-2]",
    packet(TYPE.SUBSCRIBE, 0x02, u16(1), [0]),
    RC.PROTOCOL_ERROR,
  ],
  [
    "UNSUBSCRIBE with no topic filter [MQTT-3.10.2-2]",
    packet(TYPE.UNSUBSCRIBE, 0x02, u16(1), [0]),
    RC.PROTOCOL_ERROR,
  ],
  [
    "AUTH with an unknown reason code (and no Authentication Method in CONNECT)",
    auth(0x42, [[PROP.AUTHENTICATION_METHOD, "X"]]),
    RC.PROTOCOL_ERROR,
  ],
];

// A property the packet does not allow is malformed (0x81, section 2.2.2.2), a repeated one a
// protocol error (0x82); mosquitto 2.0.11 sometimes names the other one.
for (const [name, bytes, code] of misplaced) {
  Deno.test(`malformed 5.0: ${name} ends that connection with DISCONNECT ${hex(code)}`, async () => {
    await using b = await startBroker();
    const healthy = await healthyClient(b);
    const c = await b.connect5({ clientId: "bad5" }, "bad5");
    await c.send(bytes);
    await expectDisconnectOrMosquittoClose(c, code);
    await healthy.check();
  });
}

/** Valid 5.0 packets a client may send after CONNECT, to corrupt. */
const SEEDS: Uint8Array[] = [
  publish({
    topic: "fz/a",
    qos: 1,
    packetId: 3,
    payload: "payload",
    properties: [
      [PROP.USER_PROPERTY, ["k", "v"]],
      [PROP.MESSAGE_EXPIRY_INTERVAL, 30],
      [PROP.CONTENT_TYPE, "t/p"],
      [PROP.CORRELATION_DATA, Uint8Array.of(1, 2)],
    ],
  }),
  subscribe5(4, [["fz/+", { qos: 2, noLocal: true }], ["fz/b", 0x21]], [[
    PROP.SUBSCRIPTION_IDENTIFIER,
    300,
  ]]),
  unsubscribe5(5, ["fz/+", "fz/b"], [[PROP.USER_PROPERTY, ["a", "b"]]]),
  puback(6, 0x10, [[PROP.REASON_STRING, "why"]]),
  disconnect(0x04, [[PROP.SESSION_EXPIRY_INTERVAL, 0], [PROP.REASON_STRING, "bye"]]),
  auth(0x19, [[PROP.AUTHENTICATION_METHOD, "M"], [PROP.AUTHENTICATION_DATA, Uint8Array.of(9)]]),
];

/** The seed's body with a few bytes changed, dropped or added; the fixed header rebuilt. */
function corrupt(seed: Uint8Array, rand: () => number): Uint8Array {
  let i = 1;
  while (seed[i] & 0x80) i++;
  const body = Array.from(seed.subarray(i + 1));
  const edits = 1 + Math.floor(rand() * 3);
  for (let e = 0; e < edits; e++) {
    const at = Math.floor(rand() * (body.length + 1));
    const kind = rand();
    if (kind < 0.5 && body.length > 0) {
      body[Math.min(at, body.length - 1)] = Math.floor(rand() * 256);
    } else if (kind < 0.75 && body.length > 0) body.splice(Math.min(at, body.length - 1), 1);
    else body.splice(at, 0, Math.floor(rand() * 256));
  }
  return concat([seed[0]], remainingLength(body.length), body);
}

Deno.test("malformed 5.0: 120 seeded corruptions of valid 5.0 packets end at most their own connection", async () => {
  await using b = await startBroker();
  const healthy = await healthyClient(b);
  const rand = mulberry32(0x5eed5);
  for (let n = 0; n < 120; n++) {
    const bytes = corrupt(SEEDS[n % SEEDS.length], rand);
    const c = await b.connect5({ clientId: `fuzz${n}` }, `fuzz${n}`);
    await c.trySend(concat(bytes, pingreq()));
    // Either the connection goes on (PINGRESP), or it ends, after a DISCONNECT ≥ 0x80 at most.
    for (;;) {
      const p = await c.nextPacket(3_000).catch(() => undefined);
      if (p === undefined) {
        assert.ok(
          c.closed,
          `case ${n}: neither PINGRESP nor a close for ${
            describe({ type: bytes[0] >> 4, flags: bytes[0] & 15, body: bytes })
          }`,
        );
        break;
      }
      if (p.type === TYPE.PINGRESP) break;
      if (p.type === TYPE.DISCONNECT) {
        assert.ok(p.body.length > 0 && p.body[0] >= 0x80, `case ${n}: DISCONNECT ${p.body[0]}`);
        await c.expectClosed();
        break;
      }
    }
    await c.close();
  }
  await healthy.check();
});
