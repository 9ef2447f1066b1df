/**
 * 01 (5.0): enhanced authentication through the `authenticateEnhanced` hook, with the tests' own
 * challenge-response method (tests/_harness.ts TEST_AUTH_METHOD): AUTH continue / success /
 * failure, re-authentication, and 0x8C without a hook.
 *
 * @module
 */
import assert from "node:assert/strict";
import { MOSQUITTO, startBroker, TEST_AUTH_METHOD } from "./_harness.ts";
import {
  auth,
  bytes,
  connect,
  hex,
  parseDisconnect5,
  pingreq,
  PROP,
  publish,
  RC,
  TYPE,
} from "./_raw.ts";
import type { RawClient } from "./_raw.ts";

const text = (v: unknown) => new TextDecoder().decode(v as Uint8Array);
const method = (m = TEST_AUTH_METHOD) => [PROP.AUTHENTICATION_METHOD, m] as [number, string];
const data = (d: string) => [PROP.AUTHENTICATION_DATA, bytes(d)] as [number, Uint8Array];

/** Expects an AUTH with `reasonCode`, carrying the method [MQTT-4.12.0-5]; returns its data. */
async function expectAuth(c: RawClient, reasonCode: number): Promise<string> {
  const a = parseDisconnect5(await c.expectPacket(TYPE.AUTH));
  assert.equal(hex(a.reasonCode), hex(reasonCode), "AUTH reason code");
  assert.equal(
    a.properties.get(PROP.AUTHENTICATION_METHOD),
    TEST_AUTH_METHOD,
    "every AUTH carries the CONNECT's Authentication Method [MQTT-4.12.0-5]",
  );
  return text(a.properties.get(PROP.AUTHENTICATION_DATA));
}

const ours = { ignore: MOSQUITTO };

Deno.test(
  "auth 5.0: an Authentication Method the broker does not support gets CONNACK 0x8C (or 0x87), then close [MQTT-4.12.0-1]",
  async () => {
    await using b = await startBroker();
    const c = await b.client();
    await c.send(connect({ version: 5, clientId: "noauth", properties: [method("SCRAM-SHA-1")] }));
    const ack = await c.expectConnack5();
    assert.ok(
      [RC.BAD_AUTHENTICATION_METHOD, RC.NOT_AUTHORIZED].includes(ack.reasonCode as 0x8c),
      `reason ${hex(ack.reasonCode)}`,
    );
    if (!MOSQUITTO) assert.equal(hex(ack.reasonCode), hex(RC.BAD_AUTHENTICATION_METHOD));
    await c.expectClosed();
  },
);

Deno.test({
  ...ours,
  name:
    "auth 5.0: challenge-response: AUTH 0x18 both ways, then CONNACK 0x00 with the method and the final data [MQTT-4.12.0-2] [MQTT-4.12.0-3] [MQTT-4.12.0-5]",
  async fn() {
    await using b = await startBroker({ v5: { challengeAuth: true } });
    const c = await b.client();
    await c.send(
      connect({ version: 5, clientId: "authed", properties: [method(), data("hello")] }),
    );
    assert.equal(await expectAuth(c, RC.CONTINUE_AUTHENTICATION), "challenge");
    await c.send(auth(RC.CONTINUE_AUTHENTICATION, [method(), data("egnellahc")]));
    const ack = await c.expectConnack5();
    assert.equal(hex(ack.reasonCode), hex(RC.SUCCESS));
    assert.equal(ack.properties.get(PROP.AUTHENTICATION_METHOD), TEST_AUTH_METHOD);
    assert.equal(text(ack.properties.get(PROP.AUTHENTICATION_DATA)), "welcome");
    await c.send(pingreq());
    await c.expectPacket(TYPE.PINGRESP);
  },
});

Deno.test({
  ...ours,
  name: "auth 5.0: a wrong response gets CONNACK ≥ 0x80 (0x87), then close [MQTT-4.12.0-4]",
  async fn() {
    await using b = await startBroker({ v5: { challengeAuth: true } });
    const c = await b.client();
    await c.send(connect({ version: 5, clientId: "wrong", properties: [method(), data("hello")] }));
    await expectAuth(c, RC.CONTINUE_AUTHENTICATION);
    await c.send(auth(RC.CONTINUE_AUTHENTICATION, [method(), data("guess")]));
    const ack = await c.expectConnack5();
    assert.equal(hex(ack.reasonCode), hex(RC.NOT_AUTHORIZED));
    assert.equal(ack.sessionPresent, false);
    await c.expectClosed();
  },
});

Deno.test({
  ...ours,
  name: "auth 5.0: with the hook, an unknown Authentication Method still gets CONNACK 0x8C",
  async fn() {
    await using b = await startBroker({ v5: { challengeAuth: true } });
    const c = await b.client();
    await c.send(connect({ version: 5, clientId: "other", properties: [method("OTHER")] }));
    assert.equal(hex((await c.expectConnack5()).reasonCode), hex(RC.BAD_AUTHENTICATION_METHOD));
    await c.expectClosed();
  },
});

Deno.test({
  ...ours,
  name:
    "auth 5.0: a PUBLISH before the CONNACK of an enhanced authentication is a protocol error [MQTT-3.1.2-30] [MQTT-3.1.4-6]",
  async fn() {
    await using b = await startBroker({ v5: { challengeAuth: true } });
    const watcher = await b.connect5({ clientId: "w" }, "watcher");
    await watcher.subscribe5(1, [["early/#", { qos: 0 }]]);
    const c = await b.client("early");
    await c.send(connect({ version: 5, clientId: "early", properties: [method(), data("hello")] }));
    await expectAuth(c, RC.CONTINUE_AUTHENTICATION);
    await c.send(publish({ version: 5, topic: "early/t", payload: "too soon" }));
    const p = await c.nextPacket().catch(() => undefined);
    if (p !== undefined) {
      assert.ok(p.type === TYPE.CONNACK || p.type === TYPE.DISCONNECT, "a refusal, if anything");
      assert.ok(p.body[p.type === TYPE.CONNACK ? 1 : 0] >= 0x80);
    }
    await c.expectClosed();
    await watcher.expectNothing();
  },
});

Deno.test({
  ...ours,
  name:
    "auth 5.0: re-authentication: AUTH 0x19, AUTH 0x18 both ways, AUTH 0x00; the connection goes on [MQTT-4.12.1-1]",
  async fn() {
    await using b = await startBroker({ v5: { challengeAuth: true } });
    const c = await b.client();
    await c.send(
      connect({ version: 5, clientId: "reauth", properties: [method(), data("hello")] }),
    );
    await expectAuth(c, RC.CONTINUE_AUTHENTICATION);
    await c.send(auth(RC.CONTINUE_AUTHENTICATION, [method(), data("egnellahc")]));
    assert.equal((await c.expectConnack5()).reasonCode, 0);
    await c.send(auth(RC.RE_AUTHENTICATE, [method(), data("hello")]));
    assert.equal(await expectAuth(c, RC.CONTINUE_AUTHENTICATION), "challenge");
    await c.send(auth(RC.CONTINUE_AUTHENTICATION, [method(), data("egnellahc")]));
    assert.equal(await expectAuth(c, RC.SUCCESS), "welcome");
    await c.send(pingreq());
    await c.expectPacket(TYPE.PINGRESP);
  },
});

Deno.test({
  ...ours,
  name: "auth 5.0: a failed re-authentication gets DISCONNECT ≥ 0x80, then close [MQTT-4.12.1-2]",
  async fn() {
    await using b = await startBroker({ v5: { challengeAuth: true } });
    const c = await b.client();
    await c.send(
      connect({ version: 5, clientId: "refail", properties: [method(), data("hello")] }),
    );
    await expectAuth(c, RC.CONTINUE_AUTHENTICATION);
    await c.send(auth(RC.CONTINUE_AUTHENTICATION, [method(), data("egnellahc")]));
    assert.equal((await c.expectConnack5()).reasonCode, 0);
    await c.send(auth(RC.RE_AUTHENTICATE, [method(), data("hello")]));
    await expectAuth(c, RC.CONTINUE_AUTHENTICATION);
    await c.send(auth(RC.CONTINUE_AUTHENTICATION, [method(), data("nope")]));
    const d = await c.expectDisconnect();
    assert.ok(d.reasonCode >= 0x80, `DISCONNECT ${hex(d.reasonCode)}`);
  },
});

Deno.test({
  ...ours,
  name:
    "auth 5.0: re-authentication with another method is a protocol error: DISCONNECT 0x82 [MQTT-4.12.1-1]",
  async fn() {
    await using b = await startBroker({ v5: { challengeAuth: true } });
    const c = await b.client();
    await c.send(
      connect({ version: 5, clientId: "remeth", properties: [method(), data("hello")] }),
    );
    await expectAuth(c, RC.CONTINUE_AUTHENTICATION);
    await c.send(auth(RC.CONTINUE_AUTHENTICATION, [method(), data("egnellahc")]));
    assert.equal((await c.expectConnack5()).reasonCode, 0);
    await c.send(auth(RC.RE_AUTHENTICATE, [method("OTHER"), data("hello")]));
    await c.expectDisconnect(RC.PROTOCOL_ERROR);
  },
});

Deno.test(
  "auth 5.0: an AUTH from a client that connected without an Authentication Method is a protocol error [MQTT-4.12.0-7]",
  async () => {
    await using b = await startBroker();
    const c = await b.connect5({ clientId: "plain" });
    await c.send(auth(RC.RE_AUTHENTICATE, [method()]));
    const p = await c.nextPacket().catch(() => undefined);
    if (p !== undefined) {
      assert.equal(p.type, TYPE.DISCONNECT);
      if (!MOSQUITTO) assert.equal(hex(parseDisconnect5(p).reasonCode), hex(RC.PROTOCOL_ERROR));
    }
    await c.expectClosed();
  },
);

Deno.test({
  ...ours,
  name:
    "auth 5.0: AUTH with reserved fixed header flags set is malformed, then close [MQTT-3.15.1-1]",
  async fn() {
    await using b = await startBroker({ v5: { challengeAuth: true } });
    const c = await b.client();
    await c.send(
      connect({ version: 5, clientId: "aflags", properties: [method(), data("hello")] }),
    );
    await expectAuth(c, RC.CONTINUE_AUTHENTICATION);
    await c.send(auth(RC.CONTINUE_AUTHENTICATION, [method(), data("egnellahc")], 0x01));
    // Before a CONNACK the broker may only answer with a refusing CONNACK [MQTT-3.14.0-1].
    const p = await c.nextPacket().catch(() => undefined);
    if (p !== undefined) {
      assert.equal(p.type, TYPE.CONNACK, "no DISCONNECT before CONNACK [MQTT-3.14.0-1]");
      assert.ok(p.body[1] >= 0x80, `CONNACK ${hex(p.body[1])}`);
    }
    await c.expectClosed();
  },
});
