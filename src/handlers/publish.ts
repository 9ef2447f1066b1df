/**
 * PUBLISH and PUBREL from a client: validation, 5.0 topic aliases, flow control and message
 * expiry, authorisation, QoS 1/2 acknowledgement with reason codes, and exactly-once for inbound
 * QoS 2.
 *
 * @module
 */
import { isUtf8Payload } from "../codec/decoder.ts";
import type { PublishPacket } from "../codec/packet.ts";
import { REASON } from "../codec/packet.ts";
import type { ClientLink } from "../context.ts";
import { ProtocolError } from "../errors.ts";
import { forwardedProperties, Message } from "../message.ts";
import type { Session } from "../session/session.ts";
import { validateTopicName } from "../topic/topic.ts";
import { afterCommit } from "./_commit.ts";

// "$SYS" or "$SYS/…": the broker's own topics; clients may not publish there.
function isBrokerSysTopic(topic: string): boolean {
  return topic.charCodeAt(0) === 36 && topic.startsWith("$SYS") &&
    (topic.length === 4 || topic.charCodeAt(4) === 47);
}

// 5.0: the topic a PUBLISH stands for, through its Topic Alias [MQTT-3.3.2-7..12].
function resolveAlias(link: ClientLink, packet: PublishPacket): string {
  const alias = packet.properties?.topicAlias;
  if (alias === undefined) {
    if (packet.topic === "") {
      throw new ProtocolError("PUBLISH without topic name or alias", REASON.protocolError);
    }
    return packet.topic;
  }
  const max = link.ctx.limits.topicAliasMaximum;
  if (alias === 0 || alias > max) {
    throw new ProtocolError(
      `topic alias ${alias} outside 1..${max} [MQTT-3.3.2-8] [MQTT-3.3.2-9]`,
      REASON.topicAliasInvalid,
    );
  }
  const v5 = link.v5!;
  if (packet.topic === "") {
    const topic = v5.aliases?.get(alias);
    if (topic === undefined) {
      throw new ProtocolError(`unknown topic alias ${alias}`, REASON.topicAliasInvalid);
    }
    return topic;
  }
  (v5.aliases ??= new Map()).set(alias, packet.topic);
  return packet.topic;
}

/** Handles a PUBLISH from a client. */
export function handlePublish(
  link: ClientLink,
  session: Session,
  packet: PublishPacket,
): void | Promise<void> {
  const { ctx } = link;
  const { limits } = ctx;
  ctx.counters.messagesIn++;
  const v5 = link.v5;
  const topic = v5 === undefined ? packet.topic : resolveAlias(link, packet);
  const error = validateTopicName(topic, limits.maxTopicLength, limits.maxTopicLevels);
  if (error !== undefined) {
    throw new ProtocolError(`PUBLISH topic: ${error}`, REASON.topicNameInvalid); // [MQTT-3.3.2-2]
  }
  const { qos } = packet;
  if (qos > limits.maxQos) {
    throw new ProtocolError(`PUBLISH QoS ${qos} above maxQos`, REASON.qosNotSupported); // [MQTT-3.2.2-11]
  }
  if (packet.retain && !limits.retainAvailable) {
    throw new ProtocolError("PUBLISH with retain: retain not available", REASON.retainNotSupported);
  }
  if (v5 !== undefined && qos > 0 && !(qos === 2 && session.hasInboundQos2(packet.packetId!))) {
    // Our Receive Maximum: one QoS 1/2 PUBLISH more than it allows unacknowledged [MQTT-3.3.4-9].
    if (++v5.inboundPending > limits.receiveMaximum) {
      throw new ProtocolError("receive maximum exceeded", REASON.receiveMaximumExceeded);
    }
  }
  link.chargeRate(packet.payload.length);
  // Payload Format Indicator 1 promises UTF-8; a payload that is not is refused (5.0 3.3.2.3.2).
  if (
    v5 !== undefined && packet.properties?.payloadFormatIndicator === true &&
    !isUtf8Payload(packet.payload)
  ) {
    if (qos === 0) {
      throw new ProtocolError(
        "payload is not UTF-8 as its format says",
        REASON.payloadFormatInvalid,
      );
    }
    return finish(link, session, packet, topic, REASON.payloadFormatInvalid);
  }
  if (isBrokerSysTopic(topic)) return finish(link, session, packet, topic, REASON.notAuthorized);
  // Over the memory budget a 5.0 publisher is told so instead of being paused.
  if (v5 !== undefined && qos > 0 && ctx.counters.memory.over) {
    return finish(link, session, packet, topic, REASON.quotaExceeded);
  }
  const authorize = ctx.hooks.authorizePublish;
  if (authorize === undefined) return finish(link, session, packet, topic, REASON.success);
  const verdict = v5 === undefined
    ? authorize(link.client, topic, qos, packet.retain)
    : authorize(link.client, topic, qos, packet.retain, forwardedProperties(packet.properties));
  if (verdict instanceof Promise) {
    return verdict.then((allowed) => {
      if (!link.isClosed) finish(link, session, packet, topic, refusal(allowed));
    });
  }
  finish(link, session, packet, topic, refusal(verdict));
}

// A hook's verdict as a reason code: 0 allowed, else the failure to report.
function refusal(verdict: boolean | number): number {
  if (verdict === true) return REASON.success;
  if (typeof verdict === "number" && verdict >= 0x80) return verdict;
  return REASON.notAuthorized;
}

function finish(
  link: ClientLink,
  session: Session,
  packet: PublishPacket,
  topic: string,
  refused: number,
): void {
  const { ctx } = link;
  const { qos, packetId } = packet;
  const v5 = link.v5;
  if (qos === 2) {
    // Exactly once: a resent PUBLISH whose PUBREL has not come is acknowledged, not routed [MQTT-4.3.3-2].
    if (session.hasInboundQos2(packetId!)) {
      link.sendAck("pubrec", packetId!, REASON.success);
      return;
    }
    // 5.0: a refused QoS 2 PUBLISH ends with its PUBREC failure code, no PUBREL follows.
    if (refused === 0 || v5 === undefined) {
      session.addInboundQos2(packetId!);
      if (!session.clean) ctx.mirror?.inboundQos2Added(session, packetId!);
    }
  }
  let code: number = REASON.success;
  if (refused === 0) {
    let expiresAt = 0;
    let properties = undefined;
    if (v5 !== undefined) {
      properties = forwardedProperties(packet.properties);
      const expiry = packet.properties?.messageExpiryInterval;
      if (expiry !== undefined) {
        const max = ctx.limits.maxMessageExpiry;
        expiresAt = Date.now() + (expiry > max ? max : expiry) * 1000;
      }
    }
    const message = new Message(
      topic,
      packet.payload,
      qos,
      packet.retain,
      properties,
      expiresAt,
      session.clientId,
    );
    // The payload is a view of the read buffer: copied only by what keeps it (message.ts).
    if (packet.borrowed === true) message.lend();
    ctx.counters.messagesRouted++;
    const delivered = ctx.publish(message, link.client);
    // 5.0 tells a publisher that nobody subscribed [MQTT-3.4.2.1].
    if (delivered === 0 && v5 !== undefined) code = REASON.noMatchingSubscribers;
  } else {
    // 3.1.1: a refused PUBLISH is acknowledged at its QoS and dropped, as mosquitto does;
    // 5.0 says why in the ack.
    if (refused === REASON.quotaExceeded) ctx.counters.dropped.memoryLimit++;
    else if (refused !== REASON.payloadFormatInvalid) ctx.counters.dropped.notAuthorized++;
    if (v5 !== undefined) code = refused;
  }
  if (qos === 0) return;
  const type = qos === 1 ? "puback" : "pubrec"; // [MQTT-4.3.2-2] [MQTT-4.3.3-2]
  // Without a store the ack goes now, without a closure: this is the QoS 1 hot path.
  if (ctx.mirror === undefined) return sendPublishAck(link, type, packetId!, code);
  afterCommit(link, () => sendPublishAck(link, type, packetId!, code), false);
}

function sendPublishAck(
  link: ClientLink,
  type: "puback" | "pubrec",
  packetId: number,
  code: number,
): void {
  const v5 = link.v5;
  // A QoS 1 exchange ends with its PUBACK, a refused QoS 2 one with its PUBREC.
  if (v5 !== undefined && (type === "puback" || code >= 0x80) && v5.inboundPending > 0) {
    v5.inboundPending--;
  }
  link.sendAck(type, packetId, code);
}

/** PUBREL: the client releases an inbound QoS 2 message; PUBCOMP even for unknown ids (5.0: 0x92). */
export function handlePubrel(link: ClientLink, session: Session, packetId: number): void {
  const { ctx } = link;
  const known = session.deleteInboundQos2(packetId);
  if (known && !session.clean) ctx.mirror?.inboundQos2Removed(session, packetId);
  const v5 = link.v5;
  if (v5 !== undefined && known && v5.inboundPending > 0) v5.inboundPending--;
  const code = known ? REASON.success : REASON.packetIdentifierNotFound;
  if (ctx.mirror === undefined) return link.sendAck("pubcomp", packetId, code);
  afterCommit(link, () => link.sendAck("pubcomp", packetId, code), false);
}
