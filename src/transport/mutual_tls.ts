/**
 * TLS with client certificates (mosquitto's `require_certificate true`). `Deno.listenTls` (Deno
 * 2.9) has no option to request a client certificate, but Deno's `node:tls` server does: with
 * `requestCert` and `rejectUnauthorized` it asks for one in the handshake and refuses a client
 * without a certificate chaining to `ca` (checked with Deno 2.9.6: no certificate → "peer sent no
 * certificates", a self-signed one → refused, a CA-signed X.509 v3 one → `authorized`).
 *
 * Each verified connection is wrapped into a `BrokerConn` and handed to `onConnection`.
 * Needs `--allow-net` only (the PEM texts are passed in).
 *
 * @module
 */
import { Buffer } from "node:buffer";
import tls from "node:tls";
import type { RemoteAddress } from "../hooks.ts";
import type { BrokerConn } from "./types.ts";

/** Options of {@link listenMutualTls}. */
export interface MutualTlsOptions {
  hostname: string;
  /** 0 picks a free port. */
  port: number;
  /** PEM certificate chain of the server. */
  cert: string;
  /** PEM key of the server. */
  key: string;
  /** PEM CA certificate(s) a client certificate must chain to. */
  ca: string;
  /** Called for each client whose certificate was verified. */
  onConnection(conn: BrokerConn & { remoteAddr: RemoteAddress }): void;
  /** Called for each refused handshake (no certificate, a bad one, not TLS at all). */
  onRefused?(reason: string): void;
}

/** A listening mutual-TLS server. */
export interface MutualTlsServer {
  readonly hostname: string;
  readonly port: number;
  /** Stops accepting; connections already accepted stay. */
  close(): Promise<void>;
}

const PAUSE_BYTES = 64 * 1024;

/** A `BrokerConn` over a node socket. */
class NodeSocketConn implements BrokerConn {
  readonly remoteAddr: RemoteAddress;
  #socket: tls.TLSSocket;
  #chunks: Uint8Array[] = [];
  #offset = 0;
  #queued = 0;
  #ended = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;

  constructor(socket: tls.TLSSocket) {
    this.#socket = socket;
    this.remoteAddr = {
      hostname: socket.remoteAddress ?? "",
      port: socket.remotePort ?? 0,
      transport: "tls",
    };
    socket.on("data", (chunk: Uint8Array) => {
      this.#chunks.push(chunk);
      this.#queued += chunk.length;
      // Reading is the broker's pace: stop taking bytes from the kernel while it is behind.
      if (this.#queued > PAUSE_BYTES) socket.pause();
      this.#wake?.();
    });
    socket.on("end", () => this.#finish());
    socket.on("close", () => this.#finish());
    socket.on("error", (error: Error) => {
      this.#error ??= error;
      this.#finish();
    });
  }

  #finish(): void {
    this.#ended = true;
    this.#wake?.();
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#ended) {
        if (this.#error !== undefined) throw this.#error;
        return null;
      }
      await new Promise<void>((resolve) => this.#wake = resolve);
      this.#wake = undefined;
    }
    const head = this.#chunks[0];
    const n = Math.min(buffer.length, head.length - this.#offset);
    buffer.set(head.subarray(this.#offset, this.#offset + n));
    this.#offset += n;
    this.#queued -= n;
    if (this.#offset === head.length) {
      this.#chunks.shift();
      this.#offset = 0;
    }
    if (this.#queued <= PAUSE_BYTES / 2 && this.#socket.isPaused()) this.#socket.resume();
    return n;
  }

  write(data: Uint8Array): Promise<number> {
    if (this.#ended) return Promise.reject(new Deno.errors.BrokenPipe("closed"));
    return new Promise((resolve, reject) => {
      // Copied: the broker may reuse its buffer once write() resolves.
      this.#socket.write(Buffer.from(data), (error?: Error | null) => {
        if (error) reject(error);
        else resolve(data.length);
      });
    });
  }

  close(): void {
    this.#finish();
    this.#socket.destroy();
  }
}

/**
 * Listens with TLS and required client certificates.
 *
 * @example
 * ```ts ignore
 * import { listenMutualTls } from "./mutual_tls.ts";
 *
 * const server = await listenMutualTls({
 *   hostname: "0.0.0.0",
 *   port: 8883,
 *   cert: Deno.readTextFileSync("cert.pem"),
 *   key: Deno.readTextFileSync("key.pem"),
 *   ca: Deno.readTextFileSync("ca.pem"),
 *   onConnection: (conn) => broker.handle(conn, "tls"),
 * });
 * ```
 *
 * @throws {Error} when the port cannot be bound or the PEM texts are unusable.
 */
export function listenMutualTls(options: MutualTlsOptions): Promise<MutualTlsServer> {
  return new Promise((resolve, reject) => {
    let server: tls.Server;
    try {
      server = tls.createServer({
        cert: options.cert,
        key: options.key,
        ca: options.ca,
        requestCert: true,
        rejectUnauthorized: true,
      }, (socket) => {
        // rejectUnauthorized already refused the others; this is the belt to those braces.
        if (!socket.authorized) {
          options.onRefused?.(String(socket.authorizationError ?? "not authorized"));
          socket.destroy();
          return;
        }
        options.onConnection(new NodeSocketConn(socket));
      });
    } catch (error) {
      reject(error);
      return;
    }
    server.on("tlsClientError", (error: Error) => options.onRefused?.(error.message));
    const onError = (error: Error) => reject(error);
    server.once("error", onError);
    server.listen(options.port, options.hostname, () => {
      server.off("error", onError);
      const address = server.address() as { address: string; port: number };
      resolve({
        hostname: address.address,
        port: address.port,
        // Stops accepting only: node's close callback would wait for every connection to end.
        close: () => {
          server.close();
          return Promise.resolve();
        },
      });
    });
  });
}
