/**
 * The floor: the least MQTT a Deno program must do for the `latency` and `conns` scenarios, to
 * tell what Deno's runtime costs from what the broker's code adds. Not a broker: QoS 0 only, one
 * topic space (every PUBLISH goes to every subscriber, bytes as received), no sessions, no
 * limits, no validation.
 *
 * @example Bench it like any broker
 * ```sh
 * deno task bench --scenarios latency,conns --broker-cmd \
 *   "deno run --allow-net bench/floor.ts --port {PORT} --flush immediate"
 * ```
 *
 * `--flush direct`: write at once, one write() per read that produced output (no coalescing
 * across connections); `immediate`: coalesce per event-loop turn with one setImmediate for the
 * whole process, as the broker does; `microtask`: coalesce with queueMicrotask.
 *
 * @module
 */
import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    port: { type: "string" },
    flush: { type: "string" },
  },
});
const port = Number(values.port ?? 1883);
const flushMode = values.flush ?? "immediate";
if (!["direct", "immediate", "microtask"].includes(flushMode)) {
  console.error(`floor: --flush must be direct, immediate or microtask, got ${flushMode}`);
  Deno.exit(2);
}

const CONNACK = new Uint8Array([0x20, 2, 0, 0]);
const PINGRESP = new Uint8Array([0xd0, 0]);

class Client {
  readonly conn: Deno.Conn;
  chunks: Uint8Array[] = [];
  queued = 0;
  writing = false;
  dirty = false;
  constructor(conn: Deno.Conn) {
    this.conn = conn;
  }

  send(bytes: Uint8Array): void {
    this.chunks.push(bytes);
    this.queued += bytes.length;
    if (this.writing || this.dirty) return;
    if (flushMode === "direct") this.flush();
    else schedule(this);
  }

  flush(): void {
    this.dirty = false;
    if (this.writing || this.chunks.length === 0) return;
    let data: Uint8Array;
    if (this.chunks.length === 1) data = this.chunks[0];
    else {
      data = new Uint8Array(this.queued);
      let at = 0;
      for (const c of this.chunks) {
        data.set(c, at);
        at += c.length;
      }
    }
    this.chunks = [];
    this.queued = 0;
    this.writing = true;
    this.#write(data);
  }

  #write(data: Uint8Array): void {
    this.conn.write(data).then((n) => {
      if (n < data.length) return this.#write(data.subarray(n));
      this.writing = false;
      if (this.chunks.length > 0) this.flush();
    }, () => this.close());
  }

  close(): void {
    subscribers.delete(this);
    try {
      this.conn.close();
    } catch {
      // closed already
    }
  }
}

const subscribers = new Set<Client>();
let dirty: Client[] = [];
let scheduled = false;
function flushAll(): void {
  scheduled = false;
  const list = dirty;
  dirty = [];
  for (const c of list) c.flush();
}
function schedule(c: Client): void {
  c.dirty = true;
  dirty.push(c);
  if (scheduled) return;
  scheduled = true;
  if (flushMode === "microtask") queueMicrotask(flushAll);
  else setImmediate(flushAll);
}

async function serve(conn: Deno.Conn): Promise<void> {
  (conn as Deno.TcpConn).setNoDelay(true);
  const client = new Client(conn);
  let filled = false;
  // small while idle (10 000 idle clients), ×4 up to 64 KiB while reads fill it, as the broker does
  let buf = new Uint8Array(64);
  let have = 0;
  try {
    for (;;) {
      if (have === buf.length || (have === 0 && buf.length < 64 * 1024 && filled)) {
        const bigger = new Uint8Array(Math.max(buf.length * 4, have * 2));
        bigger.set(buf.subarray(0, have));
        buf = bigger;
      }
      const n = await conn.read(have === 0 ? buf : buf.subarray(have));
      if (n === null) break;
      filled = have + n === buf.length;
      have += n;
      let pos = 0;
      while (have - pos >= 2) {
        let len = 0, mul = 1, i = pos + 1;
        for (; i < have && i < pos + 5; i++) {
          len += (buf[i] & 0x7f) * mul;
          mul *= 128;
          if ((buf[i] & 0x80) === 0) break;
        }
        if (i >= have) break;
        const total = i + 1 - pos + len;
        if (have - pos < total) break;
        const type = buf[pos] >> 4;
        if (type === 3) {
          const packet = buf.slice(pos, pos + total);
          for (const s of subscribers) s.send(packet);
        } else if (type === 1) {
          client.send(CONNACK);
        } else if (type === 8) {
          subscribers.add(client);
          client.send(new Uint8Array([0x90, 3, buf[i + 1], buf[i + 2], 0]));
        } else if (type === 12) {
          client.send(PINGRESP);
        } else if (type === 14) {
          client.close();
          return;
        }
        pos += total;
      }
      buf.copyWithin(0, pos, have);
      have -= pos;
    }
  } catch {
    // reset by the peer
  }
  client.close();
}

// exit (not die) on SIGTERM, so that `--cpu-prof` writes its profile
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
const listener = Deno.listen({ hostname: "127.0.0.1", port });
for await (const conn of listener) serve(conn);
