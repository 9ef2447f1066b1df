/**
 * MQTT 3.1.1 control packets as plain objects, discriminated by `type`.
 *
 * Field names follow the standard (`packetId`, `qos`, `dup`, `retain`, `cleanSession`,
 * `keepAlive`, `returnCode`, `sessionPresent`). Bytes are always `Uint8Array`.
 *
 * @module
 */

/** Quality of service level of a PUBLISH or a subscription. */
export type QoS = 0 | 1 | 2;

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

/** The SUBACK return code for a refused subscription. */
export const SUBACK_FAILURE = 0x80;

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
}

/**
 * CONNECT. When the protocol name/level pair is not one the codec knows ("MQTT" 4, "MQIsdp" 3),
 * the decoder stops after the variable header and returns the packet with `clientId` "" so that
 * the broker can answer CONNACK 0x01 [MQTT-3.1.2-2].
 */
export interface ConnectPacket {
  /** Packet type discriminator. */
  type: "connect";
  /** Protocol name as received: "MQTT" for 3.1.1, "MQIsdp" for 3.1. */
  protocolName: string;
  /** Protocol level as received: 4 for MQTT 3.1.1, 3 for MQTT 3.1. */
  protocolLevel: number;
  /** Whether the session starts fresh and ends with the connection. */
  cleanSession: boolean;
  /** Keep alive in seconds; 0 turns the mechanism off. */
  keepAlive: number;
  /** Client identifier; may be empty. */
  clientId: string;
  /** Last will, when the Will Flag is set. */
  will?: Will;
  /** User name, when the User Name Flag is set. */
  username?: string;
  /** Password (binary), when the Password Flag is set. */
  password?: Uint8Array;
}

/** CONNACK. */
export interface ConnackPacket {
  /** Packet type discriminator. */
  type: "connack";
  /** Whether the server holds a session for this client. */
  sessionPresent: boolean;
  /** One of {@linkcode CONNACK}. */
  returnCode: number;
}

/** PUBLISH. `packetId` is present exactly when `qos` > 0. */
export interface PublishPacket {
  /** Packet type discriminator. */
  type: "publish";
  /** Topic name. */
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
}

/** PUBACK, PUBREC, PUBREL, PUBCOMP and UNSUBACK carry only a packet identifier. */
export interface AckPacket {
  /** Packet type discriminator. */
  type: "puback" | "pubrec" | "pubrel" | "pubcomp" | "unsuback";
  /** Packet identifier, 1..65535. */
  packetId: number;
}

/** One topic filter of a SUBSCRIBE with its requested QoS. */
export interface Subscription {
  /** Topic filter, wildcards allowed. */
  topicFilter: string;
  /** Requested (SUBSCRIBE) maximum QoS. */
  qos: QoS;
}

/** SUBSCRIBE. */
export interface SubscribePacket {
  /** Packet type discriminator. */
  type: "subscribe";
  /** Packet identifier, 1..65535. */
  packetId: number;
  /** Requested subscriptions, at least one. */
  subscriptions: Subscription[];
}

/** SUBACK: one return code (0, 1, 2 or 0x80) per requested filter, in order. */
export interface SubackPacket {
  /** Packet type discriminator. */
  type: "suback";
  /** Packet identifier of the SUBSCRIBE being acknowledged. */
  packetId: number;
  /** One code per requested filter, in order. */
  returnCodes: number[];
}

/** UNSUBSCRIBE. */
export interface UnsubscribePacket {
  /** Packet type discriminator. */
  type: "unsubscribe";
  /** Packet identifier, 1..65535. */
  packetId: number;
  /** Topic filters to remove, at least one. */
  topicFilters: string[];
}

/** PINGREQ, PINGRESP and DISCONNECT have no fields. */
export interface EmptyPacket {
  /** Packet type discriminator. */
  type: "pingreq" | "pingresp" | "disconnect";
}

/** Any MQTT 3.1.1 control packet. */
export type Packet =
  | ConnectPacket
  | ConnackPacket
  | PublishPacket
  | AckPacket
  | SubscribePacket
  | SubackPacket
  | UnsubscribePacket
  | EmptyPacket;

/** The only error the codec throws; `specRef` names the rule that was broken, when there is one. */
export class DecodeError extends Error {
  /** The `[MQTT-x.x.x-y]` tag of the broken rule, or "" when the rule has no tag. */
  readonly specRef: string;
  /** Creates a codec error; `specRef` is appended to the message when given. */
  constructor(message: string, specRef = "") {
    super(specRef ? `${message} ${specRef}` : message);
    this.name = "DecodeError";
    this.specRef = specRef;
  }
}
