/**
 * MQTT 3.1.1 and 5.0 control packets as plain objects, discriminated by `type`: one model for both
 * versions. Fields only 5.0 has are optional (`properties`, `reasonCode`, `reasonCodes`, the
 * subscription options), so a 3.1.1 packet is a 5.0 packet without them.
 *
 * Field names follow the standard (`packetId`, `qos`, `dup`, `retain`, `cleanSession`,
 * `keepAlive`, `returnCode`, `sessionPresent`). Bytes are always `Uint8Array`.
 *
 * Codes: handlers speak 5.0 reason codes ({@linkcode REASON}); the 3.1.1 encoder turns them into
 * 3.1.1 return codes with {@linkcode connackReturnCode} and {@linkcode subackReturnCode}, so no
 * handler picks a code by version.
 *
 * @module
 */

/** Quality of service level of a PUBLISH or a subscription. */
export type QoS = 0 | 1 | 2;

/**
 * The protocol level of a connection: 3 (MQTT 3.1, "MQIsdp"), 4 (MQTT 3.1.1) or 5 (MQTT 5.0).
 * Levels 3 and 4 share every packet body.
 */
export type ProtocolVersion = 3 | 4 | 5;

/** Numeric MQTT control packet types (the high nibble of the first byte). */
export const PACKET_TYPE = {
  connect: 1,
  connack: 2,
  publish: 3,
  puback: 4,
  pubrec: 5,
  pubrel: 6,
  pubcomp: 7,
  subscribe: 8,
  suback: 9,
  unsubscribe: 10,
  unsuback: 11,
  pingreq: 12,
  pingresp: 13,
  disconnect: 14,
  auth: 15,
} as const;

/** CONNACK return codes of MQTT 3.1.1, section 3.2.2.3. */
export const CONNACK = {
  accepted: 0x00,
  unacceptableProtocolVersion: 0x01,
  identifierRejected: 0x02,
  serverUnavailable: 0x03,
  badUsernameOrPassword: 0x04,
  notAuthorized: 0x05,
} as const;

/** The SUBACK return code for a refused subscription (3.1.1; 0x80 is also 5.0's unspecified error). */
export const SUBACK_FAILURE = 0x80;

/**
 * Every MQTT 5.0 reason code (section 2.4), by name. Codes below 0x80 report success, the others
 * failure. Several names share a value, as in the standard (0x00 is success, normal disconnection
 * and granted QoS 0).
 */
export const REASON = {
  success: 0x00,
  normalDisconnection: 0x00,
  grantedQos0: 0x00,
  grantedQos1: 0x01,
  grantedQos2: 0x02,
  disconnectWithWillMessage: 0x04,
  noMatchingSubscribers: 0x10,
  noSubscriptionExisted: 0x11,
  continueAuthentication: 0x18,
  reAuthenticate: 0x19,
  unspecifiedError: 0x80,
  malformedPacket: 0x81,
  protocolError: 0x82,
  implementationSpecificError: 0x83,
  unsupportedProtocolVersion: 0x84,
  clientIdentifierNotValid: 0x85,
  badUserNameOrPassword: 0x86,
  notAuthorized: 0x87,
  serverUnavailable: 0x88,
  serverBusy: 0x89,
  banned: 0x8a,
  serverShuttingDown: 0x8b,
  badAuthenticationMethod: 0x8c,
  keepAliveTimeout: 0x8d,
  sessionTakenOver: 0x8e,
  topicFilterInvalid: 0x8f,
  topicNameInvalid: 0x90,
  packetIdentifierInUse: 0x91,
  packetIdentifierNotFound: 0x92,
  receiveMaximumExceeded: 0x93,
  topicAliasInvalid: 0x94,
  packetTooLarge: 0x95,
  messageRateTooHigh: 0x96,
  quotaExceeded: 0x97,
  administrativeAction: 0x98,
  payloadFormatInvalid: 0x99,
  retainNotSupported: 0x9a,
  qosNotSupported: 0x9b,
  useAnotherServer: 0x9c,
  serverMoved: 0x9d,
  sharedSubscriptionsNotSupported: 0x9e,
  connectionRateExceeded: 0x9f,
  maximumConnectTime: 0xa0,
  subscriptionIdentifiersNotSupported: 0xa1,
  wildcardSubscriptionsNotSupported: 0xa2,
} as const;

/** An MQTT 5.0 reason code: one of the values of {@linkcode REASON}. */
export type ReasonCode = number;

/**
 * The 3.1.1 CONNACK return code for a 5.0 CONNACK reason code. Total: every byte maps to one of
 * 0x00..0x05. The 3.1.1 codes 0x01..0x05 map to themselves, so a caller still holding a
 * {@linkcode CONNACK} code gets it back; every other failure is "server unavailable".
 *
 * @example
 * ```ts
 * import { CONNACK, connackReturnCode, REASON } from "./packet.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(connackReturnCode(REASON.badUserNameOrPassword), CONNACK.badUsernameOrPassword);
 * assert.equal(connackReturnCode(REASON.quotaExceeded), CONNACK.serverUnavailable);
 * ```
 */
export function connackReturnCode(reasonCode: ReasonCode): number {
  switch (reasonCode) {
    case 0x00:
    case 0x01:
    case 0x02:
    case 0x03:
    case 0x04:
    case 0x05:
      return reasonCode;
    case REASON.unsupportedProtocolVersion:
      return CONNACK.unacceptableProtocolVersion;
    case REASON.clientIdentifierNotValid:
      return CONNACK.identifierRejected;
    case REASON.badUserNameOrPassword:
      return CONNACK.badUsernameOrPassword;
    case REASON.notAuthorized:
    case REASON.banned:
    case REASON.badAuthenticationMethod:
      return CONNACK.notAuthorized;
    default:
      return CONNACK.serverUnavailable;
  }
}

/**
 * The 5.0 CONNACK reason code for a 3.1.1 return code (the inverse of
 * {@linkcode connackReturnCode} on 0x00..0x05). Any other value is returned unchanged: it is
 * taken to be a 5.0 code already.
 */
export function connackReasonCode(returnCode: number): ReasonCode {
  switch (returnCode) {
    case CONNACK.unacceptableProtocolVersion:
      return REASON.unsupportedProtocolVersion;
    case CONNACK.identifierRejected:
      return REASON.clientIdentifierNotValid;
    case CONNACK.serverUnavailable:
      return REASON.serverUnavailable;
    case CONNACK.badUsernameOrPassword:
      return REASON.badUserNameOrPassword;
    case CONNACK.notAuthorized:
      return REASON.notAuthorized;
    default:
      return returnCode;
  }
}

/**
 * The 3.1.1 SUBACK return code for a 5.0 SUBACK reason code. Total: a granted QoS (0, 1, 2) stays,
 * anything else is 0x80 [MQTT-3.9.3-2].
 *
 * @example
 * ```ts
 * import { REASON, subackReturnCode } from "./packet.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(subackReturnCode(REASON.grantedQos1), 1);
 * assert.equal(subackReturnCode(REASON.quotaExceeded), 0x80);
 * ```
 */
export function subackReturnCode(reasonCode: ReasonCode): number {
  return reasonCode === 0 || reasonCode === 1 || reasonCode === 2 ? reasonCode : SUBACK_FAILURE;
}

/**
 * MQTT 5.0 properties (section 2.2.2.2), all 27 of them, as optional fields. Which packet may carry
 * which property is the codec's property table; the decoder rejects any other placement. Flags
 * that are a byte 0 or 1 on the wire are booleans here.
 */
export interface Properties {
  /** 0x01, PUBLISH and will: `true` when the payload is UTF-8 text. */
  payloadFormatIndicator?: boolean;
  /** 0x02, PUBLISH and will: lifetime of the message in seconds. */
  messageExpiryInterval?: number;
  /** 0x03, PUBLISH and will: MIME type of the payload. */
  contentType?: string;
  /** 0x08, PUBLISH and will: topic for a response. */
  responseTopic?: string;
  /** 0x09, PUBLISH and will: correlation data of a request/response pair. */
  correlationData?: Uint8Array;
  /** 0x0B, PUBLISH (server to client, may repeat): identifiers of the matching subscriptions. */
  subscriptionIdentifiers?: number[];
  /** 0x0B, SUBSCRIBE (once): 1..268 435 455. */
  subscriptionIdentifier?: number;
  /** 0x11, CONNECT, CONNACK, DISCONNECT: seconds; 0xFFFFFFFF never expires. */
  sessionExpiryInterval?: number;
  /** 0x12, CONNACK: the client identifier the server assigned. */
  assignedClientIdentifier?: string;
  /** 0x13, CONNACK: keep alive the client must use, in seconds. */
  serverKeepAlive?: number;
  /** 0x15, CONNECT, CONNACK, AUTH: name of the enhanced authentication method. */
  authenticationMethod?: string;
  /** 0x16, CONNECT, CONNACK, AUTH: authentication data. */
  authenticationData?: Uint8Array;
  /** 0x17, CONNECT: whether reason strings and user properties may be sent on failures. */
  requestProblemInformation?: boolean;
  /** 0x18, will: seconds between the end of the connection and the will being published. */
  willDelayInterval?: number;
  /** 0x19, CONNECT: whether the client asks for Response Information. */
  requestResponseInformation?: boolean;
  /** 0x1A, CONNACK: basis for response topics. */
  responseInformation?: string;
  /** 0x1C, CONNACK, DISCONNECT: another server to use. */
  serverReference?: string;
  /** 0x1F, CONNACK, acks, SUBACK, UNSUBACK, DISCONNECT, AUTH: human-readable diagnostics. */
  reasonString?: string;
  /** 0x21, CONNECT, CONNACK: most unacknowledged QoS 1/2 PUBLISH the sender accepts (1..65535). */
  receiveMaximum?: number;
  /** 0x22, CONNECT, CONNACK: highest topic alias the sender accepts. */
  topicAliasMaximum?: number;
  /** 0x23, PUBLISH: topic alias (1..65535). */
  topicAlias?: number;
  /** 0x24, CONNACK: highest QoS the server supports (absent: 2). */
  maximumQos?: 0 | 1;
  /** 0x25, CONNACK: whether retained messages are supported (absent: yes). */
  retainAvailable?: boolean;
  /** 0x26, every packet with properties: name/value pairs, in order, names may repeat. */
  userProperties?: [string, string][];
  /** 0x27, CONNECT, CONNACK: largest packet the sender accepts, in bytes (1..2^32-1). */
  maximumPacketSize?: number;
  /** 0x28, CONNACK: whether wildcard subscriptions are supported (absent: yes). */
  wildcardSubscriptionAvailable?: boolean;
  /** 0x29, CONNACK: whether subscription identifiers are supported (absent: yes). */
  subscriptionIdentifierAvailable?: boolean;
  /** 0x2A, CONNACK: whether shared subscriptions are supported (absent: yes). */
  sharedSubscriptionAvailable?: boolean;
}

/** The last will a client registers in its CONNECT. */
export interface Will {
  /** Topic name the will is published to. */
  topic: string;
  /** Application message. */
  payload: Uint8Array;
  /** QoS the will is published with. */
  qos: QoS;
  /** Whether the will is published as a retained message. */
  retain: boolean;
  /** 5.0 Will Properties (will delay, payload format, expiry, content type, response, user). */
  properties?: Properties;
}

/**
 * CONNECT. When the protocol name/level pair is not one the codec knows ("MQTT" 5, "MQTT" 4,
 * "MQIsdp" 3), the decoder stops after the variable header and returns the packet with `clientId`
 * "" so that the broker can answer CONNACK 0x01 / 0x84 [MQTT-3.1.2-2].
 */
export interface ConnectPacket {
  /** Packet type discriminator. */
  type: "connect";
  /** Protocol name as received: "MQTT" for 3.1.1 and 5.0, "MQIsdp" for 3.1. */
  protocolName: string;
  /**
   * Protocol level: 5 for MQTT 5.0, 4 for MQTT 3.1.1, 3 for MQTT 3.1, without mosquitto's bridge
   * bit (0x80), which is `bridge`.
   */
  protocolLevel: number;
  /**
   * mosquitto's bridge flag (its `try_private`): the level was sent as `protocolLevel | 0x80`.
   * The encoder sets the bit again.
   */
  bridge?: boolean;
  /** Clean Session (3.1.1) or Clean Start (5.0): the same bit. */
  cleanSession: boolean;
  /** Keep alive in seconds; 0 turns the mechanism off. */
  keepAlive: number;
  /** Client identifier; may be empty. */
  clientId: string;
  /** Last will, when the Will Flag is set. */
  will?: Will;
  /** User name, when the User Name Flag is set. */
  username?: string;
  /** Password (binary), when the Password Flag is set (5.0 allows it without a user name). */
  password?: Uint8Array;
  /** 5.0 CONNECT properties. */
  properties?: Properties;
}

/** CONNACK. */
export interface ConnackPacket {
  /** Packet type discriminator. */
  type: "connack";
  /** Whether the server holds a session for this client. */
  sessionPresent: boolean;
  /**
   * One of {@linkcode CONNACK} (3.1.1). When `reasonCode` is set it wins, and the 3.1.1 encoder
   * writes `connackReturnCode(reasonCode)`; a decoded 5.0 CONNACK has both.
   */
  returnCode: number;
  /** 5.0 reason code ({@linkcode REASON}); the 5.0 encoder maps `returnCode` when it is absent. */
  reasonCode?: ReasonCode;
  /** 5.0 CONNACK properties. */
  properties?: Properties;
}

/** PUBLISH. `packetId` is present exactly when `qos` > 0. */
export interface PublishPacket {
  /** Packet type discriminator. */
  type: "publish";
  /** Topic name; in 5.0 "" when `properties.topicAlias` stands for it. */
  topic: string;
  /** Application message. */
  payload: Uint8Array;
  /** Quality of service. */
  qos: QoS;
  /** Retain flag. */
  retain: boolean;
  /** DUP flag: a redelivery of an earlier attempt (QoS > 0 only). */
  dup: boolean;
  /** Packet identifier, 1..65535; present exactly when `qos` > 0. */
  packetId?: number;
  /** 5.0 PUBLISH properties. */
  properties?: Properties;
  /**
   * Set by a decoder made with `borrowPayloads` when `payload` is a view of the chunk it was
   * pushed: valid until that chunk is overwritten. Ignored by the encoder.
   */
  borrowed?: true;
}

/** PUBACK, PUBREC, PUBREL and PUBCOMP. */
export interface PublishAckPacket {
  /** Packet type discriminator. */
  type: "puback" | "pubrec" | "pubrel" | "pubcomp";
  /** Packet identifier, 1..65535. */
  packetId: number;
  /** 5.0 reason code; absent means 0x00 (success). */
  reasonCode?: ReasonCode;
  /** 5.0 properties (reason string, user properties). */
  properties?: Properties;
}

/** UNSUBACK. */
export interface UnsubackPacket {
  /** Packet type discriminator. */
  type: "unsuback";
  /** Packet identifier of the UNSUBSCRIBE being acknowledged. */
  packetId: number;
  /** 5.0: one reason code per filter, in order (required in 5.0, ignored by 3.1.1). */
  reasonCodes?: ReasonCode[];
  /** 5.0 properties (reason string, user properties). */
  properties?: Properties;
}

/** PUBACK, PUBREC, PUBREL, PUBCOMP and UNSUBACK: the packets that a packet identifier answers. */
export type AckPacket = PublishAckPacket | UnsubackPacket;

/** Retain Handling of a 5.0 subscription: 0 send retained, 1 only if new, 2 never. */
export type RetainHandling = 0 | 1 | 2;

/** One topic filter of a SUBSCRIBE with its subscription options. */
export interface Subscription {
  /** Topic filter, wildcards allowed. */
  topicFilter: string;
  /** Requested (SUBSCRIBE) maximum QoS. */
  qos: QoS;
  /** 5.0 No Local: do not send this client's own messages back to it. Absent: false. */
  noLocal?: boolean;
  /** 5.0 Retain As Published: keep the RETAIN flag on forwarded messages. Absent: false. */
  retainAsPublished?: boolean;
  /** 5.0 Retain Handling. Absent: 0. */
  retainHandling?: RetainHandling;
}

/** SUBSCRIBE. */
export interface SubscribePacket {
  /** Packet type discriminator. */
  type: "subscribe";
  /** Packet identifier, 1..65535. */
  packetId: number;
  /** Requested subscriptions, at least one. */
  subscriptions: Subscription[];
  /** 5.0 properties (subscription identifier, user properties). */
  properties?: Properties;
}

/**
 * SUBACK: one code per requested filter, in order. The codes are 5.0 reason codes (granted QoS 0,
 * 1, 2 or a failure >= 0x80); the 3.1.1 encoder writes {@linkcode subackReturnCode} of each.
 */
export interface SubackPacket {
  /** Packet type discriminator. */
  type: "suback";
  /** Packet identifier of the SUBSCRIBE being acknowledged. */
  packetId: number;
  /** One code per requested filter, in order. */
  returnCodes: number[];
  /** 5.0 properties (reason string, user properties). */
  properties?: Properties;
}

/** UNSUBSCRIBE. */
export interface UnsubscribePacket {
  /** Packet type discriminator. */
  type: "unsubscribe";
  /** Packet identifier, 1..65535. */
  packetId: number;
  /** Topic filters to remove, at least one. */
  topicFilters: string[];
  /** 5.0 properties (user properties). */
  properties?: Properties;
}

/** PINGREQ and PINGRESP have no fields. */
export interface EmptyPacket {
  /** Packet type discriminator. */
  type: "pingreq" | "pingresp";
}

/** DISCONNECT: no fields in 3.1.1; a reason code and properties in 5.0. */
export interface DisconnectPacket {
  /** Packet type discriminator. */
  type: "disconnect";
  /** 5.0 reason code; absent means 0x00 (normal disconnection). */
  reasonCode?: ReasonCode;
  /** 5.0 properties (session expiry, reason string, server reference, user properties). */
  properties?: Properties;
}

/** AUTH (5.0 only): a step of enhanced authentication. */
export interface AuthPacket {
  /** Packet type discriminator. */
  type: "auth";
  /** 0x00 success, 0x18 continue authentication, 0x19 re-authenticate; absent means 0x00. */
  reasonCode?: ReasonCode;
  /** Authentication method and data, reason string, user properties. */
  properties?: Properties;
}

/** Any MQTT 3.1.1 or 5.0 control packet. */
export type Packet =
  | ConnectPacket
  | ConnackPacket
  | PublishPacket
  | PublishAckPacket
  | SubscribePacket
  | SubackPacket
  | UnsubscribePacket
  | UnsubackPacket
  | EmptyPacket
  | DisconnectPacket
  | AuthPacket;

/**
 * The only error the codec throws; `specRef` names the rule that was broken, when there is one,
 * and `reasonCode` the 5.0 reason code a DISCONNECT (or CONNACK) should carry for it.
 */
export class DecodeError extends Error {
  /** The `[MQTT-x.x.x-y]` tag of the broken rule, or "" when the rule has no tag. */
  readonly specRef: string;
  /**
   * 0x81 malformed packet (the default), 0x82 protocol error, or a more specific code such as
   * 0x95 packet too large, 0x94 topic alias invalid, 0x90 topic name invalid.
   */
  readonly reasonCode: ReasonCode;
  /** Creates a codec error; `specRef` is appended to the message when given. */
  constructor(message: string, specRef = "", reasonCode: ReasonCode = REASON.malformedPacket) {
    super(specRef ? `${message} ${specRef}` : message);
    this.name = "DecodeError";
    this.specRef = specRef;
    this.reasonCode = reasonCode;
  }
}
