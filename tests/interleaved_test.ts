/**
 * Many clients whose packets arrive cut into pieces of 1 to 3 bytes, interleaved at the broker:
 * every connection must decode its own stream (the broker shares one decoder between connections
 * that hold no partial packet, and each keeps its own while it does).
 *
 * @module
 */
import assert from "node:assert/strict";
import { Broker } from "../mod.ts";
import { raw } from "./_util.ts";

async function readPackets(conn: Deno.Conn, count: number): Promise<number[][]> {
  const out: number[][] = [];
  let bytes: number[] = [];
  const buf = new Uint8Array(4096);
  while (out.length < count) {
    const n = await conn.read(buf);
    if (n === null) throw new Error(`closed after ${out.length} packets`);
    bytes.push(...buf.subarray(0, n));
    for (;;) {
      let i = 1, len = 0, mul = 1;
      if (bytes.length < 2) break;
      for (; i < bytes.length; i++) {
        len += (bytes[i] & 0x7f) * mul;
        mul *= 128;
        if ((bytes[i] & 0x80) === 0) break;
      }
      if (i >= bytes.length || bytes.length < i + 1 + len) break;
      out.push(bytes.slice(0, i + 1 + len));
      bytes = bytes.slice(i + 1 + len);
    }
  }
  return out;
}

Deno.test("40 clients with packets cut into 1-3 byte pieces, interleaved, each decode right", async () => {
  await using broker = new Broker({ logLevel: "silent" });
  const { port } = await broker.listen({ hostname: "127.0.0.1", port: 0 });
  let seed = 42;
  const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  const clients = await Promise.all(
    Array.from({ length: 40 }, () => Deno.connect({ hostname: "127.0.0.1", port })),
  );
  for (const c of clients) c.setNoDelay(true);
  try {
    await Promise.all(clients.map(async (conn, i) => {
      const topic = `i/${i}`;
      // A payload over the 64-byte first read and a QoS 1 PUBLISH: the pieces cut packets at
      // every possible place, fixed headers included.
      const payload = Array.from({ length: 100 + i }, (_, k) => (k * 7 + i) & 0xff);
      const bytes = [
        ...raw.connect({ clientId: `c${i}`, keepAlive: 30 }),
        ...raw.subscribe(1, [[topic, 1]]),
        ...raw.publish(topic, new Uint8Array(payload), { qos: 1, packetId: 9 }),
      ];
      for (let at = 0; at < bytes.length;) {
        const k = 1 + Math.floor(rnd() * 3);
        await conn.write(new Uint8Array(bytes.slice(at, at + k)));
        at += k;
        if (rnd() < 0.3) await new Promise((r) => setTimeout(r, 0));
      }
      // CONNACK, SUBACK, PUBACK and the message itself, in some order after SUBACK.
      const got = await readPackets(conn, 4);
      const types = got.map((p) => p[0] >> 4).sort();
      assert.deepEqual(types, [2, 3, 4, 9], `client ${i}: ${got.map((p) => p[0]).join(",")}`);
      const publish = got.find((p) => p[0] >> 4 === 3)!;
      let offset = 1;
      while (publish[offset] & 0x80) offset++;
      const body = publish.slice(offset + 1);
      const topicLength = (body[0] << 8) | body[1];
      assert.equal(new TextDecoder().decode(new Uint8Array(body.slice(2, 2 + topicLength))), topic);
      assert.deepEqual(body.slice(2 + topicLength + 2), payload, `client ${i}: payload intact`);
    }));
    assert.equal(broker.stats().protocolErrors, 0);
  } finally {
    for (const c of clients) c.close();
  }
});
