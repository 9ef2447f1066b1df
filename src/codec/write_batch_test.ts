import assert from "node:assert/strict";
import { encodeAck, encodePacket, PublishFrame, WriteBatch } from "./encoder.ts";
import type { Packet, ProtocolVersion, QoS } from "./packet.ts";
import { mulberry32 as prng } from "../_test_prng.ts";

Deno.test("WriteBatch returns a lone packet as is and an empty batch as no bytes", () => {
  const batch = new WriteBatch();
  assert.equal(batch.take().length, 0);
  const ack = encodeAck("puback", 3);
  batch.push(ack);
  assert.equal(batch.byteLength, 4);
  assert.equal(batch.take(), ack);
  assert.equal(batch.byteLength, 0);
});

Deno.test("WriteBatch equals the concatenated encodings of what was queued (seeded)", () => {
  const rand = prng(0xba7c4);
  const frames = [
    new PublishFrame("a/b", new Uint8Array([1, 2, 3])),
    new PublishFrame("sensors/é/temperature", new Uint8Array(300).fill(4), {
      contentType: "text/plain",
      userProperties: [["k", "v"]],
      messageExpiryInterval: 60,
    }),
    new PublishFrame("x", new Uint8Array(0), { payloadFormatIndicator: true }),
  ];
  for (let round = 0; round < 300; round++) {
    const batch = new WriteBatch();
    const expected: number[] = [];
    const n = 1 + Math.floor(rand() * 8);
    for (let i = 0; i < n; i++) {
      if (rand() < 0.3) {
        const bytes = encodeAck("puback", 1 + Math.floor(rand() * 65535));
        batch.push(bytes);
        expected.push(...bytes);
        continue;
      }
      const frame = frames[Math.floor(rand() * frames.length)];
      const version = (rand() < 0.5 ? 4 : 5) as ProtocolVersion;
      const qos = Math.floor(rand() * 3) as QoS;
      const retain = rand() < 0.5;
      const dup = qos > 0 && rand() < 0.5;
      const packetId = qos === 0 ? 0 : 1 + Math.floor(rand() * 65535);
      const delivery = version === 5 && rand() < 0.5
        ? { subscriptionIdentifiers: [1 + Math.floor(rand() * 268_435_455)], topicAlias: 2 }
        : undefined;
      const size = batch.pushPublish(frame, version, qos, retain, dup, packetId, delivery);
      const packet: Packet = {
        type: "publish",
        topic: frame.topic,
        payload: frame.payload,
        qos,
        retain,
        dup,
        ...(qos === 0 ? {} : { packetId }),
        ...(version === 5 && (frame.properties || delivery)
          ? { properties: { ...frame.properties, ...delivery } }
          : {}),
      };
      const bytes = encodePacket(packet, version);
      assert.equal(size, bytes.length);
      expected.push(...bytes);
    }
    assert.equal(batch.byteLength, expected.length);
    assert.deepEqual([...batch.take()], expected);
  }
});

Deno.test("WriteBatch.pushPublish checks the packet identifier before queuing", () => {
  const batch = new WriteBatch();
  const frame = new PublishFrame("t", new Uint8Array(0));
  assert.throws(() => batch.pushPublish(frame, 4, 1, false, false, 0), TypeError);
  assert.throws(() => batch.pushPublish(frame, 4, 2, false, false, 65536), TypeError);
  assert.equal(batch.byteLength, 0);
});
