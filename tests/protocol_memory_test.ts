/**
 * The core exchanges over an in-memory connection pair handed to `broker.handle()` (no socket),
 * looped over protocol levels 4 and 5: the same raw bytes and readers as the TCP tests, so a
 * handler can be checked without the transport. Ours only.
 *
 * @module
 */
import assert from "node:assert/strict";
import { MOSQUITTO, startBroker } from "./_harness.ts";
import type { RunningBroker } from "./_harness.ts";
import { connect, disconnect, pingreq, pubrec, RC, TYPE } from "./_raw.ts";
import type { RawClient } from "./_raw.ts";

const name = (v: number) => (v === 5 ? "5.0" : "3.1.1");

async function open(b: RunningBroker, v: number, clientId: string): Promise<RawClient> {
  const c = b.memoryClient(clientId);
  if (v === 5) await c.handshake5({ clientId });
  else await c.handshake({ clientId });
  return c;
}

async function sub(c: RawClient, v: number, filter: string, qos: number): Promise<number> {
  if (v === 5) return (await c.subscribe5(1, [[filter, { qos }]])).reasonCodes[0];
  return (await c.subscribe(1, [[filter, qos]]))[0];
}

async function pub(c: RawClient, v: number, topic: string, qos: number, payload: string) {
  if (v === 5) await c.publish5({ topic, qos, packetId: 7, payload });
  else await c.publish({ topic, qos, packetId: 7, payload });
}

const recv = async (c: RawClient, v: number) =>
  v === 5 ? (await c.receive5()).text : (await c.receive()).text;

for (const v of [4, 5]) {
  Deno.test({
    name: `memory ${name(v)}: CONNECT, PINGREQ, DISCONNECT over an in-memory pair (ours)`,
    ignore: MOSQUITTO,
    async fn() {
      await using b = await startBroker();
      const c = await open(b, v, `mem-ping-${v}`);
      await c.send(pingreq());
      await c.expectPacket(TYPE.PINGRESP);
      await c.send(disconnect());
      await c.expectClosed();
    },
  });

  for (const qos of [0, 1, 2]) {
    Deno.test({
      name: `memory ${
        name(v)
      }: QoS ${qos} from a memory client to a memory and a TCP subscriber (ours)`,
      ignore: MOSQUITTO,
      async fn() {
        await using b = await startBroker();
        const m = await open(b, v, `mem-sub-${v}`);
        assert.equal(await sub(m, v, "mem/t", 2), 2);
        const tcp = await b.connectV(v, { clientId: `tcp-sub-${v}` }, "tcp");
        assert.equal(await sub(tcp, v, "mem/t", 2), 2);
        const p = await open(b, v, `mem-pub-${v}`);
        await pub(p, v, "mem/t", qos, `q${qos}`);
        assert.equal(await recv(m, v), `q${qos}`);
        assert.equal(await recv(tcp, v), `q${qos}`);
      },
    });
  }

  Deno.test({
    name: `memory ${
      name(v)
    }: a PUBREC for a QoS 1 message closes the connection [MQTT-4.8.0-1] (ours)`,
    ignore: MOSQUITTO,
    async fn() {
      await using b = await startBroker();
      const m = await open(b, v, `mem-viol-${v}`);
      await sub(m, v, "memv/t", 1);
      const p = await open(b, v, `mem-viol-pub-${v}`);
      await pub(p, v, "memv/t", 1, "x");
      const got = await m.expectPacket(TYPE.PUBLISH);
      const topicLength = (got.body[0] << 8) | got.body[1];
      await m.send(pubrec((got.body[2 + topicLength] << 8) | got.body[3 + topicLength]));
      await m.expectViolation(v, RC.PROTOCOL_ERROR);
    },
  });

  Deno.test({
    name: `memory ${name(v)}: takeover by a TCP client closes the memory connection (ours)`,
    ignore: MOSQUITTO,
    async fn() {
      await using b = await startBroker();
      const m = await open(b, v, `mem-take-${v}`);
      await b.connectV(v, { clientId: `mem-take-${v}` }, "tcp");
      if (v === 5) await m.expectDisconnect(RC.SESSION_TAKEN_OVER);
      else await m.expectClosed();
    },
  });

  Deno.test({
    name: `memory ${name(v)}: bytes fed one at a time still make a CONNECT (ours)`,
    ignore: MOSQUITTO,
    async fn() {
      await using b = await startBroker();
      const c = b.memoryClient("bytewise");
      const bytes = connect({ version: v, clientId: `bytewise-${v}` });
      for (const byte of bytes) await c.send(Uint8Array.of(byte));
      if (v === 5) assert.equal((await c.expectConnack5()).reasonCode, 0);
      else assert.equal((await c.expectConnack()).returnCode, 0);
    },
  });
}
