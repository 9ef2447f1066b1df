/**
 * Node-style streams for the MQTT client (npm:mqtt) over our byte connections: one over a
 * connection still being opened (TCP or TLS to the remote), and an in-memory pair whose other
 * end is a `BrokerConn` handed to `broker.handle()` (the bridge's own sessions in its broker).
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { Duplex } from "node:stream";
import type { RemoteAddress } from "../hooks.ts";
import type { BrokerConn } from "../transport/types.ts";

/** What {@link duplexOver} needs of a connection. */
export interface ByteConn {
  read(buffer: Uint8Array): Promise<number | null>;
  write(data: Uint8Array): Promise<number>;
  close(): void;
}

const READ_BYTES = 16 * 1024;

/**
 * A Duplex over a connection that `open` resolves to. Writes wait for it; a failed open
 * destroys the stream with its error (the client then reconnects).
 */
export function duplexOver(
  open: Promise<ByteConn>,
  onError?: (error: Error) => void,
): Duplex {
  let conn: ByteConn | undefined;
  let closed = false;
  let reading = false;
  const ready = open.then((c) => {
    if (closed) {
      try {
        c.close();
      } catch {
        // Closed already.
      }
      throw new Error("stream closed before it was connected");
    }
    return conn = c;
  });
  const pump = async () => {
    reading = true;
    let c: ByteConn;
    try {
      c = await ready;
    } catch {
      return;
    }
    const buffer = new Uint8Array(READ_BYTES);
    while (!closed) {
      let n: number | null;
      try {
        n = await c.read(buffer);
      } catch (error) {
        if (!closed) {
          onError?.(error as Error);
          stream.destroy(error as Error);
        }
        return;
      }
      if (n === null) {
        stream.push(null);
        return;
      }
      if (!stream.push(Buffer.from(buffer.subarray(0, n)))) {
        reading = false;
        return;
      }
    }
  };
  const stream = new Duplex({
    // The peer closing ends the whole stream: the MQTT client waits for "close".
    allowHalfOpen: false,
    read() {
      if (!reading) pump().catch((error) => stream.destroy(error));
    },
    write(chunk: Uint8Array, _encoding, callback) {
      ready.then(async (c) => {
        let done = 0;
        while (done < chunk.length) done += await c.write(chunk.subarray(done));
      }).then(() => callback(), (error) => callback(error));
    },
    final(callback) {
      callback();
      stream.destroy();
    },
    destroy(error, callback) {
      closed = true;
      try {
        conn?.close();
      } catch {
        // Closed already.
      }
      callback(error);
    },
  });
  ready.catch((error) => {
    if (closed) return;
    onError?.(error);
    stream.destroy(error);
  });
  return stream;
}

/** The broker's end of an in-memory pair. */
class MemoryConn implements BrokerConn {
  readonly remoteAddr: RemoteAddress;
  #inbox: Uint8Array[] = [];
  #offset = 0;
  #ended = false;
  #wake: (() => void) | undefined;
  #drain: (() => void) | undefined;
  #peer: Duplex;

  constructor(peer: Duplex, remote: RemoteAddress) {
    this.#peer = peer;
    this.remoteAddr = remote;
  }

  /** From the client: bytes for the broker. */
  deliver(chunk: Uint8Array): void {
    this.#inbox.push(chunk);
    this.#wake?.();
  }

  end(): void {
    this.#ended = true;
    this.#wake?.();
    this.#drain?.();
  }

  drained(): void {
    this.#drain?.();
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#inbox.length === 0) {
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
      this.#wake = undefined;
    }
    const head = this.#inbox[0];
    const n = Math.min(buffer.length, head.length - this.#offset);
    buffer.set(head.subarray(this.#offset, this.#offset + n));
    this.#offset += n;
    if (this.#offset === head.length) {
      this.#inbox.shift();
      this.#offset = 0;
    }
    return n;
  }

  async write(data: Uint8Array): Promise<number> {
    if (this.#ended) throw new Deno.errors.BrokenPipe("closed");
    // Copied: the broker may reuse its buffer once write() resolves.
    if (!this.#peer.push(Buffer.from(data))) {
      // The client is behind: resolve only once it reads again (backpressure).
      await new Promise<void>((resolve) => this.#drain = resolve);
      this.#drain = undefined;
    }
    return data.length;
  }

  close(): void {
    if (this.#ended) return;
    this.end();
    this.#peer.push(null);
    this.#peer.destroy();
  }
}

/**
 * An in-memory connection: `conn` goes to `broker.handle()`, `stream` to the MQTT client.
 */
export function memoryPair(remote: RemoteAddress): { conn: BrokerConn; stream: Duplex } {
  const ref: { conn?: MemoryConn } = {};
  const stream = new Duplex({
    // The peer closing ends the whole stream: the MQTT client waits for "close".
    allowHalfOpen: false,
    read() {
      ref.conn?.drained();
    },
    write(chunk: Uint8Array, _encoding, callback) {
      ref.conn?.deliver(new Uint8Array(chunk));
      callback();
    },
    final(callback) {
      ref.conn?.end();
      callback();
    },
    destroy(error, callback) {
      ref.conn?.end();
      callback(error);
    },
  });
  const conn = ref.conn = new MemoryConn(stream, remote);
  return { conn, stream };
}
