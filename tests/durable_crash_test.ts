/**
 * The durability promise under SIGKILL: once the broker (cli.ts with `--data-dir`) has sent
 * PUBACK for a QoS 1 message to a persistent session, killing the broker with SIGKILL and
 * starting it again on the same directory loses nothing: the subscriber receives every
 * acknowledged message (QoS 1 allows duplicates; they are counted, not refused).
 *
 * `DURABLE_CRASH_SYNC=off` runs the same tests with `--sync off`, which does not make this
 * promise (see `SyncMode` in src/persistence/sqlite.ts); it is for showing what the test catches.
 */
import assert from "node:assert/strict";
import { type CliBroker, startCli, withTempDir } from "./_durable.ts";
import * as r from "./_raw.ts";
import { ackId, describe, parsePublish, RawClient, TYPE } from "./_raw.ts";

/** PUBLISHes the publisher keeps unacknowledged at a time. */
const WINDOW = 64;
/** The broker is killed once this many PUBACKs have arrived (mid-stream: WINDOW are in flight). */
const KILL_AFTER = 400;
/** The online subscriber holds back this many PUBACKs (below maxInflight, 32, or it would stall). */
const SUBSCRIBER_LAG = 12;

function syncMode(): string {
  try {
    return Deno.env.get("DURABLE_CRASH_SYNC") ?? "normal";
  } catch {
    return "normal"; // no --allow-env: the default
  }
}
const SYNC = syncMode();

function start(dir: string): Promise<CliBroker> {
  return startCli(dir, ["--sync", SYNC]);
}

function seqOf(payload: string): number {
  const seq = Number(payload);
  assert.ok(
    Number.isInteger(seq) && seq > 0,
    `payload ${JSON.stringify(payload)} is a sequence number`,
  );
  return seq;
}

/**
 * Publishes QoS 1 messages `1, 2, 3…` (as text payloads on `c/s`) with WINDOW in flight, until
 * the connection ends; SIGKILLs the broker once KILL_AFTER PUBACKs are in. Returns the sequence
 * numbers acknowledged and how many were sent.
 */
async function streamUntilKilled(broker: CliBroker): Promise<{ acked: Set<number>; sent: number }> {
  const pub = await RawClient.connect(broker.port, "publisher");
  const acked = new Set<number>();
  const inflight = new Map<number, number>(); // packet id → seq
  let seq = 0;
  let killed = false;
  try {
    await pub.handshake({ clientId: "crash-pub" });
    const fill = async () => {
      const packets = [];
      while (inflight.size < WINDOW) {
        seq++;
        const packetId = (seq % 65535) + 1;
        inflight.set(packetId, seq);
        packets.push(r.publish({ topic: "c/s", payload: String(seq), qos: 1, packetId }));
      }
      if (packets.length > 0) await pub.trySend(r.concat(...packets));
    };
    await fill();
    for (;;) {
      let packet;
      try {
        packet = await pub.nextPacket(10_000);
      } catch (error) {
        if (killed) break; // the broker is gone: every PUBACK it sent has been read
        throw error;
      }
      assert.equal(packet.type, TYPE.PUBACK, `publisher got ${describe(packet)}`);
      const id = ackId(packet);
      const acknowledged = inflight.get(id);
      assert.ok(acknowledged !== undefined, `PUBACK for unknown packet id ${id}`);
      inflight.delete(id);
      acked.add(acknowledged);
      if (!killed && acked.size >= KILL_AFTER) {
        killed = true;
        broker.process.kill("SIGKILL");
      }
      await fill();
    }
  } finally {
    await pub.close();
  }
  const status = await broker.process.finished;
  assert.equal(status.signal, "SIGKILL", `the broker was killed, not ended: ${status.stderr}`);
  return { acked, sent: seq };
}

/** What a subscriber received. */
interface Receipt {
  seq: number;
  dup: boolean;
  packetId: number;
}

/**
 * Reconnects the persistent subscriber and receives (acknowledging each) until every seq in
 * `needed` has arrived. Returns everything received.
 */
async function receiveAfterRestart(
  port: number,
  clientId: string,
  needed: Set<number>,
): Promise<Receipt[]> {
  const sub = await RawClient.connect(port, "subscriber after restart");
  try {
    const connack = await sub.handshake({ clientId, cleanSession: false });
    assert.equal(connack.sessionPresent, true, "the session survived the crash");
    const missing = new Set(needed);
    const got: Receipt[] = [];
    while (missing.size > 0) {
      let packet;
      try {
        packet = await sub.nextPacket(5_000);
      } catch (error) {
        const sample = [...missing].sort((a, b) => a - b).slice(0, 20);
        throw new Error(
          `${missing.size} acknowledged messages never arrived after the restart, e.g. ${sample} ` +
            `(received ${got.length}): ${(error as Error).message}`,
        );
      }
      const m = parsePublish(packet);
      assert.equal(m.qos, 1);
      const seq = seqOf(m.text);
      got.push({ seq, dup: m.dup, packetId: m.packetId! });
      missing.delete(seq);
      await sub.send(r.puback(m.packetId!));
    }
    return got;
  } finally {
    await sub.close();
  }
}

function duplicates(seqs: number[]): number {
  return seqs.length - new Set(seqs).size;
}

Deno.test(`durable crash (sync ${SYNC}): every PUBACKed QoS 1 message reaches an offline persistent subscriber after SIGKILL and restart`, async () => {
  await withTempDir(async (dir) => {
    let broker = await start(dir);
    const sub = await RawClient.connect(broker.port, "subscriber");
    await sub.handshake({ clientId: "crash-sub", cleanSession: false });
    assert.deepEqual(await sub.subscribe(1, [["c/#", 1]]), [1]);
    await sub.send(r.disconnect());
    await sub.expectClosed();
    await sub.close();

    const { acked, sent } = await streamUntilKilled(broker);
    assert.ok(acked.size >= KILL_AFTER);

    broker = await start(dir);
    try {
      const got = await receiveAfterRestart(broker.port, "crash-sub", acked);
      const seqs = got.map((g) => g.seq);
      assert.ok(seqs.every((s) => s <= sent), "nothing that was never sent");
      // Queued for an offline session, never sent before: each exactly once, in order, DUP=0.
      assert.equal(duplicates(seqs), 0);
      assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), "in publish order [MQTT-4.6.0-2]");
      assert.ok(got.every((g) => !g.dup));
      console.log(
        `  sync ${SYNC}, offline subscriber: ${sent} sent, ${acked.size} PUBACKed before the kill, ` +
          `${got.length} received after the restart, ${duplicates(seqs)} of them duplicates`,
      );
    } finally {
      broker.process.kill("SIGTERM");
      const end = await broker.process.finished;
      assert.equal(end.code, 0, end.stderr);
    }
  });
});

Deno.test(`durable crash (sync ${SYNC}): with the subscriber online, messages delivered but not acknowledged come again after SIGKILL and restart [MQTT-4.4.0-1]`, async () => {
  await withTempDir(async (dir) => {
    let broker = await start(dir);
    const sub = await RawClient.connect(broker.port, "online subscriber");
    await sub.handshake({ clientId: "crash-sub-online", cleanSession: false });
    assert.deepEqual(await sub.subscribe(1, [["c/#", 1]]), [1]);

    // Receives as the stream runs, acknowledging each PUBLISH only once SUBSCRIBER_LAG newer
    // ones have arrived: at the kill, the last ones are delivered but not acknowledged.
    const subscriberAcked = new Set<number>();
    const pending: Receipt[] = [];
    let receivedBefore = 0;
    const receiving = (async () => {
      for (;;) {
        let packet;
        try {
          packet = await sub.nextPacket(10_000);
        } catch {
          return; // the broker was killed
        }
        const m = parsePublish(packet);
        receivedBefore++;
        pending.push({ seq: seqOf(m.text), dup: m.dup, packetId: m.packetId! });
        while (pending.length > SUBSCRIBER_LAG) {
          const oldest = pending.shift()!;
          if (!(await sub.trySend(r.puback(oldest.packetId)))) return;
          subscriberAcked.add(oldest.seq);
        }
      }
    })();
    const { acked, sent } = await streamUntilKilled(broker);
    await receiving;
    await sub.close();
    assert.ok(pending.length > 0, "some messages were delivered and not acknowledged at the kill");

    broker = await start(dir);
    try {
      // Everything the publisher had a PUBACK for and the subscriber had not acknowledged.
      const needed = new Set([...acked].filter((s) => !subscriberAcked.has(s)));
      const got = await receiveAfterRestart(broker.port, "crash-sub-online", needed);
      const seqs = got.map((g) => g.seq);
      assert.ok(seqs.every((s) => s <= sent), "nothing that was never sent");
      // Those delivered before the crash and not acknowledged come again, marked DUP=1 with
      // their packet ids: their "sent" state reached the store before the PUBLISH left (the
      // store writes its batch before the connections write theirs in the same turn).
      const again = new Map(got.map((g) => [g.seq, g]));
      for (const p of pending) {
        if (!acked.has(p.seq)) continue;
        assert.equal(again.get(p.seq)?.dup, true, `seq ${p.seq} resent with DUP=1`);
        assert.equal(again.get(p.seq)?.packetId, p.packetId, `seq ${p.seq} resent with its id`);
      }
      const receivedEarlier = new Set([...subscriberAcked, ...pending.map((p) => p.seq)]);
      const repeated = seqs.filter((s) => receivedEarlier.has(s)).length + duplicates(seqs);
      console.log(
        `  sync ${SYNC}, online subscriber: ${sent} sent, ${acked.size} PUBACKed before the kill, ` +
          `${receivedBefore} delivered before it (${subscriberAcked.size} acknowledged, ` +
          `${pending.length} not), ${got.length} received after the restart, ` +
          `${repeated} of them duplicates`,
      );
    } finally {
      broker.process.kill("SIGTERM");
      const end = await broker.process.finished;
      assert.equal(end.code, 0, end.stderr);
    }
  });
});
