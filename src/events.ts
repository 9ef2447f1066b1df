/**
 * Events the broker dispatches. They observe; hooks decide.
 *
 * @module
 */
import type { Properties, ProtocolVersion, QoS, Subscription } from "./codec/packet.ts";
import type { MessageProperties } from "./message.ts";
import type { ClientInfo } from "./hooks.ts";

/** `connect`: a CONNECT was accepted and CONNACK 0 sent. */
export interface ConnectEventDetail {
  /** The client: its id (the assigned one if it sent an empty id), user name and address. */
  client: ClientInfo;
  /** The CONNECT's clean session flag. */
  cleanSession: boolean;
  /** Whether a stored session was resumed: the CONNACK's session present flag. */
  sessionPresent: boolean;
  /** The keep alive in force, in seconds (the CONNECT's, or `maxKeepAlive` when lower); 0 = off. */
  keepAlive: number;
  /** 3 (MQTT 3.1), 4 (3.1.1) or 5 (5.0). */
  protocolVersion: ProtocolVersion;
  /** 5.0: the CONNECT's properties (user properties, authentication method …). */
  properties?: Properties;
}

/** `disconnect`: a connection that had been accepted closed. */
export interface DisconnectEventDetail {
  /** The client whose connection closed. */
  client: ClientInfo;
  /** "disconnect" after a DISCONNECT packet; otherwise why the broker closed it. */
  reason: string;
  /** Whether the client's will was published. */
  willPublished: boolean;
}

/** `subscribe`: a SUBSCRIBE was answered; `granted` holds the return code per filter. */
export interface SubscribeEventDetail {
  /** The client that subscribed. */
  client: ClientInfo;
  /** The filters and requested QoS of the SUBSCRIBE, in packet order. */
  subscriptions: Subscription[];
  /**
   * SUBACK codes, one per filter in the same order: the granted QoS, or 0x80 (3.1.1) / a 5.0
   * failure reason code (0x87, 0x8F, 0x97, 0x9E, 0xA2 …).
   */
  granted: number[];
  /** 5.0: the SUBSCRIBE's properties (subscription identifier, user properties). */
  properties?: Properties;
}

/** `unsubscribe`: an UNSUBSCRIBE was answered. */
export interface UnsubscribeEventDetail {
  /** The client that unsubscribed. */
  client: ClientInfo;
  /** The filters of the UNSUBSCRIBE as sent, whether or not they were subscribed. */
  topicFilters: string[];
  /** 5.0: the UNSUBSCRIBE's properties (user properties). */
  properties?: Properties;
}

/** `publish`: a message was accepted for routing, from a client or from `broker.publish()`. */
export interface PublishEventDetail {
  /** Undefined for messages published in-process or by the broker ($SYS). */
  client: ClientInfo | undefined;
  /** The topic name it was published to. */
  topic: string;
  /** The payload; the same bytes go to every subscriber, so do not modify them. */
  payload: Uint8Array;
  /** The QoS it was published with; each subscriber gets min(this, its granted QoS). */
  qos: QoS;
  /** The retain flag it was published with. */
  retain: boolean;
  /** 5.0 properties forwarded with the message (content type, user properties …), if any. */
  properties?: MessageProperties;
  /** 5.0: epoch ms at which the message expires; absent when it does not. */
  expiresAt?: number;
}

/**
 * `clientError`: a connection was closed for a protocol violation, a malformed packet or an
 * internal error. A reset, EOF or broken pipe is routine and dispatches only `disconnect`.
 */
export interface ClientErrorEventDetail {
  /** The client; `clientId` is "" when the connection closed before a CONNECT was read. */
  client: ClientInfo;
  /** Why: a `DecodeError` or protocol error (its message has the spec tag), or another. */
  error: Error;
}

/** Event names and their `CustomEvent` detail types. */
export interface BrokerEventMap {
  /** A CONNECT was accepted. */
  connect: ConnectEventDetail;
  /** An accepted connection closed. */
  disconnect: DisconnectEventDetail;
  /** A SUBSCRIBE was answered. */
  subscribe: SubscribeEventDetail;
  /** An UNSUBSCRIBE was answered. */
  unsubscribe: UnsubscribeEventDetail;
  /** A message was accepted for routing. */
  publish: PublishEventDetail;
  /** A connection was closed for something it sent, or for an internal error. */
  clientError: ClientErrorEventDetail;
}
