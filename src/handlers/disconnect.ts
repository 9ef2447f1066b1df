/**
 * DISCONNECT from a client: the will is dropped [MQTT-3.14.4-3], in 5.0 only for reason code 0x00
 * [MQTT-3.1.2-10]; a 5.0 client may change its Session Expiry Interval, but not from 0
 * [MQTT-3.14.2-2].
 *
 * @module
 */
import type { DisconnectPacket } from "../codec/packet.ts";
import { REASON } from "../codec/packet.ts";
import type { ClientLink } from "../context.ts";
import { ProtocolError } from "../errors.ts";
import type { Session } from "../session/session.ts";

/** Handles a DISCONNECT. */
export function handleDisconnect(
  link: ClientLink,
  session: Session,
  packet: DisconnectPacket,
): void {
  const v5 = link.v5;
  if (v5 !== undefined) {
    const asked = packet.properties?.sessionExpiryInterval;
    if (asked !== undefined) {
      if (v5.sessionExpiryS === 0 && asked !== 0) {
        throw new ProtocolError(
          "DISCONNECT sets a Session Expiry Interval after CONNECT's 0 [MQTT-3.14.2-2]",
        );
      }
      const max = link.ctx.limits.maxSessionExpiry;
      const granted = asked > max ? max : asked;
      v5.sessionExpiryS = granted;
      session.expiryIntervalS = granted;
      if (granted === 0 && !session.clean) {
        link.ctx.mirror?.sessionDeleted(session);
        session.clean = true;
      }
    }
  }
  // Only a normal disconnection (0x00) deletes the will [MQTT-3.1.2-10]: 0x04 asks for it, and a
  // client ending with an error code (≥ 0x80) has its will published as for an abnormal close.
  // (mosquitto 2.0.11 publishes it for 0x04 only.)
  const code = packet.reasonCode ?? REASON.normalDisconnection;
  if (code === REASON.normalDisconnection) link.will = undefined;
  link.close("disconnect", true);
}
