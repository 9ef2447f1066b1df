/**
 * Hand-written MQTT 3.1.1 bytes and a raw TCP client for the protocol tests.
 *
 * Deliberately independent of `src/codec`: every byte is built here by hand and every answer is
 * split and parsed here by hand, so that the tests check the broker's codec instead of trusting it.
 *
 * @module
 */
import assert from "node:assert/strict";

/** Numeric control packet types (high nibble of the first byte). */
export const TYPE = {
  CONNECT: 1,
  CONNACK: 2,
  PUBLISH: 3,
  PUBACK: 4,
  PUBREC: 5,
  PUBREL: 6,
  PUBCOMP: 7,
  SUBSCRIBE: 8,
  SUBACK: 9,
  UNSUBSCRIBE: 10,
  UNSUBACK: 11,
  PINGREQ: 12,
  PINGRESP: 13,
  DISCONNECT: 14,
} as const;

const TYPE_NAMES = [
  "RESERVED0",
  "CONNECT",
  "CONNACK",
  "PUBLISH",
  "PUBACK",
  "PUBREC",
  "PUBREL",
  "PUBCOMP",
  "SUBSCRIBE",
  "SUBACK",
  "UNSUBSCRIBE",
  "UNSUBACK",
  "PINGREQ",
  "PINGRESP",
  "DISCONNECT",
  "RESERVED15",
];

/** Name of a control packet type, for messages. */
export function typeName(type: number): string {
  return TYPE_NAMES[type] ?? `TYPE${type}`;
}

const encoder = new TextEncoder();

/** Bytes of a string or byte array. */
export function bytes(data: string | Uint8Array | number[]): Uint8Array {
  if (typeof data === "string") return encoder.encode(data);
  return data instanceof Uint8Array ? data : Uint8Array.from(data);
}

/** Concatenates byte arrays. */
export function concat(...parts: (Uint8Array | number[])[]): Uint8Array {
  const arrays = parts.map((p) => bytes(p));
  const out = new Uint8Array(arrays.reduce((n, a) => n + a.length, 0));
  let offset = 0;
  for (const a of arrays) {
    out.set(a, offset);
    offset += a.length;
  }
  return out;
}

/** A big-endian 16-bit integer. */
export function u16(n: number): Uint8Array {
  return Uint8Array.of((n >> 8) & 0xff, n & 0xff);
}

/** A length-prefixed string (or raw bytes, to build invalid UTF-8 on purpose). */
export function str(s: string | Uint8Array): Uint8Array {
  const b = bytes(s);
  return concat(u16(b.length), b);
}

/** The variable-length "remaining length" encoding (1 to 4 bytes). */
export function remainingLength(n: number): Uint8Array {
  const out: number[] = [];
  do {
    let digit = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) digit |= 0x80;
    out.push(digit);
  } while (n > 0);
  return Uint8Array.from(out);
}

/** A whole packet: first byte from type and flags, remaining length computed from the body. */
export function packet(
  type: number,
  flags: number,
  ...body: (Uint8Array | number[])[]
): Uint8Array {
  const b = concat(...body);
  return concat([((type & 0x0f) << 4) | (flags & 0x0f)], remainingLength(b.length), b);
}

/** The will of a CONNECT. */
export interface RawWill {
  topic: string;
  payload?: string | Uint8Array;
  qos?: number;
  retain?: boolean;
}

/** Fields of a CONNECT; anything can be set to a wrong value on purpose. */
export interface ConnectOptions {
  clientId?: string;
  cleanSession?: boolean;
  /** Seconds; default 0 (off) so that slow test machines never trip it. */
  keepAlive?: number;
  will?: RawWill;
  username?: string;
  password?: string | Uint8Array;
  protocolName?: string;
  protocolLevel?: number;
  /** Replaces the computed connect flags byte. The payload still follows the real fields. */
  flagsOverride?: number;
}

/** A CONNECT packet. */
export function connect(o: ConnectOptions = {}): Uint8Array {
  const cleanSession = o.cleanSession ?? true;
  let flags = 0;
  if (o.username !== undefined) flags |= 0x80;
  if (o.password !== undefined) flags |= 0x40;
  if (o.will) {
    flags |= 0x04 | ((o.will.qos ?? 0) & 0x03) << 3;
    if (o.will.retain) flags |= 0x20;
  }
  if (cleanSession) flags |= 0x02;
  if (o.flagsOverride !== undefined) flags = o.flagsOverride;
  const parts: Uint8Array[] = [
    str(o.protocolName ?? "MQTT"),
    Uint8Array.of(o.protocolLevel ?? 4, flags),
    u16(o.keepAlive ?? 0),
    str(o.clientId ?? ""),
  ];
  if (o.will) parts.push(str(o.will.topic), str(bytes(o.will.payload ?? "")));
  if (o.username !== undefined) parts.push(str(o.username));
  if (o.password !== undefined) parts.push(str(bytes(o.password)));
  return packet(TYPE.CONNECT, 0, ...parts);
}

/** Fields of a PUBLISH; `qos` 3 and `packetId` 0 are allowed on purpose. */
export interface PublishOptions {
  /** A string, or raw bytes to send invalid UTF-8. */
  topic: string | Uint8Array;
  payload?: string | Uint8Array;
  qos?: number;
  retain?: boolean;
  dup?: boolean;
  /** Required by the standard when qos > 0; omitted from the bytes when qos is 0. */
  packetId?: number;
}

/** A PUBLISH packet. */
export function publish(o: PublishOptions): Uint8Array {
  const qos = o.qos ?? 0;
  const flags = (o.dup ? 0x08 : 0) | ((qos & 0x03) << 1) | (o.retain ? 0x01 : 0);
  const parts = [str(o.topic)];
  if (qos > 0) parts.push(u16(o.packetId ?? 1));
  parts.push(bytes(o.payload ?? ""));
  return packet(TYPE.PUBLISH, flags, ...parts);
}

/** A PUBACK. */
export function puback(packetId: number): Uint8Array {
  return packet(TYPE.PUBACK, 0, u16(packetId));
}

/** A PUBREC. */
export function pubrec(packetId: number): Uint8Array {
  return packet(TYPE.PUBREC, 0, u16(packetId));
}

/** A PUBREL; its fixed header flags must be 0b0010 [MQTT-3.6.1-1], so `flags` is for breaking it. */
export function pubrel(packetId: number, flags = 0x02): Uint8Array {
  return packet(TYPE.PUBREL, flags, u16(packetId));
}

/** A PUBCOMP. */
export function pubcomp(packetId: number): Uint8Array {
  return packet(TYPE.PUBCOMP, 0, u16(packetId));
}

/** A topic filter with its requested QoS: `["a/+", 1]`. */
export type RawSubscription = [filter: string | Uint8Array, qos: number];

/** A SUBSCRIBE; flags must be 0b0010 [MQTT-3.8.1-1]. */
export function subscribe(packetId: number, subs: RawSubscription[], flags = 0x02): Uint8Array {
  return packet(
    TYPE.SUBSCRIBE,
    flags,
    u16(packetId),
    ...subs.map(([filter, qos]) => concat(str(filter), [qos])),
  );
}

/** An UNSUBSCRIBE; flags must be 0b0010 [MQTT-3.10.1-1]. */
export function unsubscribe(packetId: number, filters: string[], flags = 0x02): Uint8Array {
  return packet(TYPE.UNSUBSCRIBE, flags, u16(packetId), ...filters.map((f) => str(f)));
}

/** A PINGREQ. */
export function pingreq(): Uint8Array {
  return packet(TYPE.PINGREQ, 0);
}

/** A DISCONNECT. */
export function disconnect(): Uint8Array {
  return packet(TYPE.DISCONNECT, 0);
}

// ---------------------------------------------------------------------------------------------
// Reading

/** One packet as it came off the wire: fixed header split, body untouched. */
export interface RawPacket {
  type: number;
  flags: number;
  body: Uint8Array;
}

/** Describes a packet for assertion messages. */
export function describe(p: RawPacket): string {
  let extra = "";
  if (p.type === TYPE.PUBLISH) {
    try {
      const m = parsePublish(p);
      extra = ` topic=${JSON.stringify(m.topic)} qos=${m.qos} retain=${m.retain} dup=${m.dup}` +
        (m.packetId !== undefined ? ` id=${m.packetId}` : "") +
        ` payload=${JSON.stringify(m.text)}`;
    } catch {
      extra = " (unparsable)";
    }
  } else if (p.body.length <= 16) {
    extra = ` body=[${Array.from(p.body).join(",")}]`;
  }
  return `${typeName(p.type)}(flags=${p.flags}${extra})`;
}

/** Splits a byte stream into packets by fixed header and remaining length. */
export class PacketSplitter {
  #buf: Uint8Array = new Uint8Array(0);

  /** Adds bytes; returns the packets now complete. Throws on a remaining length over 4 bytes. */
  push(chunk: Uint8Array): RawPacket[] {
    this.#buf = this.#buf.length ? concat(this.#buf, chunk) : chunk.slice();
    const out: RawPacket[] = [];
    while (this.#buf.length >= 2) {
      let length = 0;
      let multiplier = 1;
      let i = 1;
      let complete = false;
      for (; i < this.#buf.length; i++) {
        if (i > 4) throw new Error("remaining length exceeds 4 bytes");
        length += (this.#buf[i] & 0x7f) * multiplier;
        multiplier *= 128;
        if ((this.#buf[i] & 0x80) === 0) {
          complete = true;
          break;
        }
      }
      if (!complete) break;
      const start = i + 1;
      if (this.#buf.length < start + length) break;
      out.push({
        type: this.#buf[0] >> 4,
        flags: this.#buf[0] & 0x0f,
        body: this.#buf.slice(start, start + length),
      });
      this.#buf = this.#buf.subarray(start + length);
    }
    return out;
  }
}

/** A CONNACK, checked for its fixed layout [MQTT-3.2.2-1]. */
export interface Connack {
  sessionPresent: boolean;
  returnCode: number;
}

/** Parses a CONNACK and checks its fixed header flags, length and reserved bits. */
export function parseConnack(p: RawPacket): Connack {
  assert.equal(p.type, TYPE.CONNACK, `expected CONNACK, got ${describe(p)}`);
  assert.equal(p.flags, 0, "CONNACK fixed header flags must be 0");
  assert.equal(p.body.length, 2, "CONNACK remaining length must be 2");
  assert.equal(p.body[0] & 0xfe, 0, "CONNACK acknowledge flags bits 7-1 are reserved (0)");
  return { sessionPresent: (p.body[0] & 1) === 1, returnCode: p.body[1] };
}

/** A parsed PUBLISH. */
export interface Publish {
  topic: string;
  payload: Uint8Array;
  /** The payload decoded as UTF-8, for convenience. */
  text: string;
  qos: number;
  retain: boolean;
  dup: boolean;
  packetId?: number;
}

const strictDecoder = new TextDecoder("utf-8", { fatal: true });

/** Parses a PUBLISH; rejects QoS 3 and a packet id 0 [MQTT-3.3.1-4] [MQTT-2.3.1-1]. */
export function parsePublish(p: RawPacket): Publish {
  assert.equal(p.type, TYPE.PUBLISH, `expected PUBLISH, got ${typeName(p.type)}`);
  const qos = (p.flags >> 1) & 0x03;
  assert.notEqual(qos, 3, "PUBLISH with QoS 3 [MQTT-3.3.1-4]");
  const topicLength = (p.body[0] << 8) | p.body[1];
  const topic = strictDecoder.decode(p.body.subarray(2, 2 + topicLength));
  let offset = 2 + topicLength;
  let packetId: number | undefined;
  if (qos > 0) {
    packetId = (p.body[offset] << 8) | p.body[offset + 1];
    offset += 2;
    assert.notEqual(
      packetId,
      0,
      "PUBLISH with QoS > 0 must have a non-zero packet id [MQTT-2.3.1-1]",
    );
  }
  const payload = p.body.slice(offset);
  return {
    topic,
    payload,
    text: new TextDecoder().decode(payload),
    qos,
    retain: (p.flags & 0x01) === 1,
    dup: (p.flags & 0x08) !== 0,
    packetId,
  };
}

/** Parses a SUBACK. */
export function parseSuback(p: RawPacket): { packetId: number; returnCodes: number[] } {
  assert.equal(p.type, TYPE.SUBACK, `expected SUBACK, got ${describe(p)}`);
  assert.equal(p.flags, 0, "SUBACK fixed header flags must be 0");
  assert.ok(p.body.length >= 3, "SUBACK must carry at least one return code");
  return { packetId: (p.body[0] << 8) | p.body[1], returnCodes: Array.from(p.body.subarray(2)) };
}

/**
 * The packet id of PUBACK, PUBREC, PUBREL, PUBCOMP or UNSUBACK, checking the fixed header:
 * flags 0b0010 for PUBREL and 0 for the others, remaining length 2.
 */
export function ackId(p: RawPacket): number {
  assert.equal(
    p.flags,
    p.type === TYPE.PUBREL ? 0x02 : 0,
    `${typeName(p.type)} fixed header flags`,
  );
  assert.equal(p.body.length, 2, `${typeName(p.type)} remaining length must be 2`);
  return (p.body[0] << 8) | p.body[1];
}

// ---------------------------------------------------------------------------------------------
// The raw client

const DEFAULT_TIMEOUT_MS = 3_000;

/**
 * A TCP connection that sends hand-built bytes and splits what comes back into packets.
 * A background loop reads; `expect*` wait with a deadline and fail with what arrived instead.
 */
export class RawClient {
  #conn: Deno.TcpConn;
  #splitter = new PacketSplitter();
  #queue: RawPacket[] = [];
  #waiters: (() => void)[] = [];
  #closed = false;
  #closeReason = "";
  #readLoop: Promise<void>;
  #disposed = false;
  /** Free-form label for messages. */
  label: string;

  private constructor(conn: Deno.TcpConn, label: string) {
    this.#conn = conn;
    this.label = label;
    this.#readLoop = this.#read();
  }

  /** Opens a TCP connection to the broker (nothing is sent). */
  static async connect(port: number, label = "client", hostname = "127.0.0.1"): Promise<RawClient> {
    const conn = await Deno.connect({ hostname, port });
    conn.setNoDelay(true);
    return new RawClient(conn, label);
  }

  /** Whether the broker has closed (or reset) the connection. */
  get closed(): boolean {
    return this.#closed;
  }

  async #read(): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await this.#conn.read(buf);
        if (n === null) {
          this.#closeReason = "EOF";
          break;
        }
        this.#queue.push(...this.#splitter.push(buf.subarray(0, n)));
        this.#notify();
      }
    } catch (e) {
      this.#closeReason = this.#disposed ? "closed locally" : `read error: ${String(e)}`;
    }
    this.#closed = true;
    this.#notify();
  }

  #notify(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  /** Waits until `done()` holds or the deadline passes; returns whether it holds. */
  async #waitUntil(done: () => boolean, deadline: number): Promise<boolean> {
    while (!done()) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) return false;
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        timer = setTimeout(resolve, remaining);
        this.#waiters.push(resolve);
      });
      clearTimeout(timer);
    }
    return true;
  }

  /** Writes all bytes. Throws if the connection is gone. */
  async send(data: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < data.length) offset += await this.#conn.write(data.subarray(offset));
  }

  /** Writes all bytes; returns false instead of throwing when the broker has closed the socket. */
  async trySend(data: Uint8Array): Promise<boolean> {
    try {
      await this.send(data);
      return true;
    } catch {
      return false;
    }
  }

  /** Takes the next packet, whatever it is; fails if none arrives in time or the socket closes. */
  async nextPacket(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<RawPacket> {
    const ok = await this.#waitUntil(
      () => this.#queue.length > 0 || this.#closed,
      Date.now() + timeoutMs,
    );
    const p = this.#queue.shift();
    if (p) return p;
    assert.fail(
      ok
        ? `${this.label}: connection closed (${this.#closeReason}) while waiting for a packet`
        : `${this.label}: no packet within ${timeoutMs} ms`,
    );
  }

  /** Takes the next packet and checks its type; fails with what came instead. */
  async expectPacket(type: number, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<RawPacket> {
    const ok = await this.#waitUntil(
      () => this.#queue.length > 0 || this.#closed,
      Date.now() + timeoutMs,
    );
    const p = this.#queue.shift();
    if (p) {
      if (p.type !== type) {
        assert.fail(`${this.label}: expected ${typeName(type)}, got ${describe(p)}`);
      }
      return p;
    }
    assert.fail(
      ok
        ? `${this.label}: expected ${typeName(type)}, connection closed (${this.#closeReason})`
        : `${this.label}: expected ${typeName(type)}, nothing arrived within ${timeoutMs} ms`,
    );
  }

  /** Expects a CONNACK and parses it. */
  async expectConnack(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Connack> {
    return parseConnack(await this.expectPacket(TYPE.CONNACK, timeoutMs));
  }

  /** Expects a PUBLISH and parses it. */
  async expectPublish(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Publish> {
    return parsePublish(await this.expectPacket(TYPE.PUBLISH, timeoutMs));
  }

  /** Expects an ack packet of `type` and returns its packet id. */
  async expectAck(type: number, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<number> {
    return ackId(await this.expectPacket(type, timeoutMs));
  }

  /**
   * The one legitimate bounded wait: asserts that nothing arrives (and the socket stays open)
   * for `ms` milliseconds. Used for "must not be delivered" checks.
   */
  async expectNothing(ms = 200): Promise<void> {
    await this.#waitUntil(() => this.#queue.length > 0 || this.#closed, Date.now() + ms);
    const p = this.#queue[0];
    if (p) assert.fail(`${this.label}: expected nothing, got ${describe(p)}`);
    if (this.#closed) {
      assert.fail(`${this.label}: expected nothing, connection closed (${this.#closeReason})`);
    }
  }

  /** Expects the broker to close the connection, with no packet before it. */
  async expectClosed(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<void> {
    await this.#waitUntil(() => this.#queue.length > 0 || this.#closed, Date.now() + timeoutMs);
    const p = this.#queue[0];
    if (p) assert.fail(`${this.label}: expected the connection to close, got ${describe(p)}`);
    if (!this.#closed) {
      assert.fail(`${this.label}: connection still open after ${timeoutMs} ms`);
    }
  }

  /** Closes the socket (idempotent) and waits for the read loop to end. */
  async close(): Promise<void> {
    if (!this.#disposed) {
      this.#disposed = true;
      try {
        this.#conn.close();
      } catch {
        // already closed
      }
    }
    await this.#readLoop;
  }

  /** Closes the socket (for `await using`). */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // -------------------------------------------------------------------------------------------
  // Conveniences built on the above

  /** Sends a CONNECT and expects CONNACK 0; returns the CONNACK. */
  async handshake(o: ConnectOptions = {}): Promise<Connack> {
    await this.send(connect(o));
    const ack = await this.expectConnack();
    assert.equal(ack.returnCode, 0, `${this.label}: CONNACK return code`);
    return ack;
  }

  /** Sends a SUBSCRIBE and returns the SUBACK return codes, checking the packet id [MQTT-3.8.4-2]. */
  async subscribe(packetId: number, subs: RawSubscription[]): Promise<number[]> {
    await this.send(subscribe(packetId, subs));
    const ack = parseSuback(await this.expectPacket(TYPE.SUBACK));
    assert.equal(ack.packetId, packetId, "SUBACK packet id [MQTT-3.8.4-2]");
    assert.equal(
      ack.returnCodes.length,
      subs.length,
      "one SUBACK return code per filter [MQTT-3.8.4-5]",
    );
    return ack.returnCodes;
  }

  /** Sends an UNSUBSCRIBE and expects the UNSUBACK with the same packet id [MQTT-3.10.4-4]. */
  async unsubscribe(packetId: number, filters: string[]): Promise<void> {
    await this.send(unsubscribe(packetId, filters));
    assert.equal(
      await this.expectAck(TYPE.UNSUBACK),
      packetId,
      "UNSUBACK packet id [MQTT-3.10.4-4]",
    );
  }

  /**
   * Publishes and completes the QoS handshake as sender: QoS 1 waits for PUBACK, QoS 2 for PUBREC,
   * sends PUBREL and waits for PUBCOMP, each with the same packet id.
   */
  async publish(o: PublishOptions): Promise<void> {
    const qos = o.qos ?? 0;
    const packetId = o.packetId ?? 1;
    await this.send(publish({ ...o, packetId }));
    if (qos === 1) {
      assert.equal(await this.expectAck(TYPE.PUBACK), packetId, "PUBACK packet id [MQTT-3.3.4-1]");
    } else if (qos === 2) {
      assert.equal(await this.expectAck(TYPE.PUBREC), packetId, "PUBREC packet id [MQTT-4.3.3-2]");
      await this.send(pubrel(packetId));
      assert.equal(
        await this.expectAck(TYPE.PUBCOMP),
        packetId,
        "PUBCOMP packet id [MQTT-4.3.3-2]",
      );
    }
  }

  /**
   * Expects a PUBLISH and completes the receiver side of its QoS handshake: PUBACK for QoS 1,
   * PUBREC → PUBREL → PUBCOMP for QoS 2.
   */
  async receive(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Publish> {
    const m = await this.expectPublish(timeoutMs);
    if (m.qos === 1) {
      await this.send(puback(m.packetId!));
    } else if (m.qos === 2) {
      await this.send(pubrec(m.packetId!));
      assert.equal(
        await this.expectAck(TYPE.PUBREL),
        m.packetId,
        "PUBREL packet id [MQTT-4.3.3-1]",
      );
      await this.send(pubcomp(m.packetId!));
    }
    return m;
  }

  /**
   * Receives `n` PUBLISHes and completes every handshake, also when several are in flight at once
   * (PUBACK or PUBREC as each PUBLISH arrives, PUBCOMP for each PUBREL). Returns them in arrival order.
   */
  async receiveMany(n: number, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Publish[]> {
    const got: Publish[] = [];
    const awaitingRel = new Set<number>();
    while (got.length < n || awaitingRel.size > 0) {
      const p = await this.nextPacket(timeoutMs);
      if (p.type === TYPE.PUBLISH) {
        const m = parsePublish(p);
        got.push(m);
        if (m.qos === 1) await this.send(puback(m.packetId!));
        if (m.qos === 2) {
          awaitingRel.add(m.packetId!);
          await this.send(pubrec(m.packetId!));
        }
      } else if (p.type === TYPE.PUBREL) {
        const id = ackId(p);
        assert.ok(awaitingRel.delete(id), `${this.label}: PUBREL for unknown id ${id}`);
        await this.send(pubcomp(id));
      } else {
        assert.fail(`${this.label}: expected PUBLISH or PUBREL, got ${describe(p)}`);
      }
    }
    return got;
  }
}

const RESET_SCRIPT = `
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.settimeout(5)
s.sendall(bytes.fromhex(sys.argv[2]))
want = int(sys.argv[4])
got = b""
while len(got) < want:
    chunk = s.recv(want - len(got))
    if not chunk:
        break
    got += chunk
s.sendall(bytes.fromhex(sys.argv[3]))
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
print(got.hex())
`;

/**
 * Opens a connection from a python3 child (Deno cannot set SO_LINGER), sends `first`, reads
 * `readBytes` bytes (e.g. 4 for a CONNACK), sends `then`, and closes with SO_LINGER 0 so that the
 * kernel sends an RST instead of a FIN. Returns the bytes read.
 */
export async function sendThenReset(
  port: number,
  first: Uint8Array,
  readBytes = 0,
  then: Uint8Array = new Uint8Array(0),
): Promise<Uint8Array> {
  const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  const out = await new Deno.Command("python3", {
    args: ["-c", RESET_SCRIPT, String(port), hex(first), hex(then), String(readBytes)],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`python3 reset helper failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  const text = new TextDecoder().decode(out.stdout).trim();
  return Uint8Array.from(text.match(/../g) ?? [], (h) => parseInt(h, 16));
}
