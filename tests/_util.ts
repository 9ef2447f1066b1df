/**
 * Small helpers shared by the API, CLI, interop and import tests: waiting for a condition with a
 * deadline, a free port, subprocesses with deadlines, looking up tools on PATH, and a minimal raw
 * MQTT 3.1.1 client (hand-built bytes, independent of `src/codec`).
 *
 * @module
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Resolves once `condition` returns true; rejects after `deadlineMs` naming `what`. Polls every
 * few milliseconds, so it waits exactly as long as needed, never a fixed time.
 */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  deadlineMs = 5_000,
  what = "condition",
): Promise<void> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > end) throw new Error(`Timed out after ${deadlineMs} ms waiting for ${what}`);
    await new Promise<void>((resolve) => setTimeout(resolve, 5));
  }
}

/** Rejects with a message naming `what` if `promise` does not settle within `deadlineMs`. */
export async function withDeadline<T>(
  promise: Promise<T>,
  deadlineMs: number,
  what: string,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`Timed out after ${deadlineMs} ms waiting for ${what}`)),
      deadlineMs,
    );
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A port that was free a moment ago on 127.0.0.1 (for programs that cannot be told port 0). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Whether something accepts TCP connections on 127.0.0.1:`port`. */
export async function isListening(port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

/** The absolute path of an executable found on PATH, or undefined. Synchronous, for `ignore:`. */
export function which(name: string): string | undefined {
  let path: string | undefined;
  try {
    path = Deno.env.get("PATH");
  } catch {
    return undefined;
  }
  for (const dir of (path ?? "").split(":")) {
    if (dir === "") continue;
    try {
      const info = Deno.statSync(`${dir}/${name}`);
      if (info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0) return `${dir}/${name}`;
    } catch {
      // Not in this directory.
    }
  }
  return undefined;
}

/** What a finished subprocess left. */
export interface RunResult {
  code: number;
  signal: Deno.Signal | null;
  stdout: string;
  stderr: string;
  stdoutBytes: Uint8Array;
}

/** Options of {@link run} and {@link spawn}. */
export interface RunOptions {
  /** Killed with SIGKILL after this long (the result then says so through `signal`). Default 20 s. */
  deadlineMs?: number;
  cwd?: string;
  env?: Record<string, string>;
  /** Bytes or text written to stdin, which is then closed. */
  stdin?: string | Uint8Array;
}

/** Runs a program to completion, killing it at the deadline. */
export async function run(
  cmd: string,
  args: string[],
  options: RunOptions = {},
): Promise<RunResult> {
  const process = spawn(cmd, args, options);
  return await process.finished;
}

/** A running subprocess whose output is collected as it comes. */
export interface Spawned {
  readonly child: Deno.ChildProcess;
  /** Everything read from stdout and stderr so far. */
  stdout(): string;
  stdoutBytes(): Uint8Array;
  stderr(): string;
  /** Resolves when `pattern` matches stdout or stderr (as chosen); rejects at the deadline. */
  waitForOutput(
    stream: "stdout" | "stderr",
    pattern: RegExp | string,
    deadlineMs?: number,
  ): Promise<void>;
  /** Sends a signal if the process is still running. */
  kill(signal?: Deno.Signal): void;
  /** Resolves once the process exited and both pipes were read to the end. */
  readonly finished: Promise<RunResult>;
}

/** Starts a program with piped stdout/stderr; it is SIGKILLed at the deadline. */
export function spawn(cmd: string, args: string[], options: RunOptions = {}): Spawned {
  const child = new Deno.Command(cmd, {
    args,
    cwd: options.cwd,
    env: options.env,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let exited = false;
  const out: Uint8Array[] = [];
  const err: Uint8Array[] = [];
  let outLength = 0;
  const drain = async (stream: ReadableStream<Uint8Array>, into: Uint8Array[]) => {
    for await (const chunk of stream) {
      into.push(chunk);
      if (into === out) outLength += chunk.length;
    }
  };
  const draining = Promise.all([drain(child.stdout, out), drain(child.stderr, err)]);
  if (options.stdin !== undefined) {
    const data = typeof options.stdin === "string" ? encoder.encode(options.stdin) : options.stdin;
    const writer = child.stdin.getWriter();
    writer.write(data).then(() => writer.close()).catch(() => {
      // The program exited without reading its stdin: nothing to do.
    });
  }
  const timer = setTimeout(() => {
    if (!exited) {
      try {
        child.kill("SIGKILL");
      } catch {
        // Exited meanwhile.
      }
    }
  }, options.deadlineMs ?? 20_000);
  const bytesOf = (chunks: Uint8Array[]) => {
    const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let offset = 0;
    for (const c of chunks) {
      all.set(c, offset);
      offset += c.length;
    }
    return all;
  };
  const finished = (async () => {
    const status = await child.status;
    exited = true;
    clearTimeout(timer);
    await draining;
    const stdoutBytes = bytesOf(out);
    return {
      code: status.code,
      signal: status.signal,
      stdout: decoder.decode(stdoutBytes),
      stderr: decoder.decode(bytesOf(err)),
      stdoutBytes,
    };
  })();
  const text = (chunks: Uint8Array[]) => decoder.decode(bytesOf(chunks));
  return {
    child,
    stdout: () => text(out),
    stdoutBytes: () => bytesOf(out),
    stderr: () => text(err),
    async waitForOutput(stream, pattern, deadlineMs = 10_000) {
      const chunks = stream === "stdout" ? out : err;
      const matches = () => {
        const s = text(chunks);
        return typeof pattern === "string" ? s.includes(pattern) : pattern.test(s);
      };
      await waitFor(
        () => {
          if (matches()) return true;
          if (exited) {
            throw new Error(
              `${cmd} exited before printing ${pattern} on ${stream}; stderr: ${text(err)}`,
            );
          }
          return false;
        },
        deadlineMs,
        `${pattern} on ${cmd}'s ${stream} (so far: ${JSON.stringify(text(chunks).slice(-500))})`,
      );
    },
    kill(signal: Deno.Signal = "SIGTERM") {
      if (exited) return;
      try {
        child.kill(signal);
      } catch {
        // Exited meanwhile.
      }
    },
    finished,
  };
}

/** Reads exactly `n` bytes (never more: the rest stays in the kernel); null if the stream ends. */
export async function readExactly(conn: Deno.Conn, n: number): Promise<Uint8Array | null> {
  const out = new Uint8Array(n);
  let offset = 0;
  while (offset < n) {
    const got = await conn.read(out.subarray(offset));
    if (got === null) return null;
    offset += got;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// A minimal raw MQTT 3.1.1 client. Bytes are built here by hand on purpose.

/** Big-endian 16-bit length/packet id. */
function u16(n: number): number[] {
  return [(n >> 8) & 0xff, n & 0xff];
}

/** A length-prefixed UTF-8 string or byte string. */
function str(s: string | Uint8Array): number[] {
  const b = typeof s === "string" ? encoder.encode(s) : s;
  return [...u16(b.length), ...b];
}

/** One packet: fixed header with the remaining length, then the body. */
export function rawPacket(firstByte: number, body: number[] | Uint8Array): Uint8Array {
  const length: number[] = [];
  let n = body.length;
  do {
    let digit = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) digit |= 0x80;
    length.push(digit);
  } while (n > 0);
  return Uint8Array.from([firstByte, ...length, ...body]);
}

/** Fields of a hand-built CONNECT. */
export interface RawConnect {
  clientId?: string;
  cleanSession?: boolean;
  keepAlive?: number;
  username?: string;
  password?: string;
  will?: { topic: string; payload: string; qos?: 0 | 1 | 2; retain?: boolean };
}

/** Hand-built packets. */
export const raw = {
  connect(o: RawConnect = {}): Uint8Array {
    let flags = o.cleanSession === false ? 0 : 0x02;
    if (o.will) flags |= 0x04 | ((o.will.qos ?? 0) << 3) | (o.will.retain ? 0x20 : 0);
    if (o.username !== undefined) flags |= 0x80;
    if (o.password !== undefined) flags |= 0x40;
    const body = [...str("MQTT"), 4, flags, ...u16(o.keepAlive ?? 0), ...str(o.clientId ?? "")];
    if (o.will) body.push(...str(o.will.topic), ...str(o.will.payload));
    if (o.username !== undefined) body.push(...str(o.username));
    if (o.password !== undefined) body.push(...str(o.password));
    return rawPacket(0x10, body);
  },
  subscribe(packetId: number, filters: [string, number][]): Uint8Array {
    return rawPacket(0x82, [...u16(packetId), ...filters.flatMap(([f, q]) => [...str(f), q])]);
  },
  publish(
    topic: string,
    payload: string | Uint8Array,
    o: { qos?: 0 | 1 | 2; packetId?: number; retain?: boolean } = {},
  ): Uint8Array {
    const qos = o.qos ?? 0;
    const body = [...str(topic), ...(qos > 0 ? u16(o.packetId ?? 1) : [])];
    const p = typeof payload === "string" ? encoder.encode(payload) : payload;
    return rawPacket(0x30 | (qos << 1) | (o.retain ? 1 : 0), [...body, ...p]);
  },
  puback(packetId: number): Uint8Array {
    return rawPacket(0x40, u16(packetId));
  },
  pingreq(): Uint8Array {
    return Uint8Array.of(0xc0, 0x00);
  },
  disconnect(): Uint8Array {
    return Uint8Array.of(0xe0, 0x00);
  },
};

/** A packet as read from the wire: type (high nibble), flags (low nibble) and body. */
export interface ReadPacket {
  type: number;
  flags: number;
  body: Uint8Array;
}

/** A PUBLISH taken apart. */
export interface ReadPublish {
  topic: string;
  payload: string;
  qos: number;
  retain: boolean;
  dup: boolean;
  packetId?: number;
}

/** Takes a PUBLISH packet apart. */
export function parsePublish(p: ReadPacket): ReadPublish {
  if (p.type !== 3) throw new Error(`expected PUBLISH, got type ${p.type}`);
  const qos = (p.flags >> 1) & 3;
  const topicLength = (p.body[0] << 8) | p.body[1];
  const topic = decoder.decode(p.body.subarray(2, 2 + topicLength));
  let offset = 2 + topicLength;
  let packetId: number | undefined;
  if (qos > 0) {
    packetId = (p.body[offset] << 8) | p.body[offset + 1];
    offset += 2;
  }
  return {
    topic,
    payload: decoder.decode(p.body.subarray(offset)),
    qos,
    retain: (p.flags & 1) === 1,
    dup: (p.flags & 8) === 8,
    packetId,
  };
}

/**
 * A TCP connection speaking hand-built MQTT. A background loop reads into a buffer (unless
 * `paused`, which leaves bytes in the kernel: a frozen subscriber); `next()` takes one packet.
 */
export class RawSocket {
  readonly conn: Deno.Conn;
  #buffer = new Uint8Array(0);
  #eof = false;
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;

  private constructor(conn: Deno.Conn, read: boolean) {
    this.conn = conn;
    if (read) this.startReading();
  }

  /** Connects to 127.0.0.1:`port`; with `read: false` nothing is read until `startReading()`. */
  static async open(port: number, options: { read?: boolean } = {}): Promise<RawSocket> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    return new RawSocket(conn, options.read ?? true);
  }

  /** Wraps a connection already open; nothing is read until `startReading()`. */
  static wrap(conn: Deno.Conn): RawSocket {
    return new RawSocket(conn, false);
  }

  /** Starts the background read loop (once). */
  startReading(): void {
    this.#loop ??= (async () => {
      const chunk = new Uint8Array(64 * 1024);
      try {
        for (;;) {
          const n = await this.conn.read(chunk);
          if (n === null) break;
          const next = new Uint8Array(this.#buffer.length + n);
          next.set(this.#buffer);
          next.set(chunk.subarray(0, n), this.#buffer.length);
          this.#buffer = next;
          this.#wake?.();
        }
      } catch {
        // Reset or closed by us: both end the stream.
      }
      this.#eof = true;
      this.#wake?.();
    })();
  }

  /** Whether the peer closed the connection (all buffered packets may still be read). */
  get eof(): boolean {
    return this.#eof;
  }

  /** Writes bytes (all of them). */
  async send(bytes: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < bytes.length) offset += await this.conn.write(bytes.subarray(offset));
  }

  #take(): ReadPacket | undefined {
    const b = this.#buffer;
    if (b.length < 2) return undefined;
    let length = 0;
    let multiplier = 1;
    let i = 1;
    for (;; i++) {
      if (i >= b.length) return undefined;
      length += (b[i] & 0x7f) * multiplier;
      multiplier *= 128;
      if ((b[i] & 0x80) === 0) break;
    }
    const end = i + 1 + length;
    if (b.length < end) return undefined;
    const packet = { type: b[0] >> 4, flags: b[0] & 0x0f, body: b.slice(i + 1, end) };
    this.#buffer = b.slice(end);
    return packet;
  }

  /** The next packet; rejects at the deadline or if the connection ends first. */
  async next(deadlineMs = 5_000): Promise<ReadPacket> {
    const end = Date.now() + deadlineMs;
    for (;;) {
      const packet = this.#take();
      if (packet !== undefined) return packet;
      if (this.#eof) throw new Error("connection closed while waiting for a packet");
      const left = end - Date.now();
      if (left <= 0) throw new Error(`no packet within ${deadlineMs} ms`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
      this.#wake = undefined;
    }
  }

  /** Resolves true once the peer closed the connection, false at the deadline. */
  async closedByPeer(deadlineMs = 5_000): Promise<boolean> {
    try {
      await waitFor(() => this.#eof, deadlineMs, "the broker to close the connection");
      return true;
    } catch {
      return false;
    }
  }

  /** Sends CONNECT and returns the CONNACK's [sessionPresent, returnCode]. */
  async connect(o: RawConnect = {}): Promise<[boolean, number]> {
    await this.send(raw.connect(o));
    const p = await this.next();
    if (p.type !== 2) throw new Error(`expected CONNACK, got type ${p.type}`);
    return [(p.body[0] & 1) === 1, p.body[1]];
  }

  /** Sends SUBSCRIBE and returns the SUBACK's return codes. */
  async subscribe(packetId: number, filters: [string, number][]): Promise<number[]> {
    await this.send(raw.subscribe(packetId, filters));
    const p = await this.next();
    if (p.type !== 9) throw new Error(`expected SUBACK, got type ${p.type}`);
    return [...p.body.subarray(2)];
  }

  /** Closes the socket and waits for the read loop to end. Idempotent. */
  async close(): Promise<void> {
    try {
      this.conn.close();
    } catch {
      // Closed already.
    }
    await this.#loop;
  }
}
