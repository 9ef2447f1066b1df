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
import { Session, type SessionContext, type SessionLink } from "./session/session.ts";
import { Counters } from "./stats.ts";

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();

/** What a link saw of one PUBLISH: topic, payload and the QoS bits of its first byte. */
interface Received {
  topic: string;
  payload: string;
  qos: number;
}

/** Records every PUBLISH; `onPublish` lets a test act from inside a delivery. */
class FakeLink implements SessionLink {
  writable = true;
  received: Received[] = [];
  onPublish?: (received: Received) => void;
  sendPublish(bytes: Uint8Array, _packetId: number, _payloadLength: number): void {
    const received = readPublish(bytes);
    this.received.push(received);
    this.onPublish?.(received);
  }
  sendPacket(_bytes: Uint8Array): void {}
}

/** Reads a PUBLISH by hand (deliberately not with our decoder). */
function readPublish(bytes: Uint8Array): Received {
  assert.equal(bytes[0] >> 4, 3, "a PUBLISH");
  let p = 1;
  while (bytes[p++] & 0x80);
  const qos = (bytes[0] >> 1) & 3;
  const topicLength = (bytes[p] << 8) | bytes[p + 1];
  p += 2;
  const topic = utf8Decoder.decode(bytes.subarray(p, p + topicLength));
  p += topicLength + (qos > 0 ? 2 : 0);
  return { topic, payload: utf8Decoder.decode(bytes.subarray(p)), qos };
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
  assert.equal(s.subscriptions.get("a/#"), 2);
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
