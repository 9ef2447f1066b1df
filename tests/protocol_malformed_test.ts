/**
 * Hostile and malformed input. Each case closes only the offending connection: a healthy client
 * connected before it, and a new one after it, must keep working on the same broker.
 *
 * @module
 */
import assert from "node:assert/strict";
import { healthyClient, MOSQUITTO, startBroker } from "./_harness.ts";
import {
  bytes,
  concat,
  connect,
  packet,
  publish,
  remainingLength,
  sendThenReset,
  str,
  subscribe,
  TYPE,
  u16,
  unsubscribe,
} from "./_raw.ts";

/** Bytes of a CONNECT with a hand-made client id field (may be invalid UTF-8). */
function connectWithRawId(id: number[]): Uint8Array {
  return packet(TYPE.CONNECT, 0, str("MQTT"), [4, 0x02], u16(0), u16(id.length), id);
}

const beforeConnect: [string, Uint8Array][] = [
  ["remaining length over 4 bytes", Uint8Array.of(0x10, 0xff, 0xff, 0xff, 0xff, 0x01)],
  // "G" reads as PUBACK with flags 0111 and "E" as a remaining length of 69.
  [
    "garbage (a whole HTTP request)",
    bytes("GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"),
  ],
  // Shorter than the 69 bytes its first two bytes announce: only a broker that judges the fixed
  // header before buffering the body closes at once (mosquitto does); otherwise it sits until
  // connectTimeoutMs.
  ["garbage (a short HTTP request) judged from its fixed header", bytes("GET / HTTP/1.1\r\n\r\n")],
  ["reserved packet type 0", Uint8Array.of(0x00, 0x00)],
  ["CONNECT with fixed header flags set [MQTT-2.2.2-2]", concat([0x11], connect().subarray(1))],
  [
    "CONNECT shorter than its fields",
    packet(TYPE.CONNECT, 0, str("MQTT"), [4]),
  ],
  ["CONNECT with an invalid UTF-8 client id [MQTT-1.5.3-1]", connectWithRawId([0x61, 0xc3, 0x28])],
  ["CONNECT with U+0000 in the client id [MQTT-1.5.3-2]", connectWithRawId([0x61, 0x00, 0x62])],
];

for (const [name, data] of beforeConnect) {
  Deno.test(`malformed: ${name} before CONNECT closes only that connection`, async () => {
    await using b = await startBroker();
    const healthy = await healthyClient(b);
    const bad = await b.client("bad");
    await bad.trySend(data);
    await bad.expectClosed();
    await healthy.check();
  });
}

/** PUBLISH with raw topic bytes. */
function publishRawTopic(topic: number[]): Uint8Array {
  return packet(TYPE.PUBLISH, 0, u16(topic.length), topic, bytes("payload"));
}

/** mosquitto 2.0.11 answers or ignores these instead of closing; the standard says close. */
const TOLERATED = true;

const afterConnect: [name: string, data: Uint8Array, toleratedByMosquitto?: boolean][] = [
  ["remaining length over 4 bytes", Uint8Array.of(0x30, 0xff, 0xff, 0xff, 0xff, 0x01)],
  ["PUBLISH with QoS 3 [MQTT-3.3.1-4]", packet(TYPE.PUBLISH, 0x06, str("a"), u16(1), bytes("x"))],
  ["PUBLISH QoS 1 with packet id 0 [MQTT-2.3.1-1]", publish({ topic: "a", qos: 1, packetId: 0 })],
  ["PUBLISH QoS 2 with packet id 0 [MQTT-2.3.1-1]", publish({ topic: "a", qos: 2, packetId: 0 })],
  ["SUBSCRIBE with packet id 0 [MQTT-2.3.1-1]", subscribe(0, [["a", 0]])],
  ["UNSUBSCRIBE with packet id 0 [MQTT-2.3.1-1]", unsubscribe(0, ["a"])],
  ["SUBSCRIBE with flags 0000 [MQTT-3.8.1-1]", subscribe(1, [["a", 0]], 0x00)],
  ["SUBSCRIBE with flags 0011 [MQTT-3.8.1-1]", subscribe(1, [["a", 0]], 0x03)],
  ["PUBREL with flags 0000 [MQTT-3.6.1-1]", packet(TYPE.PUBREL, 0x00, u16(1))],
  ["UNSUBSCRIBE with flags 0000 [MQTT-3.10.1-1]", unsubscribe(1, ["a"], 0x00)],
  ["PINGREQ with flags 0001 [MQTT-2.2.2-2]", packet(TYPE.PINGREQ, 0x01), TOLERATED],
  ["PUBACK with flags 0100 [MQTT-2.2.2-2]", packet(TYPE.PUBACK, 0x04, u16(1)), TOLERATED],
  ["PUBLISH topic with invalid UTF-8 [MQTT-1.5.3-1]", publishRawTopic([0x61, 0xc3, 0x28])],
  ["PUBLISH topic with an overlong UTF-8 encoding [MQTT-1.5.3-1]", publishRawTopic([0xc0, 0xaf])],
  ["PUBLISH topic with a UTF-16 surrogate [MQTT-1.5.3-1]", publishRawTopic([0xed, 0xa0, 0x80])],
  ["PUBLISH topic with U+0000 [MQTT-1.5.3-2]", publishRawTopic([0x61, 0x00, 0x62])],
  ["SUBSCRIBE filter with invalid UTF-8 [MQTT-1.5.3-1]", subscribe(1, [[Uint8Array.of(0xff), 0]])],
  ["SUBSCRIBE filter with U+0000 [MQTT-1.5.3-2]", subscribe(1, [[Uint8Array.of(0x61, 0), 0]])],
  ["SUBSCRIBE without any filter [MQTT-3.8.3-3]", packet(TYPE.SUBSCRIBE, 0x02, u16(1))],
  ["UNSUBSCRIBE without any filter [MQTT-3.10.3-2]", packet(TYPE.UNSUBSCRIBE, 0x02, u16(1))],
  ["SUBSCRIBE requesting QoS 3 [MQTT-3.8.3-4]", subscribe(1, [["a", 3]])],
  ["SUBSCRIBE with reserved bits in the QoS byte [MQTT-3.8.3-4]", subscribe(1, [["a", 0x41]])],
  ["SUBSCRIBE filter without its QoS byte", packet(TYPE.SUBSCRIBE, 0x02, u16(1), str("a"))],
  [
    "PUBLISH whose topic length runs past the packet",
    packet(TYPE.PUBLISH, 0, [0, 16], bytes("ab")),
  ],
  ["PUBACK without a packet id", packet(TYPE.PUBACK, 0)],
  ["PINGREQ with a body [MQTT-4.8.0-1]", packet(TYPE.PINGREQ, 0, [0]), TOLERATED],
  ["reserved packet type 0", Uint8Array.of(0x00, 0x00)],
  ["reserved packet type 15", Uint8Array.of(0xf0, 0x00)],
  ["CONNACK sent by a client", packet(TYPE.CONNACK, 0, [0, 0])],
  ["SUBACK sent by a client [MQTT-4.8.0-1]", packet(TYPE.SUBACK, 0, u16(1), [0]), TOLERATED],
  ["PINGRESP sent by a client [MQTT-4.8.0-1]", packet(TYPE.PINGRESP, 0), TOLERATED],
  [
    "64 KiB of random bytes",
    // A reserved type with remaining length 0 first, so the violation is certain whatever the
    // random rest is (a random length could otherwise announce a body still to come).
    concat([0xf0, 0x00], crypto.getRandomValues(new Uint8Array(65_536))),
  ],
];

for (const [name, data, tolerated] of afterConnect) {
  Deno.test({
    name: `malformed: ${name} after CONNECT closes only that connection`,
    ignore: MOSQUITTO && tolerated,
    async fn() {
      await using b = await startBroker();
      const healthy = await healthyClient(b);
      const bad = await b.connect({ clientId: "bad" }, "bad");
      await bad.trySend(data);
      await bad.expectClosed();
      await healthy.check();
    },
  });
}

Deno.test("malformed: a packet announcing 200 MB is refused from its fixed header alone", async () => {
  await using b = await startBroker();
  const healthy = await healthyClient(b);
  const bad = await b.connect({ clientId: "huge" }, "huge");
  // Only the fixed header and a few body bytes are sent: a broker that waits to buffer the
  // 200 MB would never close, so closing proves the decision came from the header.
  await bad.send(concat([0x30], remainingLength(200 * 1024 * 1024), str("big/topic"), bytes("xx")));
  await bad.expectClosed();
  await healthy.check();
});

Deno.test("malformed: a CONNECT announcing 200 MB is refused from its fixed header alone", async () => {
  await using b = await startBroker();
  const healthy = await healthyClient(b);
  const bad = await b.client("huge");
  await bad.send(concat([0x10], remainingLength(200 * 1024 * 1024), str("MQTT")));
  await bad.expectClosed();
  await healthy.check();
});

Deno.test("malformed: a truncated PUBLISH, then the client closes; the broker keeps serving", async () => {
  await using b = await startBroker();
  const healthy = await healthyClient(b);
  const bad = await b.connect({ clientId: "trunc" }, "trunc");
  const full = publish({ topic: "t/x", qos: 1, packetId: 1, payload: "0123456789" });
  await bad.send(full.subarray(0, full.length - 4));
  await bad.close();
  await healthy.check();
});

Deno.test("malformed: a truncated CONNECT, then the client closes; the broker keeps serving", async () => {
  await using b = await startBroker();
  const healthy = await healthyClient(b);
  const bad = await b.client("trunc");
  await bad.send(connect({ clientId: "trunc" }).subarray(0, 7));
  await bad.close();
  await healthy.check();
});

Deno.test("malformed: a connection reset (RST) in the middle of a PUBLISH; the broker keeps serving", async () => {
  await using b = await startBroker();
  const healthy = await healthyClient(b);
  const full = publish({ topic: "t/rst", qos: 1, packetId: 1, payload: "x".repeat(1000) });
  const connack = await sendThenReset(
    b.port,
    connect({ clientId: "rst" }),
    4,
    full.subarray(0, 500),
  );
  assert.deepEqual(Array.from(connack), [0x20, 2, 0, 0]);
  await healthy.check();
});

Deno.test("malformed: a connection reset (RST) in the middle of a CONNECT; the broker keeps serving", async () => {
  await using b = await startBroker();
  const healthy = await healthyClient(b);
  await sendThenReset(b.port, connect({ clientId: "rst2" }).subarray(0, 9));
  await healthy.check();
});

Deno.test("malformed: many abrupt connections in a row leave the broker serving", async () => {
  await using b = await startBroker();
  const healthy = await healthyClient(b);
  const full = connect({ clientId: "churn" });
  for (let i = 0; i < 20; i++) {
    const c = await b.client(`churn${i}`);
    await c.trySend(full.subarray(0, i % full.length));
    await c.close();
  }
  await healthy.check();
});
