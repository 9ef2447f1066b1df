/**
 * MQTT 5.0 packet bodies (private to the codec). The framing, the fixed-header flags and the
 * 3.1.1 bodies are in decoder.ts; this file reads what 5.0 adds: reason codes, properties,
 * subscription options and AUTH. Every rule carries its tag and the reason code the standard
 * gives it: 0x81 for what does not parse, 0x82 for what parses but is not allowed.
 *
 * @module
 */

import {
  type AuthPacket,
  type ConnackPacket,
  connackReturnCode,
  type ConnectPacket,
  DecodeError,
  type DisconnectPacket,
  type Packet,
  type PublishAckPacket,
  type PublishPacket,
  type QoS,
  REASON,
  type RetainHandling,
  type Subscription,
  type Will,
} from "./packet.ts";
import { LEND, type Reader } from "./_reader.ts";
import { KIND, readProperties } from "./_properties.ts";
import { ALLOWED_REASON_CODES, REASON_CODE_TAG } from "./_reason_codes.ts";

function protocolError(message: string, specRef = "", reasonCode: number = REASON.protocolError) {
  return new DecodeError(`Cannot decode packet: ${message}`, specRef, reasonCode);
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(2, "0").toUpperCase()}`;
}

function reasonCode(r: Reader, type: string): number {
  const code = r.u8("reason code");
  if (ALLOWED_REASON_CODES[type][code] !== 1) {
    throw protocolError(`${type.toUpperCase()} reason code ${hex(code)}`, REASON_CODE_TAG[type]);
  }
  return code;
}

/** A 5.0 CONNECT after its protocol name, level, flags and keep alive. */
export function decodeConnectV5(
  r: Reader,
  protocolName: string,
  protocolLevel: number,
  flags: number,
  keepAlive: number,
): ConnectPacket {
  r.v5 = true;
  // [MQTT-3.1.2-3] the reserved flag is 0; otherwise the packet is malformed
  if ((flags & 0x01) !== 0) {
    throw new DecodeError("Cannot decode packet: CONNECT reserved flag is set", "[MQTT-3.1.2-3]");
  }
  const willFlag = (flags & 0x04) !== 0;
  const willQos = (flags >> 3) & 3;
  const willRetain = (flags & 0x20) !== 0;
  if (!willFlag) {
    // [MQTT-3.1.2-11] without a will, Will QoS is 0; [MQTT-3.1.2-13] and Will Retain is 0
    if (willQos !== 0) {
      throw new DecodeError(
        "Cannot decode packet: CONNECT Will QoS set without Will Flag",
        "[MQTT-3.1.2-11]",
      );
    }
    if (willRetain) {
      throw new DecodeError(
        "Cannot decode packet: CONNECT Will Retain set without Will Flag",
        "[MQTT-3.1.2-13]",
      );
    }
  } else if (willQos === 3) {
    // [MQTT-3.1.2-12] Will QoS is 0, 1 or 2; 3 is a Malformed Packet
    throw new DecodeError("Cannot decode packet: CONNECT Will QoS 3", "[MQTT-3.1.2-12]");
  }
  // 5.0 allows a password without a user name (3.1.2.9), unlike 3.1.1's [MQTT-3.1.2-22].
  const properties = readProperties(r, KIND.connect, "CONNECT");
  const packet: ConnectPacket = {
    type: "connect",
    protocolName,
    protocolLevel,
    cleanSession: (flags & 0x02) !== 0,
    keepAlive,
    // [MQTT-3.1.3-3] the client identifier comes first; [MQTT-3.1.3-4] as a UTF-8 string
    clientId: r.string("client identifier"),
  };
  if (willFlag) {
    // [MQTT-3.1.3-1] Will Properties, then Will Topic, then Will Payload [MQTT-3.1.2-9]
    const willProperties = readProperties(r, KIND.will, "Will Properties");
    const topic = r.string("will topic"); // [MQTT-3.1.3-11]
    const payload = r.bytes("will payload");
    const will: Will = { topic, payload, qos: willQos as QoS, retain: willRetain };
    if (willProperties !== undefined) will.properties = willProperties;
    packet.will = will;
  }
  // [MQTT-3.1.2-16] [MQTT-3.1.2-17] a user name exactly when its flag is set; [MQTT-3.1.3-12]
  if ((flags & 0x80) !== 0) packet.username = r.string("user name");
  // [MQTT-3.1.2-18] [MQTT-3.1.2-19] a password exactly when its flag is set
  if ((flags & 0x40) !== 0) packet.password = r.bytes("password");
  if (properties !== undefined) packet.properties = properties;
  return packet;
}

export function decodeConnackV5(r: Reader): ConnackPacket {
  const ackFlags = r.u8("connect acknowledge flags");
  // [MQTT-3.2.2-1] bits 7-1 are reserved and 0
  if ((ackFlags & 0xfe) !== 0) {
    throw new DecodeError(
      "Cannot decode packet: CONNACK reserved acknowledge flags are set",
      "[MQTT-3.2.2-1]",
    );
  }
  const code = reasonCode(r, "connack");
  // [MQTT-3.2.2-6] a CONNACK with a non-zero reason code has Session Present 0
  if (ackFlags === 1 && code !== 0) {
    throw protocolError("CONNACK refusal with Session Present", "[MQTT-3.2.2-6]");
  }
  const properties = readProperties(r, KIND.connack, "CONNACK");
  const packet: ConnackPacket = {
    type: "connack",
    sessionPresent: ackFlags === 1,
    returnCode: connackReturnCode(code),
    reasonCode: code,
  };
  if (properties !== undefined) packet.properties = properties;
  return packet;
}

/**
 * A 5.0 PUBLISH after its fixed header (QoS and DUP already checked). `server` rejects what only
 * a server may send.
 */
export function decodePublishV5(
  r: Reader,
  flags: number,
  qos: QoS,
  dup: boolean,
  server: boolean,
): PublishPacket {
  // [MQTT-3.3.2-1] the topic name comes first, a UTF-8 string
  const topic = r.string("topic name");
  // [MQTT-3.3.2-2] no wildcards in a topic name: not a well-formed topic name, so malformed (0x90
  // Topic Name invalid is for a well-formed name the receiver does not accept), as mosquitto
  if (topic.indexOf("+") !== -1 || topic.indexOf("#") !== -1) {
    throw new DecodeError(
      "Cannot decode packet: PUBLISH topic name with a wildcard",
      "[MQTT-3.3.2-2]",
    );
  }
  const packetId = qos === 0 ? 0 : r.packetId();
  const properties = readProperties(r, KIND.publish, "PUBLISH");
  if (topic.length === 0 && properties?.topicAlias === undefined) {
    // 3.3.2.1: a zero-length topic name without a Topic Alias is a Protocol Error
    throw protocolError("PUBLISH with an empty topic name and no Topic Alias");
  }
  // [MQTT-3.3.4-6] a client's PUBLISH carries no Subscription Identifier
  if (server && properties?.subscriptionIdentifiers !== undefined) {
    throw protocolError("PUBLISH from a client with a Subscription Identifier", "[MQTT-3.3.4-6]");
  }
  const packet: PublishPacket = qos === 0
    ? {
      type: "publish",
      topic,
      payload: r.payload(r.end),
      qos,
      retain: (flags & 1) !== 0,
      dup,
    }
    : {
      type: "publish",
      topic,
      payload: r.payload(r.end),
      qos,
      retain: (flags & 1) !== 0,
      dup,
      packetId,
    };
  r.pos = r.end;
  if (r.payloads === LEND) packet.borrowed = true;
  if (properties !== undefined) packet.properties = properties;
  return packet;
}

const ACK_KIND: Readonly<Record<PublishAckPacket["type"], number>> = {
  puback: KIND.puback,
  pubrec: KIND.pubrec,
  pubrel: KIND.pubrel,
  pubcomp: KIND.pubcomp,
};

/** PUBACK, PUBREC, PUBREL, PUBCOMP: the reason code and properties may be left out (3.4.2.1). */
export function decodePubAckV5(r: Reader, type: PublishAckPacket["type"]): PublishAckPacket {
  const packetId = r.packetId();
  if (r.pos === r.end) return { type, packetId };
  const code = reasonCode(r, type);
  if (r.pos === r.end) return { type, packetId, reasonCode: code };
  const properties = readProperties(r, ACK_KIND[type], type.toUpperCase());
  return properties === undefined
    ? { type, packetId, reasonCode: code }
    : { type, packetId, reasonCode: code, properties };
}

export function decodeSubscribeV5(r: Reader): Packet {
  const packetId = r.packetId();
  const properties = readProperties(r, KIND.subscribe, "SUBSCRIBE");
  // [MQTT-3.8.3-2] at least one filter; "a SUBSCRIBE packet with no Payload is a Protocol Error"
  if (r.pos === r.end) {
    throw protocolError("SUBSCRIBE without topic filter", "[MQTT-3.8.3-2]");
  }
  const subscriptions: Subscription[] = [];
  while (r.pos < r.end) {
    const topicFilter = r.string("topic filter"); // [MQTT-3.8.3-1]
    const options = r.u8("subscription options");
    // [MQTT-3.8.3-5] bits 6 and 7 are reserved: a Malformed Packet otherwise
    if ((options & 0xc0) !== 0) {
      throw new DecodeError(
        "Cannot decode packet: SUBSCRIBE options reserved bits are set",
        "[MQTT-3.8.3-5]",
      );
    }
    const qos = options & 3;
    // 3.8.3.1: Maximum QoS 3 is a Protocol Error
    if (qos === 3) throw protocolError("SUBSCRIBE requested QoS 3");
    const retainHandling = (options >> 4) & 3;
    // 3.8.3.1: Retain Handling 3 is a Protocol Error
    if (retainHandling === 3) throw protocolError("SUBSCRIBE Retain Handling 3");
    const noLocal = (options & 4) !== 0;
    // [MQTT-3.8.3-4] No Local on a shared subscription is a Protocol Error
    if (noLocal && topicFilter.startsWith("$share/")) {
      throw protocolError("SUBSCRIBE No Local on a shared subscription", "[MQTT-3.8.3-4]");
    }
    subscriptions.push({
      topicFilter,
      qos: qos as QoS,
      noLocal,
      retainAsPublished: (options & 8) !== 0,
      retainHandling: retainHandling as RetainHandling,
    });
  }
  return properties === undefined
    ? { type: "subscribe", packetId, subscriptions }
    : { type: "subscribe", packetId, subscriptions, properties };
}

export function decodeSubackV5(r: Reader): Packet {
  const packetId = r.packetId();
  const properties = readProperties(r, KIND.suback, "SUBACK");
  if (r.pos === r.end) throw new DecodeError("Cannot decode packet: SUBACK without reason code");
  const returnCodes: number[] = [];
  while (r.pos < r.end) returnCodes.push(reasonCode(r, "suback"));
  return properties === undefined
    ? { type: "suback", packetId, returnCodes }
    : { type: "suback", packetId, returnCodes, properties };
}

export function decodeUnsubscribeV5(r: Reader): Packet {
  const packetId = r.packetId();
  const properties = readProperties(r, KIND.unsubscribe, "UNSUBSCRIBE");
  // [MQTT-3.10.3-2] at least one filter; "an UNSUBSCRIBE packet with no Payload is a Protocol Error"
  if (r.pos === r.end) {
    throw protocolError("UNSUBSCRIBE without topic filter", "[MQTT-3.10.3-2]");
  }
  const topicFilters: string[] = [];
  while (r.pos < r.end) topicFilters.push(r.string("topic filter")); // [MQTT-3.10.3-1]
  return properties === undefined
    ? { type: "unsubscribe", packetId, topicFilters }
    : { type: "unsubscribe", packetId, topicFilters, properties };
}

export function decodeUnsubackV5(r: Reader): Packet {
  const packetId = r.packetId();
  const properties = readProperties(r, KIND.unsuback, "UNSUBACK");
  if (r.pos === r.end) throw new DecodeError("Cannot decode packet: UNSUBACK without reason code");
  const reasonCodes: number[] = [];
  while (r.pos < r.end) reasonCodes.push(reasonCode(r, "unsuback"));
  return properties === undefined
    ? { type: "unsuback", packetId, reasonCodes }
    : { type: "unsuback", packetId, reasonCodes, properties };
}

/** DISCONNECT with a body (remaining length >= 1). `server` is the receiving side's role. */
export function decodeDisconnectV5(r: Reader, server: boolean): DisconnectPacket {
  const code = reasonCode(r, "disconnect");
  // 3.14.2.2: under 2 bytes of remaining length, the property length is 0
  const properties = r.pos === r.end ? undefined : readProperties(r, KIND.disconnect, "DISCONNECT");
  // [MQTT-3.14.2-2] a server never sends Session Expiry Interval on DISCONNECT
  if (!server && properties?.sessionExpiryInterval !== undefined) {
    throw protocolError(
      "DISCONNECT from a server with a Session Expiry Interval",
      "[MQTT-3.14.2-2]",
    );
  }
  return properties === undefined
    ? { type: "disconnect", reasonCode: code }
    : { type: "disconnect", reasonCode: code, properties };
}

/** AUTH. Remaining length 0 means success without properties (3.15.2.1). */
export function decodeAuthV5(r: Reader): AuthPacket {
  const code = r.pos === r.end ? 0 : reasonCode(r, "auth");
  const properties = r.pos === r.end ? undefined : readProperties(r, KIND.auth, "AUTH");
  // 3.15.2.2.2: "It is a Protocol Error to omit the Authentication Method"
  if (properties?.authenticationMethod === undefined) {
    throw protocolError("AUTH without Authentication Method");
  }
  return { type: "auth", reasonCode: code, properties };
}
