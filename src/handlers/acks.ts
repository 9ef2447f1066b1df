/**
 * PUBACK, PUBREC and PUBCOMP from a client, for the messages we sent it. An ack whose type does
 * not fit the message's QoS or state is a protocol violation in both versions [MQTT-4.8.0-1]:
 * PUBREC or PUBCOMP for QoS 1, PUBACK for QoS 2, PUBCOMP before PUBREL.
 *
 * @module
 */
import type { PublishAckPacket } from "../codec/packet.ts";
import { REASON } from "../codec/packet.ts";
import type { ClientLink } from "../context.ts";
import { ProtocolError } from "../errors.ts";
import { ACK_MISMATCH, ACK_UNKNOWN, type Session } from "../session/session.ts";

function mismatch(packet: PublishAckPacket): ProtocolError {
  return new ProtocolError(
    `${packet.type.toUpperCase()} does not fit packet id ${packet.packetId} [MQTT-4.8.0-1]`,
  );
}

/** PUBACK: completes a QoS 1 message. Unknown ids (late duplicates) are ignored. */
export function handlePuback(_link: ClientLink, session: Session, packet: PublishAckPacket): void {
  if (session.acknowledge(packet.packetId) === ACK_MISMATCH) throw mismatch(packet);
}

/**
 * PUBREC: releases a QoS 2 message with PUBREL; a 5.0 failure code (≥ 0x80) ends the exchange
 * instead. An unknown id is answered PUBREL all the same (5.0: with 0x92).
 */
export function handlePubrec(link: ClientLink, session: Session, packet: PublishAckPacket): void {
  const reasonCode = packet.reasonCode ?? 0;
  const outcome = session.received(packet.packetId, reasonCode);
  if (outcome === ACK_MISMATCH) throw mismatch(packet);
  if (reasonCode >= 0x80) return;
  if (outcome === ACK_UNKNOWN && link.v5 !== undefined) {
    link.send({
      type: "pubrel",
      packetId: packet.packetId,
      reasonCode: REASON.packetIdentifierNotFound,
    });
    return;
  }
  link.sendPubrel(packet.packetId);
}

/** PUBCOMP: completes a QoS 2 message after our PUBREL. Unknown ids are ignored. */
export function handlePubcomp(_link: ClientLink, session: Session, packet: PublishAckPacket): void {
  if (session.completed(packet.packetId) === ACK_MISMATCH) throw mismatch(packet);
}
