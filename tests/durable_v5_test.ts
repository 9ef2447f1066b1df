/**
 * MQTT 5.0 state across a broker restart on the same SQLite directory (in process, and the CLI
 * under SIGKILL): subscription options and identifiers, shared subscriptions, the Session Expiry
 * Interval, message properties, message expiry as a wall-clock deadline (time while the broker
 * is down counts), and delayed wills. Raw sockets with hand-written 5.0 bytes.
 */
import assert from "node:assert/strict";
import { DurableBroker, startCli, withTempDir } from "./_durable.ts";
import { PROP, type Props, RawClient } from "./_raw.ts";
import type { PropertyList } from "./_raw.ts";
import { waitFor } from "./_util.ts";

const HOUR = 3600;
const enc = new TextEncoder();

async function connect5(
  port: number,
  clientId: string,
  expiryS: number | undefined,
  extra: { cleanStart?: boolean; will?: ConnectWill } = {},
): Promise<{ c: RawClient; sessionPresent: boolean }> {
  const c = await RawClient.connect(port, clientId);
  const properties: PropertyList = expiryS === undefined
    ? []
    : [[PROP.SESSION_EXPIRY_INTERVAL, expiryS]];
  const ack = await c.handshake5({
    version: 5,
    clientId,
    cleanSession: extra.cleanStart ?? false,
    properties,
    will: extra.will,
  });
  return { c, sessionPresent: ack.sessionPresent };
}

interface ConnectWill {
  topic: string;
  payload?: string;
  qos?: number;
  properties?: PropertyList;
}

/** The properties every forwarded-properties test sends, in this order. */
const MESSAGE_PROPS: PropertyList = [
  [PROP.PAYLOAD_FORMAT_INDICATOR, 1],
  [PROP.CONTENT_TYPE, "application/json"],
  [PROP.RESPONSE_TOPIC, "reply/to/me"],
  [PROP.CORRELATION_DATA, Uint8Array.of(0, 1, 254, 255)],
  [PROP.USER_PROPERTY, ["b", "2"]],
  [PROP.USER_PROPERTY, ["a", "1"]],
  [PROP.USER_PROPERTY, ["b", "3"]],
];

function assertForwardedProps(p: Props, what: string): void {
  assert.equal(p.get(PROP.PAYLOAD_FORMAT_INDICATOR), 1, `${what}: payload format`);
  assert.equal(p.get(PROP.CONTENT_TYPE), "application/json", `${what}: content type`);
  assert.equal(p.get(PROP.RESPONSE_TOPIC), "reply/to/me", `${what}: response topic`);
  assert.deepEqual(p.get(PROP.CORRELATION_DATA), Uint8Array.of(0, 1, 254, 255), what);
  assert.deepEqual(
    p.user,
    [["b", "2"], ["a", "1"], ["b", "3"]],
    `${what}: user properties in order`,
  );
}

Deno.test("durable v5: subscription options, identifiers and shared subscriptions survive a restart [MQTT-3.8.3-3] [MQTT-3.3.1-12] [MQTT-3.3.4-3]", async () => {
  await withTempDir(async (dir) => {
    const b = await DurableBroker.start(dir);
    try {
      const first = await connect5(b.port, "d5-opts", HOUR, { cleanStart: true });
      const s = first.c;
      assert.deepEqual(
        (await s.subscribe5(1, [["d5/nl", { qos: 1, noLocal: true }]])).reasonCodes,
        [1],
      );
      assert.deepEqual(
        (await s.subscribe5(2, [["d5/rap", { qos: 1, retainAsPublished: true }]])).reasonCodes,
        [1],
      );
      assert.deepEqual(
        (await s.subscribe5(3, [["d5/id/#", { qos: 2 }]], [[PROP.SUBSCRIPTION_IDENTIFIER, 4242]]))
          .reasonCodes,
        [2],
      );
      assert.deepEqual(
        (await s.subscribe5(4, [["$share/grp/d5/sh", { qos: 1 }]])).reasonCodes,
        [1],
      );
      assert.deepEqual(
        (await s.subscribe5(5, [["d5/rh2", { qos: 1, retainHandling: 2 }]])).reasonCodes,
        [1],
      );
      await s.close();
      await waitFor(() => b.broker.stats().connections === 0, 5_000, "the disconnect");

      await b.restart();

      const again = await connect5(b.port, "d5-opts", HOUR);
      assert.equal(again.sessionPresent, true, "the 5.0 session is back");
      const me = again.c;
      const other = (await connect5(b.port, "d5-other", undefined, { cleanStart: true })).c;
      // No Local: its own message on d5/nl does not come back; the other's does.
      await me.publish5({ topic: "d5/nl", payload: "own", qos: 1, packetId: 1 });
      await other.publish5({ topic: "d5/nl", payload: "theirs", qos: 1, packetId: 1 });
      const nl = await me.receive5();
      assert.equal(nl.text, "theirs");
      // Retain As Published: a retained message is forwarded with retain 1.
      await other.publish5({ topic: "d5/rap", payload: "r", qos: 1, packetId: 2, retain: true });
      const rap = await me.receive5();
      assert.deepEqual([rap.text, rap.retain], ["r", true]);
      // The Subscription Identifier is still there.
      await other.publish5({ topic: "d5/id/x", payload: "id", qos: 2, packetId: 3 });
      const id = await me.receive5();
      assert.deepEqual(id.properties.all(PROP.SUBSCRIPTION_IDENTIFIER), [4242]);
      assert.equal(id.qos, 2);
      // The shared subscription, with this session its only member.
      await other.publish5({ topic: "d5/sh", payload: "shared", qos: 1, packetId: 4 });
      assert.equal((await me.receive5()).text, "shared");
      // Retain Handling 2 kept: re-subscribing sends no retained message.
      await other.publish5({ topic: "d5/rh2", payload: "kept", qos: 1, packetId: 5, retain: true });
      assert.equal((await me.receive5()).retain, false, "live, forwarded with retain 0");
      await me.expectNothing();
      await me.close();
      await other.close();
    } finally {
      await b.close();
    }
  });
});

Deno.test("durable v5: message properties and absolute message expiry survive a restart; time while the broker is down counts [MQTT-3.3.2-5] [MQTT-3.3.2-6]", async () => {
  await withTempDir(async (dir) => {
    const b = await DurableBroker.start(dir);
    try {
      const sub = await connect5(b.port, "d5-exp", HOUR, { cleanStart: true });
      await sub.c.subscribe5(1, [["d5e/#", { qos: 1 }]]);
      await sub.c.close();
      await waitFor(() => b.broker.stats().connections === 0, 5_000, "the disconnect");

      const pub = (await connect5(b.port, "d5-exp-pub", undefined, { cleanStart: true })).c;
      await pub.publish5({
        topic: "d5e/long",
        payload: "long",
        qos: 1,
        packetId: 1,
        properties: [[PROP.MESSAGE_EXPIRY_INTERVAL, HOUR], ...MESSAGE_PROPS],
      });
      const shortAt = Date.now();
      await pub.publish5({
        topic: "d5e/short",
        payload: "short",
        qos: 1,
        packetId: 2,
        properties: [[PROP.MESSAGE_EXPIRY_INTERVAL, 1]],
      });
      await pub.publish5({ topic: "d5e/never", payload: "never", qos: 1, packetId: 3 });
      // Retained, with and without expiry.
      await pub.publish5({
        topic: "d5r/short",
        payload: "rs",
        qos: 1,
        packetId: 4,
        retain: true,
        properties: [[PROP.MESSAGE_EXPIRY_INTERVAL, 1]],
      });
      await pub.publish5({
        topic: "d5r/long",
        payload: "rl",
        qos: 1,
        packetId: 5,
        retain: true,
        properties: [[PROP.MESSAGE_EXPIRY_INTERVAL, HOUR], ...MESSAGE_PROPS],
      });
      await pub.close();

      // The broker is down while the short expiry passes (waiting on the clock, not a sleep of a
      // fixed length: the condition is the deadline itself).
      await b.broker.close();
      await waitFor(() => Date.now() > shortAt + 1_200, 5_000, "the short expiry to pass");
      await b.restart();
      assert.ok(
        b.lines.some((l) => /persistence: 2 expired messages removed/.test(l)),
        b.lines.join("\n"),
      );

      const again = await connect5(b.port, "d5-exp", HOUR);
      assert.equal(again.sessionPresent, true);
      const got = await again.c.receiveMany5(2);
      assert.deepEqual(got.map((m) => m.text), ["long", "never"], "the expired one is gone");
      assertForwardedProps(got[0].properties, "queued");
      const remaining = got[0].properties.get(PROP.MESSAGE_EXPIRY_INTERVAL) as number;
      assert.ok(remaining <= HOUR && remaining > HOUR - 60, `remaining lifetime ${remaining}`);
      assert.equal(got[1].properties.has(PROP.MESSAGE_EXPIRY_INTERVAL), false);
      await again.c.expectNothing();

      const reader = (await connect5(b.port, "d5-reader", undefined, { cleanStart: true })).c;
      await reader.subscribe5(1, [["d5r/#", { qos: 1 }]]);
      const retained = await reader.receive5();
      assert.deepEqual([retained.topic, retained.retain], ["d5r/long", true]);
      assertForwardedProps(retained.properties, "retained");
      const left = retained.properties.get(PROP.MESSAGE_EXPIRY_INTERVAL) as number;
      assert.ok(left <= HOUR && left > HOUR - 60, `retained remaining lifetime ${left}`);
      await reader.expectNothing();
      assert.equal(b.broker.stats().retained, 1, "the expired retained message was removed");
      await reader.close();
      await again.c.close();
    } finally {
      await b.close();
    }
  });
});

Deno.test("durable v5: the Session Expiry Interval is kept; a session whose interval passed while the broker was down is gone", async () => {
  await withTempDir(async (dir) => {
    const b = await DurableBroker.start(dir);
    try {
      for (const [id, expiry] of [["d5-short", 1], ["d5-long", HOUR]] as const) {
        const { c } = await connect5(b.port, id, expiry, { cleanStart: true });
        await c.subscribe5(1, [[`d5s/${id}`, { qos: 1 }]]);
        await c.close();
      }
      await waitFor(() => b.broker.stats().connections === 0, 5_000, "the disconnects");
      const closedAt = Date.now();
      await b.broker.close();
      await waitFor(() => Date.now() > closedAt + 1_200, 5_000, "the short interval to pass");
      await b.restart();
      const short = await connect5(b.port, "d5-short", 1);
      assert.equal(short.sessionPresent, false, "expired while the broker was down");
      const long = await connect5(b.port, "d5-long", HOUR);
      assert.equal(long.sessionPresent, true);
      await short.c.close();
      await long.c.close();
    } finally {
      await b.close();
    }
  });
});

Deno.test("durable v5: a delayed will survives a restart: not published when the session resumes within the delay, published once its delay passed while the broker was down [MQTT-3.1.3-9]", async () => {
  await withTempDir(async (dir) => {
    const b = await DurableBroker.start(dir);
    try {
      // A persistent listener, offline during the restart: the will is queued for it.
      const listen = await connect5(b.port, "d5w-listen", HOUR, { cleanStart: true });
      await listen.c.subscribe5(1, [["d5w/#", { qos: 1 }]]);
      await listen.c.close();
      const willProps: PropertyList = [
        [PROP.CONTENT_TYPE, "text/plain"],
        [PROP.USER_PROPERTY, ["why", "gone"]],
      ];
      // Resumes within the delay: no will.
      const stays = await connect5(b.port, "d5w-stays", HOUR, {
        cleanStart: true,
        will: {
          topic: "d5w/stays",
          payload: "should not",
          qos: 1,
          properties: [[PROP.WILL_DELAY_INTERVAL, HOUR]],
        },
      });
      // Its delay (1 s) passes while the broker is down.
      const goes = await connect5(b.port, "d5w-goes", HOUR, {
        cleanStart: true,
        will: {
          topic: "d5w/goes",
          payload: "bye",
          qos: 1,
          properties: [[PROP.WILL_DELAY_INTERVAL, 1], ...willProps],
        },
      });
      // Its session (1 s) ends while the broker is down, before its will delay (an hour).
      const ends = await connect5(b.port, "d5w-ends", 1, {
        cleanStart: true,
        will: {
          topic: "d5w/ends",
          payload: "ended",
          qos: 1,
          properties: [[PROP.WILL_DELAY_INTERVAL, HOUR]],
        },
      });
      // No DISCONNECT: the wills are due.
      for (const c of [stays.c, goes.c, ends.c]) await c.close();
      await waitFor(() => b.broker.stats().connections === 0, 5_000, "the connections to end");
      const downAt = Date.now();
      await b.broker.close();
      await waitFor(() => Date.now() > downAt + 1_200, 5_000, "the 1 s delays to pass");
      await b.restart();

      const back = await connect5(b.port, "d5w-stays", HOUR);
      assert.equal(back.sessionPresent, true);
      const l = await connect5(b.port, "d5w-listen", HOUR);
      const wills = await l.c.receiveMany5(2, 5_000);
      assert.deepEqual(wills.map((m) => [m.topic, m.text]).sort(), [
        ["d5w/ends", "ended"],
        ["d5w/goes", "bye"],
      ]);
      const goesWill = wills.find((m) => m.topic === "d5w/goes")!;
      assert.equal(goesWill.properties.get(PROP.CONTENT_TYPE), "text/plain");
      assert.deepEqual(goesWill.properties.user, [["why", "gone"]]);
      await l.c.expectNothing(500);
      await back.c.close();
      await l.c.close();
    } finally {
      await b.close();
    }
  });
});

Deno.test("durable v5 cli: after SIGKILL, an acknowledged 5.0 message is there with its properties and its subscriber's options", async () => {
  await withTempDir(async (dir) => {
    let cli = await startCli(dir);
    try {
      const sub = await connect5(cli.port, "d5k-sub", HOUR, { cleanStart: true });
      await sub.c.subscribe5(1, [["d5k/#", { qos: 1, noLocal: true }]], [[
        PROP.SUBSCRIPTION_IDENTIFIER,
        7,
      ]]);
      await sub.c.close();
      const pub = (await connect5(cli.port, "d5k-pub", undefined, { cleanStart: true })).c;
      await pub.publish5({
        topic: "d5k/x",
        payload: enc.encode("kept"),
        qos: 1,
        packetId: 1,
        properties: [[PROP.MESSAGE_EXPIRY_INTERVAL, HOUR], ...MESSAGE_PROPS],
      });
      // PUBACK is in: now the kill.
      cli.process.kill("SIGKILL");
      await cli.process.finished;
      await pub.close();

      cli = await startCli(dir);
      const again = await connect5(cli.port, "d5k-sub", HOUR);
      assert.equal(again.sessionPresent, true);
      const m = await again.c.receive5();
      assert.equal(m.text, "kept");
      assertForwardedProps(m.properties, "after kill -9");
      assert.deepEqual(m.properties.all(PROP.SUBSCRIPTION_IDENTIFIER), [7]);
      const left = m.properties.get(PROP.MESSAGE_EXPIRY_INTERVAL) as number;
      assert.ok(left <= HOUR && left > HOUR - 60, `remaining ${left}`);
      // No Local is still set: its own message does not come back.
      await again.c.publish5({ topic: "d5k/own", payload: "own", qos: 1, packetId: 9 });
      await again.c.expectNothing();
      await again.c.close();
    } finally {
      cli.process.kill("SIGTERM");
      await cli.process.finished;
    }
  });
});

Deno.test("durable v5: a retained message that expires while the broker runs is not sent, and its stored row is deleted too", async () => {
  await withTempDir(async (dir) => {
    const b = await DurableBroker.start(dir);
    try {
      const pub = (await connect5(b.port, "d5x-pub", undefined, { cleanStart: true })).c;
      const at = Date.now();
      await pub.publish5({
        topic: "d5x/r",
        payload: "soon gone",
        qos: 1,
        packetId: 1,
        retain: true,
        properties: [[PROP.MESSAGE_EXPIRY_INTERVAL, 1]],
      });
      await pub.publish5({ topic: "d5x/keep", payload: "kept", qos: 1, packetId: 2, retain: true });
      await waitFor(() => Date.now() > at + 1_200, 5_000, "the expiry to pass");
      const sub = (await connect5(b.port, "d5x-sub", undefined, { cleanStart: true })).c;
      await sub.subscribe5(1, [["d5x/#", { qos: 1 }]]);
      assert.equal((await sub.receive5()).topic, "d5x/keep");
      await sub.expectNothing();
      await sub.close();
      await pub.close();
      await b.restart();
      // Deleted from the store when it was found expired: nothing expired is left to load.
      assert.ok(
        b.lines.includes("info persistence: restored 0 sessions, 0 messages, 1 retained messages"),
        b.lines.join("\n"),
      );
      assert.ok(!b.lines.some((l) => /expired messages removed/.test(l)), b.lines.join("\n"));
    } finally {
      await b.close();
    }
  });
});

Deno.test("durable v5: with shared subscriptions switched off, stored $share subscriptions are not restored (one warning), the others are", async () => {
  await withTempDir(async (dir) => {
    const b = await DurableBroker.start(dir);
    try {
      const { c } = await connect5(b.port, "d5off", HOUR, { cleanStart: true });
      await c.subscribe5(1, [["$share/g/d5off/t", { qos: 1 }], ["d5off/t", { qos: 0 }]]);
      await c.close();
      await waitFor(() => b.broker.stats().connections === 0, 5_000, "the disconnect");
    } finally {
      await b.close();
    }
    const off = await DurableBroker.start(dir, { limits: { sharedSubscriptionAvailable: false } });
    try {
      assert.ok(
        off.lines.includes(
          "warn persistence: 1 shared subscriptions not restored: shared subscriptions are off",
        ),
        off.lines.join("\n"),
      );
      assert.equal(off.broker.stats().subscriptions, 1);
      const { c, sessionPresent } = await connect5(off.port, "d5off", HOUR);
      assert.equal(sessionPresent, true);
      const pub = (await connect5(off.port, "d5off-pub", undefined, { cleanStart: true })).c;
      await pub.publish5({ topic: "d5off/t", payload: "once", qos: 1, packetId: 1 });
      const m = await c.receive5();
      assert.deepEqual([m.text, m.qos], ["once", 0], "only the plain subscription");
      await c.expectNothing();
      await c.close();
      await pub.close();
    } finally {
      await off.close();
    }
  });
});
