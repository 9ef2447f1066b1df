/**
 * Hooks decide; events observe. These are the signatures of the deciding hooks.
 *
 * @module
 */
import type { QoS } from "./codec/packet.ts";

/** Where a client connects from. For connections through the PSK sidecar this is the real client. */
export interface RemoteAddress {
  /** The client's IP address (behind the PSK sidecar: the one its PROXY header names). */
  hostname: string;
  /** The client's source port. */
  port: number;
  /** "tcp", "tls", "ws", "wss", "psk" or whatever the transport says. */
  transport: string;
}

/** What hooks and events know about a connected client. */
export interface ClientInfo {
  /** The client identifier; for an empty one with clean session, the one the broker assigned. */
  clientId: string;
  /** The CONNECT's user name, when it had one. */
  username?: string;
  /** Where the client connects from; absent when the connection did not say. */
  remoteAddress?: RemoteAddress;
}

/** What the `authenticate` hook is asked about. */
export interface AuthenticateRequest extends ClientInfo {
  /**
   * The CONNECT's password as bytes (`Uint8Array`: MQTT passwords are binary), when it had one.
   * Not a string: for text passwords compare `new TextDecoder().decode(password)`.
   */
  password?: Uint8Array;
}

/**
 * `true` accepts; `false` refuses with CONNACK 0x05 (not authorized); a number refuses with that
 * CONNACK return code (0x04 bad user name or password, 0x05 not authorized).
 */
export type AuthenticateResult = boolean | number;

/** Decides whether a CONNECT is accepted. May be async. */
export type AuthenticateHook = (
  request: AuthenticateRequest,
) => AuthenticateResult | Promise<AuthenticateResult>;

/** Decides whether a client may publish to a topic. A refused PUBLISH is acknowledged and dropped. */
export type AuthorizePublishHook = (
  client: ClientInfo,
  topic: string,
  qos: QoS,
  retain: boolean,
) => boolean | Promise<boolean>;

/**
 * Decides a subscription: `false` refuses it (SUBACK 0x80), `true` grants the requested QoS,
 * a QoS number grants at most that QoS.
 */
export type AuthorizeSubscribeHook = (
  client: ClientInfo,
  topicFilter: string,
  qos: QoS,
) => boolean | QoS | Promise<boolean | QoS>;

/** Decides at delivery time whether a client may receive a message on a topic. Synchronous: it runs per delivery. */
export type AuthorizeForwardHook = (client: ClientInfo, topic: string) => boolean;
