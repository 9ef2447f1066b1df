/**
 * Durable state across a broker restart (close, then a new broker on the same SQLite directory):
 * retained messages, persistent sessions with queued and in-flight messages in both directions,
 * limits at load time, and what the CLI does with an unreadable or too new store.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
// Inline and exactly versioned, like every dependency here (see tests/imports_test.ts).
// deno-lint-ignore no-import-prefix
import mqtt from "npm:mqtt@5.16.0";
import { SqlitePersistence } from "../mod.ts";
import { DurableBroker, spawnCli, startCli, withTempDir } from "./_durable.ts";
import * as r from "./_raw.ts";
import { RawClient, TYPE } from "./_raw.ts";
import { connectMqtt, type Received } from "./_mqttjs.ts";
import { waitFor, withDeadline } from "./_util.ts";

Deno.test("durable: retained messages survive a restart; a cleared one stays cleared [MQTT-3.3.1-10]", async () => {
  await withTempDir(async (dir) => {
    const b = await DurableBroker.start(dir);
    try {
      const pub = await connectMqtt(b.port);
      for (
        const [topic, payload, qos] of [["r/a", "A", 1], ["r/b", "B", 0], ["r/c", "C", 2]] as const
      ) {
        await pub.publishAsync(topic, payload, { qos, retain: true });
      }
      await pub.publishAsync("r/d", "D", { qos: 1, retain: true });
      await pub.publishAsync("r/b", "B2", { qos: 1, retain: true }); // replaces
      await pub.publishAsync("r/c", "", { qos: 1, retain: true }); // clears [MQTT-3.3.1-10]
      await pub.endAsync();

      await b.restart();

      const sub = mqtt.connect(`mqtt://127.0.0.1:${b.port}`, {
        protocolVersion: 4,
        reconnectPeriod: 0,
      });
      const got: Received[] = [];
      sub.on("message", (topic, payload, packet) => {
        got.push({ topic, payload: payload.toString(), qos: packet.qos, retain: packet.retain });
      });
      await withDeadline(new Promise((resolve) => sub.once("connect", resolve)), 5_000, "CONNACK");
      await sub.subscribeAsync(["r/#", "end"], { qos: 2 });
      // Retained messages are sent right after SUBACK; a live message published afterwards comes
      // after all of them, so once it is here the retained set is complete.
      const marker = await connectMqtt(b.port);
      await marker.publishAsync("end", "x", { qos: 1 });
      await marker.endAsync();
      await waitFor(() => got.some((m) => m.topic === "end"), 5_000, "the marker");
      await sub.endAsync();
      const retained = got.filter((m) => m.topic !== "end").sort((x, y) =>
        x.topic.localeCompare(y.topic)
      );
      assert.deepEqual(retained, [
        { topic: "r/a", payload: "A", qos: 1, retain: true },
        { topic: "r/b", payload: "B2", qos: 1, retain: true },
        { topic: "r/d", payload: "D", qos: 1, retain: true },
      ]);
      assert.equal(b.broker.stats().retained, 3);
      assert.ok(
        b.lines.includes("info persistence: restored 0 sessions, 0 messages, 3 retained messages"),
        b.lines.join("\n"),
      );
    } finally {
      await b.close();
    }
  });
});

Deno.test("durable: an offline persistent session keeps its subscriptions and queued QoS 1/2 messages, in order, across a restart [MQTT-3.1.2-4] [MQTT-3.2.2-2]", async () => {
  await withTempDir(async (dir) => {
    const b = await DurableBroker.start(dir);
    try {
      const options = { clientId: "durable-sub", clean: false } as const;
      const first = await connectMqtt(b.port, options);
      await first.subscribeAsync("q/#", { qos: 2 });
      await first.endAsync();

      const pub = await connectMqtt(b.port);
      const sent: string[] = [];
      for (let i = 1; i <= 8; i++) {
        await pub.publishAsync(`q/${i % 3}`, `m${i}`, { qos: i % 2 === 0 ? 2 : 1 });
        sent.push(`m${i}`);
      }
      await pub.publishAsync("q/0", "dropped", { qos: 0 }); // QoS 0 is not kept for offline sessions
      await pub.endAsync();

      await b.restart();
      assert.equal(b.broker.stats().sessions, 1);

      const sub = mqtt.connect(`mqtt://127.0.0.1:${b.port}`, {
        protocolVersion: 4,
        reconnectPeriod: 0,
        ...options,
      });
      const got: Received[] = [];
      const dups: boolean[] = [];
      let sessionPresent: boolean | undefined;
      sub.once("connect", (connack) => sessionPresent = connack.sessionPresent);
      // Wire order: mqtt.js emits "message" for QoS 2 only at PUBREL, after later QoS 1 ones.
      sub.on("packetreceive", (packet) => {
        if (packet.cmd !== "publish") return;
        dups.push(packet.dup);
        got.push({
          topic: packet.topic,
          payload: packet.payload.toString(),
          qos: packet.qos,
          retain: packet.retain,
        });
      });
      await waitFor(() => got.length >= sent.length, 5_000, "the queued messages");
      assert.equal(sessionPresent, true, "CONNACK sessionPresent=1 [MQTT-3.2.2-2]");
      assert.deepEqual(got.map((m) => m.payload), sent, "all queued messages, in order");
      assert.deepEqual(got.map((m) => m.qos), sent.map((_, i) => (i + 1) % 2 === 0 ? 2 : 1));
      assert.ok(dups.every((dup) => !dup), "never sent before: DUP=0");

      // The subscription itself survived: a message published after the restart arrives too.
      const pub2 = await connectMqtt(b.port);
      await pub2.publishAsync("q/new", "after", { qos: 1 });
      await pub2.endAsync();
      await waitFor(() => got.some((m) => m.payload === "after"), 5_000, "the new message");
      await sub.endAsync();
      assert.deepEqual(got.map((m) => m.payload), [...sent, "after"]);
    } finally {
      await b.close();
    }
  });
});

Deno.test("durable: unacknowledged PUBLISH and PUBREL are resent after a restart with DUP=1 and the same packet ids [MQTT-4.4.0-1] [MQTT-3.3.1-1]", async () => {
  await withTempDir(async (dir) => {
    const b = await DurableBroker.start(dir);
    let sub = await RawClient.connect(b.port, "subscriber");
    const pub = await RawClient.connect(b.port, "publisher");
    try {
      await sub.handshake({ clientId: "inflight-sub", cleanSession: false });
      assert.deepEqual(await sub.subscribe(1, [["i/#", 2]]), [2]);
      await pub.handshake({ clientId: "inflight-pub" });
      const plan = [["i/1", 1], ["i/2", 2], ["i/3", 2], ["i/4", 1]] as const;
      for (const [i, [topic, qos]] of plan.entries()) {
        await pub.publish({ topic, payload: `p${i + 1}`, qos, packetId: 10 + i });
      }
      const before = [];
      for (const [topic, qos] of plan) {
        const m = await sub.expectPublish();
        assert.deepEqual([m.topic, m.qos, m.dup], [topic, qos, false]);
        before.push(m);
      }
      // The subscriber acknowledges nothing, except PUBREC for the second QoS 2 message.
      const released = before[2].packetId!;
      await sub.send(r.pubrec(released));
      assert.equal(await sub.expectAck(TYPE.PUBREL), released);
      await pub.close();

      await b.restart();
      assert.ok(sub.closed || (await sub.expectClosed(), true));
      await sub.close();

      sub = await RawClient.connect(b.port, "subscriber again");
      const connack = await sub.handshake({ clientId: "inflight-sub", cleanSession: false });
      assert.equal(connack.sessionPresent, true);
      // In the order they were first sent [MQTT-4.6.0-1]: the PUBLISHes with DUP=1 and their
      // original ids, and for the one PUBREC'd, the PUBREL instead.
      for (const [i, original] of before.entries()) {
        if (i === 2) {
          assert.equal(await sub.expectAck(TYPE.PUBREL), released, "PUBREL resent");
          continue;
        }
        const again = await sub.expectPublish();
        assert.deepEqual(
          { ...again, payload: undefined },
          { ...original, dup: true, payload: undefined },
          `PUBLISH ${original.text} resent with DUP=1 and id ${original.packetId}`,
        );
      }
      // Complete everything; after another restart nothing is outstanding.
      await sub.send(r.puback(before[0].packetId!));
      await sub.send(r.pubrec(before[1].packetId!));
      assert.equal(await sub.expectAck(TYPE.PUBREL), before[1].packetId);
      await sub.send(r.pubcomp(before[1].packetId!));
      await sub.send(r.pubcomp(released));
      await sub.send(r.puback(before[3].packetId!));
      await sub.send(r.pingreq()); // answered after the acks above were handled
      await sub.expectPacket(TYPE.PINGRESP);

      await b.restart();
      await sub.close();
      sub = await RawClient.connect(b.port, "subscriber, third connection");
      assert.equal(
        (await sub.handshake({ clientId: "inflight-sub", cleanSession: false })).sessionPresent,
        true,
      );
      await sub.send(r.pingreq());
      await sub.expectPacket(TYPE.PINGRESP); // nothing resent before it
    } finally {
      await sub.close();
      await pub.close();
      await b.close();
    }
  });
});

Deno.test("durable: a QoS 2 PUBLISH received before a restart is not delivered again when resent after it [MQTT-4.3.3-2]", async () => {
  await withTempDir(async (dir) => {
    const b = await DurableBroker.start(dir);
    let sub = await RawClient.connect(b.port, "subscriber");
    let pub = await RawClient.connect(b.port, "publisher");
    try {
      await sub.handshake({ clientId: "once-sub", cleanSession: false });
      assert.deepEqual(await sub.subscribe(1, [["x/#", 2]]), [2]);
      await pub.handshake({ clientId: "once-pub", cleanSession: false });
      const message = { topic: "x/once", payload: "exactly once", qos: 2, packetId: 7 };
      await pub.send(r.publish(message));
      assert.equal(await pub.expectAck(TYPE.PUBREC), 7);
      const delivered = await sub.receive();
      assert.equal(delivered.text, "exactly once");
      await sub.send(r.pingreq()); // the subscriber's PUBCOMP is handled before the restart
      await sub.expectPacket(TYPE.PINGRESP);

      await b.restart();
      await sub.close();
      await pub.close();

      sub = await RawClient.connect(b.port, "subscriber again");
      assert.equal(
        (await sub.handshake({ clientId: "once-sub", cleanSession: false })).sessionPresent,
        true,
      );
      pub = await RawClient.connect(b.port, "publisher again");
      assert.equal(
        (await pub.handshake({ clientId: "once-pub", cleanSession: false })).sessionPresent,
        true,
      );
      // The publisher never saw PUBCOMP, so it resends the PUBLISH with DUP=1.
      await pub.send(r.publish({ ...message, dup: true }));
      assert.equal(await pub.expectAck(TYPE.PUBREC), 7);
      await pub.send(r.pubrel(7));
      assert.equal(await pub.expectAck(TYPE.PUBCOMP), 7);
      await pub.publish({ topic: "x/marker", payload: "after", qos: 1, packetId: 8 });

      const next = await sub.receive();
      assert.equal(next.topic, "x/marker", "the resent QoS 2 message was not routed again");
    } finally {
      await sub.close();
      await pub.close();
      await b.close();
    }
  });
});

Deno.test("durable: a store over the limits loads up to maxSessions and maxRetained and logs what it left out", async () => {
  await withTempDir(async (dir) => {
    // Fill the store directly: 5 sessions with a queued message each, 5 retained messages.
    const store = new SqlitePersistence({ dir });
    await store.open();
    store.load({ maxSessions: 10, maxRetained: 10, maxRetainedBytes: 1 << 20, maxQueued: 10 });
    for (let i = 1; i <= 5; i++) {
      store.saveSession({
        clientId: `c${i}`,
        subscriptions: [{ topicFilter: `s/${i}`, qos: 1 }],
        expiresAt: 0,
      });
      store.addOutbound({
        clientId: `c${i}`,
        seq: 1,
        packetId: 0,
        state: "queued",
        message: {
          topic: `s/${i}`,
          payload: new TextEncoder().encode(`q${i}`),
          qos: 1,
          retain: false,
        },
      });
      store.setRetained({ topic: `r/${i}`, payload: new Uint8Array([i]), qos: 0, retain: true });
    }
    await store.commit();
    await store.close();

    const b = await DurableBroker.start(dir, { limits: { maxSessions: 3, maxRetained: 2 } });
    try {
      assert.equal(b.broker.stats().sessions, 3);
      assert.equal(b.broker.stats().retained, 2);
      assert.equal(b.broker.stats().queued, 3);
      const warnings = b.lines.filter((l) => l.startsWith("warn "));
      assert.equal(warnings.length, 1, b.lines.join("\n"));
      assert.match(warnings[0], /not loaded: 2 sessions \(maxSessions\), 3 retained messages/);
      assert.match(warnings[0], /2 queued messages/);

      // The first sessions by client id were loaded, with their messages.
      const c1 = await RawClient.connect(b.port, "c1");
      try {
        assert.equal(
          (await c1.handshake({ clientId: "c1", cleanSession: false })).sessionPresent,
          true,
        );
        assert.equal((await c1.receive()).text, "q1");
      } finally {
        await c1.close();
      }
      // c5 was not: it would be a fourth session, over maxSessions.
      const c5 = await RawClient.connect(b.port, "c5");
      try {
        await c5.send(r.connect({ clientId: "c5", cleanSession: false }));
        const refused = await c5.expectConnack();
        assert.deepEqual(refused, { sessionPresent: false, returnCode: 3 });
      } finally {
        await c5.close();
      }

      // What was left out is gone from the store too: with room, it does not come back.
      await b.close();
      const again = await DurableBroker.start(dir);
      try {
        assert.equal(again.broker.stats().sessions, 3);
        assert.equal(again.broker.stats().retained, 2);
      } finally {
        await again.close();
      }
    } finally {
      await b.close();
    }
  });
});

Deno.test("durable cli: an unreadable broker.db is moved aside with one log line naming it, and the broker serves clients", async () => {
  await withTempDir(async (dir) => {
    const garbage = new TextEncoder().encode("not a database\n".repeat(200));
    await Deno.writeFile(join(dir, "broker.db"), garbage);
    const cli = await startCli(dir);
    try {
      const client = await connectMqtt(cli.port, { clientId: "served-after", clean: false });
      await client.subscribeAsync("t", { qos: 1 });
      await client.publishAsync("t", "works", { qos: 1, retain: true });
      await client.endAsync();
    } finally {
      cli.process.kill("SIGTERM");
    }
    const result = await cli.process.finished;
    assert.equal(result.code, 0, result.stderr);
    const moved = [];
    for await (const entry of Deno.readDir(dir)) {
      if (entry.name.startsWith("broker.db.corrupt-")) moved.push(entry.name);
    }
    assert.equal(moved.length, 1, `one file moved aside: ${moved}`);
    assert.deepEqual(await Deno.readFile(join(dir, moved[0])), garbage, "kept unchanged");
    const lines = result.stderr.trimEnd().split("\n").filter((l) =>
      /moved|corrupt|could not/.test(l)
    );
    assert.equal(lines.length, 1, `exactly one line about it:\n${result.stderr}`);
    assert.ok(lines[0].includes(join(dir, moved[0])), `the line names the new file: ${lines[0]}`);
    assert.match(lines[0], / warn /);
    assert.doesNotMatch(result.stderr, /\n\s+at /, "no stack trace");
  });
});

Deno.test("durable cli: a store with a newer schema version is refused with one line, exit 2, file untouched", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "broker.db");
    const db = new DatabaseSync(path);
    db.exec("CREATE TABLE from_the_future (x); PRAGMA user_version = 99");
    db.close();
    const before = await Deno.readFile(path);
    const names = async () => {
      const out = [];
      for await (const entry of Deno.readDir(dir)) out.push(entry.name);
      return out.sort();
    };
    const namesBefore = await names();
    const result = await spawnCli(dir).finished;
    assert.equal(result.code, 2);
    const lines = result.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 1, `one line:\n${result.stderr}`);
    assert.match(
      lines[0],
      /^error: --data-dir .*schema version 99 is newer than this broker's \(2\)/,
    );
    assert.ok(lines[0].includes(path), lines[0]);
    assert.deepEqual(await Deno.readFile(path), before, "the file is untouched");
    assert.deepEqual(await names(), namesBefore, "nothing created or moved");
  });
});
