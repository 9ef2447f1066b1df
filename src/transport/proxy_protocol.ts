/**
 * PROXY protocol version 1 (HAProxy), as stunnel's `protocol = proxy` sends it: one text line
 * `PROXY TCP4 SRC DST SRCPORT DSTPORT\r\n` (or `TCP6`, or `UNKNOWN ...`) before the client's
 * bytes. It tells a broker behind the PSK sidecar who the real client is.
 *
 * Only the v1 text form is read; a v2 (binary) header is refused as malformed.
 *
 * @module
 */
import type { RemoteAddress } from "../hooks.ts";
import type { BrokerConn } from "./types.ts";

/** Longest v1 header, CRLF included: `PROXY UNKNOWN ffff:...:ffff ffff:...:ffff 65535 65535\r\n`. */
export const PROXY_V1_MAX_HEADER_BYTES = 107;
/** How long {@linkcode acceptProxied} waits for the header by default, in milliseconds. */
export const DEFAULT_PROXY_HEADER_TIMEOUT_MS = 10_000;

/** A missing, malformed or late PROXY header. The connection has been closed. */
export class ProxyProtocolError extends Error {
  /** Creates the error; `message` says what was wrong. */
  constructor(message: string) {
    super(message);
    this.name = "ProxyProtocolError";
  }
}

/** What a v1 header says. `UNKNOWN` carries no addresses. */
export type ProxyHeader =
  | {
    protocol: "TCP4" | "TCP6";
    sourceAddress: string;
    destinationAddress: string;
    sourcePort: number;
    destinationPort: number;
  }
  | { protocol: "UNKNOWN" };

const PREFIX = new TextEncoder().encode("PROXY ");
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const PORT = /^(0|[1-9]\d{0,4})$/;

function isIpv6(text: string): boolean {
  if (!/^[0-9a-fA-F:.]+$/.test(text) || !text.includes(":")) return false;
  try {
    new URL(`http://[${text}]/`);
    return true;
  } catch {
    return false;
  }
}

function parsePort(text: string): number {
  const port = PORT.test(text) ? Number(text) : NaN;
  if (!(port <= 65535)) throw new ProxyProtocolError(`Invalid PROXY header: bad port "${text}"`);
  return port;
}

/**
 * Parses one v1 header line without its CRLF.
 *
 * @example
 * ```ts
 * import { parseProxyHeader } from "./proxy_protocol.ts";
 *
 * const header = parseProxyHeader("PROXY TCP4 192.0.2.7 127.0.0.1 51234 8883");
 * console.log(header.protocol === "TCP4" && header.sourcePort); // 51234
 * ```
 */
export function parseProxyHeader(line: string): ProxyHeader {
  const parts = line.split(" ");
  if (parts[0] !== "PROXY") throw new ProxyProtocolError("Invalid PROXY header: no PROXY prefix");
  const protocol = parts[1];
  // The receiver must ignore anything after UNKNOWN (proxy-protocol.txt, 2.1).
  if (protocol === "UNKNOWN") return { protocol };
  if (protocol !== "TCP4" && protocol !== "TCP6") {
    throw new ProxyProtocolError(`Invalid PROXY header: unknown protocol "${protocol ?? ""}"`);
  }
  if (parts.length !== 6) {
    throw new ProxyProtocolError(`Invalid PROXY header: expected 6 fields, got ${parts.length}`);
  }
  const [, , sourceAddress, destinationAddress, sourceText, destinationText] = parts;
  const valid = protocol === "TCP4" ? (a: string) => IPV4.test(a) : isIpv6;
  for (const address of [sourceAddress, destinationAddress]) {
    if (!valid(address)) {
      throw new ProxyProtocolError(`Invalid PROXY header: bad ${protocol} address "${address}"`);
    }
  }
  return {
    protocol,
    sourceAddress,
    destinationAddress,
    sourcePort: parsePort(sourceText),
    destinationPort: parsePort(destinationText),
  };
}

/** A connection whose PROXY header has been read; reads start with the bytes that followed it. */
class ProxiedConn implements BrokerConn {
  readonly remoteAddr: RemoteAddress;
  /** What the header said (the destination is the proxy's listening address). */
  readonly proxyHeader: ProxyHeader;
  #conn: BrokerConn;
  #pending: Uint8Array;

  constructor(conn: BrokerConn, remoteAddr: RemoteAddress, header: ProxyHeader, rest: Uint8Array) {
    this.#conn = conn;
    this.remoteAddr = remoteAddr;
    this.proxyHeader = header;
    this.#pending = rest;
  }

  read(buffer: Uint8Array): Promise<number | null> {
    if (this.#pending.length > 0) {
      const n = Math.min(buffer.length, this.#pending.length);
      buffer.set(this.#pending.subarray(0, n));
      this.#pending = this.#pending.subarray(n);
      return Promise.resolve(n);
    }
    return this.#conn.read(buffer);
  }

  write(data: Uint8Array): Promise<number> {
    return this.#conn.write(data);
  }

  close(): void {
    this.#conn.close();
  }

  setNoDelay(noDelay?: boolean): void {
    this.#conn.setNoDelay?.(noDelay);
  }
}

function fallbackAddress(conn: BrokerConn, transport: string): RemoteAddress {
  const addr = conn.remoteAddr as { hostname?: unknown; port?: unknown } | undefined;
  return {
    hostname: typeof addr?.hostname === "string" ? addr.hostname : "unknown",
    port: typeof addr?.port === "number" ? addr.port : 0,
    transport,
  };
}

function closeQuietly(conn: BrokerConn): void {
  try {
    conn.close();
  } catch {
    // Already closed: nothing to release.
  }
}

/**
 * Reads a PROXY v1 header from a fresh connection and returns a connection that starts with the
 * client's first byte and whose `remoteAddr` is the real client (`transport` as given, e.g.
 * `"psk"`). For `PROXY UNKNOWN` the connection's own address is used, as the spec asks.
 *
 * Reads at most 107 bytes (the v1 limit) while looking for the header; bytes read past the CRLF
 * are handed back by the first reads of the returned connection. Throws a
 * {@linkcode ProxyProtocolError} and closes `conn` when the header is missing (fails as soon as
 * the first bytes are not `PROXY `), malformed, longer than 107 bytes, cut by end of stream, or
 * not complete within `timeoutMs`.
 *
 * @example Serve the stunnel sidecar's target port
 * ```ts ignore
 * import { acceptProxied } from "./proxy_protocol.ts";
 *
 * for await (const tcp of Deno.listen({ hostname: "127.0.0.1", port: 18830 })) {
 *   acceptProxied(tcp, "psk")
 *     .then((conn) => broker.handle(conn))
 *     .catch(() => {}); // the connection is already closed
 * }
 * ```
 */
export async function acceptProxied(
  conn: BrokerConn,
  transport: string,
  timeoutMs: number = DEFAULT_PROXY_HEADER_TIMEOUT_MS,
): Promise<BrokerConn & { remoteAddr: RemoteAddress; proxyHeader: ProxyHeader }> {
  const buffer = new Uint8Array(PROXY_V1_MAX_HEADER_BYTES);
  let length = 0;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    closeQuietly(conn);
  }, timeoutMs);
  try {
    for (;;) {
      let n: number | null;
      try {
        n = await conn.read(buffer.subarray(length));
      } catch (error) {
        if (timedOut) break;
        throw new ProxyProtocolError(
          `Invalid PROXY header: read failed: ${(error as Error).message}`,
        );
      }
      if (timedOut) break;
      if (n === null) {
        throw new ProxyProtocolError("Invalid PROXY header: connection closed before the header");
      }
      const start = length;
      length += n;
      for (let i = start; i < Math.min(length, PREFIX.length); i++) {
        if (buffer[i] !== PREFIX[i]) {
          throw new ProxyProtocolError(
            "Invalid PROXY header: the connection does not start with it",
          );
        }
      }
      for (let i = Math.max(start - 1, 0); i < length; i++) {
        const byte = buffer[i];
        if (byte === 0x0d && i + 1 < length) {
          if (buffer[i + 1] !== 0x0a) {
            throw new ProxyProtocolError("Invalid PROXY header: CR not followed by LF");
          }
          const line = new TextDecoder().decode(buffer.subarray(0, i));
          const header = parseProxyHeader(line);
          const remote: RemoteAddress = header.protocol === "UNKNOWN"
            ? fallbackAddress(conn, transport)
            : { hostname: header.sourceAddress, port: header.sourcePort, transport };
          return new ProxiedConn(conn, remote, header, buffer.slice(i + 2, length));
        }
        if (byte === 0x0d) break; // CR is the last byte read so far: wait for the next one.
        if (byte < 0x20 || byte > 0x7e) {
          throw new ProxyProtocolError(
            `Invalid PROXY header: unexpected byte 0x${byte.toString(16).padStart(2, "0")}`,
          );
        }
      }
      if (length === PROXY_V1_MAX_HEADER_BYTES) {
        throw new ProxyProtocolError(
          `Invalid PROXY header: no CRLF within ${PROXY_V1_MAX_HEADER_BYTES} bytes`,
        );
      }
    }
    throw new ProxyProtocolError(`Invalid PROXY header: none within ${timeoutMs} ms`);
  } catch (error) {
    closeQuietly(conn);
    throw error;
  } finally {
    clearTimeout(timer);
  }
}
