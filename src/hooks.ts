/**
 * Hooks decide; events observe. These are the signatures of the deciding hooks.
 *
 * @module
 */
import type { ProtocolVersion, QoS } from "./codec/packet.ts";
import type { MessageProperties } from "./message.ts";

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
  /** 3 (MQTT 3.1), 4 (3.1.1) or 5 (5.0), once the CONNECT is read. */
  protocolVersion?: ProtocolVersion;
}

/** What the `authenticate` hook is asked about. */
export interface AuthenticateRequest extends ClientInfo {
  /** The CONNECT's password as bytes (MQTT passwords are binary), when it had one. */
  password?: Uint8Array;
  /** 5.0: the CONNECT's User Properties, in order. */
  userProperties?: [string, string][];
  /** 5.0: the CONNECT's Authentication Method (then `authenticateEnhanced` runs too). */
  authenticationMethod?: string;
  /** 5.0: the CONNECT's Authentication Data. */
  authenticationData?: Uint8Array;
}

/**
 * `true` accepts; `false` refuses with CONNACK 0x05 (5.0: 0x87 not authorized); a number refuses
 * with that code: a 3.1.1 return code (0x04 bad user name or password, 0x05 not authorized) or a
 * 5.0 reason code ≥ 0x80 (0x86, 0x87, 0x8A banned …); each version gets its own form of it.
 */
export type AuthenticateResult = boolean | number;

/** One step of a 5.0 enhanced authentication (AUTH exchange) that `authenticateEnhanced` decides. */
export interface AuthenticationStep {
  /** The client (its id as the CONNECT gave it, or assigned). */
  client: ClientInfo;
  /** The Authentication Method of the CONNECT. */
  method: string;
  /** Authentication Data of the CONNECT (step 0) or of the client's AUTH packet. */
  data?: Uint8Array;
  /** Whether this is a re-authentication during the session (AUTH 0x19 after CONNACK). */
  reauthenticate: boolean;
  /** 0 for the CONNECT (or the AUTH 0x19 that starts a re-authentication), then 1, 2, … */
  step: number;
}

/**
 * What `authenticateEnhanced` answers: `continue` sends AUTH 0x18 with `data` and waits for the
 * client's next AUTH; `success` accepts (CONNACK 0, or AUTH 0 when re-authenticating) with
 * `data`; `failure` refuses with `reasonCode` (default 0x87; CONNACK, or DISCONNECT when
 * re-authenticating).
 */
export type AuthenticationResult =
  | { result: "continue"; data?: Uint8Array }
  | { result: "success"; data?: Uint8Array }
  | { result: "failure"; reasonCode?: number };

/**
 * Decides 5.0 enhanced authentication, step by step. May be async. Without it, a CONNECT with an
 * Authentication Method is refused with CONNACK 0x8C (bad authentication method).
 */
export type AuthenticateEnhancedHook = (
  step: AuthenticationStep,
) => AuthenticationResult | Promise<AuthenticationResult>;

/** Decides whether a CONNECT is accepted. May be async. */
export type AuthenticateHook = (
  request: AuthenticateRequest,
) => AuthenticateResult | Promise<AuthenticateResult>;

/**
 * Decides whether a client may publish to a topic. `true` allows; `false` refuses (5.0: PUBACK
 * or PUBREC 0x87 not authorized); a number ≥ 0x80 refuses with that 5.0 reason code. A 3.1.1
 * client's refused PUBLISH is acknowledged as usual and dropped, as mosquitto does. `properties`
 * are the 5.0 message properties, when there are any.
 */
export type AuthorizePublishHook = (
  client: ClientInfo,
  topic: string,
  qos: QoS,
  retain: boolean,
  properties?: MessageProperties,
) => boolean | number | Promise<boolean | number>;

/**
 * Decides a subscription: `false` refuses it (SUBACK 0x80; 5.0: 0x87), `true` grants the requested
 * QoS, a QoS number (0..2) grants at most that QoS, a number ≥ 0x80 refuses with that 5.0 reason
 * code (0x80 in 3.1.1).
 */
export type AuthorizeSubscribeHook = (
  client: ClientInfo,
  topicFilter: string,
  qos: QoS,
) => boolean | number | Promise<boolean | number>;

/** Decides at delivery time whether a client may receive a message on a topic. Synchronous: it runs per delivery. */
export type AuthorizeForwardHook = (client: ClientInfo, topic: string) => boolean;
