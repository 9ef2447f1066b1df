/**
 * Mirrors the broker's durable state (persistent sessions with their subscription options,
 * expiry interval and delayed will, their outbound messages, inbound QoS 2 ids, retained
 * messages, message properties and expiry deadlines) into a `Persistence` store, and restores it
 * at start-up.
 *
 * Only persistent sessions are mirrored: a clean session ends with its connection anyway.
 *
 * @module
 */
import type { QoS, Will } from "./codec/packet.ts";
import type { StateMirror } from "./context.ts";
import type { ClientInfo } from "./hooks.ts";
import type { Logger } from "./logger.ts";
import { Message } from "./message.ts";
import type { Limits } from "./options.ts";
import type {
  OutboundState,
  Persistence,
  SessionRecord,
  StoredSubscription,
  StoredWill,
} from "./persistence/persistence.ts";
import type { RetainedStore } from "./retained_store.ts";
import type { Router } from "./router.ts";
import {
  type DelayedWill,
  type Outgoing,
  QUEUED,
  RELEASED,
  SENT,
  Session,
  type SessionContext,
  type SessionObserver,
  type SubscriptionOptions,
} from "./session/session.ts";
import { isSharedFilter } from "./topic/shared.ts";

/** A Session Expiry Interval that means "never" (5.0). */
const NEVER = 0xffff_ffff;
const EMPTY = new Uint8Array(0);

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
    const subscriptions: StoredSubscription[] = [];
    for (const [topicFilter, options] of session.subscriptions) {
      subscriptions.push(storedSubscription(topicFilter, options));
    }
    const record: SessionRecord = {
      clientId: session.clientId,
      subscriptions,
      expiresAt: session.expiresAt,
    };
    if (session.expiryIntervalS !== undefined) record.expiryIntervalS = session.expiryIntervalS;
    if (session.delayedWill !== undefined) record.will = storedWill(session.delayedWill);
    this.store.saveSession(record);
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
      properties: message.properties,
      expiresAt: message.expiresAt,
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
        properties: message.properties,
        expiresAt: message.expiresAt,
      },
      subscriptionIds: entry.subscriptionIds as number[] | undefined,
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

function storedSubscription(topicFilter: string, o: SubscriptionOptions): StoredSubscription {
  const s: StoredSubscription = { topicFilter, qos: o.qos };
  if (o.noLocal) s.noLocal = true;
  if (o.retainAsPublished) s.retainAsPublished = true;
  if (o.retainHandling !== 0) s.retainHandling = o.retainHandling;
  if (o.subscriptionId !== undefined) s.subscriptionId = o.subscriptionId;
  return s;
}

function subscriptionOptions(s: StoredSubscription): SubscriptionOptions {
  const o: SubscriptionOptions = {
    qos: s.qos,
    noLocal: s.noLocal ?? false,
    retainAsPublished: s.retainAsPublished ?? false,
    retainHandling: s.retainHandling ?? 0,
  };
  if (s.subscriptionId !== undefined) o.subscriptionId = s.subscriptionId;
  return o;
}

/**
 * The stored form of a delayed will: the forwarded properties, the will's own Message Expiry
 * Interval (it starts when the will is published) and when it is due. The Will Delay Interval
 * itself is spent: `publishAt` holds what is left of it.
 */
function storedWill({ will, publishAt }: DelayedWill): StoredWill {
  const stored: StoredWill = {
    topic: will.topic,
    payload: will.payload,
    qos: will.qos,
    retain: will.retain,
    publishAt,
  };
  const p = will.properties;
  if (p !== undefined) {
    const { payloadFormatIndicator, contentType, responseTopic, correlationData, userProperties } =
      p;
    const properties: NonNullable<StoredWill["properties"]> = {};
    let any = false;
    if (payloadFormatIndicator !== undefined) {
      properties.payloadFormatIndicator = payloadFormatIndicator;
      any = true;
    }
    if (contentType !== undefined) {
      properties.contentType = contentType;
      any = true;
    }
    if (responseTopic !== undefined) {
      properties.responseTopic = responseTopic;
      any = true;
    }
    if (correlationData !== undefined) {
      properties.correlationData = correlationData;
      any = true;
    }
    if (userProperties !== undefined) {
      properties.userProperties = userProperties;
      any = true;
    }
    if (any) stored.properties = properties;
    if (p.messageExpiryInterval !== undefined) stored.messageExpiryS = p.messageExpiryInterval;
  }
  return stored;
}

/** The will as CONNECT gave it, from its stored form (without the spent Will Delay Interval). */
function restoredWill(stored: StoredWill): Will {
  const will: Will = {
    topic: stored.topic,
    payload: stored.payload,
    qos: stored.qos,
    retain: stored.retain,
  };
  if (stored.properties !== undefined || stored.messageExpiryS !== undefined) {
    will.properties = { ...stored.properties };
    if (stored.messageExpiryS !== undefined) {
      will.properties.messageExpiryInterval = stored.messageExpiryS;
    }
  }
  return will;
}

/** A will the broker must publish now that it has started. */
export interface DueWill {
  /** Who it is from (after a restart, only the client id is known). */
  client: ClientInfo;
  /** The will, its Will Delay spent. */
  will: Will;
}

/** What `restoreState` leaves for the broker to do. */
export interface RestoreResult {
  /**
   * Wills of sessions that expired while the broker was down (the end of a session publishes its
   * will [MQTT-3.1.2-8]): publish them now, in this order. (A loaded session keeps its will in
   * `delayedWill`, due or not.)
   */
  dueWills: DueWill[];
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
export async function restoreState(
  store: Persistence,
  target: RestoreTarget,
): Promise<RestoreResult> {
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
    target.retained.set(
      new Message(r.topic, r.payload, r.qos, true, r.properties, r.expiresAt ?? 0),
    );
  }
  // A retained message removed for its age is deleted from the store too.
  target.retained.onExpired = (message) => {
    store.setRetained({ topic: message.topic, payload: EMPTY, qos: 0, retain: true });
  };
  const now = Date.now();
  const dueWills: DueWill[] = [];
  for (const { clientId, will } of loaded.expiredWills) {
    dueWills.push({ client: { clientId }, will: restoredWill(will) });
  }
  let messages = 0;
  let sharedSkipped = 0;
  for (const record of loaded.sessions) {
    const session = new Session(
      record.clientId,
      false,
      { clientId: record.clientId },
      target.sessionContext,
    );
    session.expiryIntervalS = record.expiryIntervalS;
    // A session saved while its client was connected (expiresAt 0) starts its expiry now: its
    // own 5.0 interval (within today's cap), or the broker's for a 3.1.1 session.
    const interval = record.expiryIntervalS;
    const expiryMs = interval === undefined
      ? limits.sessionExpiryMs
      : interval === NEVER && limits.maxSessionExpiry === NEVER
      ? 0
      : Math.min(interval, limits.maxSessionExpiry) * 1000;
    // (An interval of 0 ends the session with its connection, which is gone: it ends now.)
    session.expiresAt = record.expiresAt !== 0
      ? record.expiresAt
      : interval === 0
      ? now
      : expiryMs === 0
      ? 0
      : now + expiryMs;
    // A will whose time passed while the broker was down keeps its past `publishAt`: the
    // session registry's first sweep publishes it.
    if (record.will !== undefined) {
      session.delayedWill = { will: restoredWill(record.will), publishAt: record.will.publishAt };
    }
    target.sessions.set(record.clientId, session);
    for (const s of record.subscriptions) {
      if (!limits.sharedSubscriptionAvailable && isSharedFilter(s.topicFilter)) {
        sharedSkipped++;
        continue;
      }
      target.router.subscribe(session, s.topicFilter, subscriptionOptions(s));
    }
    for (const o of record.outbound) {
      const m = o.message;
      const entry: Outgoing = {
        message: new Message(
          m.topic,
          m.payload,
          m.qos as QoS,
          m.retain,
          m.properties,
          m.expiresAt ?? 0,
        ),
        qos: m.qos as QoS,
        retain: m.retain,
        packetId: o.packetId,
        state: STATES[o.state],
        seq: o.seq,
      };
      if (o.subscriptionIds !== undefined) entry.subscriptionIds = o.subscriptionIds;
      session.restore(entry);
      messages++;
    }
    for (const id of record.inboundQos2) session.addInboundQos2(id);
  }
  if (sharedSkipped > 0) {
    log.warn(
      `persistence: ${sharedSkipped} shared subscriptions not restored: shared subscriptions are off`,
    );
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
  if (skipped.expiredMessages) {
    log.info(`persistence: ${skipped.expiredMessages} expired messages removed`);
  }
  return { dueWills };
}
