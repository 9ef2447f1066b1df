/**
 * MQTT over WebSocket (MQTT 3.1.1 section 6): a WebSocket wrapped as a byte stream for
 * `broker.handle(conn)`, and a `Deno.serve` handler that upgrades requests on one path.
 *
 * The adapter is transport-agnostic: the same handler serves `ws://` (`Deno.serve`) and `wss://`
 * (`Deno.serve` with `cert`/`key`); only the `transport` name reported to hooks differs.
 *
 * @module
 */
import type { RemoteAddress } from "../hooks.ts";
import type { BrokerConn } from "./types.ts";

/** Most bytes of received frames held while the broker is not reading, by default (2 MiB). */
export const DEFAULT_MAX_INBOUND_BYTES = 2 * 1024 * 1024;
/** `bufferedAmount` above which a write waits before resolving, by default (256 KiB). */
export const DEFAULT_WRITE_HIGH_WATER_MARK = 256 * 1024;
/** The subprotocols accepted, in order of preference; "mqttv3.1" is for old clients. */
export const MQTT_WEBSOCKET_PROTOCOLS: readonly string[] = Object.freeze(["mqtt", "mqttv3.1"]);

/** WebSocket close codes the adapter uses. */
export const WS_CLOSE_NORMAL = 1000;
/** A text frame was received [MQTT-6.0.0-1]. */
export const WS_CLOSE_UNSUPPORTED_DATA = 1003;
/** More than `maxInboundBytes` piled up while the broker was not reading. */
export const WS_CLOSE_MESSAGE_TOO_BIG = 1009;

/** Tuning of one WebSocket connection. */
export interface WebSocketConnOptions {
  /**
   * Bytes of received binary frames held while the broker is not reading (it is busy, or waits
   * for its own writes). Past it the socket is closed with code 1009 and `read()` resolves
   * `null`: memory per connection stays bounded. One frame larger than this closes the
   * connection too, so keep it above the broker's `maxPacketSize`. Default 2 MiB.
   */
  maxInboundBytes?: number;
  /**
   * A write resolves once the socket's `bufferedAmount` is at or below this many bytes, so a
   * slow reader pushes back on the broker instead of growing the send buffer. Default 256 KiB.
   */
  writeHighWaterMark?: number;
}

function brokenPipe(): Error {
  return new Deno.errors.BrokenPipe("Cannot write: the WebSocket is closed");
}

/** A WebSocket seen as a byte stream. */
class WebSocketConn implements BrokerConn {
  readonly remoteAddr: RemoteAddress;
  #socket: WebSocket;
  #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  #ended = false;
  #reader?: () => void;
  #closeWaiters = new Set<() => void>();
  #maxInboundBytes: number;
  #highWaterMark: number;

  constructor(socket: WebSocket, remote: RemoteAddress, options: WebSocketConnOptions) {
    this.#socket = socket;
    this.remoteAddr = remote;
    this.#maxInboundBytes = options.maxInboundBytes ?? DEFAULT_MAX_INBOUND_BYTES;
    this.#highWaterMark = options.writeHighWaterMark ?? DEFAULT_WRITE_HIGH_WATER_MARK;
    if (!(this.#maxInboundBytes > 0)) {
      throw new RangeError(`maxInboundBytes must be > 0, got ${this.#maxInboundBytes}`);
    }
    if (!(this.#highWaterMark >= 0)) {
      throw new RangeError(`writeHighWaterMark must be >= 0, got ${this.#highWaterMark}`);
    }
    socket.binaryType = "arraybuffer";
    socket.addEventListener("message", this.#onMessage);
    socket.addEventListener("close", this.#onEnd);
    socket.addEventListener("error", this.#onEnd);
    if (socket.readyState === WebSocket.CLOSING || socket.readyState === WebSocket.CLOSED) {
      this.#end();
    }
  }

  #onMessage = (event: MessageEvent): void => {
    if (this.#ended) return;
    if (!(event.data instanceof ArrayBuffer)) {
      // [MQTT-6.0.0-1] MQTT control packets must be sent in binary frames; any other frame
      // closes the network connection.
      this.#fail(WS_CLOSE_UNSUPPORTED_DATA, "MQTT needs binary frames");
      return;
    }
    if (event.data.byteLength === 0) return;
    // [MQTT-6.0.0-2]/[MQTT-6.0.0-3] frames are only a carrier: packets may span frames and a
    // frame may hold several packets, so frames are appended to one byte stream.
    this.#queue.push(new Uint8Array(event.data));
    this.#queuedBytes += event.data.byteLength;
    if (this.#queuedBytes > this.#maxInboundBytes) {
      this.#fail(WS_CLOSE_MESSAGE_TOO_BIG, "inbound buffer full");
      return;
    }
    this.#wakeReader();
  };

  #onEnd = (): void => this.#end();

  #wakeReader(): void {
    const wake = this.#reader;
    this.#reader = undefined;
    wake?.();
  }

  #end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#socket.removeEventListener("message", this.#onMessage);
    this.#socket.removeEventListener("close", this.#onEnd);
    this.#socket.removeEventListener("error", this.#onEnd);
    this.#wakeReader();
    for (const wake of this.#closeWaiters) wake();
    this.#closeWaiters.clear();
  }

  /** Drops what was received and closes: the connection is done, nothing more is read. */
  #fail(code: number, reason: string): void {
    this.#queue = [];
    this.#queuedBytes = 0;
    this.#closeSocket(code, reason);
    this.#end();
  }

  #closeSocket(code: number, reason?: string): void {
    try {
      this.#socket.close(code, reason);
    } catch {
      // Already closing or closed.
    }
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#queue.length === 0) {
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#reader = resolve);
    }
    let n = 0;
    while (n < buffer.length && this.#queue.length > 0) {
      const head = this.#queue[0];
      const take = Math.min(buffer.length - n, head.length);
      buffer.set(head.subarray(0, take), n);
      n += take;
      if (take === head.length) this.#queue.shift();
      else this.#queue[0] = head.subarray(take);
    }
    this.#queuedBytes -= n;
    return n;
  }

  async write(data: Uint8Array): Promise<number> {
    if (this.#socket.readyState === WebSocket.CONNECTING) await this.#waitOpen();
    if (this.#ended || this.#socket.readyState !== WebSocket.OPEN) throw brokenPipe();
    // Deno copies the bytes when the frame is queued, so the caller may reuse `data`.
    this.#socket.send(data);
    await this.#drain();
    return data.length;
  }

  #waitOpen(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.#socket.removeEventListener("open", done);
        this.#closeWaiters.delete(done);
        resolve();
      };
      this.#socket.addEventListener("open", done);
      this.#closeWaiters.add(done);
    });
  }

  /**
   * WebSocket has no drain event: poll `bufferedAmount` with a growing interval (1 ms up to
   * 50 ms), which costs nothing while the socket keeps up because the first check passes.
   */
  async #drain(): Promise<void> {
    let delayMs = 1;
    while (this.#socket.bufferedAmount > this.#highWaterMark) {
      if (this.#ended) throw brokenPipe();
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.#closeWaiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, delayMs);
        this.#closeWaiters.add(done);
      });
      delayMs = Math.min(delayMs * 2, 50);
    }
  }

  close(): void {
    if (!this.#ended) this.#closeSocket(WS_CLOSE_NORMAL);
    this.#queue = [];
    this.#queuedBytes = 0;
    this.#end();
  }
}

/**
 * Wraps a WebSocket (server side from `Deno.upgradeWebSocket`, or a client) as a byte-stream
 * {@linkcode BrokerConn}.
 *
 * - `read()` takes bytes of received binary frames in order, copying into the caller's buffer
 *   and keeping what did not fit; it resolves `null` once the socket closes or errors.
 * - A text frame closes the connection with code 1003 [MQTT-6.0.0-1].
 * - Inbound frames queue while the broker is not reading, up to `maxInboundBytes`; past it the
 *   socket is closed with code 1009 and the queue dropped.
 * - `write()` sends one binary frame and resolves once `bufferedAmount` is at or below
 *   `writeHighWaterMark`; it rejects with `Deno.errors.BrokenPipe` once the socket is closed.
 * - `close()` closes the socket with code 1000; it is idempotent.
 *
 * @example
 * ```ts ignore
 * import { webSocketConn } from "./websocket.ts";
 *
 * const { socket, response } = Deno.upgradeWebSocket(request, { protocol: "mqtt" });
 * broker.handle(webSocketConn(socket, { hostname: "192.0.2.1", port: 50000, transport: "ws" }))
 *   .catch(() => {});
 * return response;
 * ```
 */
export function webSocketConn(
  socket: WebSocket,
  remote: RemoteAddress,
  options: WebSocketConnOptions = {},
): BrokerConn & { remoteAddr: RemoteAddress } {
  return new WebSocketConn(socket, remote, options);
}

/** Options of {@linkcode createWebSocketHandler}. */
export interface WebSocketHandlerOptions extends WebSocketConnOptions {
  /** The URL path that is upgraded; other paths get 404. Default "/mqtt". */
  path?: string;
  /** Transport name reported in `RemoteAddress`: "ws" (default) or "wss" when served over TLS. */
  transport?: string;
}

/** The one thing the handler needs from the broker. */
export interface ConnectionHandler {
  /** Runs one connection; resolves when it closes. */
  handle(conn: BrokerConn): Promise<void>;
}

function textResponse(status: number, text: string, headers?: HeadersInit): Response {
  return new Response(text + "\n", {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", ...headers },
  });
}

/**
 * Makes a `Deno.serve` handler that upgrades requests on `path` to MQTT over WebSocket and hands
 * each connection to `broker.handle()`. Other paths get 404, requests on the path without a
 * WebSocket upgrade get 400 (426 would ask for an upgrade the client may not support), and a
 * client offering subprotocols of which none is "mqtt" or "mqttv3.1" gets 400. The chosen
 * subprotocol is echoed in `Sec-WebSocket-Protocol` ("mqtt" preferred); a client that offers none
 * is accepted without one.
 *
 * @example Serve MQTT over WebSocket on ws://127.0.0.1:8080/mqtt
 * ```ts ignore
 * import { createWebSocketHandler } from "./websocket.ts";
 *
 * const server = Deno.serve(
 *   { hostname: "127.0.0.1", port: 8080 },
 *   createWebSocketHandler(broker, { path: "/mqtt" }),
 * );
 * ```
 */
export function createWebSocketHandler(
  broker: ConnectionHandler,
  options: WebSocketHandlerOptions = {},
): (request: Request, info: Deno.ServeHandlerInfo) => Response | Promise<Response> {
  const path = options.path ?? "/mqtt";
  const transport = options.transport ?? "ws";
  if (!path.startsWith("/")) throw new TypeError(`path must start with "/", got "${path}"`);
  const connOptions: WebSocketConnOptions = {
    maxInboundBytes: options.maxInboundBytes,
    writeHighWaterMark: options.writeHighWaterMark,
  };
  // Validate the numbers once, here, rather than on every connection.
  if (connOptions.maxInboundBytes !== undefined && !(connOptions.maxInboundBytes > 0)) {
    throw new RangeError(`maxInboundBytes must be > 0, got ${connOptions.maxInboundBytes}`);
  }
  if (connOptions.writeHighWaterMark !== undefined && !(connOptions.writeHighWaterMark >= 0)) {
    throw new RangeError(
      `writeHighWaterMark must be >= 0, got ${connOptions.writeHighWaterMark}`,
    );
  }

  return (request, info) => {
    if (new URL(request.url).pathname !== path) return textResponse(404, "Not Found");
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return textResponse(400, "Expected a WebSocket upgrade (MQTT over WebSocket)");
    }
    const offered = (request.headers.get("sec-websocket-protocol") ?? "")
      .split(",").map((p) => p.trim()).filter((p) => p !== "");
    // [MQTT-6.0.0-4] the subprotocol selected and returned by the server is "mqtt".
    const protocol = MQTT_WEBSOCKET_PROTOCOLS.find((p) => offered.includes(p));
    if (offered.length > 0 && protocol === undefined) {
      return textResponse(400, 'Unsupported WebSocket subprotocol: expected "mqtt"');
    }
    // Read before upgrading: once upgraded, the request no longer answers for its address.
    const addr = info.remoteAddr as Partial<Deno.NetAddr>;
    let upgraded: { socket: WebSocket; response: Response };
    try {
      upgraded = Deno.upgradeWebSocket(request, protocol ? { protocol } : {});
    } catch (error) {
      return textResponse(400, `Bad WebSocket upgrade: ${(error as Error).message}`);
    }
    const conn = new WebSocketConn(upgraded.socket, {
      hostname: addr.hostname ?? "unknown",
      port: addr.port ?? 0,
      transport,
    }, connOptions);
    try {
      broker.handle(conn).catch(() => conn.close());
    } catch {
      conn.close();
    }
    return upgraded.response;
  };
}
