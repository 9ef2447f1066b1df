/**
 * Rate limits through the CLI, end to end: a client flooding QoS 0 PUBLISH as fast as it can is
 * throttled to `--rate-limit-messages` / `--rate-limit-bytes` (its reads pause; it is not
 * disconnected), its socket fills so that its own writes block (the broker does not take its
 * backlog into memory), and other clients on the same broker go on at full speed, each within
 * its own budget.
 *
 * Counts are compared, not durations: what the flooder got through against what it wrote and
 * against what its neighbours did meanwhile.
 *
 * Permissions of the broker: `--allow-net`.
 */
import assert from "node:assert/strict";
import { type RunningCli, scratchDir, startCli, within } from "./_security.ts";
import { parsePublish, raw, RawSocket, waitFor } from "./_util.ts";

const FLOOD_MS = 2_000;

/** A raw client without Nagle's delay, so round trips are not paced by delayed ACKs. */
async function open(port: number): Promise<RawSocket> {
  const socket = await RawSocket.open(port);
  (socket.conn as Deno.TcpConn).setNoDelay(true);
  return socket;
}

/** Subscribes to `filter` at QoS 0 and records when each message arrives and its size. */
async function counter(port: number, filter: string) {
  const socket = await open(port);
  assert.equal((await socket.connect({ clientId: "counter" }))[1], 0);
  assert.deepEqual(await socket.subscribe(1, [[filter, 0]]), [0]);
  const arrivals: [at: number, bytes: number][] = [];
  let stop = false;
  const loop = (async () => {
    while (!stop && !socket.eof) {
      try {
        arrivals.push([Date.now(), parsePublish(await socket.next(100)).payload.length]);
      } catch {
        // Nothing within 100 ms, or closed: check `stop`.
      }
    }
  })();
  return {
    arrivals,
    async close() {
      stop = true;
      await loop;
      await socket.close();
    },
  };
}

/**
 * A client that writes QoS 0 PUBLISH packets back to back for `FLOOD_MS`, 64 KiB at a time.
 * Reports how much it wrote and for how long its last write was blocked when the time was up.
 */
async function flood(port: number, payloadBytes: number) {
  const socket = await open(port);
  assert.equal((await socket.connect({ clientId: "flooder" }))[1], 0);
  const packet = raw.publish("flood/x", new Uint8Array(payloadBytes).fill(0x61));
  const perChunk = Math.max(1, Math.floor(65_536 / packet.length));
  const chunk = new Uint8Array(perChunk * packet.length);
  for (let i = 0; i < perChunk; i++) chunk.set(packet, i * packet.length);
  let written = 0;
  let lastProgress = Date.now();
  const end = Date.now() + FLOOD_MS;
  let pending: Promise<number> | undefined;
  while (Date.now() < end) {
    const write = socket.conn.write(chunk.subarray(written % chunk.length));
    pending = write;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const done = await Promise.race([
      write,
      new Promise<undefined>((resolve) =>
        timer = setTimeout(() => resolve(undefined), end - Date.now())
      ),
    ]);
    clearTimeout(timer);
    if (done === undefined) break; // still blocked when the time is up
    written += done;
    lastProgress = Date.now();
    pending = undefined;
  }
  return {
    socket,
    packetsWritten: Math.floor(written / packet.length),
    bytesWritten: written,
    blockedMs: pending === undefined ? 0 : Date.now() - lastProgress,
    /** Closes the socket; the blocked write, if any, fails. */
    async close() {
      const settled = pending?.catch(() => 0);
      await socket.close();
      await settled;
    },
  };
}

/**
 * `clients` clients, each publishing `perClient` QoS 1 messages to its own topic and receiving
 * them back at QoS 1, one round trip at a time (PUBLISH → PUBACK, PUBLISH → PUBACK).
 */
async function roundTrips(cli: RunningCli, port: number, clients: number, perClient: number) {
  const sockets = await Promise.all(
    Array.from({ length: clients }, async (_, i) => {
      const socket = await open(port);
      assert.equal((await socket.connect({ clientId: `rt-${i}` }))[1], 0);
      assert.deepEqual(await socket.subscribe(1, [[`rt/${i}`, 1]]), [1]);
      return socket;
    }),
  );
  let completed = 0;
  try {
    await within(
      cli,
      Promise.all(sockets.map(async (socket, i) => {
        for (let n = 1; n <= perClient; n++) {
          await socket.send(raw.publish(`rt/${i}`, `m${n}`, { qos: 1, packetId: n }));
          let acked = false;
          let delivered = false;
          while (!acked || !delivered) {
            const p = await socket.next();
            if (p.type === 4) {
              acked = true;
            } else {
              const message = parsePublish(p);
              assert.equal(message.payload, `m${n}`);
              await socket.send(raw.puback(message.packetId!));
              delivered = true;
            }
          }
          completed++;
        }
      })),
      20_000,
      `${clients * perClient} QoS 1 round trips`,
    );
  } finally {
    await Promise.all(sockets.map((s) => s.close()));
  }
  return completed;
}

/**
 * One flood against a broker started with `limitFlag limit`; `unit` says whether the limit
 * counts messages or payload bytes.
 */
async function floodScenario(limitFlag: string, limit: number, payloadBytes: number) {
  const unit = limitFlag === "--rate-limit-messages" ? "messages" : "bytes";
  await using dir = await scratchDir("ratelimit_");
  await using cli = await startCli(
    dir.path,
    ["--allow-net"],
    ["--port", "0", limitFlag, String(limit), "--log-level", "debug"],
    ["tcp"],
  );
  const port = cli.ports.tcp;
  const counted = await counter(port, "flood/#");
  const flooding = flood(port, payloadBytes);
  // While it floods, 40 other clients make 2 000 QoS 1 round trips between them: 50 each, what
  // --rate-limit-messages 50 allows at once.
  await waitFor(() => counted.arrivals.length > 0, 5_000, "the flood to start");
  const first = counted.arrivals[0][0];
  const completed = await roundTrips(cli, port, 40, 50);
  const floodedMeanwhile = counted.arrivals.length;
  const flooder = await flooding;
  const sum = (from: number, to: number) =>
    counted.arrivals.filter(([at]) => at >= first + from && at < first + to)
      .reduce((n, [, bytes]) => n + (unit === "messages" ? 1 : bytes), 0);
  const total = sum(0, Infinity);
  const steady = sum(1_000, 2_000 - 100); // past the initial bucket: the refill rate
  const perSecond = steady / 0.9;
  try {
    console.log(
      `${limitFlag} ${limit}: the flooder wrote ${flooder.packetsWritten} messages ` +
        `(${flooder.bytesWritten} bytes); ${total} ${unit} went through, ` +
        `${perSecond.toFixed(0)}/s after the first second; ${floodedMeanwhile} messages while ` +
        `the others made ${completed} round trips; its last write was blocked for ` +
        `${flooder.blockedMs} ms`,
    );
    assert.equal(completed, 2_000);
    assert.ok(floodedMeanwhile < completed / 4, "the neighbours were not held back");
    // Throttled to roughly the limit: the initial bucket, then the refill rate.
    assert.ok(
      perSecond >= limit * 0.5 && perSecond <= limit * 1.6,
      `${perSecond.toFixed(0)} ${unit}/s after the first second, limit ${limit}/s`,
    );
    const elapsedS = (counted.arrivals.at(-1)![0] - first) / 1000;
    assert.ok(total <= limit * (1 + elapsedS) * 1.25 + payloadBytes, `${total} ${unit} in all`);
    assert.ok(flooder.packetsWritten > counted.arrivals.length * 20, "the flooder tried hard");
    // Backpressure: its socket filled up and a write was blocked; the broker did not read the
    // backlog into memory (unthrottled, it would take hundreds of MB in 2 s).
    assert.ok(flooder.blockedMs >= 200, `a write was blocked at the end: ${flooder.blockedMs}`);
    assert.ok(flooder.bytesWritten < 64 * 1024 * 1024, `${flooder.bytesWritten} bytes written`);
    // Throttled, not disconnected.
    assert.equal(flooder.socket.eof, false, "the broker closed the flooder's connection");
    assert.doesNotMatch(cli.stderr(), /client "flooder" disconnected/);
  } finally {
    await flooder.close();
    await counted.close();
  }
  // Its backlog still waits in the broker's socket buffer, read at the limited rate, so its
  // close is seen only after that; shutting down ends it at once.
  assert.equal((await cli.stop()).code, 0);
}

Deno.test("rate limit: --rate-limit-messages 50 throttles a flooding client to ~50/s without disconnecting it; its neighbours run at full speed", async () => {
  await floodScenario("--rate-limit-messages", 50, 16);
});

Deno.test("rate limit: --rate-limit-bytes 16000 throttles a flooding client to ~16 kB/s of payload; its neighbours run at full speed", async () => {
  await floodScenario("--rate-limit-bytes", 16_000, 500);
});
