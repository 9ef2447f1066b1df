/**
 * CONNECT: protocol checks, client id rules, limits, authentication, takeover and sessions.
 *
 * @module
 */
import { encodeAck, encodePacket, encodePublish } from "../codec/encoder.ts";
import { CONNACK, type ConnectPacket, type QoS } from "../codec/packet.ts";
import type { Connection } from "../connection.ts";
import { ProtocolError } from "../connection.ts";
import type { Message } from "../message.ts";
import { Session } from "../session/session.ts";
import { validateTopicName } from "../topic/topic.ts";

const utf8 = new TextEncoder();
// The two accepting CONNACKs, shared: written as they are, never modified.
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

function refuse(connection: Connection, returnCode: number, reason: string): void {
  if (returnCode === CONNACK.serverUnavailable) connection.ctx.counters.connectionsRefused++;
  connection.ctx.log.info(
    `refused CONNECT from ${JSON.stringify(connection.client.clientId)}: ${reason}`,
  );
  connection.sendPacket(encodePacket({ type: "connack", sessionPresent: false, returnCode }));
  // A refused CONNECT closes the connection [MQTT-3.2.2-5]; its will is never published.
  connection.closeAfterFlush(reason);
}

// Like mosquitto's "New client connected from …": who, from where (behind the PSK sidecar, the
// address its PROXY header names), over what, as whom.
function logConnect(connection: Connection, packet: ConnectPacket): void {
  const { client } = connection;
  const r = client.remoteAddress;
  const from = r === undefined ? "?" : `${r.hostname}:${r.port} over ${r.transport}`;
  const user = client.username === undefined ? "" : ` as user ${JSON.stringify(client.username)}`;
  connection.ctx.log.info(
    `client ${JSON.stringify(client.clientId)} connected from ${from}${user} ` +
      `(clean ${packet.cleanSession ? 1 : 0}, keep-alive ${packet.keepAlive} s)`,
  );
}

function encodeDup(message: Message, qos: QoS, retain: boolean, packetId: number): Uint8Array {
  return encodePublish(message.topic, message.payload, qos, retain, true, packetId);
}

function pubrel(packetId: number): Uint8Array {
  return encodeAck("pubrel", packetId);
}

/** Handles the first packet of a connection. */
export function handleConnect(connection: Connection, packet: ConnectPacket): void | Promise<void> {
  const { ctx } = connection;
  const { limits } = ctx;
  connection.client.clientId = packet.clientId;
  // [MQTT-3.1.2-2] unsupported protocol level; a wrong name for the level gets the same answer.
  const supported = (packet.protocolName === "MQTT" && packet.protocolLevel === 4) ||
    (packet.protocolName === "MQIsdp" && packet.protocolLevel === 3);
  if (!supported) {
    return refuse(
      connection,
      CONNACK.unacceptableProtocolVersion,
      `unsupported protocol ${packet.protocolName} level ${packet.protocolLevel}`,
    );
  }
  if (packet.will !== undefined) {
    const error = validateTopicName(
      packet.will.topic,
      limits.maxTopicLength,
      limits.maxTopicLevels,
    );
    if (error !== undefined) throw new ProtocolError(`will topic: ${error}`);
  }
  let clientId = packet.clientId;
  if (clientId === "") {
    // [MQTT-3.1.3-8] an empty id needs a clean session; [MQTT-3.1.3-6] then the server assigns one.
    if (!packet.cleanSession) {
      return refuse(
        connection,
        CONNACK.identifierRejected,
        "empty client id without clean session",
      );
    }
    clientId = ctx.generateClientId();
    connection.client.clientId = clientId;
  } else if (
    clientId.length > limits.maxClientIdLength ||
    (clientId.length * 3 > limits.maxClientIdLength &&
      utf8.encode(clientId).length > limits.maxClientIdLength)
  ) {
    return refuse(
      connection,
      CONNACK.identifierRejected,
      "client id longer than maxClientIdLength",
    );
  }
  if (connection.overLimit) {
    return refuse(connection, CONNACK.serverUnavailable, "maxConnections reached");
  }
  if (packet.username !== undefined) connection.client.username = packet.username;
  const authenticate = ctx.hooks.authenticate;
  if (authenticate === undefined) return accept(connection, packet, clientId);
  const verdict = authenticate({ ...connection.client, password: packet.password });
  if (verdict instanceof Promise) {
    return verdict.then((result) => {
      if (!connection.isClosed) return decide(connection, packet, clientId, result);
    });
  }
  return decide(connection, packet, clientId, verdict);
}

function decide(
  connection: Connection,
  packet: ConnectPacket,
  clientId: string,
  result: boolean | number,
): void | Promise<void> {
  if (result === true) return accept(connection, packet, clientId);
  const code = typeof result === "number" && result > 0 && result < 6
    ? result
    : CONNACK.notAuthorized;
  refuse(
    connection,
    code,
    code === CONNACK.badUsernameOrPassword ? "bad user name or password" : "not authorized",
  );
}

function accept(
  connection: Connection,
  packet: ConnectPacket,
  clientId: string,
): void | Promise<void> {
  const cluster = connection.ctx.cluster;
  if (cluster === undefined) return acceptHere(connection, packet, clientId);
  // In a cluster the client id is taken from whichever node has it first (that node closes its
  // connection and publishes the will); a persistent session comes along.
  return cluster.claim(clientId, packet.cleanSession).then((state) => {
    if (connection.isClosed) return;
    if (state !== undefined && !connection.ctx.sessions.has(clientId)) {
      cluster.adopt(clientId, connection.client, state);
    }
    return acceptHere(connection, packet, clientId);
  });
}

function acceptHere(
  connection: Connection,
  packet: ConnectPacket,
  clientId: string,
): void | Promise<void> {
  const { ctx } = connection;
  let session = ctx.sessions.get(clientId);
  // An expired session the sweep has not reached yet is gone all the same.
  if (
    session !== undefined && session.link === undefined && session.expiresAt !== 0 &&
    session.expiresAt <= Date.now()
  ) {
    ctx.endSession(session);
    session = undefined;
  }
  if (session === undefined && ctx.sessions.size >= ctx.limits.maxSessions) {
    return refuse(connection, CONNACK.serverUnavailable, "maxSessions reached");
  }
  // Takeover: the same client id closes the older connection [MQTT-3.1.4-2].
  if (session?.link !== undefined) {
    const old = session.link as Connection;
    old.session = undefined;
    session.link = undefined;
    old.close("taken over by a new connection with the same client id");
  }
  let sessionPresent = false;
  if (session !== undefined && (packet.cleanSession || session.clean)) {
    // [MQTT-3.1.2-6] a clean session discards the previous one.
    ctx.endSession(session);
    session = undefined;
  }
  if (session === undefined) {
    session = new Session(clientId, packet.cleanSession, connection.client, ctx.sessionContext);
    ctx.sessions.set(clientId, session);
  } else {
    sessionPresent = true; // [MQTT-3.2.2-2]
    session.client = connection.client;
  }
  session.expiresAt = 0;
  session.link = connection;
  connection.session = session;
  connection.connected = true;
  connection.will = packet.will;
  connection.keepAliveMs = packet.keepAlive * 1000;
  if (!session.clean) ctx.mirror?.sessionSaved(session);
  const connack = sessionPresent ? CONNACK_PRESENT : CONNACK_NEW;
  const durable = ctx.mirror?.durable();
  const finish = () => {
    connection.holding = false;
    if (connection.isClosed || connection.session !== session) return;
    connection.sendPacket(connack);
    session.resume(encodeDup, pubrel);
    if (ctx.logConnections) logConnect(connection, packet);
    if (ctx.listening("connect")) {
      ctx.emit("connect", {
        client: connection.client,
        cleanSession: packet.cleanSession,
        sessionPresent,
        keepAlive: packet.keepAlive,
      });
    }
  };
  if (durable === undefined) return finish();
  connection.holding = true;
  // Later packets of this client wait: nothing may overtake the CONNACK.
  return durable.then(finish, (error) => {
    ctx.log.error(`persistence failed: ${error}`);
    connection.close("persistence failed", false);
  });
}
