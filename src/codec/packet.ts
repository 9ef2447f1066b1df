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
  type: "connect";
  protocolName: string;
  protocolLevel: number;
  cleanSession: boolean;
  /** Keep alive in seconds; 0 turns the mechanism off. */
  keepAlive: number;
  clientId: string;
  will?: Will;
  username?: string;
  password?: Uint8Array;
}

/** CONNACK. */
export interface ConnackPacket {
  type: "connack";
  sessionPresent: boolean;
  returnCode: number;
}

/** PUBLISH. `packetId` is present exactly when `qos` > 0. */
export interface PublishPacket {
  type: "publish";
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  dup: boolean;
  packetId?: number;
}

/** PUBACK, PUBREC, PUBREL, PUBCOMP and UNSUBACK carry only a packet identifier. */
export interface AckPacket {
  type: "puback" | "pubrec" | "pubrel" | "pubcomp" | "unsuback";
  packetId: number;
}

/** One topic filter of a SUBSCRIBE with its requested QoS. */
export interface Subscription {
  topicFilter: string;
  qos: QoS;
}

/** SUBSCRIBE. */
export interface SubscribePacket {
  type: "subscribe";
  packetId: number;
  subscriptions: Subscription[];
}

/** SUBACK: one return code (0, 1, 2 or 0x80) per requested filter, in order. */
export interface SubackPacket {
  type: "suback";
  packetId: number;
  returnCodes: number[];
}

/** UNSUBSCRIBE. */
export interface UnsubscribePacket {
  type: "unsubscribe";
  packetId: number;
  topicFilters: string[];
}

/** PINGREQ, PINGRESP and DISCONNECT have no fields. */
export interface EmptyPacket {
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
  constructor(message: string, specRef = "") {
    super(specRef ? `${message} ${specRef}` : message);
    this.name = "DecodeError";
    this.specRef = specRef;
  }
}
