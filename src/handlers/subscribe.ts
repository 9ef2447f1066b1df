/**
 * SUBSCRIBE and UNSUBSCRIBE: per-filter validation, features, limits and authorisation, one 5.0
 * reason code per filter (the 3.1.1 encoder maps it to 0/1/2/0x80), subscription options and
 * identifiers, and retained messages for each granted filter as Retain Handling says.
 *
 * @module
 */
import {
  type QoS,
  REASON,
  subackReturnCode,
  type SubscribePacket,
  type UnsubscribePacket,
} from "../codec/packet.ts";
import type { ClientLink } from "../context.ts";
import { ProtocolError } from "../errors.ts";
import type { Session, SubscriptionOptions } from "../session/session.ts";
import { isSharedFilter, subscriptionFilterError } from "../topic/shared.ts";
import { afterCommit } from "./_commit.ts";

// Whether a (non-shared part of a) filter holds a wildcard.
function hasWildcard(filter: string): boolean {
  return filter.includes("+") || filter.includes("#");
}

/** Handles a SUBSCRIBE: one code per filter, in order [MQTT-3.8.4-5] (5.0 [MQTT-3.9.3-1]). */
export function handleSubscribe(
  link: ClientLink,
  session: Session,
  packet: SubscribePacket,
): void | Promise<void> {
  const { ctx } = link;
  const { limits } = ctx;
  const subscriptionId = packet.properties?.subscriptionIdentifier;
  if (subscriptionId !== undefined && !limits.subscriptionIdentifierAvailable) {
    // A server that said it has none closes with 0xA1 (5.0 section 3.8.2.1.2).
    throw new ProtocolError(
      "Subscription Identifier while not available",
      REASON.subscriptionIdentifiersNotSupported,
    );
  }
  if (link.v5 !== undefined && session.hasInboundQos2(packet.packetId)) {
    // The id still names an inbound QoS 2 exchange: 0x91 for every filter, nothing subscribed.
    const codes = packet.subscriptions.map(() => REASON.packetIdentifierInUse);
    link.send({ type: "suback", packetId: packet.packetId, returnCodes: codes });
    return;
  }
  const authorize = ctx.hooks.authorizeSubscribe;
  const features = { sharedSubscriptions: limits.sharedSubscriptionAvailable };
  const verdicts: (number | Promise<number>)[] = packet.subscriptions.map(
    ({ topicFilter, qos, noLocal }) => {
      const error = subscriptionFilterError(
        topicFilter,
        limits.maxTopicLength,
        limits.maxTopicLevels,
        features,
      );
      if (error !== undefined) {
        ctx.log.debug(`SUBSCRIBE ${JSON.stringify(topicFilter)} refused: ${error.reason}`);
        return error.reasonCode;
      }
      const shared = isSharedFilter(topicFilter);
      if (shared && noLocal === true) {
        throw new ProtocolError("No Local on a shared subscription [MQTT-3.8.3-4]");
      }
      if (!limits.wildcardSubscriptionAvailable && hasWildcard(topicFilter)) {
        return REASON.wildcardSubscriptionsNotSupported;
      }
      const requested = (qos > limits.maxQos ? limits.maxQos : qos) as QoS;
      if (authorize === undefined) return requested;
      const verdict = authorize(link.client, topicFilter, requested);
      return verdict instanceof Promise
        ? verdict.then((v) => grant(v, requested))
        : grant(verdict, requested);
    },
  );
  if (verdicts.some((v) => typeof v !== "number")) {
    return Promise.all(verdicts).then((codes) => {
      if (!link.isClosed) return apply(link, session, packet, codes, subscriptionId);
    });
  }
  return apply(link, session, packet, verdicts as number[], subscriptionId);
}

// A hook's verdict as a SUBACK code: the granted QoS, or a failure ≥ 0x80.
function grant(verdict: boolean | number, requested: QoS): number {
  if (verdict === false) return REASON.notAuthorized;
  if (verdict === true) return requested;
  if (verdict >= 0x80) return verdict;
  if (verdict === 0 || verdict === 1 || verdict === 2) {
    return verdict < requested ? verdict : requested;
  }
  return REASON.notAuthorized;
}

function apply(
  link: ClientLink,
  session: Session,
  packet: SubscribePacket,
  codes: number[],
  subscriptionId: number | undefined,
): void | Promise<void> {
  const { ctx } = link;
  const max = ctx.limits.maxSubscriptionsPerSession;
  const isNew: boolean[] = [];
  const options: (SubscriptionOptions | undefined)[] = [];
  for (let i = 0; i < codes.length; i++) {
    if (codes[i] >= 0x80) continue;
    const requested = packet.subscriptions[i];
    const filter = requested.topicFilter;
    if (!session.subscriptions.has(filter) && session.subscriptions.size >= max) {
      ctx.log.debug(`SUBSCRIBE ${JSON.stringify(filter)} refused: maxSubscriptionsPerSession`);
      codes[i] = REASON.quotaExceeded;
      continue;
    }
    // A bridge (mosquitto's bridge flag in CONNECT) gets neither its own messages back nor
    // live messages stripped of their retain flag, as mosquitto does for try_private.
    const bridge = link.client.bridge === true;
    const opts: SubscriptionOptions = {
      qos: codes[i] as QoS,
      noLocal: requested.noLocal === true || bridge,
      retainAsPublished: requested.retainAsPublished === true || bridge,
      retainHandling: requested.retainHandling ?? 0,
    };
    if (subscriptionId !== undefined) opts.subscriptionId = subscriptionId;
    options[i] = opts;
    // Replaces an existing one [MQTT-3.8.4-3].
    isNew[i] = ctx.router.subscribe(session, filter, opts);
  }
  if (!session.clean) ctx.mirror?.sessionSaved(session);
  const finish = () => {
    link.send({ type: "suback", packetId: packet.packetId, returnCodes: codes });
    // Retained messages for every granted filter, sent with retain=1 [MQTT-3.3.1-6]; 5.0 as its
    // Retain Handling says [MQTT-3.3.1-9/10/11], never for a shared subscription.
    const ids = subscriptionId === undefined ? undefined : [subscriptionId];
    for (let i = 0; i < codes.length; i++) {
      const opts = options[i];
      if (opts === undefined) continue;
      if (opts.retainHandling === 2 || (opts.retainHandling === 1 && !isNew[i])) continue;
      const filter = packet.subscriptions[i].topicFilter;
      if (isSharedFilter(filter)) continue;
      const granted = opts.qos;
      ctx.retained.match(filter, (message) => {
        session.deliver(message, (message.qos < granted ? message.qos : granted) as QoS, true, ids);
      });
    }
    if (ctx.listening("subscribe")) {
      ctx.emit("subscribe", {
        client: link.client,
        subscriptions: packet.subscriptions,
        granted: link.v5 === undefined ? codes.map(subackReturnCode) : codes,
        properties: packet.properties,
      });
    }
  };
  // In a cluster, SUBACK also waits until the other nodes' messages can reach this one.
  if (session.clean && ctx.cluster === undefined) return finish();
  return afterCommit(link, finish, true);
}

/**
 * Handles an UNSUBSCRIBE; UNSUBACK even when no filter was subscribed [MQTT-3.10.4-5], 5.0 with
 * 0x11 for those [MQTT-3.11.3-1].
 */
export function handleUnsubscribe(
  link: ClientLink,
  session: Session,
  packet: UnsubscribePacket,
): void | Promise<void> {
  const { ctx } = link;
  const codes = packet.topicFilters.map((filter) =>
    ctx.router.unsubscribe(session, filter) ? REASON.success : REASON.noSubscriptionExisted
  );
  if (!session.clean) ctx.mirror?.sessionSaved(session);
  const finish = () => {
    link.send({ type: "unsuback", packetId: packet.packetId, reasonCodes: codes });
    if (ctx.listening("unsubscribe")) {
      ctx.emit("unsubscribe", {
        client: link.client,
        topicFilters: packet.topicFilters,
        properties: packet.properties,
      });
    }
  };
  if (session.clean) return finish();
  return afterCommit(link, finish, true);
}
