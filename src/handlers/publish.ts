/**
 * PUBLISH and PUBREL from a client: validation, authorisation, QoS 1/2 acknowledgement and
 * exactly-once for inbound QoS 2.
 *
 * @module
 */
import { encodeAck } from "../codec/encoder.ts";
import type { PublishPacket } from "../codec/packet.ts";
import type { Connection } from "../connection.ts";
import { ProtocolError } from "../connection.ts";
import { Message } from "../message.ts";
import type { Session } from "../session/session.ts";
import { validateTopicName } from "../topic/topic.ts";

// "$SYS" or "$SYS/…": the broker's own topics; clients may not publish there.
function isBrokerSysTopic(topic: string): boolean {
  return topic.charCodeAt(0) === 36 && topic.startsWith("$SYS") &&
    (topic.length === 4 || topic.charCodeAt(4) === 47);
}

/** Handles a PUBLISH from a client. */
export function handlePublish(
  connection: Connection,
  session: Session,
  packet: PublishPacket,
): void | Promise<void> {
  const { ctx } = connection;
  const { limits } = ctx;
  ctx.counters.messagesIn++;
  const error = validateTopicName(packet.topic, limits.maxTopicLength, limits.maxTopicLevels);
  if (error !== undefined) throw new ProtocolError(`PUBLISH topic: ${error}`); // [MQTT-3.3.2-2]
  connection.chargeRate(packet.payload.length);
  if (isBrokerSysTopic(packet.topic)) return finish(connection, session, packet, false);
  const authorize = ctx.hooks.authorizePublish;
  if (authorize === undefined) return finish(connection, session, packet, true);
  const verdict = authorize(connection.client, packet.topic, packet.qos, packet.retain);
  if (verdict instanceof Promise) {
    return verdict.then((allowed) => {
      if (!connection.isClosed) finish(connection, session, packet, allowed === true);
    });
  }
  finish(connection, session, packet, verdict === true);
}

function finish(
  connection: Connection,
  session: Session,
  packet: PublishPacket,
  allowed: boolean,
): void {
  const { ctx } = connection;
  const { qos, packetId } = packet;
  if (qos === 2) {
    // Exactly once: a resent PUBLISH whose PUBREL has not come is acknowledged, not routed [MQTT-4.3.3-2].
    if (session.hasInboundQos2(packetId!)) {
      connection.sendPacket(encodeAck("pubrec", packetId!));
      return;
    }
    session.addInboundQos2(packetId!);
    if (!session.clean) ctx.mirror?.inboundQos2Added(session, packetId!);
  }
  if (allowed) {
    ctx.publish(new Message(packet.topic, packet.payload, qos, packet.retain), connection.client);
  } else {
    // A refused PUBLISH is acknowledged at its QoS and dropped, as mosquitto does.
    ctx.counters.dropped.notAuthorized++;
  }
  if (qos === 0) return;
  const ack = encodeAck(qos === 1 ? "puback" : "pubrec", packetId!); // [MQTT-4.3.2-2] [MQTT-4.3.3-2]
  const durable = ctx.mirror?.durable();
  if (durable === undefined) connection.sendPacket(ack);
  else {
    // Acks leave only once the message is stored; later PUBLISHes keep flowing meanwhile.
    durable.then(
      () => connection.sendPacket(ack),
      () => connection.close("persistence failed", false),
    );
  }
}

/** PUBREL: the client releases an inbound QoS 2 message; answer PUBCOMP even for unknown ids. */
export function handlePubrel(connection: Connection, session: Session, packetId: number): void {
  const { ctx } = connection;
  if (session.deleteInboundQos2(packetId) && !session.clean) {
    ctx.mirror?.inboundQos2Removed(session, packetId);
  }
  const ack = encodeAck("pubcomp", packetId);
  const durable = ctx.mirror?.durable();
  if (durable === undefined) connection.sendPacket(ack);
  else {durable.then(() =>
      connection.sendPacket(ack), () =>
      connection.close("persistence failed", false));}
}
