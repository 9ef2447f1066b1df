/**
 * SUBSCRIBE and UNSUBSCRIBE: per-filter validation, limits and authorisation, SUBACK codes,
 * and retained messages for each granted filter.
 *
 * @module
 */
import { encodePacket } from "../codec/encoder.ts";
import {
  type QoS,
  SUBACK_FAILURE,
  type SubscribePacket,
  type UnsubscribePacket,
} from "../codec/packet.ts";
import type { Connection } from "../connection.ts";
import type { Session } from "../session/session.ts";
import { validateTopicFilter } from "../topic/topic.ts";

/** Handles a SUBSCRIBE: one return code per filter, in order [MQTT-3.8.4-5]. */
export function handleSubscribe(
  connection: Connection,
  session: Session,
  packet: SubscribePacket,
): void | Promise<void> {
  const { ctx } = connection;
  const { limits } = ctx;
  const authorize = ctx.hooks.authorizeSubscribe;
  const verdicts: (number | Promise<boolean | QoS>)[] = packet.subscriptions.map(
    ({ topicFilter, qos }) => {
      const error = validateTopicFilter(topicFilter, limits.maxTopicLength, limits.maxTopicLevels);
      if (error !== undefined) {
        ctx.log.debug(`SUBSCRIBE ${JSON.stringify(topicFilter)} refused: ${error}`);
        return SUBACK_FAILURE;
      }
      if (authorize === undefined) return qos;
      const verdict = authorize(connection.client, topicFilter, qos);
      return verdict instanceof Promise
        ? verdict.then((v) => grant(v, qos)) as Promise<QoS>
        : grant(verdict, qos);
    },
  );
  if (verdicts.some((v) => typeof v !== "number")) {
    return Promise.all(verdicts).then((codes) => {
      if (!connection.isClosed) return apply(connection, session, packet, codes as number[]);
    });
  }
  return apply(connection, session, packet, verdicts as number[]);
}

function grant(verdict: boolean | QoS, requested: QoS): number {
  if (verdict === false) return SUBACK_FAILURE;
  if (verdict === true) return requested;
  return verdict < requested ? verdict : requested;
}

function apply(
  connection: Connection,
  session: Session,
  packet: SubscribePacket,
  codes: number[],
): void | Promise<void> {
  const { ctx } = connection;
  const max = ctx.limits.maxSubscriptionsPerSession;
  for (let i = 0; i < codes.length; i++) {
    if (codes[i] === SUBACK_FAILURE) continue;
    const filter = packet.subscriptions[i].topicFilter;
    if (!session.subscriptions.has(filter) && session.subscriptions.size >= max) {
      ctx.log.debug(`SUBSCRIBE ${JSON.stringify(filter)} refused: maxSubscriptionsPerSession`);
      codes[i] = SUBACK_FAILURE;
      continue;
    }
    ctx.router.subscribe(session, filter, codes[i] as QoS); // replaces an existing one [MQTT-3.8.4-3]
  }
  if (!session.clean) ctx.mirror?.sessionSaved(session);
  const finish = () => {
    if (connection.isClosed) return;
    connection.sendPacket(
      encodePacket({ type: "suback", packetId: packet.packetId, returnCodes: codes }),
    );
    // Retained messages for every granted filter, sent with retain=1 [MQTT-3.3.1-6].
    for (let i = 0; i < codes.length; i++) {
      const granted = codes[i];
      if (granted === SUBACK_FAILURE) continue;
      ctx.retained.match(packet.subscriptions[i].topicFilter, (message) => {
        session.deliver(message, (message.qos < granted ? message.qos : granted) as QoS, true);
      });
    }
    if (ctx.listening("subscribe")) {
      ctx.emit("subscribe", {
        client: connection.client,
        subscriptions: packet.subscriptions,
        granted: codes,
      });
    }
  };
  // In a cluster, SUBACK also waits until the other nodes' messages can reach this one.
  const durable = session.clean
    ? ctx.cluster === undefined ? undefined : ctx.mirror?.durable()
    : ctx.mirror?.durable();
  if (durable === undefined) return finish();
  return durable.then(finish);
}

/** Handles an UNSUBSCRIBE; UNSUBACK even when no filter was subscribed [MQTT-3.10.4-5]. */
export function handleUnsubscribe(
  connection: Connection,
  session: Session,
  packet: UnsubscribePacket,
): void | Promise<void> {
  const { ctx } = connection;
  for (const filter of packet.topicFilters) ctx.router.unsubscribe(session, filter);
  if (!session.clean) ctx.mirror?.sessionSaved(session);
  const finish = () => {
    if (connection.isClosed) return;
    connection.sendPacket(encodePacket({ type: "unsuback", packetId: packet.packetId }));
    if (ctx.listening("unsubscribe")) {
      ctx.emit("unsubscribe", { client: connection.client, topicFilters: packet.topicFilters });
    }
  };
  const durable = session.clean ? undefined : ctx.mirror?.durable();
  if (durable === undefined) return finish();
  return durable.then(finish);
}
