/**
 * The state mirror of a clustered broker: the store's mirror (if any) plus the cluster, so that
 * every ack that waits for the store also waits for NATS, and a persistent session's changes
 * are recorded cluster-wide.
 *
 * @module
 */
import type { StateMirror } from "../context.ts";
import type { Message } from "../message.ts";
import { NEVER_EXPIRES } from "../session/registry.ts";
import type { Session } from "../session/session.ts";
import type { ClusterLink } from "./link.ts";

/** Joins the store's mirror and the cluster link into one `StateMirror`. */
export function clusterMirror(inner: StateMirror | undefined, link: ClusterLink): StateMirror {
  return {
    durable() {
      const stored = inner?.durable();
      const settled = link.settled();
      return stored === undefined ? settled : Promise.all([stored, settled]).then(() => {});
    },
    sessionSaved(session: Session) {
      inner?.sessionSaved(session);
      const interval = session.expiryIntervalS;
      link.sessionSaved(
        session.clientId,
        session.subscriptions,
        session.expiresAt,
        interval === undefined ? undefined : interval === NEVER_EXPIRES ? 0 : interval * 1000,
      );
    },
    // The broker tells the link itself, for clean sessions too.
    sessionDeleted(session: Session) {
      inner?.sessionDeleted(session);
    },
    retainedChanged(message: Message) {
      inner?.retainedChanged(message);
    },
    inboundQos2Added(session: Session, packetId: number) {
      inner?.inboundQos2Added(session, packetId);
    },
    inboundQos2Removed(session: Session, packetId: number) {
      inner?.inboundQos2Removed(session, packetId);
    },
  };
}
