import assert from "node:assert/strict";
import { Decoder, isUtf8Payload } from "./decoder.ts";
import {
  encodeAck,
  encodePacket,
  encodePublish,
  encodePublishHeader,
  encodeWithin,
  packetSize,
  PublishFrame,
} from "./encoder.ts";
import {
  CONNACK,
  connackReasonCode,
  connackReturnCode,
  DecodeError,
  type Packet,
  type ProtocolVersion,
  REASON,
  subackReturnCode,
} from "./packet.ts";
import { PROPERTY_TABLE } from "./_properties.ts";
import { mulberry32 as prng } from "../_test_prng.ts";

// ---------------------------------------------------------------------------------------------
// Hand-written wire helpers. They spell out MQTT's data types (section 1.5) independently of the
// codec, so the fixtures check the encoder rather than copy it.

/** A UTF-8 Encoded String: two length bytes, then the text's UTF-8 bytes. */
function str(text: string): number[] {
  const b = [...new TextEncoder().encode(text)];
  return [b.length >> 8, b.length & 0xff, ...b];
}

/** Binary Data: two length bytes, then the bytes. */
function bin(...bytes: number[]): number[] {
  return [bytes.length >> 8, bytes.length & 0xff, ...bytes];
}

function u16(n: number): number[] {
  return [n >> 8, n & 0xff];
}

function u32(n: number): number[] {
  return [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
}

/** A Variable Byte Integer, written out by hand. */
function vbi(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

/** A property block: its length, then the properties. */
function props(...bytes: number[]): number[] {
  return [...vbi(bytes.length), ...bytes];
}

/** A whole packet: first byte, remaining length, body. */
function pkt(first: number, ...body: number[]): number[] {
  return [first, ...vbi(body.length), ...body];
}

const MQTT5 = [...str("MQTT"), 5];
const MAX = 1024 * 1024;

type Role = "server" | "client";

function drain(d: Decoder, out: Packet[], version: ProtocolVersion): void {
  for (let p = d.next(version); p !== undefined; p = d.next(version)) out.push(p);
}

function decodeAll(bytes: Uint8Array, role: Role = "server", version: ProtocolVersion = 5) {
  const d = new Decoder({ maxPacketSize: MAX, role });
  d.push(bytes);
  const out: Packet[] = [];
  drain(d, out, version);
  assert.equal(d.bufferedBytes, 0);
  return out;
}

function decodeByteByByte(bytes: Uint8Array, role: Role = "server", version: ProtocolVersion = 5) {
  const d = new Decoder({ maxPacketSize: MAX, role });
  const one = new Uint8Array(1);
  const out: Packet[] = [];
  for (const b of bytes) {
    one[0] = b;
    d.push(one);
    drain(d, out, version);
  }
  assert.equal(d.bufferedBytes, 0);
  return out;
}

function decodeRandomSplits(bytes: Uint8Array, rand: () => number, role: Role = "server") {
  const d = new Decoder({ maxPacketSize: MAX, role });
  const out: Packet[] = [];
  for (let i = 0; i < bytes.length;) {
    const n = 1 + Math.floor(rand() * Math.min(bytes.length, 64));
    d.push(bytes.subarray(i, i + n));
    i += n;
    drain(d, out, 5);
  }
  assert.equal(d.bufferedBytes, 0);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Valid fixtures: every 5.0 packet type and every property. Properties are listed in the order
// the encoder writes them (the property table's), so that encode == bytes; decoding accepts any
// order (tested below).

interface Fixture {
  name: string;
  packet: Packet;
  bytes: number[];
  /** The side that receives it; "server" by default. */
  role?: Role;
}

const CORRELATION = [0xde, 0xad, 0xbe, 0xef];

const FIXTURES: Fixture[] = [
  {
    name: "CONNECT 5, no properties, clean start, keep alive 60",
    packet: {
      type: "connect",
      protocolName: "MQTT",
      protocolLevel: 5,
      cleanSession: true,
      keepAlive: 60,
      clientId: "c1",
    },
    bytes: pkt(0x10, ...MQTT5, 0x02, ...u16(60), ...props(), ...str("c1")),
  },
  {
    name: "CONNECT 5 with every CONNECT property, a will with every Will Property, user, password",
    packet: {
      type: "connect",
      protocolName: "MQTT",
      protocolLevel: 5,
      cleanSession: false,
      keepAlive: 30,
      clientId: "dev-7",
      will: {
        topic: "dev/7/status",
        payload: new Uint8Array([0x6f, 0x66, 0x66]),
        qos: 1,
        retain: true,
        properties: {
          payloadFormatIndicator: true,
          messageExpiryInterval: 3600,
          contentType: "text/plain",
          responseTopic: "dev/7/reply",
          correlationData: new Uint8Array(CORRELATION),
          willDelayInterval: 10,
          userProperties: [["k", "v"]],
        },
      },
      username: "alice",
      password: new Uint8Array([1, 2, 3]),
      properties: {
        sessionExpiryInterval: 0xffffffff,
        authenticationMethod: "SCRAM-SHA-1",
        authenticationData: new Uint8Array([9, 8]),
        requestProblemInformation: false,
        requestResponseInformation: true,
        receiveMaximum: 20,
        topicAliasMaximum: 5,
        userProperties: [["a", "1"], ["a", "2"], ["é", "ü"]],
        maximumPacketSize: 256,
      },
    },
    bytes: pkt(
      0x10,
      ...MQTT5,
      0xec, // user, password, will retain, will QoS 1, will flag, clean start 0
      ...u16(30),
      ...props(
        0x11,
        ...u32(0xffffffff),
        0x15,
        ...str("SCRAM-SHA-1"),
        0x16,
        ...bin(9, 8),
        0x17,
        0,
        0x19,
        1,
        0x21,
        ...u16(20),
        0x22,
        ...u16(5),
        0x26,
        ...str("a"),
        ...str("1"),
        0x26,
        ...str("a"),
        ...str("2"),
        0x26,
        ...str("é"),
        ...str("ü"),
        0x27,
        ...u32(256),
      ),
      ...str("dev-7"),
      ...props(
        0x01,
        1,
        0x02,
        ...u32(3600),
        0x03,
        ...str("text/plain"),
        0x08,
        ...str("dev/7/reply"),
        0x09,
        ...bin(...CORRELATION),
        0x18,
        ...u32(10),
        0x26,
        ...str("k"),
        ...str("v"),
      ),
      ...str("dev/7/status"),
      ...bin(0x6f, 0x66, 0x66),
      ...str("alice"),
      ...bin(1, 2, 3),
    ),
  },
  {
    name: "CONNECT 5 with a password and no user name (allowed in 5.0)",
    packet: {
      type: "connect",
      protocolName: "MQTT",
      protocolLevel: 5,
      cleanSession: true,
      keepAlive: 0,
      clientId: "",
      password: new Uint8Array([0x70]),
    },
    bytes: pkt(0x10, ...MQTT5, 0x42, ...u16(0), ...props(), ...str(""), ...bin(0x70)),
  },
  {
    name: "CONNACK 5 success without properties",
    role: "client",
    packet: {
      type: "connack",
      sessionPresent: false,
      returnCode: 0,
      reasonCode: 0,
    },
    bytes: pkt(0x20, 0, 0, ...props()),
  },
  {
    name: "CONNACK 5 session present with every CONNACK property",
    role: "client",
    packet: {
      type: "connack",
      sessionPresent: true,
      returnCode: 0,
      reasonCode: 0,
      properties: {
        sessionExpiryInterval: 120,
        assignedClientIdentifier: "auto-1",
        serverKeepAlive: 60,
        authenticationMethod: "M",
        authenticationData: new Uint8Array([7]),
        responseInformation: "resp/",
        serverReference: "other:1883",
        reasonString: "welcome",
        receiveMaximum: 100,
        topicAliasMaximum: 10,
        maximumQos: 1,
        retainAvailable: false,
        userProperties: [["x", "y"]],
        maximumPacketSize: 65536,
        wildcardSubscriptionAvailable: false,
        subscriptionIdentifierAvailable: true,
        sharedSubscriptionAvailable: false,
      },
    },
    bytes: pkt(
      0x20,
      1,
      0,
      ...props(
        0x11,
        ...u32(120),
        0x12,
        ...str("auto-1"),
        0x13,
        ...u16(60),
        0x15,
        ...str("M"),
        0x16,
        ...bin(7),
        0x1a,
        ...str("resp/"),
        0x1c,
        ...str("other:1883"),
        0x1f,
        ...str("welcome"),
        0x21,
        ...u16(100),
        0x22,
        ...u16(10),
        0x24,
        1,
        0x25,
        0,
        0x26,
        ...str("x"),
        ...str("y"),
        0x27,
        ...u32(65536),
        0x28,
        0,
        0x29,
        1,
        0x2a,
        0,
      ),
    ),
  },
  {
    name: "CONNACK 5 refused: 0x87 not authorized (3.1.1 code 5)",
    role: "client",
    packet: { type: "connack", sessionPresent: false, returnCode: 5, reasonCode: 0x87 },
    bytes: pkt(0x20, 0, 0x87, ...props()),
  },
  {
    name: "PUBLISH 5 QoS 0 without properties",
    packet: {
      type: "publish",
      topic: "a/b",
      payload: new Uint8Array([0x68, 0x69]),
      qos: 0,
      retain: false,
      dup: false,
    },
    bytes: pkt(0x30, ...str("a/b"), ...props(), 0x68, 0x69),
  },
  {
    name: "PUBLISH 5 QoS 1 with every message property and a topic alias",
    packet: {
      type: "publish",
      topic: "req/1",
      payload: new Uint8Array([0x7b, 0x7d]),
      qos: 1,
      retain: false,
      dup: false,
      packetId: 10,
      properties: {
        payloadFormatIndicator: true,
        contentType: "application/json",
        responseTopic: "resp/1",
        correlationData: new Uint8Array(CORRELATION),
        userProperties: [["trace", "abc"], ["trace", "def"]],
        messageExpiryInterval: 30,
        topicAlias: 3,
      },
    },
    bytes: pkt(
      0x32,
      ...str("req/1"),
      ...u16(10),
      ...props(
        0x01,
        1,
        0x03,
        ...str("application/json"),
        0x08,
        ...str("resp/1"),
        0x09,
        ...bin(...CORRELATION),
        0x26,
        ...str("trace"),
        ...str("abc"),
        0x26,
        ...str("trace"),
        ...str("def"),
        0x02,
        ...u32(30),
        0x23,
        ...u16(3),
      ),
      0x7b,
      0x7d,
    ),
  },
  {
    name: "PUBLISH 5 QoS 2, DUP, RETAIN, two subscription identifiers (server to client)",
    role: "client",
    packet: {
      type: "publish",
      topic: "s/t",
      payload: new Uint8Array(0),
      qos: 2,
      retain: true,
      dup: true,
      packetId: 0xfffe,
      properties: { subscriptionIdentifiers: [1, 268_435_455] },
    },
    bytes: pkt(
      0x3d,
      ...str("s/t"),
      ...u16(0xfffe),
      ...props(0x0b, 1, 0x0b, 0xff, 0xff, 0xff, 0x7f),
    ),
  },
  {
    name: "PUBLISH 5 with an empty topic name and a topic alias",
    packet: {
      type: "publish",
      topic: "",
      payload: new Uint8Array([1]),
      qos: 0,
      retain: false,
      dup: false,
      properties: { topicAlias: 65535 },
    },
    bytes: pkt(0x30, ...str(""), ...props(0x23, ...u16(65535)), 1),
  },
  {
    name: "PUBACK 5 success, reason code left out",
    packet: { type: "puback", packetId: 1 },
    bytes: pkt(0x40, ...u16(1)),
  },
  {
    name: "PUBACK 5 0x10 no matching subscribers, properties left out",
    packet: { type: "puback", packetId: 2, reasonCode: 0x10 },
    bytes: pkt(0x40, ...u16(2), 0x10),
  },
  {
    name: "PUBREC 5 0x87 with reason string and user property",
    packet: {
      type: "pubrec",
      packetId: 3,
      reasonCode: 0x87,
      properties: { reasonString: "denied", userProperties: [["why", "acl"]] },
    },
    bytes: pkt(
      0x50,
      ...u16(3),
      0x87,
      ...props(0x1f, ...str("denied"), 0x26, ...str("why"), ...str("acl")),
    ),
  },
  {
    name: "PUBREL 5 0x92 packet identifier not found",
    packet: { type: "pubrel", packetId: 4, reasonCode: 0x92 },
    bytes: pkt(0x62, ...u16(4), 0x92),
  },
  {
    name: "PUBCOMP 5 success with a reason string",
    packet: { type: "pubcomp", packetId: 5, reasonCode: 0, properties: { reasonString: "ok" } },
    bytes: pkt(0x70, ...u16(5), 0, ...props(0x1f, ...str("ok"))),
  },
  {
    name: "SUBSCRIBE 5 with subscription identifier, user property and options",
    packet: {
      type: "subscribe",
      packetId: 7,
      subscriptions: [
        {
          topicFilter: "a/+",
          qos: 2,
          noLocal: true,
          retainAsPublished: true,
          retainHandling: 2,
        },
        {
          topicFilter: "$share/g/b/#",
          qos: 1,
          noLocal: false,
          retainAsPublished: false,
          retainHandling: 1,
        },
        { topicFilter: "c", qos: 0, noLocal: false, retainAsPublished: false, retainHandling: 0 },
      ],
      properties: { subscriptionIdentifier: 200, userProperties: [["u", "v"]] },
    },
    bytes: pkt(
      0x82,
      ...u16(7),
      ...props(0x0b, ...vbi(200), 0x26, ...str("u"), ...str("v")),
      ...str("a/+"),
      0x2e,
      ...str("$share/g/b/#"),
      0x11,
      ...str("c"),
      0x00,
    ),
  },
  {
    name: "SUBACK 5 with every SUBACK reason code and a reason string",
    role: "client",
    packet: {
      type: "suback",
      packetId: 7,
      returnCodes: [0, 1, 2, 0x80, 0x83, 0x87, 0x8f, 0x91, 0x97, 0x9e, 0xa1, 0xa2],
      properties: { reasonString: "partly" },
    },
    bytes: pkt(
      0x90,
      ...u16(7),
      ...props(0x1f, ...str("partly")),
      0,
      1,
      2,
      0x80,
      0x83,
      0x87,
      0x8f,
      0x91,
      0x97,
      0x9e,
      0xa1,
      0xa2,
    ),
  },
  {
    name: "UNSUBSCRIBE 5 with a user property",
    packet: {
      type: "unsubscribe",
      packetId: 8,
      topicFilters: ["a/+", "b"],
      properties: { userProperties: [["k", ""]] },
    },
    bytes: pkt(
      0xa2,
      ...u16(8),
      ...props(0x26, ...str("k"), ...str("")),
      ...str("a/+"),
      ...str("b"),
    ),
  },
  {
    name: "UNSUBACK 5 with 0x00 and 0x11 no subscription existed",
    role: "client",
    packet: { type: "unsuback", packetId: 8, reasonCodes: [0, 0x11] },
    bytes: pkt(0xb0, ...u16(8), ...props(), 0, 0x11),
  },
  {
    name: "UNSUBACK 5 with a reason string",
    role: "client",
    packet: {
      type: "unsuback",
      packetId: 9,
      reasonCodes: [0x87],
      properties: { reasonString: "no" },
    },
    bytes: pkt(0xb0, ...u16(9), ...props(0x1f, ...str("no")), 0x87),
  },
  { name: "PINGREQ 5", packet: { type: "pingreq" }, bytes: [0xc0, 0] },
  { name: "PINGRESP 5", role: "client", packet: { type: "pingresp" }, bytes: [0xd0, 0] },
  {
    name: "DISCONNECT 5 normal, nothing after the fixed header",
    packet: { type: "disconnect" },
    bytes: [0xe0, 0],
  },
  {
    name: "DISCONNECT 5 0x04 with will message, properties left out",
    packet: { type: "disconnect", reasonCode: 0x04 },
    bytes: [0xe0, 1, 0x04],
  },
  {
    name: "DISCONNECT 5 from a client changing the session expiry",
    packet: { type: "disconnect", reasonCode: 0, properties: { sessionExpiryInterval: 0 } },
    bytes: pkt(0xe0, 0, ...props(0x11, ...u32(0))),
  },
  {
    name: "DISCONNECT 5 from a server: 0x9C use another server, reference and reason string",
    role: "client",
    packet: {
      type: "disconnect",
      reasonCode: 0x9c,
      properties: {
        serverReference: "b:1883",
        reasonString: "moving",
        userProperties: [["n", "1"]],
      },
    },
    bytes: pkt(
      0xe0,
      0x9c,
      ...props(0x1c, ...str("b:1883"), 0x1f, ...str("moving"), 0x26, ...str("n"), ...str("1")),
    ),
  },
  {
    name: "AUTH 5 0x18 continue authentication with method and data",
    packet: {
      type: "auth",
      reasonCode: 0x18,
      properties: { authenticationMethod: "TEST", authenticationData: new Uint8Array([1, 2]) },
    },
    bytes: pkt(0xf0, 0x18, ...props(0x15, ...str("TEST"), 0x16, ...bin(1, 2))),
  },
  {
    name: "AUTH 5 0x19 re-authenticate with reason string and user property",
    packet: {
      type: "auth",
      reasonCode: 0x19,
      properties: {
        authenticationMethod: "TEST",
        reasonString: "again",
        userProperties: [["r", "s"]],
      },
    },
    bytes: pkt(
      0xf0,
      0x19,
      ...props(0x15, ...str("TEST"), 0x1f, ...str("again"), 0x26, ...str("r"), ...str("s")),
    ),
  },
  {
    name: "AUTH 5 0x00 success with method",
    role: "client",
    packet: { type: "auth", reasonCode: 0, properties: { authenticationMethod: "TEST" } },
    bytes: pkt(0xf0, 0, ...props(0x15, ...str("TEST"))),
  },
];

for (const f of FIXTURES) {
  Deno.test(`codec 5.0 fixture: ${f.name}`, () => {
    const bytes = new Uint8Array(f.bytes);
    assert.deepEqual(decodeAll(bytes, f.role), [f.packet], "decode");
    assert.deepEqual(encodePacket(f.packet, 5), bytes, "encode");
    assert.equal(packetSize(f.packet, 5), bytes.length, "packetSize");
    assert.deepEqual(decodeByteByByte(bytes, f.role), [f.packet], "decode one byte at a time");
    const rand = prng(bytes.length);
    for (let i = 0; i < 20; i++) {
      assert.deepEqual(decodeRandomSplits(bytes, rand, f.role), [f.packet], "random splits");
    }
  });
}

Deno.test("codec 5.0 fixtures cover every packet type and every property of the table", () => {
  const types = new Set(FIXTURES.map((f) => f.packet.type));
  assert.equal(types.size, 15);
  const seen = new Set<string>();
  const collect = (p: object | undefined) => {
    for (const k of Object.keys(p ?? {})) seen.add(k);
  };
  for (const { packet } of FIXTURES) {
    if ("properties" in packet) collect(packet.properties);
    if (packet.type === "connect") collect(packet.will?.properties);
  }
  for (const row of PROPERTY_TABLE) assert.ok(seen.has(row.key), `no fixture has ${row.key}`);
  assert.equal(new Set(PROPERTY_TABLE.map((r) => r.id)).size, 27, "27 property identifiers");
});

Deno.test("decoder decodes every 5.0 fixture concatenated, split at random points", () => {
  const serverSide = FIXTURES.filter((f) => f.role !== "client");
  const all = new Uint8Array(serverSide.flatMap((f) => f.bytes));
  const rand = prng(5);
  for (let round = 0; round < 30; round++) {
    assert.deepEqual(decodeRandomSplits(all, rand), serverSide.map((f) => f.packet));
  }
});

Deno.test("decoder accepts 5.0 properties in any order", () => {
  const bytes = pkt(
    0x32,
    ...str("t"),
    ...u16(1),
    ...props(0x23, ...u16(2), 0x26, ...str("a"), ...str("b"), 0x02, ...u32(5), 0x01, 0),
  );
  assert.deepEqual(decodeAll(new Uint8Array(bytes)), [{
    type: "publish",
    topic: "t",
    payload: new Uint8Array(0),
    qos: 1,
    retain: false,
    dup: false,
    packetId: 1,
    properties: {
      topicAlias: 2,
      userProperties: [["a", "b"]],
      messageExpiryInterval: 5,
      payloadFormatIndicator: false,
    },
  }]);
});

Deno.test("a 5.0 packet without properties decodes to an object without a properties field", () => {
  for (
    const bytes of [
      pkt(0x30, ...str("a"), ...props(), 1),
      pkt(0x82, ...u16(1), ...props(), ...str("a"), 0),
      pkt(0xa2, ...u16(1), ...props(), ...str("a")),
      pkt(0x50, ...u16(1), 0x10, ...props()),
    ]
  ) {
    const [p] = decodeAll(new Uint8Array(bytes));
    assert.ok(!("properties" in p), JSON.stringify(p));
  }
});

Deno.test("one decoder serves 3.1.1 and 5.0 connections in turn: next(version) picks the bodies", () => {
  const d = new Decoder({ maxPacketSize: MAX });
  // A 5.0 PUBACK with a reason code, then the same bytes read as 3.1.1 (trailing byte: an error).
  d.push(new Uint8Array(pkt(0x40, ...u16(1), 0x10)));
  assert.deepEqual(d.next(5), { type: "puback", packetId: 1, reasonCode: 0x10 });
  d.push(new Uint8Array([...pkt(0x40, ...u16(2)), ...pkt(0x30, ...str("a"), 7)]));
  assert.deepEqual(d.next(4), { type: "puback", packetId: 2 });
  assert.deepEqual(d.next(4), {
    type: "publish",
    topic: "a",
    payload: new Uint8Array([7]),
    qos: 0,
    retain: false,
    dup: false,
  });
  // A CONNECT is read by the level it carries, whatever version the caller passes.
  d.push(
    new Uint8Array(pkt(0x10, ...MQTT5, 0x02, ...u16(1), ...props(0x21, ...u16(1)), ...str("x"))),
  );
  const connect = d.next(4);
  assert.equal(connect?.type, "connect");
  assert.deepEqual(connect.type === "connect" && connect.properties, { receiveMaximum: 1 });
  d.push(new Uint8Array(pkt(0x40, ...u16(1), 0x10)));
  assert.throws(() => d.next(4), DecodeError);
});

Deno.test("detach() keeps the decoder's role", () => {
  const withIds = pkt(0x30, ...str("t"), ...props(0x0b, 1));
  const client = new Decoder({ maxPacketSize: MAX, role: "client" });
  client.push(new Uint8Array(withIds.slice(0, 3)));
  assert.equal(client.next(5), undefined);
  const own = client.detach();
  own.push(new Uint8Array(withIds.slice(3)));
  assert.equal(own.next(5)?.type, "publish");
  const server = new Decoder({ maxPacketSize: MAX });
  server.push(new Uint8Array(withIds.slice(0, 3)));
  assert.equal(server.next(5), undefined);
  const detached = server.detach();
  detached.push(new Uint8Array(withIds.slice(3)));
  assert.throws(
    () => detached.next(5),
    (e) => e instanceof DecodeError && e.specRef === "[MQTT-3.3.4-6]",
  );
});

Deno.test("3.1.1 still rejects AUTH and a DISCONNECT with a body", () => {
  assert.throws(() => decodeAll(new Uint8Array(pkt(0xf0, 0x18)), "server", 4), DecodeError);
  assert.throws(() => decodeAll(new Uint8Array([0xe0, 1, 0x04]), "server", 4), DecodeError);
});

// ---------------------------------------------------------------------------------------------
// Invalid input: every rule with its tag and the reason code 5.0 gives it.

interface Rule {
  rule: string;
  specRef: string;
  reasonCode: number;
  role?: Role;
  maxPacketSize?: number;
  cases: Record<string, number[]>;
}

const PUB = (propBytes: number[]) => pkt(0x32, ...str("t"), ...u16(1), ...props(...propBytes));
const CONNECT = (flags: number, propBytes: number[], ...payload: number[]) =>
  pkt(0x10, ...MQTT5, flags, ...u16(60), ...props(...propBytes), ...payload);

const INVALID: Rule[] = [
  {
    rule: "an unknown property identifier (0x81)",
    specRef: "",
    reasonCode: 0x81,
    cases: {
      "0x00": PUB([0x00, 1]),
      "0x07": PUB([0x07, 1]),
      "0x2B": PUB([0x2b, 1]),
      "0x80 (two-byte identifier)": PUB([0x80, 0x01, 1]),
    },
  },
  {
    rule: "a property the packet does not allow (0x81, section 2.2.2.2)",
    specRef: "",
    reasonCode: 0x81,
    cases: {
      "Session Expiry in PUBLISH": PUB([0x11, ...u32(1)]),
      "Reason String in PUBLISH": PUB([0x1f, ...str("x")]),
      "Will Delay in CONNECT": CONNECT(0x02, [0x18, ...u32(1)], ...str("c")),
      "Topic Alias in CONNECT": CONNECT(0x02, [0x23, ...u16(1)], ...str("c")),
      "Assigned Client Identifier in CONNECT": CONNECT(0x02, [0x12, ...str("x")], ...str("c")),
      "Session Expiry in Will Properties": CONNECT(
        0x06,
        [],
        ...str("c"),
        ...props(0x11, ...u32(1)),
        ...str("w"),
        ...bin(),
      ),
      "Subscription Identifier in UNSUBSCRIBE": pkt(
        0xa2,
        ...u16(1),
        ...props(0x0b, 1),
        ...str("a"),
      ),
      "Authentication Method in DISCONNECT": pkt(0xe0, 0, ...props(0x15, ...str("m"))),
      "Response Information in PUBACK": pkt(
        0x40,
        ...u16(1),
        0,
        ...props(0x1a, ...str("r")),
      ),
    },
  },
  {
    rule: "a once-only property given twice (0x82)",
    specRef: "",
    reasonCode: 0x82,
    cases: {
      "Topic Alias twice": PUB([0x23, ...u16(1), 0x23, ...u16(2)]),
      "Message Expiry twice": PUB([0x02, ...u32(1), 0x02, ...u32(1)]),
      "Session Expiry twice": CONNECT(0x02, [0x11, ...u32(1), 0x11, ...u32(2)], ...str("c")),
      "Maximum Packet Size twice": CONNECT(0x02, [0x27, ...u32(9), 0x27, ...u32(9)], ...str("c")),
      "Reason String twice in PUBACK": pkt(
        0x40,
        ...u16(1),
        0x10,
        ...props(0x1f, ...str("a"), 0x1f, ...str("b")),
      ),
      "Subscription Identifier twice in SUBSCRIBE": pkt(
        0x82,
        ...u16(1),
        ...props(0x0b, 1, 0x0b, 2),
        ...str("a"),
        0,
      ),
    },
  },
  {
    rule: "a property block that does not parse (0x81)",
    specRef: "",
    reasonCode: 0x81,
    cases: {
      "property length past the packet": pkt(0x30, ...str("t"), 5, 0x01),
      "value past the property length": pkt(0x30, ...str("t"), 3, 0x02, 0, 0, 0, 0),
      "string past the property length": pkt(0x30, ...str("t"), 3, 0x03, 0, 5, 0x61, 0x61, 0x61),
      "property length of 5 bytes": pkt(0x30, ...str("t"), 0x80, 0x80, 0x80, 0x80, 0x01),
      "Subscription Identifier of 5 bytes": pkt(
        0x82,
        ...u16(1),
        ...props(0x0b, 0xff, 0xff, 0xff, 0xff, 0x01),
        ...str("a"),
        0,
      ),
      "missing property length": pkt(0x32, ...str("t"), ...u16(1)),
    },
  },
  {
    rule: "a Variable Byte Integer not in its shortest form",
    specRef: "[MQTT-1.5.5-1]",
    reasonCode: 0x81,
    cases: {
      "property length 0x80 0x00": pkt(0x30, ...str("t"), 0x80, 0x00),
      "Subscription Identifier 0x81 0x80 0x00": pkt(
        0x82,
        ...u16(1),
        ...props(0x0b, 0x81, 0x80, 0x00),
        ...str("a"),
        0,
      ),
    },
  },
  {
    rule: "property values out of range (0x82)",
    specRef: "",
    reasonCode: 0x82,
    cases: {
      "Subscription Identifier 0": pkt(0x82, ...u16(1), ...props(0x0b, 0), ...str("a"), 0),
      "Receive Maximum 0": CONNECT(0x02, [0x21, ...u16(0)], ...str("c")),
      "Maximum Packet Size 0": CONNECT(0x02, [0x27, ...u32(0)], ...str("c")),
      "Request Problem Information 2": CONNECT(0x02, [0x17, 2], ...str("c")),
      "Request Response Information 2": CONNECT(0x02, [0x19, 2], ...str("c")),
      "Payload Format Indicator 2": PUB([0x01, 2]),
      "Maximum QoS 2 in CONNACK": pkt(0x20, 0, 0, ...props(0x24, 2)),
      "Retain Available 3 in CONNACK": pkt(0x20, 0, 0, ...props(0x25, 3)),
      "Authentication Data without Method in CONNECT": CONNECT(
        0x02,
        [0x16, ...bin(1)],
        ...str("c"),
      ),
    },
  },
  {
    rule: "Topic Alias 0 (0x94)",
    specRef: "[MQTT-3.3.2-8]",
    reasonCode: 0x94,
    cases: {
      "QoS 1": PUB([0x23, ...u16(0)]),
      "QoS 0": pkt(0x30, ...str("t"), ...props(0x23, 0, 0)),
    },
  },
  {
    rule: "a Response Topic with a wildcard (0x82)",
    specRef: "[MQTT-3.3.2-14]",
    reasonCode: 0x82,
    cases: {
      "+": PUB([0x08, ...str("a/+")]),
      "#": PUB([0x08, ...str("#")]),
      "in a will": CONNECT(
        0x06,
        [],
        ...str("c"),
        ...props(0x08, ...str("r/#")),
        ...str("w"),
        ...bin(),
      ),
    },
  },
  {
    rule: "an empty Response Topic (0x82)",
    specRef: "[MQTT-4.7.3-1]",
    reasonCode: 0x82,
    cases: { "empty": PUB([0x08, ...str("")]) },
  },
  {
    rule: "ill-formed UTF-8 in 5.0 strings, user properties included",
    specRef: "[MQTT-1.5.4-1]",
    reasonCode: 0x81,
    cases: {
      "topic": pkt(0x30, 0, 2, 0xc3, 0x28, ...props()),
      "user property name": PUB([0x26, 0, 1, 0xff, ...str("v")]),
      "user property value": PUB([0x26, ...str("k"), 0, 3, 0xed, 0xa0, 0x80]),
      "content type": PUB([0x03, 0, 2, 0xc0, 0x80]),
      "client identifier": CONNECT(0x02, [], 0, 1, 0xfe),
      "reason string": pkt(0x40, ...u16(1), 0x80, ...props(0x1f, 0, 1, 0x80)),
    },
  },
  {
    rule: "U+0000 in 5.0 strings, user properties included",
    specRef: "[MQTT-1.5.4-2]",
    reasonCode: 0x81,
    cases: {
      "user property value": PUB([0x26, ...str("k"), 0, 1, 0]),
      "topic filter": pkt(0x82, ...u16(1), ...props(), 0, 2, 0x61, 0, 0),
    },
  },
  {
    rule: "PUBLISH QoS 3 (5.0)",
    specRef: "[MQTT-3.3.1-4]",
    reasonCode: 0x81,
    cases: { "QoS 3": pkt(0x36, ...str("t"), ...u16(1), ...props()) },
  },
  {
    rule: "PUBLISH DUP with QoS 0 (5.0)",
    specRef: "[MQTT-3.3.1-2]",
    reasonCode: 0x81,
    cases: { "DUP QoS 0": pkt(0x38, ...str("t"), ...props()) },
  },
  {
    rule: "a wildcard in a 5.0 PUBLISH topic name (0x81)",
    specRef: "[MQTT-3.3.2-2]",
    reasonCode: 0x81,
    cases: {
      "+": pkt(0x30, ...str("a/+"), ...props()),
      "#": pkt(0x30, ...str("#"), ...props()),
    },
  },
  {
    rule: "an empty PUBLISH topic without a Topic Alias (0x82)",
    specRef: "",
    reasonCode: 0x82,
    cases: { "no properties": pkt(0x30, ...str(""), ...props()) },
  },
  {
    rule: "a packet identifier 0 (5.0, 0x82)",
    specRef: "[MQTT-2.2.1-3]",
    reasonCode: 0x82,
    cases: {
      "PUBLISH": pkt(0x32, ...str("t"), ...u16(0), ...props()),
      "SUBSCRIBE": pkt(0x82, ...u16(0), ...props(), ...str("a"), 0),
      "UNSUBSCRIBE": pkt(0xa2, ...u16(0), ...props(), ...str("a")),
      "PUBACK": pkt(0x40, ...u16(0)),
    },
  },
  {
    rule: "a Subscription Identifier in a client's PUBLISH (0x82)",
    specRef: "[MQTT-3.3.4-6]",
    reasonCode: 0x82,
    cases: { "one": PUB([0x0b, 1]) },
  },
  {
    rule: "a Session Expiry Interval in a server's DISCONNECT (0x82)",
    specRef: "[MQTT-3.14.2-2]",
    reasonCode: 0x82,
    role: "client",
    cases: { "one": pkt(0xe0, 0, ...props(0x11, ...u32(5))) },
  },
  {
    rule: "reserved fixed header flags (5.0)",
    specRef: "[MQTT-2.1.3-1]",
    reasonCode: 0x81,
    cases: {
      "PUBACK 0x41": [0x41, 2, 0, 1],
      "PINGREQ 0xC1": [0xc1, 0],
      "CONNECT 0x11": [0x11, 0],
    },
  },
  {
    rule: "PUBREL flags other than 0b0010 (5.0)",
    specRef: "[MQTT-3.6.1-1]",
    reasonCode: 0x81,
    cases: { "0x60": [0x60, 2, 0, 1] },
  },
  {
    rule: "DISCONNECT flags other than 0 (5.0)",
    specRef: "[MQTT-3.14.1-1]",
    reasonCode: 0x81,
    cases: { "0xE1": [0xe1, 0] },
  },
  {
    rule: "AUTH flags other than 0",
    specRef: "[MQTT-3.15.1-1]",
    reasonCode: 0x81,
    cases: { "0xF2": pkt(0xf2, 0x18, ...props(0x15, ...str("m"))) },
  },
  {
    rule: "a PUBACK reason code that PUBACK does not have",
    specRef: "[MQTT-3.4.2-1]",
    reasonCode: 0x82,
    cases: { "0x01": pkt(0x40, ...u16(1), 0x01), "0x92": pkt(0x40, ...u16(1), 0x92) },
  },
  {
    rule: "a PUBREC reason code that PUBREC does not have",
    specRef: "[MQTT-3.5.2-1]",
    reasonCode: 0x82,
    cases: { "0x92": pkt(0x50, ...u16(1), 0x92) },
  },
  {
    rule: "a PUBREL reason code that PUBREL does not have",
    specRef: "[MQTT-3.6.2-1]",
    reasonCode: 0x82,
    cases: { "0x10": pkt(0x62, ...u16(1), 0x10) },
  },
  {
    rule: "a PUBCOMP reason code that PUBCOMP does not have",
    specRef: "[MQTT-3.7.2-1]",
    reasonCode: 0x82,
    cases: { "0x80": pkt(0x70, ...u16(1), 0x80) },
  },
  {
    rule: "a CONNACK reason code that CONNACK does not have",
    specRef: "[MQTT-3.2.2-8]",
    reasonCode: 0x82,
    cases: { "0x01": pkt(0x20, 0, 0x01, ...props()), "0x8E": pkt(0x20, 0, 0x8e, ...props()) },
  },
  {
    rule: "a CONNACK refusal with Session Present",
    specRef: "[MQTT-3.2.2-6]",
    reasonCode: 0x82,
    role: "client",
    cases: { "0x87": pkt(0x20, 1, 0x87, ...props()) },
  },
  {
    rule: "CONNACK reserved acknowledge flags (5.0)",
    specRef: "[MQTT-3.2.2-1]",
    reasonCode: 0x81,
    cases: { "0x02": pkt(0x20, 0x02, 0, ...props()) },
  },
  {
    rule: "a SUBACK reason code that SUBACK does not have",
    specRef: "[MQTT-3.9.3-2]",
    reasonCode: 0x82,
    cases: { "0x03": pkt(0x90, ...u16(1), ...props(), 0x03) },
  },
  {
    rule: "an UNSUBACK reason code that UNSUBACK does not have",
    specRef: "[MQTT-3.11.3-2]",
    reasonCode: 0x82,
    cases: { "0x01": pkt(0xb0, ...u16(1), ...props(), 0x01) },
  },
  {
    rule: "a DISCONNECT reason code that DISCONNECT does not have",
    specRef: "[MQTT-3.14.2-1]",
    reasonCode: 0x82,
    cases: { "0x01": [0xe0, 1, 0x01], "0x91": [0xe0, 1, 0x91] },
  },
  {
    rule: "an AUTH reason code that AUTH does not have",
    specRef: "[MQTT-3.15.2-1]",
    reasonCode: 0x82,
    cases: { "0x01": pkt(0xf0, 0x01, ...props(0x15, ...str("m"))) },
  },
  {
    rule: "AUTH without an Authentication Method (0x82)",
    specRef: "",
    reasonCode: 0x82,
    cases: {
      "remaining length 0": [0xf0, 0],
      "data only": pkt(0xf0, 0x18, ...props(0x16, ...bin(1))),
    },
  },
  {
    rule: "SUBSCRIBE options with reserved bits set",
    specRef: "[MQTT-3.8.3-5]",
    reasonCode: 0x81,
    cases: {
      "bit 6": pkt(0x82, ...u16(1), ...props(), ...str("a"), 0x40),
      "bit 7": pkt(0x82, ...u16(1), ...props(), ...str("a"), 0x81),
    },
  },
  {
    rule: "SUBSCRIBE Maximum QoS 3 or Retain Handling 3 (0x82)",
    specRef: "",
    reasonCode: 0x82,
    cases: {
      "QoS 3": pkt(0x82, ...u16(1), ...props(), ...str("a"), 0x03),
      "Retain Handling 3": pkt(0x82, ...u16(1), ...props(), ...str("a"), 0x30),
    },
  },
  {
    rule: "SUBSCRIBE without a topic filter (0x82)",
    specRef: "[MQTT-3.8.3-2]",
    reasonCode: 0x82,
    cases: { "properties only": pkt(0x82, ...u16(1), ...props()) },
  },
  {
    rule: "No Local on a shared subscription (0x82)",
    specRef: "[MQTT-3.8.3-4]",
    reasonCode: 0x82,
    cases: { "$share/g/a": pkt(0x82, ...u16(1), ...props(), ...str("$share/g/a"), 0x04) },
  },
  {
    rule: "SUBSCRIBE fixed header flags (5.0)",
    specRef: "[MQTT-3.8.1-1]",
    reasonCode: 0x81,
    cases: { "0x80": pkt(0x80, ...u16(1), ...props(), ...str("a"), 0) },
  },
  {
    rule: "UNSUBSCRIBE without a topic filter (0x82)",
    specRef: "[MQTT-3.10.3-2]",
    reasonCode: 0x82,
    cases: { "properties only": pkt(0xa2, ...u16(1), ...props()) },
  },
  {
    rule: "CONNECT 5 reserved flag",
    specRef: "[MQTT-3.1.2-3]",
    reasonCode: 0x81,
    cases: { "0x03": CONNECT(0x03, [], ...str("c")) },
  },
  {
    rule: "CONNECT 5 Will QoS without Will Flag",
    specRef: "[MQTT-3.1.2-11]",
    reasonCode: 0x81,
    cases: { "QoS 1": CONNECT(0x0a, [], ...str("c")) },
  },
  {
    rule: "CONNECT 5 Will QoS 3",
    specRef: "[MQTT-3.1.2-12]",
    reasonCode: 0x81,
    cases: { "QoS 3": CONNECT(0x1e, [], ...str("c"), ...props(), ...str("w"), ...bin()) },
  },
  {
    rule: "CONNECT 5 Will Retain without Will Flag",
    specRef: "[MQTT-3.1.2-13]",
    reasonCode: 0x81,
    cases: { "retain": CONNECT(0x22, [], ...str("c")) },
  },
  {
    rule: "bytes left over after a 5.0 packet",
    specRef: "",
    reasonCode: 0x81,
    cases: {
      "PUBREL": pkt(0x62, ...u16(1), 0, ...props(), 9),
      "CONNECT": [...CONNECT(0x02, [], ...str("c"))].map((b, i) => (i === 1 ? b + 1 : b)).concat(
        [0],
      ),
    },
  },
  {
    rule: "a packet over maxPacketSize (0x95)",
    specRef: "",
    reasonCode: 0x95,
    maxPacketSize: 10,
    cases: { "11 bytes": pkt(0x30, ...str("t"), ...props(), 1, 2, 3, 4, 5) },
  },
];

function decodeError(
  bytes: Uint8Array,
  rule: Rule,
  byteByByte: boolean,
): DecodeError {
  const d = new Decoder({ maxPacketSize: rule.maxPacketSize ?? MAX, role: rule.role ?? "server" });
  const out: Packet[] = [];
  try {
    if (byteByByte) {
      for (let i = 0; i < bytes.length; i++) {
        d.push(bytes.subarray(i, i + 1));
        drain(d, out, 5);
      }
    } else {
      d.push(bytes);
      drain(d, out, 5);
    }
  } catch (e) {
    assert.ok(e instanceof DecodeError, `expected a DecodeError, got ${e}`);
    return e;
  }
  assert.fail(`decoded ${JSON.stringify(out)} instead of failing`);
}

for (const rule of INVALID) {
  Deno.test(`decoder 5.0 rejects ${rule.rule}${rule.specRef ? ` ${rule.specRef}` : ""}`, () => {
    for (const [name, bytes] of Object.entries(rule.cases)) {
      for (const byteByByte of [false, true]) {
        const e = decodeError(new Uint8Array(bytes), rule, byteByByte);
        const where = `case "${name}"${byteByByte ? " byte by byte" : ""}: ${e.message}`;
        assert.equal(e.specRef, rule.specRef, where);
        assert.equal(e.reasonCode, rule.reasonCode, where);
        assert.ok(e.message.startsWith("Cannot decode packet: "), where);
      }
    }
  });
}

Deno.test("DecodeError defaults to reason code 0x81 and 3.1.1 rules keep their 3.1.1 tags", () => {
  assert.equal(new DecodeError("x").reasonCode, REASON.malformedPacket);
  const d = new Decoder({ maxPacketSize: MAX });
  d.push(new Uint8Array(pkt(0x32, ...str("t"), ...u16(0))));
  assert.throws(() => d.next(4), (e) => e instanceof DecodeError && e.specRef === "[MQTT-2.3.1-1]");
});

// ---------------------------------------------------------------------------------------------
// Reason codes across versions.

Deno.test("connackReturnCode is total and maps every 5.0 CONNACK code to a 3.1.1 code", () => {
  for (let c = 0; c < 256; c++) {
    const r = connackReturnCode(c);
    assert.ok(r >= 0 && r <= 5, `0x${c.toString(16)} -> ${r}`);
    if (c >= 0x80) assert.notEqual(r, 0, "a failure never maps to accepted");
  }
  assert.equal(connackReturnCode(REASON.success), CONNACK.accepted);
  assert.equal(connackReturnCode(REASON.unsupportedProtocolVersion), 1);
  assert.equal(connackReturnCode(REASON.clientIdentifierNotValid), 2);
  assert.equal(connackReturnCode(REASON.serverUnavailable), 3);
  assert.equal(connackReturnCode(REASON.serverBusy), 3);
  assert.equal(connackReturnCode(REASON.quotaExceeded), 3);
  assert.equal(connackReturnCode(REASON.badUserNameOrPassword), 4);
  assert.equal(connackReturnCode(REASON.notAuthorized), 5);
  assert.equal(connackReturnCode(REASON.banned), 5);
  assert.equal(connackReturnCode(REASON.badAuthenticationMethod), 5);
  for (let c = 0; c <= 5; c++) assert.equal(connackReturnCode(connackReasonCode(c)), c);
});

Deno.test("subackReturnCode keeps a granted QoS and maps every failure to 0x80 [MQTT-3.9.3-2]", () => {
  for (let c = 0; c < 256; c++) {
    assert.equal(subackReturnCode(c), c <= 2 ? c : 0x80);
  }
});

Deno.test("REASON names every 5.0 reason code", () => {
  assert.equal(REASON.noMatchingSubscribers, 0x10);
  assert.equal(REASON.noSubscriptionExisted, 0x11);
  assert.equal(REASON.malformedPacket, 0x81);
  assert.equal(REASON.protocolError, 0x82);
  assert.equal(REASON.wildcardSubscriptionsNotSupported, 0xa2);
  assert.equal(new Set(Object.values(REASON)).size, 43);
});

Deno.test("the 3.1.1 encoder writes 3.1.1 codes for 5.0 reason codes and drops 5.0 fields", () => {
  assert.deepEqual(
    [...encodePacket({ type: "connack", sessionPresent: false, returnCode: 0, reasonCode: 0x86 })],
    [0x20, 2, 0, 4],
  );
  assert.deepEqual(
    [...encodePacket({ type: "connack", sessionPresent: false, returnCode: 2 }, 5)],
    [0x20, 3, 0, 0x85, 0],
    "a 3.1.1 return code is mapped for 5.0",
  );
  assert.deepEqual(
    [...encodePacket({ type: "suback", packetId: 1, returnCodes: [1, 0x87, 0x97, 0xa2] })],
    [0x90, 6, 0, 1, 1, 0x80, 0x80, 0x80],
  );
  assert.deepEqual(
    [...encodePacket({ type: "unsuback", packetId: 1, reasonCodes: [0x11] })],
    [0xb0, 2, 0, 1],
  );
  assert.deepEqual(
    [...encodePacket({ type: "disconnect", reasonCode: 0x8b, properties: { reasonString: "x" } })],
    [0xe0, 0],
  );
  assert.deepEqual(
    [...encodePacket({
      type: "pubrec",
      packetId: 9,
      reasonCode: 0x87,
      properties: { reasonString: "no" },
    })],
    [0x50, 2, 0, 9],
  );
  assert.deepEqual(
    [...encodePacket({
      type: "subscribe",
      packetId: 1,
      subscriptions: [{ topicFilter: "a", qos: 1, noLocal: true, retainHandling: 2 }],
      properties: { subscriptionIdentifier: 3 },
    })],
    [0x82, 6, 0, 1, 0, 1, 0x61, 1],
  );
  assert.throws(() => encodePacket({ type: "auth" }, 4), TypeError);
});

Deno.test("encodeAck writes 5.0 reason codes and properties, the short form for success", () => {
  assert.deepEqual([...encodeAck("pubcomp", 1, 5)], [0x70, 2, 0, 1]);
  assert.deepEqual([...encodeAck("pubrel", 1, 5, 0x92)], [0x62, 3, 0, 1, 0x92]);
  assert.deepEqual(
    [...encodeAck("puback", 1, 5, 0, { userProperties: [["a", "b"]] })],
    [0x40, 11, 0, 1, 0, 7, 0x26, 0, 1, 0x61, 0, 1, 0x62],
  );
  assert.deepEqual([...encodeAck("puback", 1, 5, 0, {})], [0x40, 2, 0, 1], "empty properties");
});

Deno.test("the 5.0 encoder throws TypeError for what 5.0 cannot carry", () => {
  const bad: [string, () => unknown][] = [
    ["PUBACK reason 0x92", () => encodeAck("puback", 1, 5, 0x92)],
    ["PUBACK reason 256", () => encodeAck("puback", 1, 5, 256)],
    ["PUBACK with Topic Alias", () => encodeAck("puback", 1, 5, 0, { topicAlias: 1 })],
    ["5.0 UNSUBACK through encodeAck", () => encodeAck("unsuback", 1, 5)],
    ["UNSUBACK without codes", () => encodePacket({ type: "unsuback", packetId: 1 }, 5)],
    [
      "CONNACK reason 0x8E",
      () =>
        encodePacket(
          { type: "connack", sessionPresent: false, returnCode: 0, reasonCode: 0x8e },
          5,
        ),
    ],
    [
      "CONNACK refusal with Session Present",
      () =>
        encodePacket(
          { type: "connack", sessionPresent: true, returnCode: 0, reasonCode: 0x87 },
          5,
        ),
    ],
    [
      "CONNACK Maximum QoS 2",
      () =>
        encodePacket(
          {
            type: "connack",
            sessionPresent: false,
            returnCode: 0,
            properties: { maximumQos: 2 as 1 },
          },
          5,
        ),
    ],
    [
      "CONNACK Receive Maximum 0",
      () =>
        encodePacket({
          type: "connack",
          sessionPresent: false,
          returnCode: 0,
          properties: { receiveMaximum: 0 },
        }, 5),
    ],
    [
      "SUBSCRIBE Subscription Identifier 0",
      () =>
        encodePacket({
          type: "subscribe",
          packetId: 1,
          subscriptions: [{ topicFilter: "a", qos: 0 }],
          properties: { subscriptionIdentifier: 0 },
        }, 5),
    ],
    [
      "SUBSCRIBE Retain Handling 3",
      () =>
        encodePacket({
          type: "subscribe",
          packetId: 1,
          subscriptions: [{ topicFilter: "a", qos: 0, retainHandling: 3 as 2 }],
        }, 5),
    ],
    [
      "PUBLISH Topic Alias 0",
      () =>
        new PublishFrame("t", new Uint8Array(0)).header(5, 0, false, false, 0, { topicAlias: 0 }),
    ],
    [
      "PUBLISH Subscription Identifier 268435456",
      () =>
        new PublishFrame("t", new Uint8Array(0)).header(5, 0, false, false, 0, {
          subscriptionIdentifiers: [268_435_456],
        }),
    ],
    [
      "PUBLISH empty topic without alias",
      () =>
        encodePacket({
          type: "publish",
          topic: "",
          payload: new Uint8Array(0),
          qos: 0,
          retain: false,
          dup: false,
        }, 5),
    ],
    [
      "PUBLISH omitTopic without alias",
      () =>
        new PublishFrame("t", new Uint8Array(0)).header(5, 0, false, false, 0, { omitTopic: true }),
    ],
    [
      "PUBLISH with Session Expiry",
      () => new PublishFrame("t", new Uint8Array(0), { sessionExpiryInterval: 1 }).size(5, 0),
    ],
    [
      "PUBLISH QoS 1 packet id 0",
      () => new PublishFrame("t", new Uint8Array(0)).header(5, 1, false, false, 0),
    ],
    [
      "DISCONNECT reason 0x18",
      () => encodePacket({ type: "disconnect", reasonCode: 0x18 }, 5),
    ],
    [
      "AUTH reason 0x04",
      () => encodePacket({ type: "auth", reasonCode: 0x04 }, 5),
    ],
    [
      "user property that is not a pair",
      () =>
        encodeAck("puback", 1, 5, 0, {
          userProperties: [["a"] as unknown as [string, string]],
        }),
    ],
    [
      "reason string with U+0000",
      () => encodeAck("puback", 1, 5, 0x80, { reasonString: "a\0" }),
    ],
  ];
  for (const [name, f] of bad) assert.throws(f, TypeError, name);
});

// ---------------------------------------------------------------------------------------------
// Per-delivery PUBLISH frames.

Deno.test("PublishFrame in 3.1.1 writes the bytes encodePublish writes", () => {
  const payload = new Uint8Array([1, 2, 3]);
  const frame = new PublishFrame("sensors/é", payload, { userProperties: [["ignored", "in 4"]] });
  for (const qos of [0, 1, 2] as const) {
    for (const retain of [false, true]) {
      for (const dup of [false, true]) {
        const header = frame.header(4, qos, retain, dup, 513);
        const whole = new Uint8Array([...header, ...frame.payload]);
        assert.deepEqual(whole, encodePublish("sensors/é", payload, qos, retain, dup, 513));
        assert.equal(frame.size(4, qos), whole.length);
        assert.equal(frame.headerLength(4, qos), header.length);
      }
    }
  }
});

Deno.test("PublishFrame caches the header of a QoS 0 delivery: no allocation per delivery", () => {
  const frame = new PublishFrame("a", new Uint8Array([1]), { contentType: "t" });
  assert.equal(frame.header(4, 0, false, false, 0), frame.header(4, 0, false, false, 0));
  assert.equal(frame.header(5, 0, true, false, 0), frame.header(5, 0, true, false, 0));
  assert.notEqual(frame.header(5, 0, true, false, 0), frame.header(4, 0, true, false, 0));
  assert.notEqual(frame.header(4, 1, false, false, 1), frame.header(4, 1, false, false, 1));
});

Deno.test("PublishFrame in 5.0: the message's properties once, per-delivery ones in each header [MQTT-3.3.4-3] [MQTT-3.3.2-6]", () => {
  const payload = new Uint8Array([0x61]);
  const frame = new PublishFrame("x/y", payload, {
    contentType: "c",
    userProperties: [["k", "v"]],
    messageExpiryInterval: 100,
    topicAlias: 9, // per delivery only: ignored here
    subscriptionIdentifiers: [77], // likewise
  });
  const client = (bytes: Uint8Array) => decodeAll(bytes, "client");
  const a = frame.header(5, 1, false, false, 1, {
    subscriptionIdentifiers: [2, 300],
    messageExpiryInterval: 40,
    topicAlias: 4,
  });
  assert.deepEqual(client(new Uint8Array([...a, ...payload])), [{
    type: "publish",
    topic: "x/y",
    payload,
    qos: 1,
    retain: false,
    dup: false,
    packetId: 1,
    properties: {
      contentType: "c",
      userProperties: [["k", "v"]],
      messageExpiryInterval: 40,
      topicAlias: 4,
      subscriptionIdentifiers: [2, 300],
    },
  }]);
  // The alias is known: the topic is left out. Without a delivery expiry, the message's own is sent.
  const b = encodePublishHeader(frame, 5, 2, true, true, 2, { topicAlias: 4, omitTopic: true });
  assert.deepEqual(client(new Uint8Array([...b, ...payload])), [{
    type: "publish",
    topic: "",
    payload,
    qos: 2,
    retain: true,
    dup: true,
    packetId: 2,
    properties: {
      contentType: "c",
      userProperties: [["k", "v"]],
      messageExpiryInterval: 100,
      topicAlias: 4,
    },
  }]);
  assert.equal(frame.size(5, 2, { topicAlias: 4, omitTopic: true }), b.length + 1);
  // 3.1.1 ignores the delivery entirely.
  assert.deepEqual(
    frame.header(4, 1, false, false, 3, { topicAlias: 4, omitTopic: true }),
    frame.header(4, 1, false, false, 3),
  );
});

Deno.test("PublishFrame.writeHeader writes into a caller's buffer at an offset", () => {
  const payload = new Uint8Array(200).fill(5);
  const frame = new PublishFrame("t".repeat(40), payload, { responseTopic: "r" });
  const delivery = { subscriptionIdentifiers: [1] };
  const size = frame.size(5, 1, delivery);
  const out = new Uint8Array(3 + size);
  const end = frame.writeHeader(out, 3, 5, 1, false, false, 65535, delivery);
  assert.equal(end - 3, frame.headerLength(5, 1, delivery));
  out.set(payload, end);
  assert.deepEqual(
    out.subarray(3),
    encodePacket({
      type: "publish",
      topic: "t".repeat(40),
      payload,
      qos: 1,
      retain: false,
      dup: false,
      packetId: 65535,
      properties: { responseTopic: "r", subscriptionIdentifiers: [1] },
    }, 5),
  );
});

// ---------------------------------------------------------------------------------------------
// Maximum Packet Size.

Deno.test("encodeWithin drops the reason string, then user properties, to fit [MQTT-3.1.2-24] [MQTT-3.1.2-25]", () => {
  const packet: Packet = {
    type: "disconnect",
    reasonCode: 0x8b,
    properties: { reasonString: "shutting down now", userProperties: [["a", "b"]] },
  };
  const full = encodePacket(packet, 5);
  assert.deepEqual(encodeWithin(packet, 5, full.length), full);
  const noReason = encodeWithin(packet, 5, full.length - 1)!;
  assert.deepEqual(decodeAll(noReason, "client"), [{
    type: "disconnect",
    reasonCode: 0x8b,
    properties: { userProperties: [["a", "b"]] },
  }]);
  const bare = encodeWithin(packet, 5, noReason.length - 1)!;
  assert.deepEqual([...bare], [0xe0, 1, 0x8b]);
  assert.equal(encodeWithin(packet, 5, 2), undefined);
  // A PUBLISH is never cut down: user properties are forwarded unaltered [MQTT-3.3.2-17].
  const publish: Packet = {
    type: "publish",
    topic: "t",
    payload: new Uint8Array(10),
    qos: 0,
    retain: false,
    dup: false,
    properties: { userProperties: [["a", "b"]] },
  };
  assert.equal(encodeWithin(publish, 5, packetSize(publish, 5) - 1), undefined);
  assert.equal(packetSize(publish, 4), encodePacket(publish, 4).length);
});

// ---------------------------------------------------------------------------------------------
// Seeded random input: only DecodeError, and whatever decodes re-encodes to an equal packet.

/** `p` as the encoder writes it: a 0x00 reason code without properties is left out. */
function canonical(p: Packet): Packet {
  switch (p.type) {
    case "puback":
    case "pubrec":
    case "pubrel":
    case "pubcomp":
    case "disconnect":
      if (p.reasonCode === 0 && p.properties === undefined) {
        const { reasonCode: _, ...rest } = p;
        return rest as Packet;
      }
  }
  return p;
}

function fuzzOnce(bytes: Uint8Array, rand: () => number, role: Role, max: number): Packet[] {
  const d = new Decoder({ maxPacketSize: max, role });
  const out: Packet[] = [];
  try {
    for (let i = 0; i < bytes.length;) {
      const n = 1 + Math.floor(rand() * bytes.length);
      d.push(bytes.subarray(i, i + n));
      i += n;
      for (let guard = 0;; guard++) {
        assert.ok(guard <= bytes.length, "decoder does not make progress");
        const p = d.next(5);
        if (p === undefined) break;
        out.push(p);
      }
    }
  } catch (e) {
    if (e instanceof DecodeError) {
      assert.ok(
        e.reasonCode === 0x81 || e.reasonCode === 0x82 || e.reasonCode === 0x90 ||
          e.reasonCode === 0x94 || e.reasonCode === 0x95,
        `reason code 0x${e.reasonCode.toString(16)}`,
      );
      return out;
    }
    throw e;
  }
  return out;
}

Deno.test("decoder 5.0 only ever throws DecodeError on random and mutated bytes (seeded)", () => {
  const rand = prng(0x5e0d5);
  const fixtures = FIXTURES.map((f) => ({ bytes: new Uint8Array(f.bytes), role: f.role }));
  let decoded = 0;
  let rejected = 0;
  for (let iteration = 0; iteration < 30_000; iteration++) {
    let bytes: Uint8Array;
    let role: Role = rand() < 0.5 ? "server" : "client";
    const mode = iteration % 3;
    if (mode === 0) {
      bytes = new Uint8Array(Math.floor(rand() * 64));
      for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(rand() * 256);
      if (bytes.length > 1) {
        bytes[0] = (Math.floor(rand() * 16) << 4) | (rand() < 0.7 ? (bytes[0] & 0x0f) : 0);
        if (rand() < 0.8) bytes[1] = Math.min(bytes[1] & 0x7f, bytes.length - 2);
        // A plausible property length right after a packet identifier.
        if (bytes.length > 4 && rand() < 0.5) {
          bytes[4] = Math.min(bytes[4] & 0x3f, bytes.length - 5);
        }
      }
    } else {
      const base = fixtures[Math.floor(rand() * fixtures.length)];
      role = base.role ?? "server";
      const extra = mode === 2
        ? fixtures[Math.floor(rand() * fixtures.length)].bytes
        : new Uint8Array(0);
      bytes = new Uint8Array(base.bytes.length + extra.length);
      bytes.set(base.bytes);
      bytes.set(extra, base.bytes.length);
      const flips = 1 + Math.floor(rand() * 3);
      for (let k = 0; k < flips; k++) {
        const at = Math.floor(rand() * bytes.length);
        const r = rand();
        if (r < 0.4) bytes[at] ^= 1 << Math.floor(rand() * 8);
        else if (r < 0.7) bytes[at] = Math.floor(rand() * 256);
        else bytes[at] = (bytes[at] + (rand() < 0.5 ? 1 : -1)) & 0xff;
      }
      if (rand() < 0.2) bytes = bytes.subarray(0, Math.floor(rand() * bytes.length));
    }
    const max = rand() < 0.1 ? 2 + Math.floor(rand() * 40) : MAX;
    const packets = fuzzOnce(bytes, rand, role, max);
    if (packets.length === 0) rejected++;
    for (const p of packets) {
      decoded++;
      if (p.type === "connect" && p.protocolLevel !== 5) continue; // read by its own level
      // Whatever the decoder accepts encodes, and decodes back to the same packet (up to a 0x00
      // reason code that the encoder leaves out, as the standard allows).
      assert.deepEqual(decodeAll(encodePacket(p, 5), role), [canonical(p)], JSON.stringify(p));
    }
  }
  assert.ok(decoded > 5_000, `only ${decoded} packets decoded`);
  assert.ok(rejected > 5_000, `only ${rejected} inputs rejected`);
});

Deno.test("isUtf8Payload accepts well-formed UTF-8 and refuses the rest (0x99 is the caller's)", () => {
  const ok = ["", "plain ascii", "21.5 °C", "日本語", "😀", "\ufeffBOM kept"];
  for (const text of ok) assert.equal(isUtf8Payload(new TextEncoder().encode(text)), true, text);
  const bad = [
    [0xc3, 0x28],
    [0xed, 0xa0, 0x80],
    [0xc0, 0x80],
    [0xf4, 0x90, 0x80, 0x80],
    [0x61, 0],
    [0xff],
  ];
  for (const bytes of bad) assert.equal(isUtf8Payload(new Uint8Array(bytes)), false, String(bytes));
});
