/**
 * The 5.0 side of the library API, end to end over raw sockets: hooks see the protocol version
 * and properties and can answer with 5.0 reason codes (each version gets its own form), events
 * carry properties, `broker.publish()` sends properties. Ours only (mosquitto has no such API).
 *
 * @module
 */
import assert from "node:assert/strict";
import { MOSQUITTO, startBroker } from "./_harness.ts";
import { connect, hex, PROP, RC } from "./_raw.ts";
import type {
  AuthenticateRequest,
  ClientInfo,
  PublishEventDetail,
  SubscribeEventDetail,
} from "../mod.ts";

function test(name: string, fn: () => Promise<void>): void {
  Deno.test({ name: `${name} (ours)`, ignore: MOSQUITTO, fn });
}

test("api 5.0: authenticate sees protocolVersion, User Properties in order, user name and password", async () => {
  const seen: AuthenticateRequest[] = [];
  await using b = await startBroker({
    brokerOptions: {
      authenticate: (r) => {
        seen.push(r);
        return true;
      },
    },
  });
  await b.connect5({
    clientId: "api5",
    username: "u",
    password: "p",
    properties: [[PROP.USER_PROPERTY, ["b", "1"]], [PROP.USER_PROPERTY, ["a", "2"]]],
  });
  await b.connect({ clientId: "api4" }, "v4");
  assert.equal(seen[0].protocolVersion, 5);
  assert.equal(seen[0].clientId, "api5");
  assert.equal(seen[0].username, "u");
  assert.equal(new TextDecoder().decode(seen[0].password), "p");
  assert.deepEqual(seen[0].userProperties, [["b", "1"], ["a", "2"]]);
  assert.equal(seen[1].protocolVersion, 4);
});

test("api 5.0: authenticate answering 0x8A (banned) gets CONNACK 0x8A in 5.0 and a 3.1.1 refusal code in 3.1.1", async () => {
  await using b = await startBroker({ brokerOptions: { authenticate: () => RC.BANNED } });
  const c5 = await b.client("v5");
  await c5.send(connect({ version: 5, clientId: "banned5" }));
  assert.equal(hex((await c5.expectConnack5()).reasonCode), hex(RC.BANNED));
  await c5.expectClosed();
  const c4 = await b.client("v4");
  await c4.send(connect({ clientId: "banned4" }));
  const code = (await c4.expectConnack()).returnCode;
  assert.ok(code >= 1 && code <= 5, `3.1.1 CONNACK return code ${code}`);
  await c4.expectClosed();
});

test("api 5.0: authorizePublish answering 0x97 gets PUBACK 0x97 (quota exceeded) and sees the properties", async () => {
  const props: unknown[] = [];
  await using b = await startBroker({
    brokerOptions: {
      authorizePublish: (_c: ClientInfo, topic, _q, _r, properties) => {
        props.push(properties);
        return topic === "full/t" ? RC.QUOTA_EXCEEDED : true;
      },
    },
  });
  const sub = await b.connect5({ clientId: "q-sub" }, "sub");
  await sub.subscribe5(1, [["full/#", { qos: 1 }]]);
  const pub = await b.connect5({ clientId: "q-pub" }, "pub");
  const ack = await pub.publish5({
    topic: "full/t",
    qos: 1,
    packetId: 1,
    payload: "x",
    properties: [[PROP.USER_PROPERTY, ["k", "v"]], [PROP.CONTENT_TYPE, "t"]],
  });
  assert.equal(hex(ack!.reasonCode), hex(RC.QUOTA_EXCEEDED));
  await sub.expectNothing();
  const rec = await pub.publish5({ topic: "full/t", qos: 2, packetId: 2, payload: "y" });
  assert.equal(hex(rec!.reasonCode), hex(RC.QUOTA_EXCEEDED));
  const ok = await pub.publish5({ topic: "full/ok", qos: 1, packetId: 3, payload: "z" });
  assert.equal(hex(ok!.reasonCode), hex(RC.SUCCESS));
  assert.equal((await sub.receive5()).text, "z");
  assert.deepEqual(
    (props[0] as { userProperties?: unknown; contentType?: unknown }).userProperties,
    [["k", "v"]],
  );
});

test("api 5.0: authorizeSubscribe answering 0x97 / 0xA2 gets those codes in 5.0, 0x80 in 3.1.1", async () => {
  await using b = await startBroker({
    brokerOptions: {
      authorizeSubscribe: (_c, filter) =>
        filter === "quota/t"
          ? RC.QUOTA_EXCEEDED
          : filter.includes("+")
          ? RC.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED
          : true,
    },
  });
  const c5 = await b.connect5({ clientId: "as5" }, "v5");
  const ack = await c5.subscribe5(1, [["quota/t", { qos: 1 }], ["w/+", { qos: 1 }], ["ok/t", {
    qos: 2,
  }]]);
  assert.deepEqual(ack.reasonCodes.map(hex), [0x97, 0xa2, 2].map(hex));
  const c4 = await b.connect({ clientId: "as4" }, "v4");
  assert.deepEqual(await c4.subscribe(1, [["quota/t", 1], ["w/+", 1], ["ok/t", 2]]), [
    0x80,
    0x80,
    2,
  ]);
});

test("api 5.0: broker.publish() properties reach 5.0 subscribers; 3.1.1 subscribers get the plain message", async () => {
  await using b = await startBroker();
  const s5 = await b.connect5({ clientId: "bp5" }, "v5");
  await s5.subscribe5(1, [["bp/t", { qos: 1 }]]);
  const s4 = await b.connect({ clientId: "bp4" }, "v4");
  await s4.subscribe(1, [["bp/t", 1]]);
  await b.broker!.publish({
    topic: "bp/t",
    payload: "from the process",
    qos: 1,
    properties: {
      userProperties: [["src", "api"], ["n", "1"]],
      contentType: "text/plain",
      messageExpiryInterval: 30,
      responseTopic: "bp/reply",
      correlationData: Uint8Array.of(9),
    },
  });
  const m = await s5.receive5();
  assert.equal(m.text, "from the process");
  assert.deepEqual(m.properties.user, [["src", "api"], ["n", "1"]]);
  assert.equal(m.properties.get(PROP.CONTENT_TYPE), "text/plain");
  assert.equal(m.properties.get(PROP.RESPONSE_TOPIC), "bp/reply");
  assert.deepEqual(m.properties.get(PROP.CORRELATION_DATA), Uint8Array.of(9));
  const left = m.properties.get(PROP.MESSAGE_EXPIRY_INTERVAL) as number;
  assert.ok(left > 0 && left <= 30, `expiry ${left}`);
  assert.equal((await s4.receive()).text, "from the process");
});

test("api 5.0: publish events carry the message properties; connect events the version", async () => {
  await using b = await startBroker();
  const published: PublishEventDetail[] = [];
  const versions: number[] = [];
  b.broker!.addEventListener("publish", (e) => published.push(e.detail));
  b.broker!.addEventListener("connect", (e) => versions.push(e.detail.protocolVersion));
  const pub = await b.connect5({ clientId: "ev5" });
  await pub.publish5({
    topic: "ev/t",
    qos: 1,
    packetId: 1,
    payload: "x",
    properties: [[PROP.USER_PROPERTY, ["a", "b"]]],
  });
  await b.connect({ clientId: "ev4" }, "v4");
  assert.deepEqual(published[0].properties?.userProperties, [["a", "b"]]);
  assert.deepEqual(versions, [5, 4]);
});

test("api 5.0: subscribe events carry the options, the 5.0 codes and the Subscription Identifier", async () => {
  await using b = await startBroker({
    brokerOptions: { authorizeSubscribe: (_c, f) => f !== "no/t" },
  });
  const events: SubscribeEventDetail[] = [];
  b.broker!.addEventListener("subscribe", (e) => events.push(e.detail));
  const c = await b.connect5({ clientId: "sev" });
  await c.subscribe5(1, [["yes/t", { qos: 1, noLocal: true, retainHandling: 2 }], ["no/t", {
    qos: 0,
  }]], [[PROP.SUBSCRIPTION_IDENTIFIER, 12], [PROP.USER_PROPERTY, ["u", "p"]]]);
  assert.equal(events.length, 1);
  const [e] = events;
  assert.equal(e.client.protocolVersion, 5);
  assert.deepEqual(e.granted, [1, RC.NOT_AUTHORIZED]);
  assert.equal(e.subscriptions[0].topicFilter, "yes/t");
  assert.equal(e.subscriptions[0].noLocal, true);
  assert.equal(e.subscriptions[0].retainHandling, 2);
  assert.equal(e.properties?.subscriptionIdentifier, 12);
  assert.deepEqual(e.properties?.userProperties, [["u", "p"]]);
});
