/**
 * An in-memory connection pair: the broker's side goes to `broker.handle(conn)`, the test's side
 * to {@link RawClient.wrap}. No sockets, no ports; the same raw packets and readers as over TCP.
 *
 * @module
 */

/** What both ends offer: the subset of `Deno.Conn` that `BrokerConn` and `RawClient` use. */
export interface MemoryConn {
  read(buffer: Uint8Array): Promise<number | null>;
  write(data: Uint8Array): Promise<number>;
  close(): void;
  readonly remoteAddr: { hostname: string; port: number; transport: string };
}

/** One direction: chunks written by one end, read by the other. */
class Pipe {
  #chunks: Uint8Array[] = [];
  #ended = false;
  #wake: (() => void) | undefined;

  push(data: Uint8Array): void {
    if (this.#ended) throw new Deno.errors.BrokenPipe("the other end closed the connection");
    this.#chunks.push(data.slice());
    this.#wake?.();
  }

  end(): void {
    this.#ended = true;
    this.#wake?.();
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
      this.#wake = undefined;
    }
    const head = this.#chunks[0];
    const n = Math.min(head.length, buffer.length);
    buffer.set(head.subarray(0, n));
    if (n === head.length) this.#chunks.shift();
    else this.#chunks[0] = head.subarray(n);
    return n;
  }
}

let nextPort = 50_000;

/** Two connected ends: `[client, server]`. Closing either ends both directions. */
export function memoryPair(): [MemoryConn, MemoryConn] {
  const up = new Pipe(); // client → server
  const down = new Pipe(); // server → client
  const port = nextPort++;
  const end = (label: string, from: Pipe, to: Pipe): MemoryConn => ({
    read: (buffer) => from.read(buffer),
    write: (data) => {
      to.push(data);
      return Promise.resolve(data.length);
    },
    close: () => {
      up.end();
      down.end();
    },
    remoteAddr: { hostname: label, port, transport: "memory" },
  });
  return [end("server", down, up), end("127.0.0.1", up, down)];
}
