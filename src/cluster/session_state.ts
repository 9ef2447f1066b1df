/**
 * A session's state as it moves between nodes: taken out of one broker when another node takes
 * the client id, put into the other before its CONNACK.
 *
 * @module
 */
import type { QoS } from "../codec/packet.ts";
import type { ClientInfo } from "../hooks.ts";
import { Message } from "../message.ts";
import type { Router } from "../router.ts";
import {
  type Outgoing,
  Session,
  type SessionContext,
  type SubscriptionOptions,
} from "../session/session.ts";
import type { SessionState } from "./link.ts";

/**
 * Subscriptions, outbound messages (in flight first, then queued; those in `skip` left out) and
 * inbound QoS 2 ids.
 */
export function exportSession(
  session: Session,
  idOf: (message: Message) => string | undefined = () => undefined,
  skip?: ReadonlySet<Outgoing>,
): SessionState {
  const subscriptions = [...session.subscriptions].map(([topicFilter, options]) =>
    subscriptionEntry(topicFilter, options)
  );
  const messages = [];
  for (const entry of session.outgoing()) {
    if (entry.qos === 0 || skip?.has(entry)) continue;
    const { message } = entry;
    const out: SessionState["messages"][number] = {
      topic: message.topic,
      payload: message.payload,
      qos: entry.qos,
      retain: entry.retain,
      packetId: entry.packetId,
      state: entry.state,
      id: idOf(message),
    };
    if (message.properties !== undefined) out.properties = message.properties;
    if (message.expiresAt !== 0) out.expiresAt = message.expiresAt;
    messages.push(out);
  }
  return { subscriptions, messages, inboundQos2: [...session.inboundQos2Ids] };
}

/** A subscription as a session's state carries it: the options only when they say more. */
export function subscriptionEntry(
  topicFilter: string,
  options: SubscriptionOptions,
): SessionState["subscriptions"][number] {
  const { qos } = options;
  return options.noLocal || options.retainAsPublished || options.retainHandling !== 0 ||
      options.subscriptionId !== undefined
    ? { topicFilter, qos, options }
    : { topicFilter, qos };
}

/** Where an adopted session goes. */
export interface AdoptTarget {
  sessions: Map<string, Session>;
  router: Router;
  sessionContext: SessionContext;
}

/** Rebuilds a persistent session handed over by another node; returns it, registered. */
export function adoptSession(
  target: AdoptTarget,
  clientId: string,
  client: ClientInfo,
  state: SessionState,
): Session {
  const session = new Session(clientId, false, client, target.sessionContext);
  target.sessions.set(clientId, session);
  for (const { topicFilter, qos, options } of state.subscriptions) {
    target.router.subscribe(session, topicFilter, options ?? (qos as QoS));
  }
  addMessages(session, state.messages);
  for (const id of state.inboundQos2) session.addInboundQos2(id);
  return session;
}

/** Puts handed-over messages into a session, after what it holds. */
export function addMessages(session: Session, messages: SessionState["messages"]): void {
  let seq = 0;
  for (const e of session.outgoing()) if (e.seq > seq) seq = e.seq;
  for (const m of messages) {
    session.restore({
      message: new Message(m.topic, m.payload, m.qos, false, m.properties, m.expiresAt ?? 0),
      qos: m.qos,
      retain: m.retain,
      packetId: m.packetId,
      state: m.state,
      seq: ++seq,
    });
  }
}

const utf8 = new TextEncoder();
const text = new TextDecoder();

/** Bytes as base64 (for JSON). */
export function base64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

/** The inverse of {@link base64}. */
export function unbase64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** JSON bytes of a state (payloads in base64); `undefined` becomes an empty object. */
export function encodeSessionState(state: SessionState | undefined): Uint8Array {
  if (state === undefined) return utf8.encode("{}");
  return utf8.encode(JSON.stringify({
    ...state,
    messages: state.messages.map((m) => ({
      ...m,
      payload: base64(m.payload),
      ...(m.properties?.correlationData === undefined ? {} : {
        properties: { ...m.properties, correlationData: base64(m.properties.correlationData) },
      }),
    })),
  }));
}

/** The inverse of {@link encodeSessionState}. */
export function decodeSessionState(bytes: Uint8Array): SessionState | undefined {
  const json = JSON.parse(text.decode(bytes));
  if (!Array.isArray(json.subscriptions)) return undefined;
  return {
    subscriptions: json.subscriptions,
    inboundQos2: json.inboundQos2 ?? [],
    messages: (json.messages ?? []).map((
      m: { payload: string; properties?: { correlationData?: string } },
    ) => ({
      ...m,
      payload: unbase64(m.payload),
      ...(typeof m.properties?.correlationData !== "string" ? {} : {
        properties: { ...m.properties, correlationData: unbase64(m.properties.correlationData) },
      }),
    })),
  };
}
