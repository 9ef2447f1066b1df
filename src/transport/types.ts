/**
 * The seam between transports and the broker: anything that can read, write and close.
 *
 * @module
 */
import type { RemoteAddress } from "../hooks.ts";

/**
 * A byte-stream connection as `broker.handle()` takes it. `Deno.Conn` and `Deno.TlsConn` fit as
 * they are; a WebSocket or a PROXY-protocol stream is wrapped to fit.
 *
 * `read` resolves with the number of bytes put into `buffer`, or `null` at end of stream; it may
 * reject when the peer resets the connection. `write` may write fewer bytes than given and
 * resolves with how many it wrote. Once it has resolved the broker may reuse `data`'s memory
 * for a later write, so a transport that keeps the bytes past that point copies them.
 */
export interface BrokerConn {
  /** Reads into `buffer`; resolves with the byte count, or `null` at end of stream. */
  read(buffer: Uint8Array): Promise<number | null>;
  /** Writes from `data`; resolves with the number of bytes written, which may be fewer. */
  write(data: Uint8Array): Promise<number>;
  /** Closes; a pending `read` then resolves `null` or rejects. What it throws is ignored. */
  close(): void;
  /** Deno.Conn has this; plain objects may carry a RemoteAddress instead. */
  readonly remoteAddr?: Deno.Addr | RemoteAddress;
  /** Nagle on or off. `broker.handle()` never calls it; `listen()` turns Nagle off itself. */
  setNoDelay?(noDelay?: boolean): void;
}
