/**
 * The session registry: the one owner of the session lifecycle — attach (new, resumed, clean
 * start), detach at the end of a connection, expiry, and wills waiting for their delay.
 *
 * @module
 */
import type { Will } from "../codec/packet.ts";
import type { ClientInfo } from "../hooks.ts";
import type { Limits } from "../options.ts";
import { Session, type SessionContext, type SessionLink } from "./session.ts";

/** 0xFFFFFFFF: a 5.0 Session Expiry Interval that never ends. */
export const NEVER_EXPIRES = 0xffff_ffff;

/** What the registry needs of the broker. */
export interface RegistryDeps {
  readonly limits: Limits;
  readonly sessionContext: SessionContext;
  /** Removes every subscription of a session from the routing table. */
  unsubscribeAll(session: Session): void;
  /** The store mirror's session hooks; no-ops without a store. */
  sessionSaved(session: Session): void;
  sessionDeleted(session: Session): void;
  /** Publishes a will on behalf of `client`. */
  publishWill(client: ClientInfo, will: Will): void;
  /** Debug log line. */
  debug(line: string): void;
  /** Counts a session ended because its expiry passed (before `end()` removes it). */
  expired?(session: Session): void;
  /** Any session ended (clean ones too): a cluster forgets its record. */
  ended?(session: Session): void;
}

/** How a CONNECT wants its session. */
export interface AttachRequest {
  clientId: string;
  client: ClientInfo;
  /** Clean Session (3.1.1) / Clean Start (5.0): discard what exists. */
  cleanStart: boolean;
  /** 5.0: the granted Session Expiry Interval (s); undefined for 3.1.1. */
  expiryIntervalS: number | undefined;
}

/** Sessions by client id, and their lifecycle. */
export class SessionRegistry {
  readonly #deps: RegistryDeps;
  readonly #sessions = new Map<string, Session>();
  // Sessions whose will waits for its delay, checked by the sweep.
  readonly #delayed = new Set<Session>();
  // Epoch ms of the earliest known expiry; 0 at start, so the first sweep looks at restored sessions.
  #nextExpiry = 0;

  constructor(deps: RegistryDeps) {
    this.#deps = deps;
  }

  /** Every session by client id (online and offline). */
  get sessions(): Map<string, Session> {
    return this.#sessions;
  }

  /** Sessions held. */
  get size(): number {
    return this.#sessions.size;
  }

  /** The session of a client id, unless it has expired (then it is ended now). */
  get(clientId: string): Session | undefined {
    const session = this.#sessions.get(clientId);
    // An expired session the sweep has not reached yet is gone all the same.
    if (
      session !== undefined && session.link === undefined && session.expiresAt !== 0 &&
      session.expiresAt <= Date.now()
    ) {
      this.#deps.expired?.(session);
      this.end(session);
      return undefined;
    }
    return session;
  }

  /**
   * Attaches `link` to the client id's session: a new one, or the stored one unless
   * `cleanStart` [MQTT-3.1.2-4/6]. The caller has already taken over any connection still
   * attached. Returns undefined when a new session would pass `maxSessions`.
   */
  attach(
    link: SessionLink,
    request: AttachRequest,
  ): { session: Session; sessionPresent: boolean } | undefined {
    let session = this.get(request.clientId);
    const v5 = request.expiryIntervalS !== undefined;
    const clean = v5 ? request.expiryIntervalS === 0 : request.cleanStart;
    if (session !== undefined && (request.cleanStart || (session.clean && !v5))) {
      this.end(session);
      session = undefined;
    }
    let sessionPresent = false;
    if (session === undefined) {
      if (this.#sessions.size >= this.#deps.limits.maxSessions) return undefined;
      session = new Session(request.clientId, clean, request.client, this.#deps.sessionContext);
      this.#sessions.set(request.clientId, session);
    } else {
      sessionPresent = true; // [MQTT-3.2.2-2]
      session.client = request.client;
      // A will waiting for its delay is not published when the session resumes [MQTT-3.1.3-9].
      if (session.delayedWill !== undefined) {
        session.delayedWill = undefined;
        this.#delayed.delete(session);
      }
      if (session.clean !== clean) {
        if (!clean) session.clean = false;
        else {
          // Persistent → ends with this connection: the store forgets it now.
          this.#deps.sessionDeleted(session);
          session.clean = true;
        }
      }
    }
    session.expiryIntervalS = request.expiryIntervalS;
    session.expiresAt = 0;
    session.link = link;
    if (!session.clean) this.#deps.sessionSaved(session);
    return { session, sessionPresent };
  }

  /**
   * The connection of `session` ended. `will` is what is left to publish (none after a normal
   * DISCONNECT): at once, or after its Will Delay Interval unless the session resumes first; a
   * session that ends now publishes it now [MQTT-3.1.2-8].
   */
  detach(session: Session, will: Will | undefined, client: ClientInfo): void {
    session.link = undefined;
    const delayS = will?.properties?.willDelayInterval ?? 0;
    if (session.clean) {
      this.end(session);
      if (will !== undefined) this.#deps.publishWill(client, will);
      return;
    }
    const now = Date.now();
    const interval = session.expiryIntervalS;
    const expiryMs = interval === undefined
      ? this.#deps.limits.sessionExpiryMs
      : interval === NEVER_EXPIRES
      ? 0
      : interval * 1000;
    session.expiresAt = expiryMs === 0 ? 0 : now + expiryMs;
    if (session.expiresAt !== 0 && session.expiresAt < this.#nextExpiry) {
      this.#nextExpiry = session.expiresAt;
    }
    if (will !== undefined) {
      if (delayS === 0) this.#deps.publishWill(client, will);
      else {
        // Whichever is first: the delay, or the end of the session.
        const delayMs = delayS * 1000;
        const publishAt = expiryMs !== 0 && expiryMs < delayMs ? now + expiryMs : now + delayMs;
        session.delayedWill = { will, publishAt };
        this.#delayed.add(session);
      }
    }
    this.#deps.sessionSaved(session);
  }

  /**
   * Ends a session: its subscriptions, queue and registry entry, and its stored copy. A will
   * waiting for its delay is published now: the session ended first.
   */
  end(session: Session): void {
    this.#deps.unsubscribeAll(session);
    session.discard();
    if (this.#sessions.get(session.clientId) === session) this.#sessions.delete(session.clientId);
    if (!session.clean) this.#deps.sessionDeleted(session);
    this.#deps.ended?.(session);
    const delayed = session.delayedWill;
    if (delayed !== undefined) {
      session.delayedWill = undefined;
      this.#delayed.delete(session);
      this.#deps.publishWill(session.client, delayed.will);
    }
  }

  /**
   * Drops the will waiting for its delay, unpublished: the session resumes elsewhere (another
   * node of a cluster took it within the delay [MQTT-3.1.3-9]).
   */
  cancelDelayedWill(session: Session): void {
    if (session.delayedWill === undefined) return;
    session.delayedWill = undefined;
    this.#delayed.delete(session);
  }

  /** A session loaded from a store, with a will still waiting (if any). */
  restored(session: Session): void {
    if (session.delayedWill !== undefined) this.#delayed.add(session);
    if (session.expiresAt !== 0 && session.expiresAt < this.#nextExpiry) {
      this.#nextExpiry = session.expiresAt;
    }
  }

  /** Publishes wills whose delay has passed and ends expired sessions; called by the sweep. */
  sweep(now: number): void {
    if (this.#delayed.size > 0) {
      for (const session of this.#delayed) {
        const delayed = session.delayedWill!;
        if (delayed.publishAt > now) continue;
        session.delayedWill = undefined;
        this.#delayed.delete(session);
        this.#deps.sessionSaved(session);
        this.#deps.publishWill(session.client, delayed.will);
      }
    }
    if (now < this.#nextExpiry) return;
    // One pass over the sessions only when the earliest known expiry has come.
    let next = Infinity;
    for (const session of this.#sessions.values()) {
      if (session.link !== undefined || session.expiresAt === 0) continue;
      if (session.expiresAt <= now) {
        this.#deps.debug(`session ${JSON.stringify(session.clientId)} expired`);
        this.#deps.expired?.(session);
        this.end(session);
      } else if (session.expiresAt < next) {
        next = session.expiresAt;
      }
    }
    this.#nextExpiry = next;
  }
}
