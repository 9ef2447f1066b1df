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
 * resolves with how many it wrote.
 */
export interface BrokerConn {
  read(buffer: Uint8Array): Promise<number | null>;
  write(data: Uint8Array): Promise<number>;
  close(): void;
  /** Deno.Conn has this; plain objects may carry a RemoteAddress instead. */
  readonly remoteAddr?: Deno.Addr | RemoteAddress;
  setNoDelay?(noDelay?: boolean): void;
}
