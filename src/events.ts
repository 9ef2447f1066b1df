/**
 * Events the broker dispatches. They observe; hooks decide.
 *
 * @module
 */
import type { QoS, Subscription } from "./codec/packet.ts";
import type { ClientInfo } from "./hooks.ts";

/** `connect`: a CONNECT was accepted and CONNACK 0 sent. */
export interface ConnectEventDetail {
  client: ClientInfo;
  cleanSession: boolean;
  sessionPresent: boolean;
  keepAlive: number;
}

/** `disconnect`: a connection that had been accepted closed. */
export interface DisconnectEventDetail {
  client: ClientInfo;
  /** "disconnect" after a DISCONNECT packet; otherwise why the broker closed it. */
  reason: string;
  /** Whether the client's will was published. */
  willPublished: boolean;
}

/** `subscribe`: a SUBSCRIBE was answered; `granted` holds the return code per filter. */
export interface SubscribeEventDetail {
  client: ClientInfo;
  subscriptions: Subscription[];
  granted: number[];
}

/** `unsubscribe`: an UNSUBSCRIBE was answered. */
export interface UnsubscribeEventDetail {
  client: ClientInfo;
  topicFilters: string[];
}

/** `publish`: a message was accepted for routing, from a client or from `broker.publish()`. */
export interface PublishEventDetail {
  /** Undefined for messages published in-process or by the broker ($SYS). */
  client: ClientInfo | undefined;
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
}

/** `clientError`: a connection was closed for a protocol violation, a malformed packet or an I/O error. */
export interface ClientErrorEventDetail {
  client: ClientInfo;
  error: Error;
}

/** Event names and their `CustomEvent` detail types. */
export interface BrokerEventMap {
  connect: ConnectEventDetail;
  disconnect: DisconnectEventDetail;
  subscribe: SubscribeEventDetail;
  unsubscribe: UnsubscribeEventDetail;
  publish: PublishEventDetail;
  clientError: ClientErrorEventDetail;
}
