/**
 * 07 (5.0): Will Properties forwarded, Will Delay Interval (published after the delay or when the
 * session ends, whichever first; not at all if the session resumes within the delay).
 *
 * @module
 */
import assert from "node:assert/strict";
import { expectDisconnectOrMosquittoClose, MOSQUITTO, startBroker, waitFor } from "./_harness.ts";
import type { RunningBroker } from "./_harness.ts";
import { connect, disconnect, PROP, RC } from "./_raw.ts";
import type { Property, RawClient } from "./_raw.ts";

async function watcher(b: RunningBroker): Promise<RawClient> {
  const w = await b.connect5({ clientId: "watcher" }, "watcher");
  await w.subscribe5(1, [["will/#", { qos: 1 }]]);
  return w;
}

const props = (delay: number, sessionExpiry: number) => ({
  will: [[PROP.WILL_DELAY_INTERVAL, delay]] as Property[],
  connect: [[PROP.SESSION_EXPIRY_INTERVAL, sessionExpiry]] as Property[],
});

Deno.test(
  "will 5.0: Will Properties are forwarded, User Properties in order [MQTT-3.1.3-10] [MQTT-3.3.2-4] [MQTT-3.3.2-20]",
  async () => {
    await using b = await startBroker();
    const w = await watcher(b);
    const user: Property[] = [
      [PROP.USER_PROPERTY, ["z", "1"]],
      [PROP.USER_PROPERTY, ["a", "2"]],
      [PROP.USER_PROPERTY, ["z", "3"]],
    ];
    const c = await b.connect5({
      clientId: "wp",
      will: {
        topic: "will/wp",
        payload: '{"gone":true}',
        qos: 1,
        properties: [
          [PROP.PAYLOAD_FORMAT_INDICATOR, 1],
          [PROP.CONTENT_TYPE, "application/json"],
          [PROP.RESPONSE_TOPIC, "will/reply"],
          [PROP.CORRELATION_DATA, Uint8Array.of(7, 7)],
          [PROP.MESSAGE_EXPIRY_INTERVAL, 120],
          ...user,
        ],
      },
    });
    await c.close(); // abrupt: the will goes out
    const m = await w.receive5();
    assert.equal(m.topic, "will/wp");
    assert.equal(m.text, '{"gone":true}');
    assert.equal(m.properties.get(PROP.PAYLOAD_FORMAT_INDICATOR), 1);
    assert.equal(m.properties.get(PROP.CONTENT_TYPE), "application/json");
    assert.equal(m.properties.get(PROP.RESPONSE_TOPIC), "will/reply");
    assert.deepEqual(m.properties.get(PROP.CORRELATION_DATA), Uint8Array.of(7, 7));
    const left = m.properties.get(PROP.MESSAGE_EXPIRY_INTERVAL) as number;
    assert.ok(left > 100 && left <= 120, `Message Expiry Interval ${left}`);
    assert.deepEqual(m.properties.user, user.map(([, v]) => v));
    assert.ok(!m.properties.has(PROP.WILL_DELAY_INTERVAL), "Will Delay is not forwarded");
  },
);

Deno.test(
  "will 5.0: with a Will Delay Interval the will is published after the delay, not at once [MQTT-3.1.2-8]",
  async () => {
    await using b = await startBroker();
    const w = await watcher(b);
    const p = props(2, 60);
    const c = await b.connect5({
      clientId: "delayed",
      properties: p.connect,
      will: { topic: "will/delayed", payload: "late", qos: 1, properties: p.will },
    });
    await c.close();
    const closed = Date.now();
    await w.expectNothing(1_000); // within the delay
    const m = await w.receive5(5_000);
    assert.equal(m.text, "late");
    assert.ok(Date.now() - closed >= 1_900, `published ${Date.now() - closed} ms after close`);
  },
);

Deno.test(
  "will 5.0: a session resumed within the Will Delay Interval sends no will [MQTT-3.1.3-9] [MQTT-3.1.2-8]",
  async () => {
    await using b = await startBroker();
    const w = await watcher(b);
    const p = props(2, 60);
    const c = await b.connect5({
      clientId: "comeback",
      properties: p.connect,
      will: { topic: "will/comeback", payload: "never", qos: 1, properties: p.will },
    });
    await c.close();
    const closed = Date.now();
    const back = await b.client("back");
    await back.send(
      connect({ version: 5, clientId: "comeback", cleanSession: false, properties: p.connect }),
    );
    assert.equal((await back.expectConnack5()).sessionPresent, true);
    await waitFor(() => Date.now() - closed >= 3_000, "the will delay to pass", 6_000);
    await w.expectNothing();
  },
);

Deno.test(
  "will 5.0: the will goes out when the session ends, even before the Will Delay Interval [MQTT-3.1.2-8]",
  async () => {
    await using b = await startBroker();
    const w = await watcher(b);
    const p = props(60, 1);
    const c = await b.connect5({
      clientId: "sessionends",
      properties: p.connect,
      will: { topic: "will/sessionends", payload: "ended", qos: 1, properties: p.will },
    });
    await c.close();
    const m = await w.receive5(5_000);
    assert.equal(m.text, "ended");
  },
);

Deno.test({
  // mosquitto 2.0.11 waits for the Will Delay although the session has ended.
  name:
    "will 5.0: Session Expiry 0 with a Will Delay: the session ends at close, so the will goes out at once [MQTT-3.1.2-8] (ours)",
  ignore: MOSQUITTO,
  async fn() {
    await using b = await startBroker();
    const w = await watcher(b);
    const c = await b.connect5({
      clientId: "noexpiry",
      will: {
        topic: "will/noexpiry",
        payload: "now",
        qos: 1,
        properties: [[PROP.WILL_DELAY_INTERVAL, 60]],
      },
    });
    await c.close();
    assert.equal((await w.receive5(2_000)).text, "now");
  },
});

Deno.test(
  "will 5.0: will retain publishes a retained will [MQTT-3.1.2-15]",
  async () => {
    await using b = await startBroker();
    const c = await b.connect5({
      clientId: "wret",
      will: { topic: "will/retained", payload: "kept", qos: 1, retain: true },
    });
    await c.close();
    await waitFor(async () => {
      const late = await b.connect5({ clientId: `late${Date.now()}` }, "late");
      await late.subscribe5(1, [["will/retained", { qos: 1 }]]);
      try {
        const m = await late.receive5(300);
        return m.text === "kept" && m.retain;
      } catch {
        return false;
      }
    }, "the retained will");
  },
);

Deno.test(
  "will 5.0: a takeover with Clean Start 0 resumes the session within the Will Delay: no will [MQTT-3.1.3-9]",
  async () => {
    await using b = await startBroker();
    const w = await watcher(b);
    const p = props(30, 60);
    const will = { topic: "will/take", payload: "w", qos: 1, properties: p.will };
    const first = await b.connect5({ clientId: "take", properties: p.connect, will }, "first");
    await b.connect5({ clientId: "take", cleanSession: false, properties: p.connect }, "second");
    await expectDisconnectOrMosquittoClose(first, RC.SESSION_TAKEN_OVER);
    await w.expectNothing(500);
  },
);

Deno.test({
  // mosquitto 2.0.11 drops the old connection's delayed will here instead of sending it.
  name:
    "will 5.0: a takeover with Clean Start 1 ends the old session, so its delayed will is sent [MQTT-3.1.2-8] (ours)",
  ignore: MOSQUITTO,
  async fn() {
    await using b = await startBroker();
    const w = await watcher(b);
    const p = props(30, 60);
    const will = { topic: "will/take1", payload: "w1", qos: 1, properties: p.will };
    await b.connect5({ clientId: "take1", properties: p.connect, will }, "first");
    await b.connect5({ clientId: "take1", cleanSession: true }, "second");
    assert.equal((await w.receive5()).text, "w1");
  },
});

Deno.test(
  "will 5.0: DISCONNECT 0x00 deletes a delayed will: nothing after the delay [MQTT-3.1.2-10] [MQTT-3.14.4-3]",
  async () => {
    await using b = await startBroker();
    const w = await watcher(b);
    const p = props(1, 60);
    const c = await b.connect5({
      clientId: "cancelled",
      properties: p.connect,
      will: { topic: "will/cancelled", payload: "no", qos: 1, properties: p.will },
    });
    await c.send(disconnect());
    await c.expectClosed();
    const closed = Date.now();
    await waitFor(() => Date.now() - closed >= 2_000, "the will delay to pass", 5_000);
    await w.expectNothing();
  },
);

Deno.test({
  // mosquitto 2.0.11 does not send it (the standard's 3.1.4 text says it is sent).
  name:
    "will 5.0: a takeover sends the old connection's will at once when its Will Delay is 0 (3.1.4) [MQTT-3.1.2-8] (ours)",
  ignore: MOSQUITTO,
  async fn() {
    await using b = await startBroker();
    const w = await watcher(b);
    const p = props(0, 60);
    await b.connect5({
      clientId: "take0",
      properties: p.connect,
      will: { topic: "will/take0", payload: "w0", qos: 1 },
    }, "first");
    await b.connect5({ clientId: "take0", cleanSession: false, properties: p.connect }, "second");
    assert.equal((await w.receive5()).text, "w0");
  },
});
