/**
 * Mirrors the broker's durable state (persistent sessions, their outbound messages, inbound QoS 2
 * ids, retained messages) into a `Persistence` store, and restores it at start-up.
 *
 * Only persistent sessions are mirrored: a clean session ends with its connection anyway.
 *
 * @module
 */
import type { QoS } from "./codec/packet.ts";
import type { StateMirror } from "./context.ts";
import type { Logger } from "./logger.ts";
import { Message } from "./message.ts";
import type { Limits } from "./options.ts";
import type { OutboundState, Persistence } from "./persistence/persistence.ts";
import type { RetainedStore } from "./retained_store.ts";
import type { Router } from "./router.ts";
import {
  type Outgoing,
  QUEUED,
  RELEASED,
  SENT,
  Session,
  type SessionContext,
  type SessionObserver,
} from "./session/session.ts";

const STATE_NAMES: Record<Outgoing["state"], OutboundState> = {
  [QUEUED]: "queued",
  [SENT]: "sent",
  [RELEASED]: "pubrel",
};
const STATES: Record<OutboundState, Outgoing["state"]> = {
  queued: QUEUED,
  sent: SENT,
  pubrel: RELEASED,
};

/** The bridge from broker state changes to store calls. */
export class DurableState implements StateMirror, SessionObserver {
  readonly store: Persistence;

  constructor(store: Persistence) {
    this.store = store;
  }

  durable(): Promise<void> {
    // Always the store's batch promise, even with nothing pending: acks of one connection then
    // resolve in the order they were queued [MQTT-4.6.0-2].
    return this.store.commit();
  }

  sessionSaved(session: Session): void {
    const subscriptions = [];
    for (const [topicFilter, qos] of session.subscriptions) {
      subscriptions.push({ topicFilter, qos });
    }
    this.store.saveSession({
      clientId: session.clientId,
      subscriptions,
      expiresAt: session.expiresAt,
    });
  }

  sessionDeleted(session: Session): void {
    this.store.deleteSession(session.clientId);
  }

  retainedChanged(message: Message): void {
    this.store.setRetained({
      topic: message.topic,
      payload: message.payload,
      qos: message.qos,
      retain: true,
    });
  }

  inboundQos2Added(session: Session, packetId: number): void {
    this.store.addInboundQos2(session.clientId, packetId);
  }

  inboundQos2Removed(session: Session, packetId: number): void {
    this.store.deleteInboundQos2(session.clientId, packetId);
  }

  outgoingAdded(session: Session, entry: Outgoing): void {
    if (session.clean || entry.qos === 0) return;
    const { message } = entry;
    this.store.addOutbound({
      clientId: session.clientId,
      seq: entry.seq,
      packetId: entry.packetId,
      state: STATE_NAMES[entry.state],
      message: {
        topic: message.topic,
        payload: message.payload,
        qos: entry.qos,
        retain: entry.retain,
      },
    });
  }

  outgoingChanged(session: Session, entry: Outgoing): void {
    if (session.clean || entry.qos === 0) return;
    this.store.updateOutbound(
      session.clientId,
      entry.seq,
      entry.packetId,
      STATE_NAMES[entry.state],
    );
  }

  outgoingRemoved(session: Session, entry: Outgoing): void {
    if (session.clean || entry.qos === 0) return;
    this.store.deleteOutbound(session.clientId, entry.seq);
  }
}

/** Where restored state goes. */
export interface RestoreTarget {
  limits: Limits;
  log: Logger;
  router: Router;
  retained: RetainedStore;
  sessions: Map<string, Session>;
  sessionContext: SessionContext;
}

/**
 * Opens the store and loads what it holds into the broker, within the limits, and logs what was
 * loaded and what was left out. A store that cannot be read is moved aside by the store itself,
 * which also logs it.
 */
export async function restoreState(store: Persistence, target: RestoreTarget): Promise<void> {
  const { limits, log } = target;
  // A store that could not be read was moved aside by the store, which logs that itself (one
  // line naming both files); a second line here would say the same thing again.
  await store.open();
  const loaded = store.load({
    maxSessions: limits.maxSessions,
    maxRetained: limits.maxRetained,
    maxRetainedBytes: limits.maxRetainedBytes,
    maxQueued: limits.maxQueued,
  });
  for (const r of loaded.retained) {
    target.retained.set(new Message(r.topic, r.payload, r.qos, true));
  }
  const now = Date.now();
  let messages = 0;
  for (const record of loaded.sessions) {
    const session = new Session(
      record.clientId,
      false,
      { clientId: record.clientId },
      target.sessionContext,
    );
    // A session saved while its client was connected (expiresAt 0) starts its expiry now.
    session.expiresAt = record.expiresAt !== 0
      ? record.expiresAt
      : limits.sessionExpiryMs === 0
      ? 0
      : now + limits.sessionExpiryMs;
    target.sessions.set(record.clientId, session);
    for (const { topicFilter, qos } of record.subscriptions) {
      target.router.subscribe(session, topicFilter, qos);
    }
    for (const o of record.outbound) {
      const m = o.message;
      session.restore({
        message: new Message(m.topic, m.payload, m.qos as QoS, m.retain),
        qos: m.qos as QoS,
        retain: m.retain,
        packetId: o.packetId,
        state: STATES[o.state],
        seq: o.seq,
      });
      messages++;
    }
    for (const id of record.inboundQos2) session.addInboundQos2(id);
  }
  const { skipped } = loaded;
  log.info(
    `persistence: restored ${loaded.sessions.length} sessions, ${messages} messages, ` +
      `${loaded.retained.length} retained messages`,
  );
  if (skipped.sessions || skipped.retained || skipped.messages) {
    log.warn(
      `persistence: over the limits, not loaded: ${skipped.sessions} sessions (maxSessions), ` +
        `${skipped.retained} retained messages (maxRetained/maxRetainedBytes), ` +
        `${skipped.messages} queued messages (maxQueued, or their session was not loaded)`,
    );
  }
  if (skipped.expiredSessions) {
    log.info(`persistence: ${skipped.expiredSessions} expired sessions removed`);
  }
}
