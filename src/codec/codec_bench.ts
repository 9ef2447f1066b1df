/**
 * Codec micro-benchmarks: `deno bench src/codec/codec_bench.ts`. The same traffic (QoS 0/1
 * PUBLISH with 64-byte payloads, PUBACKs, PINGREQs) decoded as 3.1.1 and as 5.0, and the
 * per-delivery PUBLISH header against the one-shot encoder.
 *
 * @module
 */

import { Decoder } from "./decoder.ts";
import { encodeAck, encodePacket, encodePublish, PublishFrame, WriteBatch } from "./encoder.ts";
import type { ProtocolVersion } from "./packet.ts";

const payload = new Uint8Array(64).fill(7);

function stream(version: ProtocolVersion): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let i = 0; i < 1000; i++) {
    const qos = (i % 2) as 0 | 1;
    parts.push(encodePacket({
      type: "publish",
      topic: `sensors/room${i % 50}/temperature`,
      payload,
      qos,
      retain: false,
      dup: false,
      packetId: qos ? 1 + i : undefined,
    }, version));
    if (i % 4 === 0) parts.push(encodeAck("puback", 1 + i, version));
    if (i % 50 === 0) parts.push(new Uint8Array([0xc0, 0]));
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function decodeStream(d: Decoder, bytes: Uint8Array, version: ProtocolVersion): number {
  let n = 0;
  for (let off = 0; off < bytes.length; off += 16_384) {
    d.push(bytes.subarray(off, Math.min(off + 16_384, bytes.length)));
    for (let p = d.next(version); p !== undefined; p = d.next(version)) n++;
  }
  return n;
}

const v4 = stream(4);
const v5 = stream(5);
const decoder = new Decoder({ maxPacketSize: 1 << 20 });

Deno.bench("decode 1 300 packets, 3.1.1", { group: "decode", baseline: true }, () => {
  decodeStream(decoder, v4, 4);
});

Deno.bench("decode 1 300 packets, 5.0 without properties", { group: "decode" }, () => {
  decodeStream(decoder, v5, 5);
});

const frame = new PublishFrame("sensors/room1/temperature", payload, {
  userProperties: [["unit", "C"]],
});

Deno.bench("encodePublish QoS 1, 3.1.1", { group: "publish", baseline: true }, () => {
  for (let id = 1; id <= 100; id++) encodePublish(frame.topic, payload, 1, false, false, id);
});

Deno.bench("PublishFrame.header QoS 1, 3.1.1", { group: "publish" }, () => {
  for (let id = 1; id <= 100; id++) frame.header(4, 1, false, false, id);
});

Deno.bench("PublishFrame.header QoS 1, 5.0, subscription id", { group: "publish" }, () => {
  const delivery = { subscriptionIdentifiers: [7] };
  for (let id = 1; id <= 100; id++) frame.header(5, 1, false, false, id, delivery);
});

Deno.bench("PublishFrame.header QoS 0 (cached)", { group: "publish" }, () => {
  for (let id = 1; id <= 100; id++) frame.header(4, 0, false, false, 0);
});

// One write of 100 QoS 1 deliveries of one message: the connection's old way (shared bytes, the
// packet identifier patched at a computed offset while copying) against a WriteBatch.
const shared = encodePublish(frame.topic, payload, 1, false, false, 1);

Deno.bench("100 deliveries in one write: copy + patch packet id", {
  group: "write",
  baseline: true,
}, () => {
  const out = new Uint8Array(shared.length * 100);
  let offset = 0;
  for (let id = 1; id <= 100; id++) {
    out.set(shared, offset);
    offset += shared.length;
    const at = offset - payload.length - 2;
    out[at] = id >> 8;
    out[at + 1] = id & 0xff;
  }
});

Deno.bench("100 deliveries in one write: WriteBatch.pushPublish + take", { group: "write" }, () => {
  const batch = new WriteBatch();
  for (let id = 1; id <= 100; id++) batch.pushPublish(frame, 4, 1, false, false, id);
  batch.take();
});
