/**
 * Router without sockets: real sessions attached to fake links.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { QoS } from "./codec/packet.ts";
import { Message } from "./message.ts";
import { resolveLimits } from "./options.ts";
import { Router } from "./router.ts";
import {
  Session,
  type SessionContext,
  type SessionLink,
  type SubscriptionOptions,
} from "./session/session.ts";
import { Counters } from "./stats.ts";
import { mulberry32 } from "./_test_prng.ts";
import { matchTopic } from "./topic/topic.ts";
import { parseSharedFilter } from "./topic/shared.ts";

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();

/** What a link was asked to send of one PUBLISH. */
interface Received {
  topic: string;
  payload: string;
  qos: number;
  retain: boolean;
  subscriptionIds: readonly number[] | undefined;
}

/** Records every PUBLISH; `onPublish` lets a test act from inside a delivery. */
class FakeLink implements SessionLink {
  writable = true;
  receiveMaximum = 65_535;
  received: Received[] = [];
  onPublish?: (received: Received) => void;
  sendPublish(
    message: Message,
    qos: QoS,
    retain: boolean,
    _packetId: number,
    subscriptionIds: readonly number[] | undefined,
  ): boolean {
    const received = {
      topic: message.topic,
      payload: utf8Decoder.decode(message.payload),
      qos,
      retain,
      subscriptionIds,
    };
    this.received.push(received);
    this.onPublish?.(received);
    return true;
  }
  sendPubrel(_packetId: number): void {}
}

/** Subscription options with the 5.0 defaults. */
function opts(qos: QoS, extra: Partial<SubscriptionOptions> = {}): SubscriptionOptions {
  return { qos, noLocal: false, retainAsPublished: false, retainHandling: 0, ...extra };
}

function setup(): {
  router: Router;
  ctx: SessionContext;
  session: (id: string) => { session: Session; link: FakeLink };
} {
  const ctx: SessionContext = {
    limits: resolveLimits({ maxInflight: 1000 }),
    counters: new Counters(),
  };
  return {
    router: new Router(),
    ctx,
    session: (id) => {
      const session = new Session(id, true, { clientId: id }, ctx);
      const link = new FakeLink();
      session.link = link;
      return { session, link };
    },
  };
}

function message(topic: string, qos: QoS, payload = topic): Message {
  return new Message(topic, utf8.encode(payload), qos, false);
}

Deno.test("router delivers QoS min(published, granted) [MQTT-3.8.4-6]", () => {
  for (const granted of [0, 1, 2] as const) {
    for (const published of [0, 1, 2] as const) {
      const { router, session } = setup();
      const { session: s, link } = session("c");
      router.subscribe(s, "a/b", granted);
      assert.equal(router.route(message("a/b", published)), 1);
      assert.deepEqual(
        link.received.map((r) => r.qos),
        [Math.min(granted, published)],
        `granted ${granted}, published ${published}`,
      );
    }
  }
});

Deno.test("router delivers once per session at the highest granted QoS of its matching filters", () => {
  const cases: {
    filters: [string, QoS][];
    published: QoS;
    expected: QoS | undefined;
  }[] = [
    { filters: [["a/+", 0], ["a/#", 2], ["a/b", 1]], published: 2, expected: 2 },
    { filters: [["a/+", 0], ["a/#", 2], ["a/b", 1]], published: 1, expected: 1 },
    { filters: [["a/+", 0], ["a/#", 2], ["a/b", 1]], published: 0, expected: 0 },
    { filters: [["a/b", 1], ["+/+", 0], ["#", 0]], published: 2, expected: 1 },
    { filters: [["#", 2], ["a/b", 0]], published: 2, expected: 2 },
    { filters: [["a/b", 0], ["#", 2]], published: 2, expected: 2 },
    { filters: [["+/b", 1], ["a/c", 2]], published: 2, expected: 1 },
    { filters: [["a/c", 2], ["b/#", 2]], published: 2, expected: undefined },
  ];
  for (const { filters, published, expected } of cases) {
    const { router, session } = setup();
    const { session: s, link } = session("c");
    for (const [filter, qos] of filters) router.subscribe(s, filter, qos);
    const name = `${JSON.stringify(filters)} published at ${published}`;
    assert.equal(router.route(message("a/b", published)), expected === undefined ? 0 : 1, name);
    assert.deepEqual(
      link.received.map((r) => r.qos),
      expected === undefined ? [] : [expected],
      name,
    );
  }
});

Deno.test("router delivers to every matching session, each at its own QoS", () => {
  const { router, session } = setup();
  const a = session("a");
  const b = session("b");
  const c = session("c");
  router.subscribe(a.session, "s/+", 2);
  router.subscribe(a.session, "s/#", 0);
  router.subscribe(b.session, "s/x", 1);
  router.subscribe(c.session, "other", 2);
  assert.equal(router.route(message("s/x", 2)), 2);
  assert.deepEqual(a.link.received.map((r) => r.qos), [2]);
  assert.deepEqual(b.link.received.map((r) => r.qos), [1]);
  assert.deepEqual(c.link.received, []);
  // A second route is not confused by the marks the first one left behind.
  assert.equal(router.route(message("s/x", 1)), 2);
  assert.deepEqual(a.link.received.map((r) => r.qos), [2, 1]);
  assert.deepEqual(b.link.received.map((r) => r.qos), [1, 1]);
});

Deno.test("router does not match $-topics with # or + at the first level [MQTT-4.7.2-1]", () => {
  const cases: { filter: string; topic: string; matches: boolean }[] = [
    { filter: "#", topic: "$SYS/broker/uptime", matches: false },
    { filter: "+/broker/uptime", topic: "$SYS/broker/uptime", matches: false },
    { filter: "+/#", topic: "$SYS/x", matches: false },
    { filter: "+", topic: "$x", matches: false },
    { filter: "$SYS/#", topic: "$SYS/broker/uptime", matches: true },
    { filter: "$SYS/+/uptime", topic: "$SYS/broker/uptime", matches: true },
    { filter: "$x", topic: "$x", matches: true },
    { filter: "#", topic: "a/$x", matches: true },
    { filter: "a/+", topic: "a/$x", matches: true },
    { filter: "#", topic: "a", matches: true },
  ];
  for (const { filter, topic, matches } of cases) {
    const { router, session } = setup();
    const { session: s, link } = session("c");
    router.subscribe(s, filter, 1);
    assert.equal(router.route(message(topic, 1)), matches ? 1 : 0, `${filter} vs ${topic}`);
    assert.equal(link.received.length, matches ? 1 : 0, `${filter} vs ${topic}`);
  }
});

Deno.test("router subscribe replaces the QoS of an existing subscription [MQTT-3.8.4-3]", () => {
  const { router, session } = setup();
  const { session: s, link } = session("c");
  assert.equal(router.subscribe(s, "a/#", 0), true, "new");
  assert.equal(router.subscribe(s, "a/#", 2), false, "replaced, not new");
  assert.equal(router.size, 1);
  assert.equal(s.subscriptions.size, 1);
  assert.equal(s.subscriptions.get("a/#")?.qos, 2);
  router.route(message("a/b", 2));
  assert.deepEqual(link.received.map((r) => r.qos), [2], "one delivery at the new QoS");
  assert.equal(router.subscribe(s, "a/#", 1), false);
  router.route(message("a/b", 2));
  assert.deepEqual(link.received.map((r) => r.qos), [2, 1], "downgrade works too");
});

Deno.test("router unsubscribe removes one subscription from the trie", () => {
  const { router, session } = setup();
  const a = session("a");
  const b = session("b");
  router.subscribe(a.session, "t/#", 1);
  router.subscribe(a.session, "t/x", 1);
  router.subscribe(b.session, "t/#", 1);
  assert.equal(router.size, 3);
  assert.equal(router.unsubscribe(a.session, "t/#"), true);
  assert.equal(router.unsubscribe(a.session, "t/#"), false, "already gone");
  assert.equal(router.unsubscribe(a.session, "never"), false);
  assert.equal(router.size, 2);
  assert.deepEqual([...a.session.subscriptions.keys()], ["t/x"]);
  assert.equal(router.route(message("t/y", 1)), 1, "only b's t/# is left for t/y");
  assert.deepEqual(a.link.received, []);
  assert.equal(b.link.received.length, 1);
  assert.equal(router.route(message("t/x", 1)), 2);
});

Deno.test("router unsubscribeAll removes every subscription of one session only", () => {
  const { router, session } = setup();
  const a = session("a");
  const b = session("b");
  for (const filter of ["x", "x/#", "+/y", "#"]) router.subscribe(a.session, filter, 2);
  router.subscribe(b.session, "x", 0);
  assert.equal(router.size, 5);
  router.unsubscribeAll(a.session);
  assert.equal(router.size, 1);
  assert.equal(a.session.subscriptions.size, 0);
  assert.equal(router.route(message("x", 2)), 1);
  assert.deepEqual(a.link.received, []);
  assert.deepEqual(b.link.received.map((r) => r.qos), [0]);
  router.unsubscribeAll(a.session); // again: nothing to do
  router.unsubscribeAll(b.session);
  assert.equal(router.size, 0);
  assert.equal(router.route(message("x", 2)), 0);
});

Deno.test("router route nested inside a delivery keeps the outer target list intact", () => {
  const { router, session } = setup();
  const sessions = ["a", "b", "c", "d"].map(session);
  for (const { session: s } of sessions) router.subscribe(s, "outer", 1);
  const listener = session("listener");
  router.subscribe(listener.session, "inner/#", 0);
  // Every subscriber of "outer" publishes again from inside its delivery.
  let nested = 0;
  for (const { link } of sessions) {
    link.onPublish = (r) => {
      if (r.topic !== "outer") return;
      nested++;
      assert.equal(router.route(message(`inner/${nested}`, 0)), 1);
    };
  }
  assert.equal(router.route(message("outer", 1)), 4);
  for (const { link } of sessions) {
    assert.deepEqual(link.received.map((r) => r.topic), ["outer"], "each got it exactly once");
  }
  assert.deepEqual(
    listener.link.received.map((r) => r.topic),
    ["inner/1", "inner/2", "inner/3", "inner/4"],
  );
  // The router is usable afterwards.
  assert.equal(router.route(message("outer", 0)), 4);
  assert.equal(nested, 8);
});

Deno.test("router route nested inside a delivery keeps the outer granted QoS [MQTT-3.8.4-6]", () => {
  // Two sessions hold "t" and "u" at different QoS. Whichever gets "t" first publishes on "u"
  // from inside its delivery; the nested route matches both sessions again. The other one must
  // still get "t" at the QoS its "t" subscription allows, neither lower nor higher.
  const cases: { tQos: QoS; uQos: QoS }[] = [{ tQos: 2, uQos: 0 }, { tQos: 0, uQos: 2 }];
  for (const { tQos, uQos } of cases) {
    const { router, session } = setup();
    const pair = [session("a"), session("b")];
    for (const { session: s, link } of pair) {
      router.subscribe(s, "t", tQos);
      router.subscribe(s, "u", uQos);
      link.onPublish = (r) => {
        if (r.topic === "t" && !pair.some((p) => p.link.received.some((x) => x.topic === "u"))) {
          router.route(message("u", 2));
        }
      };
    }
    assert.equal(router.route(message("t", 2)), 2);
    for (const { session: s, link } of pair) {
      const t = link.received.filter((r) => r.topic === "t").map((r) => r.qos);
      const u = link.received.filter((r) => r.topic === "u").map((r) => r.qos);
      assert.deepEqual(u, [uQos], `${s.clientId}: u granted ${uQos}, published 2`);
      assert.deepEqual(t, [tQos], `${s.clientId}: t granted ${tQos}, published 2`);
    }
  }
});

Deno.test("router route counts offline and denied sessions as targets but delivers nothing to them", () => {
  const ctx: SessionContext = {
    limits: resolveLimits(),
    counters: new Counters(),
    authorizeForward: (client) => client.clientId !== "denied",
  };
  const router = new Router();
  const offline = new Session("offline", false, { clientId: "offline" }, ctx);
  const denied = new Session("denied", false, { clientId: "denied" }, ctx);
  denied.link = new FakeLink();
  router.subscribe(offline, "t", 1);
  router.subscribe(denied, "t", 1);
  assert.equal(router.route(message("t", 0)), 2);
  assert.equal(ctx.counters.dropped.offlineQos0, 1);
  assert.equal(ctx.counters.dropped.forwardDenied, 1);
  assert.equal(router.route(message("t", 1)), 2);
  assert.equal(offline.queued, 1);
  assert.equal(ctx.counters.dropped.forwardDenied, 2);
  assert.deepEqual((denied.link as FakeLink).received, []);
});

Deno.test("router: No Local skips the publishing session's own subscription, not its others [MQTT-3.8.3-3]", () => {
  const { router, session } = setup();
  const a = session("a");
  const b = session("b");
  router.subscribe(a.session, "t/#", opts(1, { noLocal: true }));
  router.subscribe(b.session, "t/#", opts(1, { noLocal: true }));
  const own = (origin: string | undefined) =>
    new Message("t/x", utf8.encode("m"), 1, false, undefined, 0, origin);
  assert.equal(router.route(own("a")), 1);
  assert.equal(a.link.received.length, 0);
  assert.equal(b.link.received.length, 1);
  assert.equal(router.route(own(undefined)), 2, "the broker's own messages reach both");
  // An overlapping subscription without No Local still matches a's own message.
  router.subscribe(a.session, "t/x", opts(0));
  assert.equal(router.route(own("a")), 2);
  assert.deepEqual(a.link.received.map((r) => r.qos), [1, 0], "at the other filter's QoS");
});

Deno.test("router: Retain As Published keeps the retain flag of a forwarded message, else it is cleared [MQTT-3.3.1-12] [MQTT-3.3.1-13]", () => {
  const { router, session } = setup();
  const rap = session("rap");
  const plain = session("plain");
  const both = session("both");
  router.subscribe(rap.session, "r", opts(1, { retainAsPublished: true }));
  router.subscribe(plain.session, "r", opts(1));
  router.subscribe(both.session, "r", opts(1));
  router.subscribe(both.session, "+", opts(0, { retainAsPublished: true }));
  router.route(new Message("r", utf8.encode("x"), 1, true));
  router.route(new Message("r", utf8.encode("y"), 1, false));
  assert.deepEqual(rap.link.received.map((r) => r.retain), [true, false]);
  assert.deepEqual(plain.link.received.map((r) => r.retain), [false, false]);
  assert.deepEqual(both.link.received.map((r) => [r.retain, r.qos]), [[true, 1], [false, 1]]);
});

Deno.test("router: every matching subscription's identifier goes with the one delivery [MQTT-3.3.4-3] [MQTT-3.3.4-4]", () => {
  const { router, session } = setup();
  const { session: s, link } = session("c");
  router.subscribe(s, "a/+", opts(1, { subscriptionId: 7 }));
  router.subscribe(s, "a/#", opts(0, { subscriptionId: 9 }));
  router.subscribe(s, "a/b", opts(0));
  router.subscribe(s, "x/#", opts(0, { subscriptionId: 11 }));
  router.route(message("a/b", 1));
  router.route(message("a/c/d", 1));
  router.route(message("x/y", 1));
  router.route(message("x/y", 1));
  router.subscribe(s, "z", opts(1));
  router.route(message("z", 1));
  assert.deepEqual(
    link.received.map((r) => [r.topic, r.qos, r.subscriptionIds && [...r.subscriptionIds].sort()]),
    [["a/b", 1, [7, 9]], ["a/c/d", 0, [9]], ["x/y", 0, [11]], ["x/y", 0, [11]], [
      "z",
      1,
      undefined,
    ]],
  );
  assert.equal(link.received[2].subscriptionIds, link.received[3].subscriptionIds, "one array");
});

Deno.test("router: a shared subscription gives each message to ONE member, round-robin, at that member's QoS [MQTT-4.8.2-3]", () => {
  const { router, session } = setup();
  const members = ["m1", "m2", "m3"].map(session);
  const grants: QoS[] = [0, 1, 2];
  members.forEach((m, i) => router.subscribe(m.session, "$share/g/jobs/+", grants[i]));
  assert.equal(router.size, 3);
  assert.equal(router.sharedGroups, 1);
  for (let i = 0; i < 6; i++) assert.equal(router.route(message(`jobs/${i}`, 2)), 1);
  members.forEach((m, i) => {
    assert.deepEqual(m.link.received.map((r) => [r.topic, r.qos]), [
      [`jobs/${i}`, grants[i]],
      [`jobs/${i + 3}`, grants[i]],
    ]);
  });
  assert.equal(router.route(message("other", 2)), 0);
  assert.equal(router.route(message("jobs/a/b", 2)), 0, "the inner filter decides");
});

Deno.test("router: a shared member that is offline or whose queue is full is passed over while another can take it", () => {
  const ctx: SessionContext = {
    limits: resolveLimits({ maxInflight: 1, maxQueued: 1 }),
    counters: new Counters(),
  };
  const router = new Router();
  const make = (id: string) => {
    const s = new Session(id, false, { clientId: id }, ctx);
    const link = new FakeLink();
    s.link = link;
    return { s, link };
  };
  const a = make("a");
  const b = make("b");
  const c = make("c");
  for (const m of [a, b, c]) router.subscribe(m.s, "$share/g/t", 1);
  b.s.link = undefined; // offline
  // a: one in flight fills its window, one queued fills its queue; c takes everything else.
  router.route(message("t", 1, "1")); // a (its turn)
  router.route(message("t", 1, "2")); // b's turn, offline: c
  router.route(message("t", 1, "3")); // a: window full, queue has room: queued
  router.route(message("t", 1, "4")); // b offline, c: window full, queue room: queued
  router.route(message("t", 1, "5")); // a full, b offline, c full: b can still queue it offline
  assert.deepEqual(a.link.received.map((r) => r.payload), ["1"]);
  assert.equal(a.s.queued, 1);
  assert.deepEqual(c.link.received.map((r) => r.payload), ["2"]);
  assert.equal(c.s.queued, 1);
  assert.equal(b.s.queued, 1, "queued to the offline persistent member, as mosquitto does");
  // Nobody can take the next one: it goes to the member whose turn it is, which drops it.
  const dropped = ctx.counters.dropped.queueFull;
  assert.equal(router.route(message("t", 1, "6")), 1);
  assert.equal(ctx.counters.dropped.queueFull, dropped + 1);
  // QoS 0 with only offline members and full online ones: dropped, counted once.
  b.s.link = undefined;
  const offline = ctx.counters.dropped.offlineQos0 + ctx.counters.dropped.queueFull;
  router.route(message("t", 0, "7"));
  assert.equal(ctx.counters.dropped.offlineQos0 + ctx.counters.dropped.queueFull, offline + 1);
});

Deno.test("router: shared subscriptions unsubscribe by their full filter; a session may be in several groups and hold a plain subscription too", () => {
  const { router, session } = setup();
  const a = session("a");
  const b = session("b");
  router.subscribe(a.session, "$share/g1/t", 1);
  router.subscribe(a.session, "$share/g2/t", 1);
  router.subscribe(a.session, "t", 0);
  router.subscribe(b.session, "$share/g1/t", 1);
  assert.equal(router.size, 4);
  assert.equal(router.sharedGroups, 2);
  // g1 → a (first turn), g2 → a, plain → a.
  assert.equal(router.route(message("t", 1, "x")), 3);
  assert.deepEqual(a.link.received.map((r) => r.qos).sort(), [0, 1, 1]);
  assert.equal(router.unsubscribe(a.session, "t/none"), false);
  assert.equal(router.unsubscribe(a.session, "$share/g3/t"), false);
  assert.equal(router.unsubscribe(b.session, "$share/g2/t"), false, "not a member of g2");
  assert.equal(router.unsubscribe(a.session, "$share/g1/t"), true);
  assert.deepEqual([...a.session.subscriptions.keys()].sort(), ["$share/g2/t", "t"]);
  a.link.received.length = 0;
  b.link.received.length = 0;
  assert.equal(router.route(message("t", 1, "y")), 3);
  assert.equal(b.link.received.length, 1, "g1 is b's alone now");
  assert.equal(a.link.received.length, 2, "g2 and the plain one");
  router.unsubscribeAll(a.session);
  router.unsubscribeAll(b.session);
  assert.equal(router.size, 0);
  assert.equal(router.sharedGroups, 0);
  assert.equal(router.route(message("t", 1)), 0);
});

Deno.test("router: a shared filter follows the $-topic rule of its inner filter [MQTT-4.7.2-1]", () => {
  const { router, session } = setup();
  const { session: s, link } = session("c");
  router.subscribe(s, "$share/g/#", 1);
  router.subscribe(s, "$share/sys/$SYS/#", 1);
  assert.equal(router.route(message("$SYS/x", 1)), 1);
  assert.equal(router.route(message("a/b", 1)), 1);
  assert.deepEqual(link.received.map((r) => r.topic), ["$SYS/x", "a/b"]);
});

Deno.test("router: a random mix of plain and shared subscriptions, members going offline and online, matches a model", () => {
  for (let seed = 1; seed <= 20; seed++) {
    const random = mulberry32(seed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)];
    const ctx: SessionContext = { limits: resolveLimits(), counters: new Counters() };
    const router = new Router();
    const ids = ["a", "b", "c", "d", "e"];
    const filters = ["x", "x/+", "x/#", "+/y", "#", "x/y"];
    const topics = ["x", "x/y", "x/z", "w/y", "$SYS/y"];
    const groups = ["g1", "g2"];
    type Delivery = [string, string, QoS, boolean, number[] | undefined];
    const log: Delivery[] = [];
    const sessions = new Map<string, Session>();
    for (const id of ids) {
      const s = new Session(id, false, { clientId: id }, ctx);
      s.link = new FakeLink();
      // Record deliveries; the queue stays empty, so every member can always take a message.
      s.deliver = (m, qos, retain = false, subIds) => {
        log.push([id, m.topic, qos, retain, subIds && [...subIds].sort((p, q) => p - q)]);
      };
      sessions.set(id, s);
    }
    // The model: plain subscriptions per session, groups with members in join order and a cursor.
    const plain = new Map<string, Map<string, SubscriptionOptions>>(
      ids.map((id) => [id, new Map()]),
    );
    const model = new Map<
      string,
      { members: string[]; options: SubscriptionOptions[]; next: number }
    >();
    const expected: Delivery[] = [];
    for (let step = 0; step < 300; step++) {
      const id = pick(ids);
      const s = sessions.get(id)!;
      const r = random();
      if (r < 0.3) {
        const shared = random() < 0.5;
        const filter = shared ? `$share/${pick(groups)}/${pick(filters)}` : pick(filters);
        const o = opts(pick([0, 1, 2] as const), {
          noLocal: !shared && random() < 0.3,
          retainAsPublished: random() < 0.3,
          subscriptionId: random() < 0.5 ? 1 + Math.floor(random() * 5) : undefined,
        });
        if (o.subscriptionId === undefined) delete o.subscriptionId;
        const isNew = router.subscribe(s, filter, o);
        if (shared) {
          let g = model.get(filter);
          if (g === undefined) model.set(filter, g = { members: [], options: [], next: 0 });
          const at = g.members.indexOf(id);
          assert.equal(isNew, at < 0);
          if (at >= 0) g.options[at] = o;
          else {
            g.members.push(id);
            g.options.push(o);
          }
        } else {
          assert.equal(isNew, !plain.get(id)!.has(filter));
          plain.get(id)!.set(filter, o);
        }
      } else if (r < 0.4) {
        const filter = random() < 0.5 ? `$share/${pick(groups)}/${pick(filters)}` : pick(filters);
        const g = model.get(filter);
        let existed: boolean;
        if (parseSharedFilter(filter) !== undefined) {
          const at = g?.members.indexOf(id) ?? -1;
          existed = at >= 0;
          if (existed) {
            g!.members.splice(at, 1);
            g!.options.splice(at, 1);
            if (at < g!.next) g!.next--;
            if (g!.next >= g!.members.length) g!.next = 0;
            if (g!.members.length === 0) model.delete(filter);
          }
        } else existed = plain.get(id)!.delete(filter);
        assert.equal(router.unsubscribe(s, filter), existed, `unsubscribe ${id} ${filter}`);
      } else if (r < 0.5) {
        s.link = s.link === undefined ? new FakeLink() : undefined;
      } else {
        const topic = pick(topics);
        const qos = pick([0, 1, 2] as const);
        const retain = random() < 0.5;
        const origin = random() < 0.5 ? pick(ids) : undefined;
        const m = new Message(topic, utf8.encode("p"), qos, retain, undefined, 0, origin);
        const before = log.length;
        const count = router.route(m);
        // Plain: one delivery per session at the highest grant, ids of every matching filter.
        const want: Delivery[] = [];
        for (const sid of ids) {
          let best = -1;
          let rap = false;
          const subIds: number[] = [];
          for (const [f, o] of plain.get(sid)!) {
            if (!matchTopic(f, topic) || (o.noLocal && sid === origin)) continue;
            best = Math.max(best, o.qos);
            rap ||= o.retainAsPublished;
            if (o.subscriptionId !== undefined) subIds.push(o.subscriptionId);
          }
          if (best >= 0) {
            want.push([
              sid,
              topic,
              Math.min(best, qos) as QoS,
              retain && rap,
              subIds.length ? subIds.sort((p, q) => p - q) : undefined,
            ]);
          }
        }
        // Shared: the first online member from the cursor; else the first that gets it at QoS > 0,
        // which it can queue offline; else the member whose turn it is (which drops it).
        for (const [key, g] of model) {
          if (!matchTopic(parseSharedFilter(key)!.filter, topic)) continue;
          const n = g.members.length;
          const order = Array.from({ length: n }, (_, k) => (g.next + k) % n);
          const online = order.find((i) => sessions.get(g.members[i])!.link !== undefined);
          const queues = order.find((i) => Math.min(g.options[i].qos, qos) > 0);
          const chosen = online ?? queues ?? order[0];
          g.next = (chosen + 1) % n;
          const o = g.options[chosen];
          want.push([
            g.members[chosen],
            topic,
            Math.min(o.qos, qos) as QoS,
            retain && o.retainAsPublished,
            o.subscriptionId === undefined ? undefined : [o.subscriptionId],
          ]);
        }
        const got = log.slice(before);
        const key = (d: Delivery) => JSON.stringify(d);
        assert.deepEqual(
          got.map(key).sort(),
          want.map(key).sort(),
          `seed ${seed} step ${step}: ${topic} q${qos}`,
        );
        assert.equal(count, want.length);
        expected.push(...want);
      }
    }
    assert.ok(expected.length > 50, `seed ${seed}: the model was exercised`);
  }
});

Deno.test("router: a shared member that can send at once is preferred over one whose turn it is but whose window is full", () => {
  const ctx: SessionContext = {
    limits: resolveLimits({ maxInflight: 1 }),
    counters: new Counters(),
  };
  const router = new Router();
  const make = (id: string) => {
    const s = new Session(id, false, { clientId: id }, ctx);
    const link = new FakeLink();
    s.link = link;
    return { s, link };
  };
  const a = make("a");
  const b = make("b");
  router.subscribe(a.s, "$share/g/t", 1);
  router.subscribe(b.s, "$share/g/t", 1);
  router.route(message("t", 1, "1")); // a's turn: sent, a's window (1) is full
  router.route(message("t", 1, "2")); // b's turn: sent, b's window is full
  router.route(message("t", 1, "3")); // a's turn, nobody can send: a queues it
  b.s.acknowledge(1);
  router.route(message("t", 1, "4")); // b's turn: sent
  b.s.acknowledge(2);
  router.route(message("t", 1, "5")); // a's turn, but a would only queue it and b can send: b
  assert.deepEqual(a.link.received.map((r) => r.payload), ["1"]);
  assert.equal(a.s.queued, 1, "3 waits in a's queue");
  assert.deepEqual(b.link.received.map((r) => r.payload), ["2", "4", "5"]);
  assert.equal(b.s.queued, 0);
});
