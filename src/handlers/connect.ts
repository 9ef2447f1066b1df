/**
 * CONNECT: protocol checks, client id rules, limits, 5.0 negotiation (session expiry, receive
 * maximum, packet size, keep alive, topic aliases, problem/response information), authentication
 * (plain and enhanced), takeover and sessions.
 *
 * @module
 */
import { encodePacket, encodeWithin } from "../codec/encoder.ts";
import {
  CONNACK,
  type ConnackPacket,
  connackReasonCode,
  type ConnectPacket,
  type Properties,
  REASON,
} from "../codec/packet.ts";
import { ConnectRefusal, ProtocolError } from "../errors.ts";
import type { AuthenticationResult } from "../hooks.ts";
import type { ClientLink } from "../context.ts";
import { validateTopicName } from "../topic/topic.ts";
import { startEnhancedAuth } from "./auth.ts";
import { formatAddress } from "../logger.ts";

const utf8 = new TextEncoder();
// The two accepting 3.1.1 CONNACKs, shared: written as they are, never modified.
const CONNACK_NEW = encodePacket({
  type: "connack",
  sessionPresent: false,
  returnCode: CONNACK.accepted,
});
const CONNACK_PRESENT = encodePacket({
  type: "connack",
  sessionPresent: true,
  returnCode: CONNACK.accepted,
});
// Largest packet the 4-byte remaining length allows, whole: "no Maximum Packet Size".
const NO_PACKET_LIMIT = 268_435_460;

/**
 * Refuses a CONNECT with a 5.0 reason code: thrown, and answered by the connection through the
 * error table (CONNACK, 3.1.1 as its return code, then close; the will is never published).
 */
export function refuse(_link: ClientLink, reasonCode: number, reason: string): never {
  throw new ConnectRefusal(reasonCode, reason);
}

// Like mosquitto's "New client connected from …": who, from where (behind the PSK sidecar, the
// address its PROXY header names), over what, as whom.
function logConnect(link: ClientLink, packet: ConnectPacket): void {
  const { client } = link;
  const r = client.remoteAddress;
  const from = r === undefined ? "?" : `${formatAddress(r.hostname, r.port)} over ${r.transport}`;
  const user = client.username === undefined ? "" : ` as user ${JSON.stringify(client.username)}`;
  link.ctx.log.info(
    `client ${JSON.stringify(client.clientId)} connected from ${from}${user} ` +
      `(v${packet.protocolLevel}${packet.bridge === true ? " bridge" : ""}, clean ${
        packet.cleanSession ? 1 : 0
      }, keep-alive ${packet.keepAlive} s)`,
  );
}

/** A CONNECT being answered: what negotiation decided so far. */
export interface PendingConnect {
  packet: ConnectPacket;
  clientId: string;
  /** Whether the broker assigned the id (5.0: sent back as Assigned Client Identifier). */
  assigned: boolean;
  /** Keep alive in force, seconds. */
  keepAlive: number;
  /** 5.0: the Session Expiry Interval granted. */
  sessionExpiryS: number;
  /** 5.0: CONNACK authentication data of a finished AUTH exchange. */
  authData?: Uint8Array;
}

/** Handles the first packet of a connection. */
export function handleConnect(link: ClientLink, packet: ConnectPacket): void | Promise<void> {
  const { ctx } = link;
  const { limits } = ctx;
  link.client.clientId = packet.clientId;
  const level = packet.protocolLevel;
  // Known from here on: a refused CONNECT's log line names the user name it tried.
  if (packet.username !== undefined) link.client.username = packet.username;
  // [MQTT-3.1.2-2] unsupported protocol level; a wrong name for the level gets the same answer.
  const supported = (packet.protocolName === "MQTT" && (level === 4 || level === 5)) ||
    (packet.protocolName === "MQIsdp" && level === 3);
  if (!supported) {
    return refuse(
      link,
      REASON.unsupportedProtocolVersion,
      `unsupported protocol ${packet.protocolName} level ${packet.protocolLevel}`,
    );
  }
  link.version = level as 3 | 4 | 5;
  link.client.protocolVersion = link.version;
  // mosquitto's bridge flag: its subscriptions get No Local and Retain As Published (apply()).
  if (packet.bridge === true) link.client.bridge = true;
  const props = packet.properties;
  if (level === 5) {
    link.v5 = {
      receiveMaximum: props?.receiveMaximum ?? 65_535,
      maximumPacketSize: props?.maximumPacketSize ?? NO_PACKET_LIMIT,
      // Absent means 1: reason strings and user properties may be sent [MQTT-3.1.2-29].
      problemInformation: props?.requestProblemInformation !== false,
      aliases: undefined,
      inboundPending: 0,
      sessionExpiryS: 0,
      authMethod: props?.authenticationMethod,
      authStep: 0,
      reauthenticating: false,
    };
  }
  const will = packet.will;
  if (will !== undefined) {
    const error = validateTopicName(will.topic, limits.maxTopicLength, limits.maxTopicLevels);
    if (error !== undefined) {
      throw new ProtocolError(`will topic: ${error}`, REASON.topicNameInvalid);
    }
    if (will.qos > limits.maxQos) {
      return refuse(link, REASON.qosNotSupported, `will QoS ${will.qos} above maxQos`); // [MQTT-3.2.2-12]
    }
    if (will.retain && !limits.retainAvailable) {
      return refuse(link, REASON.retainNotSupported, "will retain: retain not available"); // [MQTT-3.2.2-13]
    }
  }
  let clientId = packet.clientId;
  let assigned = false;
  if (clientId === "") {
    // 3.1.1: an empty id needs a clean session [MQTT-3.1.3-8]; then, and always in 5.0, the
    // server assigns one [MQTT-3.1.3-6] (5.0: and returns it in CONNACK [MQTT-3.2.2-16]).
    if (!packet.cleanSession && level !== 5) {
      return refuse(link, REASON.clientIdentifierNotValid, "empty client id without clean session");
    }
    clientId = ctx.generateClientId();
    assigned = true;
    link.client.clientId = clientId;
  } else if (
    clientId.length > limits.maxClientIdLength ||
    (clientId.length * 3 > limits.maxClientIdLength &&
      utf8.encode(clientId).length > limits.maxClientIdLength)
  ) {
    return refuse(link, REASON.clientIdentifierNotValid, "client id longer than maxClientIdLength");
  }
  if (link.overLimit) return refuse(link, REASON.serverBusy, "maxConnections reached");
  // Keep alive above maxKeepAlive (or 0 while a cap is set) is lowered to it: 5.0 is told so in
  // Server Keep Alive [MQTT-3.2.2-21]; 3.1.1 has no way to be told and is held to it all the same
  // (mosquitto 2.0.11 accepts such a client too).
  let keepAlive = packet.keepAlive;
  const cap = limits.maxKeepAlive;
  if (cap < 65_535 && (keepAlive === 0 || keepAlive > cap)) keepAlive = cap;
  let sessionExpiryS = 0;
  if (level === 5) {
    const asked = props?.sessionExpiryInterval ?? 0;
    sessionExpiryS = asked > limits.maxSessionExpiry ? limits.maxSessionExpiry : asked;
  }
  if (packet.username !== undefined) link.client.username = packet.username;
  const pending: PendingConnect = { packet, clientId, assigned, keepAlive, sessionExpiryS };
  const method = props?.authenticationMethod;
  if (method !== undefined && ctx.hooks.authenticateEnhanced === undefined) {
    return refuse(link, REASON.badAuthenticationMethod, `authentication method ${method}`);
  }
  const authenticate = ctx.hooks.authenticate;
  // The common case, without a closure: connection storms are made of these.
  if (authenticate === undefined && method === undefined) return accept(link, pending);
  const next = () =>
    method === undefined ? accept(link, pending) : startEnhancedAuth(
      link,
      props?.authenticationData,
      (result) => finishEnhancedStep(link, pending, method, result),
    );
  if (authenticate === undefined) return next();
  const request = { ...link.client, password: packet.password } as Parameters<
    typeof authenticate
  >[0];
  if (props?.userProperties !== undefined) request.userProperties = props.userProperties;
  if (method !== undefined) request.authenticationMethod = method;
  if (props?.authenticationData !== undefined) {
    request.authenticationData = props.authenticationData;
  }
  const verdict = authenticate(request);
  if (verdict instanceof Promise) {
    return verdict.then((result) => {
      if (link.isClosed) return;
      if (result === true) return next();
      refuseByHook(link, result);
    });
  }
  if (verdict === true) return next();
  refuseByHook(link, verdict);
}

function refuseByHook(link: ClientLink, result: boolean | number): void {
  let code: number = REASON.notAuthorized;
  if (typeof result === "number" && ((result > 0 && result < 6) || result >= 0x80)) {
    code = connackReasonCode(result);
  }
  refuse(
    link,
    code,
    code === REASON.badUserNameOrPassword ? "bad user name or password" : "not authorized",
  );
}

// Applies an `authenticateEnhanced` verdict on a CONNECT's exchange: AUTH 0x18, CONNACK or refusal.
function finishEnhancedStep(
  link: ClientLink,
  pending: PendingConnect,
  method: string,
  result: AuthenticationResult,
): void | Promise<void> {
  const v5 = link.v5!;
  if (result.result === "continue") {
    v5.authStep++;
    link.send({
      type: "auth",
      reasonCode: REASON.continueAuthentication,
      properties: {
        authenticationMethod: method,
        ...(result.data !== undefined ? { authenticationData: result.data } : {}),
      },
    });
    return;
  }
  v5.authStep = 0;
  if (result.result === "success") {
    pending.authData = result.data;
    return accept(link, pending);
  }
  refuse(link, result.reasonCode ?? REASON.notAuthorized, "enhanced authentication failed");
}

// Accepts the CONNECT. In a cluster the client id is first taken from whichever node has it
// (that node closes its connection, 5.0 with DISCONNECT 0x8E, and publishes the will); a
// persistent session comes along.
function accept(link: ClientLink, pending: PendingConnect): void | Promise<void> {
  const cluster = link.ctx.cluster;
  if (cluster === undefined) return acceptHere(link, pending);
  const { clientId } = pending;
  return cluster.claim(clientId, pending.packet.cleanSession).then((state) => {
    if (link.isClosed) return;
    if (state !== undefined && !link.ctx.registry.sessions.has(clientId)) {
      cluster.adopt(clientId, link.client, state);
    }
    return acceptHere(link, pending);
  });
}

// Accepts the CONNECT here: takeover, session, CONNACK.
function acceptHere(link: ClientLink, pending: PendingConnect): void | Promise<void> {
  const { ctx } = link;
  const { packet, clientId } = pending;
  const v5 = link.v5;
  const registry = ctx.registry;
  // Takeover: the same client id closes the older connection [MQTT-3.1.4-2]; a 5.0 one is told
  // 0x8E first [MQTT-3.1.4-3].
  const existing = registry.sessions.get(clientId);
  if (existing?.link !== undefined) {
    const old = existing.link as ClientLink;
    old.session = undefined;
    existing.link = undefined;
    const oldWill = old.will;
    old.will = undefined;
    if (oldWill !== undefined) {
      // Its will: published now unless it has a delay and the session goes on, in which case
      // the new connection came within the delay [MQTT-3.1.3-9].
      const delayed = (oldWill.properties?.willDelayInterval ?? 0) > 0 && !packet.cleanSession;
      if (!delayed) ctx.publishWill(old.client, oldWill);
    }
    if (old.v5 !== undefined) {
      old.send({ type: "disconnect", reasonCode: REASON.sessionTakenOver });
      old.closeAfterFlush("taken over by a new connection with the same client id");
    } else {
      old.close("taken over by a new connection with the same client id");
    }
  }
  const attached = registry.attach(link, {
    clientId,
    client: link.client,
    cleanStart: packet.cleanSession,
    expiryIntervalS: v5 === undefined ? undefined : pending.sessionExpiryS,
  });
  if (attached === undefined) {
    return refuse(link, REASON.quotaExceeded, "maxSessions reached");
  }
  const { session, sessionPresent } = attached;
  link.session = session;
  link.connected = true;
  const { counters } = ctx;
  if (++counters.connected > counters.connectedMax) counters.connectedMax = counters.connected;
  link.will = packet.will;
  link.keepAliveMs = pending.keepAlive * 1000;
  let connack: Uint8Array;
  if (v5 === undefined) {
    connack = sessionPresent ? CONNACK_PRESENT : CONNACK_NEW;
  } else {
    v5.sessionExpiryS = pending.sessionExpiryS;
    const packet5: ConnackPacket = {
      type: "connack",
      sessionPresent,
      returnCode: 0,
      reasonCode: REASON.success,
      properties: connackProperties(link, pending),
    };
    // Fitted to the client's Maximum Packet Size when it can be [MQTT-3.1.2-24].
    connack = encodeWithin(packet5, 5, v5.maximumPacketSize) ?? encodePacket(packet5, 5);
  }
  const durable = ctx.mirror?.durable();
  const finish = () => {
    link.holding = false;
    if (link.isClosed || link.session !== session) return;
    link.sendPacket(connack);
    ctx.counters.connectionsAccepted++;
    session.resume();
    if (ctx.logConnections) logConnect(link, packet);
    if (ctx.listening("connect")) {
      ctx.emit("connect", {
        client: link.client,
        cleanSession: packet.cleanSession,
        sessionPresent,
        keepAlive: pending.keepAlive,
        protocolVersion: link.version,
        properties: packet.properties,
      });
    }
  };
  if (durable === undefined) return finish();
  link.holding = true;
  // Later packets of this client wait: nothing may overtake the CONNACK.
  return durable.then(finish, (error) => {
    ctx.log.error(`persistence failed: ${error}`);
    link.close("persistence failed", false);
  });
}

// What CONNACK tells a 5.0 client about the broker [MQTT-3.2.2.3].
function connackProperties(link: ClientLink, pending: PendingConnect): Properties {
  const { limits, responseInformation } = link.ctx;
  const props = pending.packet.properties;
  const out: Properties = {};
  if ((props?.sessionExpiryInterval ?? 0) !== pending.sessionExpiryS) {
    out.sessionExpiryInterval = pending.sessionExpiryS;
  }
  if (limits.receiveMaximum < 65_535) out.receiveMaximum = limits.receiveMaximum;
  if (limits.maxQos < 2) out.maximumQos = limits.maxQos as 0 | 1;
  if (!limits.retainAvailable) out.retainAvailable = false;
  out.maximumPacketSize = limits.maxPacketSize;
  if (pending.assigned) out.assignedClientIdentifier = pending.clientId;
  if (limits.topicAliasMaximum > 0) out.topicAliasMaximum = limits.topicAliasMaximum;
  if (!limits.wildcardSubscriptionAvailable) out.wildcardSubscriptionAvailable = false;
  if (!limits.subscriptionIdentifierAvailable) out.subscriptionIdentifierAvailable = false;
  if (!limits.sharedSubscriptionAvailable) out.sharedSubscriptionAvailable = false;
  if (pending.keepAlive !== pending.packet.keepAlive) out.serverKeepAlive = pending.keepAlive;
  if (props?.requestResponseInformation === true && responseInformation !== "") {
    out.responseInformation = responseInformation + pending.clientId;
  }
  const method = link.v5?.authMethod;
  if (method !== undefined) {
    out.authenticationMethod = method;
    if (pending.authData !== undefined) out.authenticationData = pending.authData;
  }
  return out;
}
