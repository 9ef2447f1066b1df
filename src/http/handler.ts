/**
 * The broker's HTTP side for one `Deno.serve` listener: Prometheus metrics, health and
 * readiness, the JSON admin API, the live status page, and optionally MQTT over WebSocket.
 *
 * @module
 */
import type { Broker } from "../broker.ts";
import { internalsOf } from "../introspection.ts";
import { formatAddress } from "../logger.ts";
import { VERSION } from "../version.ts";
import { createWebSocketHandler, type WebSocketHandlerOptions } from "../transport/websocket.ts";
import { type AdminOptions, handleAdmin, json } from "./admin.ts";
import { EventLoopMonitor } from "./event_loop.ts";
import { METRICS_CONTENT_TYPE, renderMetrics } from "./metrics.ts";
import { registryOf } from "./registry.ts";
import {
  formatBytes,
  formatCount,
  formatDuration,
  STATUS_PAGE_CSP,
  statusPage,
} from "./status_page.ts";
import { tokenChecker } from "./token.ts";

/** Options of {@linkcode createHttpHandler}. */
export interface HttpHandlerOptions {
  /**
   * The bearer token of the admin API (`/api/v1/…`). Without one the admin API answers 403 and
   * only metrics, health and the status page are served; a request with another token gets 401.
   * The CLI reads it with `--http-token-file` from a file only its owner may read.
   */
  token?: string;
  /**
   * Serve MQTT over WebSocket on this listener too: `true` for `/mqtt`, or the options of
   * {@linkcode createWebSocketHandler} (`path`, `transport`, buffer sizes).
   */
  webSocket?: boolean | WebSocketHandlerOptions;
  /** What `GET /api/v1/config` shows besides the limits; keys naming secrets are left out. */
  config?: Record<string, unknown>;
  /**
   * An extra readiness condition for `GET /readyz`, e.g. "every listener is bound": `true`, or
   * what is missing.
   */
  ready?: () => boolean | string;
}

/** A `Deno.serve` handler that also owns a timer: call `close()` when the server stops. */
export interface HttpHandler {
  /** Answers one request. */
  (request: Request, info: Deno.ServeHandlerInfo): Response | Promise<Response>;
  /** Stops the event-loop delay timer. Idempotent. */
  close(): void;
  /** Same as `close()`, for `using`. */
  [Symbol.dispose](): void;
}

function text(status: number, body: string, headers?: HeadersInit): Response {
  return new Response(body, {
    status,
    headers: {
      "content-type": "text/plain; charset=utf-8",
      "cache-control": "no-store",
      ...headers,
    },
  });
}

function readiness(
  broker: Broker,
  extra: (() => boolean | string) | undefined,
): { ready: boolean; checks: Record<string, string> } {
  const internals = internalsOf(broker);
  const checks: Record<string, string> = {};
  const run = (name: string, check: () => boolean | string) => {
    try {
      const result = check();
      checks[name] = result === true ? "ok" : result === false ? "not ready" : String(result);
    } catch (error) {
      checks[name] = `failed: ${error instanceof Error ? error.message : error}`;
    }
  };
  run("broker", () => !internals.isClosed() || "closed");
  run("store", () => {
    const state = internals.readiness();
    if (state === "ready") return true;
    if (state === "failed") return "the store could not be opened (see the log)";
    return "loading the stored state";
  });
  const listeners = internals.listeners();
  checks.listeners = listeners.length === 0 ? "none through broker.listen()" : listeners
    .map((l) => `${l.transport} ${l.hostname}:${l.port}`).join(", ");
  if (extra !== undefined) run("listeners bound", extra);
  for (const [name, check] of registryOf(broker).checks) run(name, check);
  const ready = Object.entries(checks).every(([name, v]) => name === "listeners" || v === "ok");
  return { ready, checks };
}

// The status page's headline numbers at serve time (its script updates them afterwards).
function pageNumbers(broker: Broker): Record<string, string> {
  const { ctx, startedAt, connections } = internalsOf(broker);
  const c = ctx.counters;
  let online = 0;
  for (const session of ctx.registry.sessions.values()) if (session.link !== undefined) online++;
  let rss = NaN;
  let heap = NaN;
  try {
    const memory = Deno.memoryUsage();
    rss = memory.rss;
    heap = memory.heapUsed;
  } catch {
    // Not available: the page shows a dash.
  }
  return {
    connections: formatCount(connections.size),
    clients: formatCount(c.connected),
    sessions: formatCount(ctx.registry.sessions.size),
    "sessions-online": formatCount(online),
    "sessions-offline": formatCount(ctx.registry.sessions.size - online),
    subscriptions: formatCount(ctx.router.size),
    retained: formatCount(ctx.retained.size),
    queued: formatCount(c.queued),
    dropped: formatCount(Object.values(c.dropped).reduce((a, b) => a + b, 0)),
    memory: formatBytes(rss),
    heap: formatBytes(heap),
    uptime: formatDuration((Date.now() - startedAt) / 1000),
  };
}

/**
 * Makes a `Deno.serve` handler for the broker's operations side:
 *
 * - `GET /metrics`: Prometheus text format (connections, sessions, subscriptions, retained,
 *   queued, messages and bytes, drops by reason, refused CONNECTs by reason, protocol errors,
 *   store commits, event-loop delay, memory, and families added with `registerMetricFamily`).
 * - `GET /healthz`: 200 while the broker serves; `GET /readyz`: 200 once the stored state is
 *   loaded and every readiness check passes (`registerReadinessCheck`), else 503; JSON body.
 * - `/api/v1/…`: the JSON admin API (clients, `DELETE /api/v1/clients/ID`, sessions,
 *   subscriptions, retained list/get/delete, config, stats), only with the bearer `token`.
 * - `GET /`: the live status page, one self-contained HTML document.
 * - `/mqtt` (with `webSocket`): MQTT over WebSocket.
 *
 * Everything else is 404. The handler owns a small unref'd timer (event-loop delay): call
 * `close()` when the server stops.
 *
 * @example Serve the operations side on 127.0.0.1:9090
 * ```ts ignore
 * import { Broker, createHttpHandler } from "./mod.ts";
 *
 * const broker = new Broker();
 * await broker.listen({ port: 1883 });
 * const handler = createHttpHandler(broker, { token: Deno.env.get("DENOMQ_TOKEN") });
 * const server = Deno.serve({ hostname: "127.0.0.1", port: 9090 }, handler);
 * // …
 * await server.shutdown();
 * handler.close();
 * ```
 */
export function createHttpHandler(broker: Broker, options: HttpHandlerOptions = {}): HttpHandler {
  internalsOf(broker); // TypeError now rather than at the first request.
  if (options.token !== undefined && (typeof options.token !== "string" || options.token === "")) {
    throw new TypeError("createHttpHandler: token must be a non-empty string");
  }
  const authorized = options.token === undefined ? undefined : tokenChecker(options.token);
  const ws = options.webSocket === undefined || options.webSocket === false
    ? undefined
    : createWebSocketHandler(broker, {
      maxInboundBytes: 2 * broker.limits.maxPacketSize,
      ...(options.webSocket === true ? {} : options.webSocket),
    });
  const wsPath = options.webSocket !== undefined && typeof options.webSocket === "object"
    ? options.webSocket.path ?? "/mqtt"
    : "/mqtt";
  const loop = new EventLoopMonitor();
  loop.start();
  const adminOptions: AdminOptions = { config: options.config };

  const handler =
    ((request: Request, info: Deno.ServeHandlerInfo): Response | Promise<Response> => {
      const url = new URL(request.url);
      const path = url.pathname;
      if (ws !== undefined && path === wsPath) return ws(request, info);
      const read = request.method === "GET" || request.method === "HEAD";
      if (path.startsWith("/api/v1/")) {
        if (authorized === undefined) {
          return json(403, {
            error: "the admin API is off: start the broker with --http-token-file (token option)",
          });
        }
        if (!authorized(request.headers.get("authorization"))) {
          return json(401, { error: "missing or wrong bearer token" }, {
            "www-authenticate": 'Bearer realm="denomq"',
          });
        }
        const peer = info.remoteAddr as Partial<Deno.NetAddr>;
        const from = peer.hostname === undefined
          ? "?"
          : formatAddress(peer.hostname, peer.port ?? 0);
        return handleAdmin(request, url, broker, adminOptions, from);
      }
      switch (path) {
        case "/metrics":
          if (!read) return text(405, "use GET\n", { allow: "GET" });
          return text(200, renderMetrics(broker, loop), { "content-type": METRICS_CONTENT_TYPE });
        case "/healthz": {
          if (!read) return text(405, "use GET\n", { allow: "GET" });
          const closed = internalsOf(broker).isClosed();
          return text(closed ? 503 : 200, closed ? "closed\n" : "ok\n");
        }
        case "/readyz": {
          if (!read) return text(405, "use GET\n", { allow: "GET" });
          const { ready, checks } = readiness(broker, options.ready);
          return json(ready ? 200 : 503, { status: ready ? "ready" : "not ready", checks });
        }
        case "/":
        case "/index.html":
          if (!read) return text(405, "use GET\n", { allow: "GET" });
          return new Response(statusPage(VERSION, pageNumbers(broker)), {
            headers: {
              "content-type": "text/html; charset=utf-8",
              "cache-control": "no-store",
              "content-security-policy": STATUS_PAGE_CSP,
              "x-content-type-options": "nosniff",
              "referrer-policy": "no-referrer",
            },
          });
        default:
          return text(404, "Not Found\n");
      }
    }) as HttpHandler;
  handler.close = () => loop.stop();
  handler[Symbol.dispose] = handler.close;
  return handler;
}
