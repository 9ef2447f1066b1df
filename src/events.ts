/**
 * Events the broker dispatches. They observe; hooks decide.
 *
 * @module
 */
import type { QoS, Subscription } from "./codec/packet.ts";
import type { ClientInfo } from "./hooks.ts";

/** `connect`: a CONNECT was accepted and CONNACK 0 sent. */
export interface ConnectEventDetail {
  /** The client: its id (the assigned one if it sent an empty id), user name and address. */
  client: ClientInfo;
  /** The CONNECT's clean session flag. */
  cleanSession: boolean;
  /** Whether a stored session was resumed: the CONNACK's session present flag. */
  sessionPresent: boolean;
  /** The CONNECT's keep alive, in seconds; 0 turns the keep-alive check off. */
  keepAlive: number;
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
  /** SUBACK return codes, one per filter in the same order: the granted QoS, or 0x80. */
  granted: number[];
}

/** `unsubscribe`: an UNSUBSCRIBE was answered. */
export interface UnsubscribeEventDetail {
  /** The client that unsubscribed. */
  client: ClientInfo;
  /** The filters of the UNSUBSCRIBE as sent, whether or not they were subscribed. */
  topicFilters: string[];
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
