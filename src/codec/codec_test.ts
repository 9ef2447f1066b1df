import assert from "node:assert/strict";
import { Decoder } from "./decoder.ts";
import {
  DISCONNECT_BYTES,
  encodeAck,
  encodePacket,
  encodePublish,
  PINGREQ_BYTES,
  PINGRESP_BYTES,
} from "./encoder.ts";
import { DecodeError, type Packet } from "./packet.ts";
import { mulberry32 as prng } from "../_test_prng.ts";

// ---------------------------------------------------------------------------------------------
// Helpers. Fixture bytes are written by hand; `s()` only spells out the bytes of an ASCII text.

/** The bytes of an ASCII string, to splice into hand-written byte arrays. */
function s(text: string): number[] {
  return [...text].map((c) => c.charCodeAt(0));
}

function u8(...bytes: number[]): Uint8Array {
  return new Uint8Array(bytes);
}

/** `n` bytes of filler: 0, 1, 2, … 250, 0, 1, … */
function filler(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i % 251);
}

const MAX = 1024 * 1024;

/** Decodes `bytes` pushed as one chunk; asserts that nothing is left. */
function decodeAll(bytes: Uint8Array, maxPacketSize = MAX): Packet[] {
  const d = new Decoder({ maxPacketSize });
  d.push(bytes);
  const out: Packet[] = [];
  for (let p = d.next(); p !== undefined; p = d.next()) out.push(p);
  assert.equal(d.bufferedBytes, 0);
  return out;
}

/** Decodes `bytes` pushed one byte at a time, each from the same reused 1-byte buffer. */
function decodeByteByByte(bytes: Uint8Array, maxPacketSize = MAX): Packet[] {
  const d = new Decoder({ maxPacketSize });
  const one = new Uint8Array(1);
  const out: Packet[] = [];
  for (const b of bytes) {
    one[0] = b;
    d.push(one);
    for (let p = d.next(); p !== undefined; p = d.next()) out.push(p);
  }
  assert.equal(d.bufferedBytes, 0);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Valid fixtures: decode == packet, encode == bytes, and one byte at a time == packet.

interface Fixture {
  name: string;
  packet: Packet;
  bytes: number[];
}

const FIXTURES: Fixture[] = [
  {
    name: "CONNECT MQTT 4, client id, clean session, keep alive 60",
    packet: {
      type: "connect",
      protocolName: "MQTT",
      protocolLevel: 4,
      cleanSession: true,
      keepAlive: 60,
      clientId: "test",
    },
    bytes: [0x10, 16, 0, 4, ...s("MQTT"), 4, 0x02, 0, 60, 0, 4, ...s("test")],
  },
  {
    name: "CONNECT empty client id, persistent session, keep alive 0",
    packet: {
      type: "connect",
      protocolName: "MQTT",
      protocolLevel: 4,
      cleanSession: false,
      keepAlive: 0,
      clientId: "",
    },
    bytes: [0x10, 12, 0, 4, ...s("MQTT"), 4, 0x00, 0, 0, 0, 0],
  },
  {
    name: "CONNECT with will QoS 1 retained, user name and password",
    packet: {
      type: "connect",
      protocolName: "MQTT",
      protocolLevel: 4,
      cleanSession: true,
      keepAlive: 0x0102,
      clientId: "c1",
      will: { topic: "w/t", payload: u8(...s("bye")), qos: 1, retain: true },
      username: "user",
      password: u8(1, 2, 3),
    },
    bytes: [
      0x10,
      35,
      0,
      4,
      ...s("MQTT"),
      4,
      0xee, // user, password, will retain, will QoS 1, will, clean session
      1,
      2,
      0,
      2,
      ...s("c1"),
      0,
      3,
      ...s("w/t"),
      0,
      3,
      ...s("bye"),
      0,
      4,
      ...s("user"),
      0,
      3,
      1,
      2,
      3,
    ],
  },
  {
    name: "CONNECT with will QoS 2 not retained, empty will payload",
    packet: {
      type: "connect",
      protocolName: "MQTT",
      protocolLevel: 4,
      cleanSession: false,
      keepAlive: 10,
      clientId: "c",
      will: { topic: "w", payload: u8(), qos: 2, retain: false },
    },
    bytes: [0x10, 18, 0, 4, ...s("MQTT"), 4, 0x14, 0, 10, 0, 1, ...s("c"), 0, 1, ...s("w"), 0, 0],
  },
  {
    name: "CONNECT with user name only",
    packet: {
      type: "connect",
      protocolName: "MQTT",
      protocolLevel: 4,
      cleanSession: true,
      keepAlive: 30,
      clientId: "id",
      username: "",
    },
    bytes: [0x10, 16, 0, 4, ...s("MQTT"), 4, 0x82, 0, 30, 0, 2, ...s("id"), 0, 0],
  },
  {
    name: "CONNECT with user name and empty password",
    packet: {
      type: "connect",
      protocolName: "MQTT",
      protocolLevel: 4,
      cleanSession: true,
      keepAlive: 30,
      clientId: "id",
      username: "u",
      password: u8(),
    },
    bytes: [0x10, 19, 0, 4, ...s("MQTT"), 4, 0xc2, 0, 30, 0, 2, ...s("id"), 0, 1, ...s("u"), 0, 0],
  },
  {
    name: "CONNECT MQIsdp 3 (MQTT 3.1)",
    packet: {
      type: "connect",
      protocolName: "MQIsdp",
      protocolLevel: 3,
      cleanSession: true,
      keepAlive: 30,
      clientId: "abc",
    },
    bytes: [0x10, 17, 0, 6, ...s("MQIsdp"), 3, 0x02, 0, 30, 0, 3, ...s("abc")],
  },
  {
    name: "CONNACK accepted",
    packet: { type: "connack", sessionPresent: false, returnCode: 0 },
    bytes: [0x20, 2, 0, 0],
  },
  {
    name: "CONNACK session present",
    packet: { type: "connack", sessionPresent: true, returnCode: 0 },
    bytes: [0x20, 2, 1, 0],
  },
  {
    name: "CONNACK not authorized",
    packet: { type: "connack", sessionPresent: false, returnCode: 5 },
    bytes: [0x20, 2, 0, 5],
  },
  {
    name: "PUBLISH QoS 0",
    packet: {
      type: "publish",
      topic: "a/b",
      payload: u8(...s("hello")),
      qos: 0,
      retain: false,
      dup: false,
    },
    bytes: [0x30, 10, 0, 3, ...s("a/b"), ...s("hello")],
  },
  {
    name: "PUBLISH QoS 0 retained",
    packet: { type: "publish", topic: "a", payload: u8(7), qos: 0, retain: true, dup: false },
    bytes: [0x31, 4, 0, 1, ...s("a"), 7],
  },
  {
    name: "PUBLISH QoS 0 empty payload",
    packet: { type: "publish", topic: "a/b", payload: u8(), qos: 0, retain: false, dup: false },
    bytes: [0x30, 5, 0, 3, ...s("a/b")],
  },
  {
    name: "PUBLISH QoS 1",
    packet: {
      type: "publish",
      topic: "a/b",
      payload: u8(1, 2),
      qos: 1,
      retain: false,
      dup: false,
      packetId: 1,
    },
    bytes: [0x32, 9, 0, 3, ...s("a/b"), 0, 1, 1, 2],
  },
  {
    name: "PUBLISH QoS 1 dup, empty payload, packet id 65535",
    packet: {
      type: "publish",
      topic: "t",
      payload: u8(),
      qos: 1,
      retain: false,
      dup: true,
      packetId: 65535,
    },
    bytes: [0x3a, 5, 0, 1, ...s("t"), 0xff, 0xff],
  },
  {
    name: "PUBLISH QoS 2",
    packet: {
      type: "publish",
      topic: "x",
      payload: u8(9),
      qos: 2,
      retain: false,
      dup: false,
      packetId: 0x1234,
    },
    bytes: [0x34, 6, 0, 1, ...s("x"), 0x12, 0x34, 9],
  },
  {
    name: "PUBLISH QoS 2 dup retained",
    packet: {
      type: "publish",
      topic: "x",
      payload: u8(9),
      qos: 2,
      retain: true,
      dup: true,
      packetId: 2,
    },
    bytes: [0x3d, 6, 0, 1, ...s("x"), 0, 2, 9],
  },
  {
    name: "PUBLISH non-ASCII topic",
    packet: { type: "publish", topic: "ü/€/𝄞", payload: u8(), qos: 0, retain: false, dup: false },
    bytes: [0x30, 13, 0, 11, 0xc3, 0xbc, 0x2f, 0xe2, 0x82, 0xac, 0x2f, 0xf0, 0x9d, 0x84, 0x9e],
  },
  {
    name: "PUBLISH topic with leading U+FEFF kept as is [MQTT-1.5.3-3]",
    packet: { type: "publish", topic: "\ufeffa", payload: u8(), qos: 0, retain: false, dup: false },
    bytes: [0x30, 6, 0, 4, 0xef, 0xbb, 0xbf, ...s("a")],
  },
  {
    name: "PUBLISH 100-byte ASCII topic (long-string path)",
    packet: {
      type: "publish",
      topic: "abcdefghij".repeat(10),
      payload: u8(),
      qos: 0,
      retain: false,
      dup: false,
    },
    bytes: [0x30, 102, 0, 100, ...s("abcdefghij".repeat(10))],
  },
  {
    name: "PUBLISH remaining length 127 (1-byte length)",
    packet: {
      type: "publish",
      topic: "a",
      payload: u8(...filler(124)),
      qos: 0,
      retain: false,
      dup: false,
    },
    bytes: [0x30, 0x7f, 0, 1, ...s("a"), ...filler(124)],
  },
  {
    name: "PUBLISH remaining length 128 (2-byte length)",
    packet: {
      type: "publish",
      topic: "a",
      payload: u8(...filler(125)),
      qos: 0,
      retain: false,
      dup: false,
    },
    bytes: [0x30, 0x80, 0x01, 0, 1, ...s("a"), ...filler(125)],
  },
  {
    name: "PUBLISH remaining length 16383 (2-byte length)",
    packet: {
      type: "publish",
      topic: "a",
      payload: u8(...filler(16378)),
      qos: 1,
      retain: false,
      dup: false,
      packetId: 7,
    },
    bytes: [0x32, 0xff, 0x7f, 0, 1, ...s("a"), 0, 7, ...filler(16378)],
  },
  {
    name: "PUBLISH remaining length 16384 (3-byte length)",
    packet: {
      type: "publish",
      topic: "a",
      payload: u8(...filler(16381)),
      qos: 0,
      retain: false,
      dup: false,
    },
    bytes: [0x30, 0x80, 0x80, 0x01, 0, 1, ...s("a"), ...filler(16381)],
  },
  { name: "PUBACK", packet: { type: "puback", packetId: 1 }, bytes: [0x40, 2, 0, 1] },
  { name: "PUBREC", packet: { type: "pubrec", packetId: 0x1234 }, bytes: [0x50, 2, 0x12, 0x34] },
  { name: "PUBREL", packet: { type: "pubrel", packetId: 65535 }, bytes: [0x62, 2, 0xff, 0xff] },
  { name: "PUBCOMP", packet: { type: "pubcomp", packetId: 256 }, bytes: [0x70, 2, 1, 0] },
  {
    name: "SUBSCRIBE one filter",
    packet: { type: "subscribe", packetId: 1, subscriptions: [{ topicFilter: "a/+", qos: 0 }] },
    bytes: [0x82, 8, 0, 1, 0, 3, ...s("a/+"), 0],
  },
  {
    name: "SUBSCRIBE three filters, QoS 0/1/2",
    packet: {
      type: "subscribe",
      packetId: 10,
      subscriptions: [
        { topicFilter: "a/b", qos: 0 },
        { topicFilter: "c/#", qos: 1 },
        { topicFilter: "+", qos: 2 },
      ],
    },
    bytes: [0x82, 18, 0, 10, 0, 3, ...s("a/b"), 0, 0, 3, ...s("c/#"), 1, 0, 1, ...s("+"), 2],
  },
  {
    name: "SUBACK with a refused filter (0x80)",
    packet: { type: "suback", packetId: 10, returnCodes: [0, 1, 2, 0x80] },
    bytes: [0x90, 6, 0, 10, 0, 1, 2, 0x80],
  },
  {
    name: "UNSUBSCRIBE two filters",
    packet: { type: "unsubscribe", packetId: 3, topicFilters: ["a/b", "#"] },
    bytes: [0xa2, 10, 0, 3, 0, 3, ...s("a/b"), 0, 1, ...s("#")],
  },
  { name: "UNSUBACK", packet: { type: "unsuback", packetId: 3 }, bytes: [0xb0, 2, 0, 3] },
  { name: "PINGREQ", packet: { type: "pingreq" }, bytes: [0xc0, 0] },
  { name: "PINGRESP", packet: { type: "pingresp" }, bytes: [0xd0, 0] },
  { name: "DISCONNECT", packet: { type: "disconnect" }, bytes: [0xe0, 0] },
];

for (const f of FIXTURES) {
  Deno.test(`codec fixture: ${f.name}`, () => {
    const bytes = new Uint8Array(f.bytes);
    assert.deepEqual(decodeAll(bytes), [f.packet], "decode");
    assert.deepEqual(encodePacket(f.packet), bytes, "encode");
    assert.deepEqual(decodeByteByByte(bytes), [f.packet], "decode one byte at a time");
  });
}

Deno.test("decoder decodes every fixture concatenated in one chunk", () => {
  const all = new Uint8Array(FIXTURES.flatMap((f) => f.bytes));
  assert.deepEqual(decodeAll(all), FIXTURES.map((f) => f.packet));
});

Deno.test("decoder decodes every fixture concatenated, split at random points", () => {
  const all = new Uint8Array(FIXTURES.flatMap((f) => f.bytes));
  const rand = prng(42);
  for (let round = 0; round < 50; round++) {
    const d = new Decoder({ maxPacketSize: MAX });
    const out: Packet[] = [];
    for (let i = 0; i < all.length;) {
      const n = 1 + Math.floor(rand() * (round < 25 ? 16 : 8192));
      d.push(all.subarray(i, i + n));
      i += n;
      for (let p = d.next(); p !== undefined; p = d.next()) out.push(p);
    }
    assert.equal(d.bufferedBytes, 0);
    assert.deepEqual(out, FIXTURES.map((f) => f.packet));
  }
});

Deno.test("decoder joins chunks pushed without draining in between", () => {
  const d = new Decoder({ maxPacketSize: MAX });
  d.push(u8(0xc0, 0x00, 0x40)); // PINGREQ, start of PUBACK
  d.push(u8(0x02, 0x00)); // pushed again before next()
  assert.deepEqual(d.next(), { type: "pingreq" });
  assert.equal(d.next(), undefined);
  assert.equal(d.bufferedBytes, 3);
  d.push(u8(0x05, 0xe0));
  d.push(u8(0x00));
  assert.deepEqual(d.next(), { type: "puback", packetId: 5 });
  assert.deepEqual(d.next(), { type: "disconnect" });
  assert.equal(d.next(), undefined);
  assert.equal(d.bufferedBytes, 0);
});

Deno.test("decoder stops at an unknown protocol name/level pair [MQTT-3.1.2-2]", () => {
  const cases: [string, number, number[]][] = [
    // A future level 6: whatever follows is not read.
    ["MQTT", 6, [0x10, 14, 0, 4, ...s("MQTT"), 6, 0x02, 0, 60, 0, 0, 1, ...s("x")]],
    ["MQTT", 3, [0x10, 13, 0, 4, ...s("MQTT"), 3, 0x03, 0, 60, 0, 1, ...s("x")]],
    ["MQIsdp", 4, [0x10, 15, 0, 6, ...s("MQIsdp"), 4, 0x02, 0, 60, 0, 1, ...s("x")]],
    ["MQTTX", 4, [0x10, 11, 0, 5, ...s("MQTTX"), 4, 0x02, 0, 60]],
  ];
  for (const [protocolName, protocolLevel, bytes] of cases) {
    const expected: Packet = {
      type: "connect",
      protocolName,
      protocolLevel,
      cleanSession: true,
      keepAlive: 60,
      clientId: "",
    };
    assert.deepEqual(decodeAll(new Uint8Array(bytes)), [expected], protocolName);
    assert.deepEqual(decodeByteByByte(new Uint8Array(bytes)), [expected], protocolName);
  }
});

// ---------------------------------------------------------------------------------------------
// Invalid input: one test per rule, the spec tag in the name and in DecodeError.specRef.

interface Rule {
  rule: string;
  /** The tag DecodeError.specRef must carry; "" for rules without one. */
  specRef: string;
  /** Extra tags of the same rule, for the test name only. */
  alsoTags?: string;
  cases: Record<string, number[]>;
}

const CONNECT_HEAD = [0, 4, ...s("MQTT"), 4];

const INVALID: Rule[] = [
  {
    rule: "reserved fixed-header flags",
    specRef: "[MQTT-2.2.2-1]",
    alsoTags: "[MQTT-2.2.2-2]",
    cases: {
      CONNECT: [0x11, 12, ...CONNECT_HEAD, 0x02, 0, 0, 0, 0],
      CONNACK: [0x28, 2, 0, 0],
      PUBACK: [0x41, 2, 0, 1],
      PUBREC: [0x52, 2, 0, 1],
      PUBCOMP: [0x7f, 2, 0, 1],
      SUBACK: [0x92, 3, 0, 1, 0],
      UNSUBACK: [0xb2, 2, 0, 1],
      PINGREQ: [0xc1, 0],
      PINGRESP: [0xd8, 0],
      DISCONNECT: [0xe2, 0],
    },
  },
  {
    rule: "PUBREL with flags other than 0b0010",
    specRef: "[MQTT-3.6.1-1]",
    cases: { "0b0000": [0x60, 2, 0, 1], "0b0011": [0x63, 2, 0, 1] },
  },
  {
    rule: "SUBSCRIBE with flags other than 0b0010",
    specRef: "[MQTT-3.8.1-1]",
    cases: {
      "0b0000": [0x80, 6, 0, 1, 0, 1, ...s("a"), 0],
      "0b1010": [0x8a, 6, 0, 1, 0, 1, 97, 0],
    },
  },
  {
    rule: "UNSUBSCRIBE with flags other than 0b0010",
    specRef: "[MQTT-3.10.1-1]",
    cases: { "0b0000": [0xa0, 5, 0, 1, 0, 1, ...s("a")], "0b0110": [0xa6, 5, 0, 1, 0, 1, 97] },
  },
  {
    rule: "PUBLISH with QoS 3",
    specRef: "[MQTT-3.3.1-4]",
    cases: {
      "QoS 3": [0x36, 5, 0, 1, ...s("a"), 0, 1],
      "QoS 3 dup retain": [0x3f, 5, 0, 1, 97, 0, 1],
    },
  },
  {
    rule: "PUBLISH QoS 0 with DUP set",
    specRef: "[MQTT-3.3.1-2]",
    cases: { "DUP QoS 0": [0x38, 3, 0, 1, ...s("a")], "DUP QoS 0 retain": [0x39, 3, 0, 1, 97] },
  },
  {
    rule: "packet identifier 0",
    specRef: "[MQTT-2.3.1-1]",
    cases: {
      "PUBLISH QoS 1": [0x32, 5, 0, 1, ...s("a"), 0, 0],
      "PUBLISH QoS 2": [0x34, 5, 0, 1, ...s("a"), 0, 0],
      PUBACK: [0x40, 2, 0, 0],
      PUBREC: [0x50, 2, 0, 0],
      PUBREL: [0x62, 2, 0, 0],
      PUBCOMP: [0x70, 2, 0, 0],
      SUBSCRIBE: [0x82, 6, 0, 0, 0, 1, ...s("a"), 0],
      SUBACK: [0x90, 3, 0, 0, 0],
      UNSUBSCRIBE: [0xa2, 5, 0, 0, 0, 1, ...s("a")],
      UNSUBACK: [0xb0, 2, 0, 0],
    },
  },
  {
    rule: "SUBSCRIBE without topic filter",
    specRef: "[MQTT-3.8.3-3]",
    cases: { "no payload": [0x82, 2, 0, 1] },
  },
  {
    rule: "SUBSCRIBE requested QoS with reserved bits or QoS 3",
    specRef: "[MQTT-3-8.3-4]",
    cases: {
      "QoS 3": [0x82, 6, 0, 1, 0, 1, ...s("a"), 3],
      "reserved bit 2": [0x82, 6, 0, 1, 0, 1, ...s("a"), 0x04],
      "reserved bit 7": [0x82, 6, 0, 1, 0, 1, ...s("a"), 0x81],
      "second filter": [0x82, 10, 0, 1, 0, 1, ...s("a"), 1, 0, 1, ...s("b"), 0xfc],
    },
  },
  {
    rule: "UNSUBSCRIBE without topic filter",
    specRef: "[MQTT-3.10.3-2]",
    cases: { "no payload": [0xa2, 2, 0, 1] },
  },
  {
    rule: "CONNECT with the reserved flag set",
    specRef: "[MQTT-3.1.2-3]",
    cases: { "flags 0x03": [0x10, 12, ...CONNECT_HEAD, 0x03, 0, 0, 0, 0] },
  },
  {
    rule: "CONNECT with Will QoS but no Will Flag",
    specRef: "[MQTT-3.1.2-13]",
    alsoTags: "[MQTT-3.1.2-11]",
    cases: {
      "will QoS 1": [0x10, 12, ...CONNECT_HEAD, 0x0a, 0, 0, 0, 0],
      "will QoS 2": [0x10, 12, ...CONNECT_HEAD, 0x12, 0, 0, 0, 0],
    },
  },
  {
    rule: "CONNECT with Will Retain but no Will Flag",
    specRef: "[MQTT-3.1.2-15]",
    alsoTags: "[MQTT-3.1.2-11]",
    cases: { "will retain": [0x10, 12, ...CONNECT_HEAD, 0x22, 0, 0, 0, 0] },
  },
  {
    rule: "CONNECT with Will QoS 3",
    specRef: "[MQTT-3.1.2-14]",
    cases: {
      "will QoS 3": [0x10, 18, ...CONNECT_HEAD, 0x1e, 0, 0, 0, 0, 0, 1, ...s("w"), 0, 1, 0],
    },
  },
  {
    rule: "CONNECT with password flag but no user name flag",
    specRef: "[MQTT-3.1.2-22]",
    cases: { "password only": [0x10, 14, ...CONNECT_HEAD, 0x42, 0, 0, 0, 0, 0, 0] },
  },
  {
    rule: "ill-formed UTF-8 strings",
    specRef: "[MQTT-1.5.3-1]",
    cases: {
      "PUBLISH topic, bad continuation": [0x30, 4, 0, 2, 0xc3, 0x28],
      "PUBLISH topic, truncated sequence": [0x30, 3, 0, 1, 0xe2],
      "PUBLISH topic, overlong '/'": [0x30, 4, 0, 2, 0xc0, 0xaf],
      "PUBLISH topic, encoded high surrogate D800": [0x30, 5, 0, 3, 0xed, 0xa0, 0x80],
      "PUBLISH topic, encoded low surrogate DFFF": [0x30, 5, 0, 3, 0xed, 0xbf, 0xbf],
      "PUBLISH topic, 0xFF": [0x30, 3, 0, 1, 0xff],
      "PUBLISH long topic": [0x30, 102, 0, 100, ...s("a".repeat(99)), 0x80],
      "CONNECT client id": [0x10, 14, ...CONNECT_HEAD, 0x02, 0, 0, 0, 2, 0xed, 0xa0],
      "CONNECT user name": [0x10, 15, ...CONNECT_HEAD, 0x82, 0, 0, 0, 0, 0, 1, 0xfe],
      "CONNECT will topic": [0x10, 17, ...CONNECT_HEAD, 0x06, 0, 0, 0, 0, 0, 1, 0xc3, 0, 0],
      "SUBSCRIBE filter": [0x82, 7, 0, 1, 0, 2, 0xc3, 0x28, 0],
      "UNSUBSCRIBE filter": [0xa2, 6, 0, 1, 0, 2, 0xe0, 0x80],
    },
  },
  {
    rule: "U+0000 in a string",
    specRef: "[MQTT-1.5.3-2]",
    cases: {
      "PUBLISH short topic": [0x30, 5, 0, 3, ...s("a"), 0, ...s("b")],
      "PUBLISH non-ASCII topic": [0x30, 5, 0, 3, 0xc3, 0xbc, 0],
      "PUBLISH long topic": [0x30, 102, 0, 100, ...s("a".repeat(99)), 0],
      "CONNECT client id": [0x10, 13, ...CONNECT_HEAD, 0x02, 0, 0, 0, 1, 0],
      "SUBSCRIBE filter": [0x82, 6, 0, 1, 0, 1, 0, 0],
      "UNSUBSCRIBE filter": [0xa2, 5, 0, 1, 0, 1, 0],
    },
  },
  {
    rule: "SUBACK with a reserved return code",
    specRef: "[MQTT-3.9.3-2]",
    cases: { "0x03": [0x90, 3, 0, 1, 3], "0x81": [0x90, 4, 0, 1, 0, 0x81] },
  },
  {
    rule: "truncated fields",
    specRef: "",
    cases: {
      "PUBLISH without topic length": [0x30, 1, 0],
      "PUBLISH topic longer than the packet": [0x30, 4, 0, 3, ...s("ab")],
      "PUBLISH QoS 1 without packet id": [0x32, 3, 0, 1, ...s("a")],
      "PUBLISH QoS 1 with half a packet id": [0x32, 4, 0, 1, ...s("a"), 0],
      "PUBACK without packet id": [0x40, 0],
      "PUBREL with 1 byte": [0x62, 1, 0],
      "CONNECT without protocol name": [0x10, 0],
      "CONNECT without keep alive": [0x10, 8, ...CONNECT_HEAD, 0x02],
      "CONNECT without client id": [0x10, 10, ...CONNECT_HEAD, 0x02, 0, 0],
      "CONNECT will flag without will": [0x10, 12, ...CONNECT_HEAD, 0x06, 0, 0, 0, 0],
      "CONNECT will without message": [0x10, 15, ...CONNECT_HEAD, 0x06, 0, 0, 0, 0, 0, 1, 97],
      "CONNECT user flag without user": [0x10, 12, ...CONNECT_HEAD, 0x82, 0, 0, 0, 0],
      "CONNECT password flag without password": [
        0x10,
        14,
        ...CONNECT_HEAD,
        0xc2,
        0,
        0,
        0,
        0,
        0,
        0,
      ],
      "CONNECT password longer than the packet": [
        0x10,
        17,
        ...CONNECT_HEAD,
        0xc2,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        5,
        1,
      ],
      "CONNACK with 1 byte": [0x20, 1, 0],
      "SUBSCRIBE filter without QoS": [0x82, 5, 0, 1, 0, 1, ...s("a")],
      "SUBSCRIBE filter longer than the packet": [0x82, 5, 0, 1, 0, 2, ...s("a")],
      "UNSUBSCRIBE half a filter length": [0xa2, 3, 0, 1, 0],
      "SUBACK without return code": [0x90, 2, 0, 1],
    },
  },
  {
    rule: "extra bytes at the end of a packet",
    specRef: "",
    cases: {
      PINGREQ: [0xc0, 1, 0],
      PINGRESP: [0xd0, 1, 0],
      DISCONNECT: [0xe0, 2, 0, 0],
      PUBACK: [0x40, 3, 0, 1, 0],
      PUBREC: [0x50, 4, 0, 1, 0, 0],
      PUBREL: [0x62, 3, 0, 1, 0],
      PUBCOMP: [0x70, 3, 0, 1, 0],
      UNSUBACK: [0xb0, 3, 0, 1, 0],
      CONNACK: [0x20, 3, 0, 0, 0],
      CONNECT: [0x10, 13, ...CONNECT_HEAD, 0x02, 0, 0, 0, 0, 0],
      "CONNECT with user": [0x10, 16, ...CONNECT_HEAD, 0x82, 0, 0, 0, 0, 0, 1, 97, 0],
    },
  },
  {
    rule: "CONNACK with reserved acknowledge flags",
    specRef: "",
    cases: { "0x02": [0x20, 2, 0x02, 0], "0x81": [0x20, 2, 0x81, 0] },
  },
  {
    rule: "reserved packet types 0 and 15",
    specRef: "",
    cases: { "type 0": [0x00, 0], "type 15": [0xf0, 0], "type 15 with body": [0xf0, 1, 0] },
  },
];

function assertDecodeError(bytes: Uint8Array, specRef: string, byteByByte: boolean): DecodeError {
  let caught: unknown;
  try {
    if (byteByByte) decodeByteByByte(bytes);
    else decodeAll(bytes);
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof DecodeError, `expected a DecodeError, got ${caught}`);
  assert.equal(caught.specRef, specRef, caught.message);
  assert.ok(caught.message.startsWith("Cannot decode packet: "), caught.message);
  return caught;
}

for (const { rule, specRef, alsoTags, cases } of INVALID) {
  const tags = [specRef, alsoTags].filter(Boolean).join(" ");
  Deno.test(`decoder rejects ${rule}${tags ? ` ${tags}` : ""}`, () => {
    for (const [name, bytes] of Object.entries(cases)) {
      const b = new Uint8Array(bytes);
      try {
        assertDecodeError(b, specRef, false);
        assertDecodeError(b, specRef, true);
      } catch (e) {
        throw new Error(`case "${name}": ${(e as Error).message}`, { cause: e });
      }
    }
  });
}

Deno.test("decoder is unusable after a DecodeError and keeps throwing it", () => {
  const d = new Decoder({ maxPacketSize: MAX });
  d.push(u8(0xc0, 0x00, 0x36, 5, 0, 1, 97, 0, 1, 0xc0, 0x00)); // PINGREQ, PUBLISH QoS 3, PINGREQ
  assert.deepEqual(d.next(), { type: "pingreq" });
  assert.throws(() => d.next(), (e) => e instanceof DecodeError && e.specRef === "[MQTT-3.3.1-4]");
  let again: unknown;
  try {
    d.push(u8(0xc0, 0x00));
    d.next();
  } catch (e) {
    again = e;
  }
  assert.ok(again instanceof DecodeError);
  assert.equal(again.specRef, "[MQTT-3.3.1-4]");
});

// ---------------------------------------------------------------------------------------------
// maxPacketSize and the remaining-length field.

Deno.test("decoder rejects a packet over maxPacketSize from its fixed header alone", () => {
  // remaining length 99 → 101 bytes whole, limit 100; no body byte is pushed.
  const d = new Decoder({ maxPacketSize: 100 });
  d.push(u8(0x30, 99));
  assert.throws(() => d.next(), /size 101 exceeds maxPacketSize 100/);
  assert.equal(d.bufferedBytes, 0);

  // The same with a 4-byte remaining length (268 435 455) pushed one byte at a time.
  const d2 = new Decoder({ maxPacketSize: MAX });
  for (const b of [0x30, 0xff, 0xff, 0xff]) {
    d2.push(u8(b));
    assert.equal(d2.next(), undefined);
  }
  d2.push(u8(0x7f));
  assert.throws(() => d2.next(), /exceeds maxPacketSize/);
  d2.push(new Uint8Array(1000)); // body bytes are not buffered
  assert.ok(d2.bufferedBytes <= 5, `buffered ${d2.bufferedBytes}`);
  assert.throws(() => d2.next(), DecodeError);

  // Header split from the body in the same chunk: nothing after the header is needed.
  const d3 = new Decoder({ maxPacketSize: 16 });
  d3.push(u8(0xc0, 0x00, 0x32, 0x80, 0x01, 0, 1));
  assert.deepEqual(d3.next(), { type: "pingreq" });
  assert.throws(() => d3.next(), /size 131 exceeds maxPacketSize 16/);
});

Deno.test("decoder accepts a packet of exactly maxPacketSize bytes", () => {
  const bytes = u8(0x30, 6, 0, 1, ...s("a"), 1, 2, 3); // 8 bytes whole
  assert.equal(decodeAll(bytes, 8).length, 1);
  assert.equal(decodeByteByByte(bytes, 8).length, 1);
  assert.throws(() => decodeAll(bytes, 7), DecodeError);
  assert.throws(() => decodeByteByByte(bytes, 7), DecodeError);
});

Deno.test("decoder rejects a remaining length of more than 4 bytes", () => {
  const bytes = u8(0x30, 0xff, 0xff, 0xff, 0xff, 0x01);
  for (const byteByByte of [false, true]) {
    const e = assertDecodeError(bytes, "", byteByByte);
    assert.equal(e.message, "Cannot decode packet: remaining length exceeds 4 bytes");
  }
});

Deno.test("Decoder constructor rejects a bad maxPacketSize with RangeError", () => {
  for (const bad of [1, 0, -5, 1.5, NaN, Infinity]) {
    assert.throws(() => new Decoder({ maxPacketSize: bad }), RangeError);
  }
});

// ---------------------------------------------------------------------------------------------
// Reuse safety: the caller reads into one buffer and overwrites it after each drain.

Deno.test("decoder output never aliases a reused input buffer", () => {
  const first = [0x32, 12, 0, 3, ...s("a/b"), 0, 9, ...s("hello")];
  const second = [0x30, 0x80, 0x01, 0, 2, ...s("c/"), ...filler(124)]; // 2-byte length
  const third = [0x82, 8, 0, 2, 0, 3, ...s("x/y"), 1];
  const stream = [...first, ...second, ...third];
  const expected: Packet[] = [
    {
      type: "publish",
      topic: "a/b",
      payload: u8(...s("hello")),
      qos: 1,
      retain: false,
      dup: false,
      packetId: 9,
    },
    {
      type: "publish",
      topic: "c/",
      payload: u8(...filler(124)),
      qos: 0,
      retain: false,
      dup: false,
    },
    { type: "subscribe", packetId: 2, subscriptions: [{ topicFilter: "x/y", qos: 1 }] },
  ];
  // Every split point puts a packet boundary, a fixed header or a body across two reads.
  for (let size = 1; size <= stream.length; size++) {
    const buf = new Uint8Array(size);
    const d = new Decoder({ maxPacketSize: MAX });
    const got: Packet[] = [];
    for (let i = 0; i < stream.length; i += size) {
      const n = Math.min(size, stream.length - i);
      buf.set(stream.slice(i, i + n));
      d.push(buf.subarray(0, n));
      for (let p = d.next(); p !== undefined; p = d.next()) got.push(p);
      buf.fill(0xee); // the caller reuses its buffer
    }
    assert.deepEqual(got, expected, `read size ${size}`);
    assert.equal(d.bufferedBytes, 0);
  }
});

Deno.test("decoder reassembles a packet larger than its first buffer (300 000 bytes)", () => {
  // Over 64 KiB the partial buffer grows as bytes arrive instead of being allocated up front.
  const payload = new Uint8Array(299_990);
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 7) % 256;
  const remaining = 2 + 1 + 2 + payload.length; // 299 995 = 0x493db
  const bytes = new Uint8Array([
    0x32,
    0xdb,
    0xa7,
    0x12, // 0x5b + 0x27·128 + 0x12·16384
    0,
    1,
    ...s("a"),
    0x12,
    0x34,
    ...payload,
    0xc0,
    0x00,
  ]);
  assert.equal(remaining, 0x5b + 0x27 * 128 + 0x12 * 16_384);
  const expected: Packet[] = [
    { type: "publish", topic: "a", payload, qos: 1, retain: false, dup: false, packetId: 0x1234 },
    { type: "pingreq" },
  ];
  const rand = prng(7);
  for (const maxRead of [1, 100, 5_000, 70_000, 400_000]) {
    const buf = new Uint8Array(maxRead);
    const d = new Decoder({ maxPacketSize: MAX });
    const got: Packet[] = [];
    let peak = 0;
    for (let i = 0; i < bytes.length;) {
      const n = Math.min(bytes.length - i, 1 + Math.floor(rand() * maxRead));
      buf.set(bytes.subarray(i, i + n));
      i += n;
      d.push(buf.subarray(0, n));
      for (let p = d.next(); p !== undefined; p = d.next()) got.push(p);
      peak = Math.max(peak, d.bufferedBytes);
      buf.fill(0);
    }
    assert.deepEqual(got, expected, `max read ${maxRead}`);
    assert.equal(d.bufferedBytes, 0);
    assert.ok(peak < bytes.length, `peak ${peak}`);
  }
});

Deno.test("decoded CONNECT fields do not alias the input buffer", () => {
  const buf = new Uint8Array(FIXTURES[2].bytes);
  const d = new Decoder({ maxPacketSize: MAX });
  d.push(buf);
  const p = d.next();
  assert.equal(d.next(), undefined);
  buf.fill(0);
  assert.deepEqual(p, FIXTURES[2].packet);
});

// ---------------------------------------------------------------------------------------------
// Encoder specifics.

Deno.test("encodePublish puts the packet id at bytes.length - payload.length - 2", () => {
  const payloads = [u8(), u8(1, 2, 3), new Uint8Array(300)];
  for (const topic of ["t", "ü/€/𝄞", "x".repeat(200)]) {
    for (const payload of payloads) {
      for (const qos of [1, 2] as const) {
        const bytes = encodePublish(topic, payload, qos, true, true, 0xbeef);
        const at = bytes.length - payload.length - 2;
        assert.deepEqual([bytes[at], bytes[at + 1]], [0xbe, 0xef]);
        // Without a packet id the placeholder is 0, to be patched per subscriber.
        const placeholder = encodePublish(topic, payload, qos, false, false);
        assert.deepEqual([placeholder[at], placeholder[at + 1]], [0, 0]);
        placeholder[at] = 0x01;
        placeholder[at + 1] = 0x02;
        assert.deepEqual(decodeAll(placeholder), [
          { type: "publish", topic, payload, qos, retain: false, dup: false, packetId: 0x0102 },
        ]);
      }
    }
  }
});

Deno.test("encodePublish clears DUP for QoS 0 [MQTT-3.3.1-2]", () => {
  assert.deepEqual(encodePublish("a", u8(), 0, false, true, 5), u8(0x30, 3, 0, 1, ...s("a")));
});

Deno.test("encodeAck and the constant packets match the fixtures", () => {
  assert.deepEqual(encodeAck("puback", 1), u8(0x40, 2, 0, 1));
  assert.deepEqual(encodeAck("pubrec", 0x1234), u8(0x50, 2, 0x12, 0x34));
  assert.deepEqual(encodeAck("pubrel", 65535), u8(0x62, 2, 0xff, 0xff));
  assert.deepEqual(encodeAck("pubcomp", 256), u8(0x70, 2, 1, 0));
  assert.deepEqual(encodeAck("unsuback", 3), u8(0xb0, 2, 0, 3));
  assert.deepEqual(PINGREQ_BYTES, u8(0xc0, 0));
  assert.deepEqual(PINGRESP_BYTES, u8(0xd0, 0));
  assert.deepEqual(DISCONNECT_BYTES, u8(0xe0, 0));
  // encodePacket hands out copies, so the shared constants cannot be mutated through it.
  assert.notEqual(encodePacket({ type: "pingresp" }), PINGRESP_BYTES);
});

Deno.test("encoder throws TypeError for what it cannot encode", () => {
  const connect = {
    type: "connect",
    protocolName: "MQTT",
    protocolLevel: 4,
    cleanSession: true,
    keepAlive: 0,
    clientId: "c",
  } as const;
  const tooLong = "a".repeat(65_536);
  const bad: [string, () => unknown][] = [
    ["topic over 65535 bytes", () => encodePublish(tooLong, u8(), 0, false, false)],
    [
      "topic over 65535 UTF-8 bytes",
      () => encodePublish("é".repeat(32_768), u8(), 0, false, false),
    ],
    ["topic with U+0000", () => encodePublish("a\0b", u8(), 0, false, false)],
    ["topic with a lone high surrogate", () => encodePublish("a\ud800", u8(), 0, false, false)],
    ["topic with a lone low surrogate", () => encodePublish("\udc00a", u8(), 0, false, false)],
    ["QoS 3", () => encodePublish("a", u8(), 3 as 0, false, false, 1)],
    ["packet id 65536", () => encodePublish("a", u8(), 1, false, false, 65_536)],
    ["packet id -1", () => encodeAck("puback", -1)],
    ["packet id 1.5", () => encodeAck("puback", 1.5)],
    ["unknown ack type", () => encodeAck("connack" as "puback", 1)],
    [
      "remaining length over 268435455",
      // A stand-in: the length check comes before any byte of the payload is read.
      () => encodePublish("a", { length: 268_435_453 } as Uint8Array, 0, false, false),
    ],
    ["client id over 65535 bytes", () => encodePacket({ ...connect, clientId: tooLong })],
    ["user name over 65535 bytes", () => encodePacket({ ...connect, username: tooLong })],
    [
      "password over 65535 bytes",
      () => encodePacket({ ...connect, username: "u", password: new Uint8Array(65_536) }),
    ],
    [
      "will payload over 65535 bytes",
      () =>
        encodePacket({
          ...connect,
          will: { topic: "w", payload: new Uint8Array(65_536), qos: 0, retain: false },
        }),
    ],
    ["password without user name", () => encodePacket({ ...connect, password: u8(1) })],
    ["keepAlive 65536", () => encodePacket({ ...connect, keepAlive: 65_536 })],
    ["protocol level 256", () => encodePacket({ ...connect, protocolLevel: 256 })],
    [
      "SUBSCRIBE without filter",
      () => encodePacket({ type: "subscribe", packetId: 1, subscriptions: [] }),
    ],
    [
      "SUBSCRIBE QoS 3",
      () =>
        encodePacket({
          type: "subscribe",
          packetId: 1,
          subscriptions: [{ topicFilter: "a", qos: 3 as 0 }],
        }),
    ],
    [
      "UNSUBSCRIBE without filter",
      () => encodePacket({ type: "unsubscribe", packetId: 1, topicFilters: [] }),
    ],
    [
      "SUBACK reserved return code",
      () => encodePacket({ type: "suback", packetId: 1, returnCodes: [3] }),
    ],
    [
      "CONNACK return code 256",
      () => encodePacket({ type: "connack", sessionPresent: false, returnCode: 256 }),
    ],
    ["unknown packet type", () => encodePacket({ type: "auth" } as unknown as Packet)],
  ];
  for (const [name, fn] of bad) assert.throws(fn, TypeError, name);
});

Deno.test("encoder accepts a topic of exactly 65535 bytes", () => {
  const topic = "a".repeat(65_535);
  const bytes = encodePublish(topic, u8(1), 0, false, false);
  assert.equal(bytes.length, 1 + 3 + 2 + 65_535 + 1);
  assert.deepEqual(decodeAll(bytes), [
    { type: "publish", topic, payload: u8(1), qos: 0, retain: false, dup: false },
  ]);
});

// ---------------------------------------------------------------------------------------------
// Random input: only DecodeError, never a hang; whatever decodes re-encodes to the same packet.

/** Feeds `bytes` in random chunks; returns the packets, or the DecodeError. Fails on anything else. */
function fuzzOnce(bytes: Uint8Array, rand: () => number, maxPacketSize: number): Packet[] {
  const d = new Decoder({ maxPacketSize });
  const out: Packet[] = [];
  try {
    for (let i = 0; i < bytes.length;) {
      const n = 1 + Math.floor(rand() * bytes.length);
      d.push(bytes.subarray(i, i + n));
      i += n;
      // Every packet is at least 2 bytes, so more iterations than bytes means a hang.
      for (let guard = 0;; guard++) {
        assert.ok(guard <= bytes.length, "decoder does not make progress");
        const p = d.next();
        if (p === undefined) break;
        out.push(p);
      }
    }
  } catch (e) {
    if (e instanceof DecodeError) return out;
    throw e;
  }
  return out;
}

Deno.test("decoder only ever throws DecodeError on random bytes (seeded)", () => {
  const rand = prng(0x5eed);
  const fixtures = FIXTURES.map((f) => new Uint8Array(f.bytes)).filter((b) => b.length < 1000);
  let decoded = 0;
  for (let iteration = 0; iteration < 24_000; iteration++) {
    let bytes: Uint8Array;
    const mode = iteration % 3;
    if (mode === 0) {
      // Random bytes behind a plausible first byte, so bodies get parsed too.
      bytes = new Uint8Array(Math.floor(rand() * 48));
      for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(rand() * 256);
      if (bytes.length > 1) {
        bytes[0] = (Math.floor(rand() * 16) << 4) | (rand() < 0.7 ? (bytes[0] & 0x0f) : 0);
        if (rand() < 0.8) bytes[1] = Math.min(bytes[1] & 0x7f, bytes.length - 2);
      }
    } else {
      // Mutations of valid packets: flipped bytes, cut or stretched lengths, concatenations.
      const base = fixtures[Math.floor(rand() * fixtures.length)];
      const extra = mode === 2 ? fixtures[Math.floor(rand() * fixtures.length)] : u8();
      bytes = new Uint8Array(base.length + extra.length);
      bytes.set(base);
      bytes.set(extra, base.length);
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
    const maxPacketSize = rand() < 0.1 ? 2 + Math.floor(rand() * 40) : MAX;
    for (const p of fuzzOnce(bytes, rand, maxPacketSize)) {
      decoded++;
      // Whatever the decoder accepts is a valid packet: it encodes, and decodes back equal.
      assert.deepEqual(decodeAll(encodePacket(p)), [p]);
    }
  }
  // Guards against a fuzzer that never reaches the decoding paths.
  assert.ok(decoded > 2_000, `only ${decoded} packets decoded`);
});

Deno.test("decoder detach() moves a partial packet and unread bytes into a new decoder; reset() forgets", () => {
  const shared = new Decoder({ maxPacketSize: 1024 });
  // PINGREQ, then the first 3 bytes of a PUBLISH "a/b" QoS 0 with payload "xy".
  const publish = [0x30, 7, 0, 3, 0x61, 0x2f, 0x62, 0x78, 0x79];
  shared.push(new Uint8Array([0xc0, 0, ...publish.slice(0, 3)]));
  assert.deepEqual(shared.next(), { type: "pingreq" });
  assert.equal(shared.next(), undefined);
  assert.equal(shared.bufferedBytes, 3);
  const own = shared.detach();
  assert.equal(shared.bufferedBytes, 0, "the shared decoder is empty again");
  assert.equal(own.bufferedBytes, 3);
  // Another connection uses the shared decoder meanwhile.
  shared.push(new Uint8Array([0xd0, 0]));
  assert.deepEqual(shared.next(), { type: "pingresp" });
  own.push(new Uint8Array(publish.slice(3)));
  const packet = own.next() as { type: string; topic: string; payload: Uint8Array };
  assert.equal(packet.type, "publish");
  assert.equal(packet.topic, "a/b");
  assert.deepEqual(Array.from(packet.payload), [0x78, 0x79]);
  // An error travels with detach, and reset() clears it.
  shared.push(new Uint8Array([0x00, 0]));
  assert.throws(() => shared.next(), DecodeError);
  const broken = shared.detach();
  assert.throws(() => broken.next(), DecodeError);
  shared.push(new Uint8Array([0xc0, 0]));
  assert.deepEqual(shared.next(), { type: "pingreq" });
  broken.reset();
  broken.push(new Uint8Array([0xc0, 0]));
  assert.deepEqual(broken.next(), { type: "pingreq" });
});
