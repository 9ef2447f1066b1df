/**
 * The JSON admin API under `/api/v1/`: clients (and kicking one), sessions, subscriptions,
 * retained messages, the effective configuration and the counters. Authorization is checked by
 * the caller (`handler.ts`); everything here is read-only but `DELETE`.
 *
 * @module
 */
import type { Broker } from "../broker.ts";
import type { Connection } from "../connection.ts";
import { internalsOf } from "../introspection.ts";
import { Message } from "../message.ts";
import type { Session } from "../session/session.ts";
import { validateTopicFilter, validateTopicName } from "../topic/topic.ts";

const MAX_LIMIT = 100_000;
const DEFAULT_LIMIT = 1_000;
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** A JSON response. */
export function json(status: number, body: unknown, headers?: HeadersInit): Response {
  return new Response(JSON.stringify(body, null, 2) + "\n", {
    status,
    headers: {
      "content-type": "application/json; charset=utf-8",
      "cache-control": "no-store",
      ...headers,
    },
  });
}

function error(status: number, message: string, headers?: HeadersInit): Response {
  return json(status, { error: message }, headers);
}

function methodNotAllowed(allow: string): Response {
  return error(405, `method not allowed; use ${allow}`, { allow });
}

function page<T>(url: URL, items: T[]): { total: number; items: T[] } | Response {
  const limit = Number(url.searchParams.get("limit") ?? DEFAULT_LIMIT);
  const offset = Number(url.searchParams.get("offset") ?? 0);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
    return error(400, `limit must be an integer from 1 to ${MAX_LIMIT}`);
  }
  if (!Number.isInteger(offset) || offset < 0) return error(400, "offset must be an integer >= 0");
  return { total: items.length, items: items.slice(offset, offset + limit) };
}

function payloadFields(payload: Uint8Array): Record<string, unknown> {
  try {
    return { payload: utf8.decode(payload), payloadBytes: payload.length };
  } catch {
    // Not UTF-8: base64, so any bytes survive the JSON.
    let binary = "";
    for (const b of payload) binary += String.fromCharCode(b);
    return { payloadBase64: btoa(binary), payloadBytes: payload.length };
  }
}

function protocolName(level: number): string {
  return level === 5 ? "5.0" : level === 4 ? "3.1.1" : level === 3 ? "3.1" : String(level);
}

/** One connected client as the admin API describes it. */
function describeClient(connection: Connection, startedAt: number): Record<string, unknown> {
  const { client, session } = connection;
  const r = client.remoteAddress;
  return {
    clientId: client.clientId,
    address: r?.hostname ?? null,
    port: r?.port ?? null,
    transport: r?.transport ?? null,
    protocolVersion: protocolName(connection.connected ? connection.version : 0),
    username: client.username ?? null,
    connectedSince: new Date(startedAt + connection.createdAt).toISOString(),
    keepAlive: connection.keepAliveMs / 1000,
    cleanSession: session?.clean ?? null,
    subscriptions: session?.subscriptions.size ?? 0,
    inflight: session?.inflight.size ?? 0,
    queued: session?.queued ?? 0,
    queuedBytes: session?.queuedBytes ?? 0,
  };
}

function describeSession(session: Session): Record<string, unknown> {
  return {
    clientId: session.clientId,
    online: session.link !== undefined,
    cleanSession: session.clean,
    expiresAt: session.link !== undefined || session.expiresAt === 0
      ? null
      : new Date(session.expiresAt).toISOString(),
    subscriptions: session.subscriptions.size,
    inflight: session.inflight.size,
    queued: session.queued,
    queuedBytes: session.queuedBytes,
  };
}

/** Options of the admin API. */
export interface AdminOptions {
  /** The effective configuration `GET /api/v1/config` shows (secrets left out by the caller). */
  config?: Record<string, unknown>;
}

const SECRET_KEY = /token|secret|password$|passphrase|^key$/i;

/** Drops values whose key names a secret: file paths stay, their contents never appear. */
export function withoutSecrets(config: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(config)) {
    if (value === undefined) continue;
    if (SECRET_KEY.test(key) && !/file|path/i.test(key)) continue;
    out[key] = clean(value);
  }
  return out;
}

// Objects inside arrays too (bridges carry remote passwords and PSK keys).
function clean(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(clean);
  return value !== null && typeof value === "object"
    ? withoutSecrets(value as Record<string, unknown>)
    : value;
}

/** Answers one request under `/api/v1/`, authorized already. */
export function handleAdmin(
  request: Request,
  url: URL,
  broker: Broker,
  options: AdminOptions,
  from = "?",
): Response {
  const internals = internalsOf(broker);
  const { ctx, startedAt } = internals;
  const parts = url.pathname.slice("/api/v1/".length).split("/");
  const [resource, ...rest] = parts;
  const method = request.method === "HEAD" ? "GET" : request.method;
  let name: string;
  try {
    name = rest.map(decodeURIComponent).join("/");
  } catch {
    return error(400, "bad percent-encoding in the path");
  }
  switch (resource) {
    case "clients": {
      if (name === "") {
        if (method !== "GET") return methodNotAllowed("GET");
        const clients = [...internals.connections].filter((c) => c.connected && !c.isClosed)
          .map((c) => describeClient(c, startedAt));
        const result = page(url, clients);
        if (result instanceof Response) return result;
        return json(200, { total: result.total, clients: result.items });
      }
      const link = ctx.registry.sessions.get(name)?.link as Connection | undefined;
      if (method === "GET") {
        if (link === undefined || link.isClosed) return error(404, `no client "${name}" connected`);
        return json(200, describeClient(link, startedAt));
      }
      if (method === "DELETE") {
        const reason = url.searchParams.get("reasonCode");
        const code = reason === null ? 0x98 : Number(reason);
        if (!Number.isInteger(code) || code < 0x80 || code > 0xff) {
          return error(400, "reasonCode must be an integer from 128 to 255 (0x80..0xff)");
        }
        if (!broker.disconnectClient(name, code)) {
          return error(404, `no client "${name}" connected`);
        }
        ctx.log.info(`admin API (from ${from}): disconnected client ${JSON.stringify(name)}`);
        return json(200, { clientId: name, disconnected: true, reasonCode: code });
      }
      return methodNotAllowed("GET, DELETE");
    }
    case "sessions": {
      if (method !== "GET") return methodNotAllowed("GET");
      if (name !== "") {
        const session = ctx.registry.sessions.get(name);
        if (session === undefined) return error(404, `no session "${name}"`);
        return json(200, {
          ...describeSession(session),
          subscriptionList: [...session.subscriptions].map(([topicFilter, qos]) => ({
            topicFilter,
            qos,
          })),
        });
      }
      const state = url.searchParams.get("state");
      if (state !== null && state !== "online" && state !== "offline") {
        return error(400, `state must be "online" or "offline"`);
      }
      const sessions = [...ctx.registry.sessions.values()]
        .filter((s) => state === null || (s.link !== undefined) === (state === "online"))
        .map(describeSession);
      const result = page(url, sessions);
      if (result instanceof Response) return result;
      return json(200, { total: result.total, sessions: result.items });
    }
    case "subscriptions": {
      if (method !== "GET" || name !== "") return methodNotAllowed("GET");
      const only = url.searchParams.get("clientId");
      const subscriptions: Record<string, unknown>[] = [];
      const sessions = only === null
        ? ctx.registry.sessions.values()
        : [ctx.registry.sessions.get(only)].filter((s) => s !== undefined);
      for (const session of sessions) {
        for (const [topicFilter, options] of session!.subscriptions) {
          // 5.0 subscription options too; `subscriptionId` only when the SUBSCRIBE had one.
          const { qos, noLocal, retainAsPublished, retainHandling, subscriptionId } = options;
          const entry: Record<string, unknown> = {
            clientId: session!.clientId,
            topicFilter,
            qos,
            noLocal,
            retainAsPublished,
            retainHandling,
          };
          if (subscriptionId !== undefined) entry.subscriptionId = subscriptionId;
          subscriptions.push(entry);
        }
      }
      const result = page(url, subscriptions);
      if (result instanceof Response) return result;
      return json(200, { total: result.total, subscriptions: result.items });
    }
    case "retained": {
      const topic = name !== "" ? name : url.searchParams.get("topic");
      if (topic === null) {
        if (method !== "GET") return methodNotAllowed("GET");
        const filter = url.searchParams.get("filter") ?? "#";
        const invalid = validateTopicFilter(filter, ctx.limits.maxTopicLength, 65_535);
        if (invalid !== undefined) return error(400, `filter: ${invalid}`);
        const messages: Record<string, unknown>[] = [];
        ctx.retained.match(filter, (m) => {
          messages.push({ topic: m.topic, qos: m.qos, payloadBytes: m.payload.length });
        });
        messages.sort((a, b) => (a.topic as string) < (b.topic as string) ? -1 : 1);
        const result = page(url, messages);
        if (result instanceof Response) return result;
        return json(200, { total: result.total, filter, retained: result.items });
      }
      const invalid = validateTopicName(topic, ctx.limits.maxTopicLength, 65_535);
      if (invalid !== undefined) return error(400, `topic: ${invalid}`);
      let found: Message | undefined;
      ctx.retained.match(topic, (m) => found = m);
      if (method === "GET") {
        if (found === undefined) return error(404, `no retained message on "${topic}"`);
        return json(200, { topic, qos: found.qos, ...payloadFields(found.payload) });
      }
      if (method === "DELETE") {
        if (found === undefined) return error(404, `no retained message on "${topic}"`);
        // As a client clears it (an empty retained payload), but not routed to subscribers.
        const empty = new Message(topic, new Uint8Array(0), 0, true);
        ctx.retained.set(empty);
        ctx.mirror?.retainedChanged(empty);
        ctx.log.info(
          `admin API (from ${from}): deleted the retained message on ${JSON.stringify(topic)}`,
        );
        return json(200, { topic, deleted: true });
      }
      return methodNotAllowed("GET, DELETE");
    }
    case "config":
      if (method !== "GET" || name !== "") return methodNotAllowed("GET");
      return json(200, withoutSecrets({ limits: { ...broker.limits }, ...options.config }));
    case "stats":
      if (method !== "GET" || name !== "") return methodNotAllowed("GET");
      return json(200, broker.stats());
    default:
      return error(404, `no such resource: ${url.pathname}`);
  }
}
