/**
 * The public Broker API: listen, handle, publish, events, hooks, isolation of two brokers,
 * close, option validation, stats and $SYS.
 */
import assert from "node:assert/strict";
// Inline and exactly versioned, like every dependency here (see tests/imports_test.ts).
// deno-lint-ignore no-import-prefix
import mqtt from "npm:mqtt@5.16.0";
import {
  type AuthenticateRequest,
  Broker,
  type BrokerConn,
  type BrokerOptions,
  type ClientErrorEventDetail,
  type ConnectEventDetail,
  DEFAULT_LIMITS,
  type DisconnectEventDetail,
  type PublishEventDetail,
  type SubscribeEventDetail,
  type UnsubscribeEventDetail,
} from "../mod.ts";
import { collect, connectMqtt } from "./_mqttjs.ts";
import { isListening, parsePublish, raw, RawSocket, readExactly, waitFor } from "./_util.ts";

const decoder = new TextDecoder();

async function startBroker(options: BrokerOptions = {}) {
  const broker = new Broker({ logLevel: "silent", ...options });
  const listener = await broker.listen({ hostname: "127.0.0.1", port: 0 });
  return { broker, port: listener.port, listener };
}

/** One end of an in-memory byte stream. */
class Channel {
  #chunks: Uint8Array[] = [];
  #closed = false;
  #wake: (() => void) | undefined;

  push(bytes: Uint8Array): void {
    if (this.#closed) throw new Deno.errors.BrokenPipe("channel closed");
    this.#chunks.push(bytes.slice());
    this.#wake?.();
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#closed) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
      this.#wake = undefined;
    }
    const chunk = this.#chunks[0];
    const n = Math.min(chunk.length, buffer.length);
    buffer.set(chunk.subarray(0, n));
    if (n === chunk.length) this.#chunks.shift();
    else this.#chunks[0] = chunk.subarray(n);
    return n;
  }

  close(): void {
    this.#closed = true;
    this.#wake?.();
  }
}

/** An in-memory connection pair: `conn` goes to `broker.handle()`, the test drives `peer`. */
function memoryPair() {
  const toBroker = new Channel();
  const toPeer = new Channel();
  let closedByBroker = false;
  const conn: BrokerConn = {
    read: (buffer) => toBroker.read(buffer),
    write: (data) => {
      toPeer.push(data);
      return Promise.resolve(data.length);
    },
    close: () => {
      closedByBroker = true;
      toBroker.close();
      toPeer.close();
    },
    remoteAddr: { hostname: "memory-peer", port: 7, transport: "memory" },
  };
  const peer = {
    send: (bytes: Uint8Array) => toBroker.push(bytes),
    /** Reads exactly n bytes, or what is left before the end. */
    async read(n: number): Promise<Uint8Array> {
      const out = new Uint8Array(n);
      let offset = 0;
      while (offset < n) {
        const got = await toPeer.read(out.subarray(offset));
        if (got === null) break;
        offset += got;
      }
      return out.subarray(0, offset);
    },
    end: () => toBroker.close(),
    get closedByBroker() {
      return closedByBroker;
    },
  };
  return { conn, peer };
}

Deno.test("listen({ port: 0 }) reports the bound port, accepts connections and close() releases it", async () => {
  await using broker = new Broker({ logLevel: "silent" });
  const listener = await broker.listen({ hostname: "127.0.0.1", port: 0 });
  assert.equal(listener.hostname, "127.0.0.1");
  assert.equal(listener.transport, "tcp");
  assert.ok(Number.isInteger(listener.port) && listener.port > 0, `port ${listener.port}`);
  const socket = await RawSocket.open(listener.port);
  assert.deepEqual(await socket.connect({ clientId: "listen-1" }), [false, 0]);
  await listener.close();
  assert.equal(await isListening(listener.port), false, "the port is released by listener.close()");
  // Connections already accepted stay open after the listener closes.
  await socket.send(raw.pingreq());
  assert.equal((await socket.next()).type, 13);
  await socket.close();
});

Deno.test("handle() serves an in-memory connection: CONNECT/CONNACK, PINGREQ/PINGRESP, DISCONNECT resolves it", async () => {
  await using broker = new Broker({ logLevel: "silent" });
  const connects: ConnectEventDetail[] = [];
  broker.addEventListener("connect", (e) => connects.push(e.detail));
  const { conn, peer } = memoryPair();
  const handled = broker.handle(conn);
  // The CONNECT in two pieces, to cross a read boundary.
  const connect = raw.connect({ clientId: "in-memory", keepAlive: 10 });
  peer.send(connect.subarray(0, 5));
  peer.send(connect.subarray(5));
  assert.deepEqual([...await peer.read(4)], [0x20, 0x02, 0x00, 0x00]);
  peer.send(raw.pingreq());
  assert.deepEqual([...await peer.read(2)], [0xd0, 0x00]);
  assert.equal(connects.length, 1);
  assert.equal(connects[0].client.clientId, "in-memory");
  assert.deepEqual(connects[0].client.remoteAddress, {
    hostname: "memory-peer",
    port: 7,
    transport: "memory",
  });
  assert.equal(connects[0].keepAlive, 10);
  assert.equal(broker.stats().connections, 1);
  peer.send(raw.disconnect());
  await handled;
  assert.equal(peer.closedByBroker, true);
  assert.equal(broker.stats().connections, 0);
  assert.equal(broker.stats().sessions, 0, "a clean session ends with its connection");
});

Deno.test("handle() resolves when the in-memory peer ends the stream", async () => {
  await using broker = new Broker({ logLevel: "silent" });
  const { conn, peer } = memoryPair();
  const handled = broker.handle(conn);
  peer.send(raw.connect({ clientId: "eof" }));
  assert.deepEqual([...await peer.read(4)], [0x20, 0x02, 0x00, 0x00]);
  peer.end();
  await handled;
  assert.equal(broker.stats().connections, 0);
});

Deno.test("publish() from the process reaches an npm:mqtt subscriber at QoS 0, 1 and 2", async () => {
  const { broker, port } = await startBroker();
  const client = await connectMqtt(port, { clientId: "api-sub" });
  try {
    const messages = collect(client);
    await client.subscribeAsync("api/#", { qos: 2 });
    await broker.publish({ topic: "api/q0", payload: "zero" });
    await broker.publish({ topic: "api/q1", payload: "one", qos: 1 });
    await broker.publish({ topic: "api/q2", payload: new TextEncoder().encode("two"), qos: 2 });
    await waitFor(() => messages.length >= 3, 5_000, "three messages");
    assert.deepEqual(messages, [
      { topic: "api/q0", payload: "zero", qos: 0, retain: false },
      { topic: "api/q1", payload: "one", qos: 1, retain: false },
      { topic: "api/q2", payload: "two", qos: 2, retain: false },
    ]);
    // The QoS 1 and 2 exchanges completed: nothing stays in flight.
    await waitFor(() => broker.stats().inflight === 0, 5_000, "acknowledgements");
  } finally {
    await client.endAsync();
    await broker.close();
  }
});

Deno.test("publish() with retain is stored and sent to later subscribers with retain=1; an empty payload clears it", async () => {
  const { broker, port } = await startBroker();
  await broker.publish({ topic: "api/r", payload: "kept", qos: 1, retain: true });
  assert.equal(broker.stats().retained, 1);
  const client = await connectMqtt(port, { clientId: "api-retained" });
  try {
    const messages = collect(client);
    await client.subscribeAsync("api/r", { qos: 2 });
    await waitFor(() => messages.length >= 1, 5_000, "the retained message");
    assert.deepEqual(messages[0], { topic: "api/r", payload: "kept", qos: 1, retain: true });
    await broker.publish({ topic: "api/r", payload: "", retain: true });
    assert.equal(broker.stats().retained, 0);
  } finally {
    await client.endAsync();
    await broker.close();
  }
});

Deno.test("publish() rejects invalid topics and QoS with TypeError", async () => {
  await using broker = new Broker({ logLevel: "silent" });
  await assert.rejects(broker.publish({ topic: "a/+" }), TypeError);
  await assert.rejects(broker.publish({ topic: "a/#" }), TypeError);
  await assert.rejects(broker.publish({ topic: "" }), TypeError);
  // deno-lint-ignore no-explicit-any
  await assert.rejects(broker.publish({ topic: "a", qos: 3 as any }), TypeError);
  // deno-lint-ignore no-explicit-any
  await assert.rejects(broker.publish({ topic: 5 as any }), TypeError);
  // deno-lint-ignore no-explicit-any
  await assert.rejects(broker.publish({ topic: "a", payload: 5 as any }), TypeError);
  assert.equal(broker.stats().messagesIn, 0);
});

Deno.test("events: connect, subscribe, publish, unsubscribe and disconnect carry the right details", async () => {
  const { broker, port } = await startBroker();
  const connects: ConnectEventDetail[] = [];
  const subscribes: SubscribeEventDetail[] = [];
  const unsubscribes: UnsubscribeEventDetail[] = [];
  const publishes: PublishEventDetail[] = [];
  const disconnects: DisconnectEventDetail[] = [];
  broker.addEventListener("connect", (e) => connects.push(e.detail));
  broker.addEventListener("subscribe", (e) => subscribes.push(e.detail));
  broker.addEventListener("unsubscribe", (e) => unsubscribes.push(e.detail));
  broker.addEventListener("publish", (e) => publishes.push(e.detail));
  broker.addEventListener("disconnect", (e) => disconnects.push(e.detail));
  try {
    const client = await connectMqtt(port, { clientId: "ev-1", username: "user-1", keepalive: 30 });
    assert.equal(connects.length, 1);
    const c = connects[0];
    assert.equal(c.client.clientId, "ev-1");
    assert.equal(c.client.username, "user-1");
    assert.equal(c.client.remoteAddress?.hostname, "127.0.0.1");
    assert.equal(c.client.remoteAddress?.transport, "tcp");
    assert.ok((c.client.remoteAddress?.port ?? 0) > 0);
    assert.equal(c.cleanSession, true);
    assert.equal(c.sessionPresent, false);
    assert.equal(c.keepAlive, 30);

    await client.subscribeAsync({ "ev/a": { qos: 1 }, "ev/+": { qos: 2 } });
    assert.equal(subscribes.length, 1);
    assert.equal(subscribes[0].client.clientId, "ev-1");
    assert.deepEqual(subscribes[0].subscriptions, [
      { topicFilter: "ev/a", qos: 1 },
      { topicFilter: "ev/+", qos: 2 },
    ]);
    assert.deepEqual(subscribes[0].granted, [1, 2]);

    await client.publishAsync("ev/a", "hi", { qos: 1, retain: true });
    assert.equal(publishes.length, 1);
    assert.equal(publishes[0].client?.clientId, "ev-1");
    assert.equal(publishes[0].topic, "ev/a");
    assert.equal(decoder.decode(publishes[0].payload), "hi");
    assert.equal(publishes[0].qos, 1);
    assert.equal(publishes[0].retain, true);

    await broker.publish({ topic: "ev/b", payload: "from the process", qos: 2 });
    assert.equal(publishes.length, 2);
    assert.equal(publishes[1].client, undefined, "in-process messages have no client");
    assert.equal(publishes[1].qos, 2);

    await client.unsubscribeAsync(["ev/a", "never/subscribed"]);
    assert.equal(unsubscribes.length, 1);
    assert.equal(unsubscribes[0].client.clientId, "ev-1");
    assert.deepEqual(unsubscribes[0].topicFilters, ["ev/a", "never/subscribed"]);

    await client.endAsync();
    await waitFor(() => disconnects.length === 1, 5_000, "the disconnect event");
    assert.equal(disconnects[0].client.clientId, "ev-1");
    assert.equal(disconnects[0].reason, "disconnect");
    assert.equal(disconnects[0].willPublished, false);

    // An abrupt close with a will: the will is published and the event says so.
    const socket = await RawSocket.open(port);
    await socket.connect({ clientId: "ev-2", will: { topic: "ev/will", payload: "gone" } });
    assert.equal(connects.length, 2);
    await socket.close();
    await waitFor(() => disconnects.length === 2, 5_000, "the second disconnect event");
    assert.equal(disconnects[1].client.clientId, "ev-2");
    assert.equal(disconnects[1].willPublished, true);
    assert.notEqual(disconnects[1].reason, "disconnect");
    assert.equal(publishes.at(-1)?.topic, "ev/will");
    assert.equal(publishes.at(-1)?.client?.clientId, "ev-2");
  } finally {
    await broker.close();
  }
});

Deno.test("clientError fires for a malformed packet; the connection is closed and counted [MQTT-3.3.1-4]", async () => {
  const { broker, port } = await startBroker();
  const errors: ClientErrorEventDetail[] = [];
  const disconnects: DisconnectEventDetail[] = [];
  broker.addEventListener("clientError", (e) => errors.push(e.detail));
  broker.addEventListener("disconnect", (e) => disconnects.push(e.detail));
  try {
    const socket = await RawSocket.open(port);
    await socket.connect({ clientId: "malformed" });
    // PUBLISH with both QoS bits set (QoS 3) is malformed.
    await socket.send(Uint8Array.of(0x36, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01));
    assert.equal(await socket.closedByPeer(), true, "the broker closes the connection");
    await socket.close();
    await waitFor(() => errors.length === 1, 5_000, "the clientError event");
    assert.equal(errors[0].client.clientId, "malformed");
    assert.ok(errors[0].error instanceof Error);
    assert.equal(broker.stats().protocolErrors, 1);
    await waitFor(() => disconnects.length === 1, 5_000, "the disconnect event");
    assert.equal(disconnects[0].client.clientId, "malformed");
    // Another client is undisturbed.
    const other = await RawSocket.open(port);
    assert.deepEqual(await other.connect({ clientId: "healthy" }), [false, 0]);
    await other.close();
  } finally {
    await broker.close();
  }
});

Deno.test("a throwing event listener neither escapes to the global scope nor takes the client's connection down", async () => {
  // In Deno, an exception in an EventTarget listener is not thrown by dispatchEvent(): it is
  // reported as an uncaught error, which ends the process. Catch it here so that the test fails
  // with a message instead of taking the whole test file down.
  const escaped: unknown[] = [];
  const onGlobalError = (event: ErrorEvent) => {
    escaped.push(event.error);
    event.preventDefault();
  };
  globalThis.addEventListener("error", onGlobalError);
  const { broker, port } = await startBroker();
  broker.addEventListener("connect", () => {
    throw new Error("listener bug");
  });
  try {
    const client = await connectMqtt(port, { clientId: "survivor" });
    try {
      const messages = collect(client);
      await client.subscribeAsync("s/x", { qos: 1 });
      await client.publishAsync("s/x", "still here", { qos: 1 });
      await waitFor(() => messages.length === 1, 5_000, "the message");
    } finally {
      await client.endAsync();
    }
  } finally {
    await broker.close();
    globalThis.removeEventListener("error", onGlobalError);
  }
  assert.deepEqual(
    escaped.map(String),
    [],
    "the listener's exception escaped the broker as an uncaught error (it would end the process)",
  );
});

Deno.test("authenticate refuses with CONNACK 0x04 / 0x05 and sees username, password and address", async () => {
  const seen: AuthenticateRequest[] = [];
  const { broker, port } = await startBroker({
    authenticate: (request) => {
      seen.push(request);
      if (request.username === "bad") return 4;
      return request.username === "good" &&
        decoder.decode(request.password ?? new Uint8Array()) === "secret";
    },
  });
  try {
    const refused4 = await RawSocket.open(port);
    assert.deepEqual(
      await refused4.connect({ clientId: "a1", username: "bad", password: "x" }),
      [false, 0x04],
    );
    assert.equal(await refused4.closedByPeer(), true, "a refused CONNECT closes [MQTT-3.2.2-5]");
    await refused4.close();

    const refused5 = await RawSocket.open(port);
    assert.deepEqual(
      await refused5.connect({ clientId: "a2", username: "good", password: "wrong" }),
      [false, 0x05],
    );
    assert.equal(await refused5.closedByPeer(), true);
    await refused5.close();

    const accepted = await RawSocket.open(port);
    assert.deepEqual(
      await accepted.connect({ clientId: "a3", username: "good", password: "secret" }),
      [false, 0x00],
    );
    await accepted.close();

    assert.equal(seen.length, 3);
    assert.equal(seen[0].clientId, "a1");
    assert.equal(seen[2].username, "good");
    assert.ok(seen[2].password instanceof Uint8Array);
    assert.equal(decoder.decode(seen[2].password), "secret");
    assert.equal(seen[2].remoteAddress?.hostname, "127.0.0.1");

    // npm:mqtt sees the refusal code too.
    const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
      protocolVersion: 4,
      reconnectPeriod: 0,
      clientId: "a4",
      username: "bad",
      password: "x",
    });
    const error = await new Promise<Error & { code?: number }>((resolve) =>
      client.once("error", resolve)
    );
    assert.equal(error.code, 4);
    await client.endAsync(true);
    assert.equal(broker.stats().sessions, 0, "refused clients get no session");
  } finally {
    await broker.close();
  }
});

Deno.test("an async authenticate decides, and packets sent right after CONNECT wait for its CONNACK", async () => {
  const { broker, port } = await startBroker({
    authenticate: async ({ clientId }) => {
      await new Promise((resolve) => setTimeout(resolve, 20));
      return clientId !== "nope";
    },
  });
  try {
    const yes = await RawSocket.open(port);
    // CONNECT and SUBSCRIBE in one write: the SUBACK must come after the CONNACK.
    const connect = raw.connect({ clientId: "yes" });
    const subscribe = raw.subscribe(7, [["async/#", 1]]);
    const both = new Uint8Array(connect.length + subscribe.length);
    both.set(connect);
    both.set(subscribe, connect.length);
    await yes.send(both);
    const connack = await yes.next();
    assert.equal(connack.type, 2);
    assert.equal(connack.body[1], 0);
    const suback = await yes.next();
    assert.equal(suback.type, 9);
    assert.deepEqual([...suback.body], [0, 7, 1]);
    await yes.close();

    const nope = await RawSocket.open(port);
    assert.deepEqual(await nope.connect({ clientId: "nope" }), [false, 0x05]);
    assert.equal(await nope.closedByPeer(), true);
    await nope.close();
  } finally {
    await broker.close();
  }
});

Deno.test("authorizePublish refusing: the PUBLISH is acknowledged at its QoS but not delivered or retained", async () => {
  const calls: [string, string, number, boolean][] = [];
  const { broker, port } = await startBroker({
    authorizePublish: (client, topic, qos, retain) => {
      calls.push([client.clientId, topic, qos, retain]);
      return !topic.startsWith("secret/");
    },
  });
  const subscriber = await connectMqtt(port, { clientId: "ap-sub" });
  const publisher = await connectMqtt(port, { clientId: "ap-pub" });
  try {
    const messages = collect(subscriber);
    await subscriber.subscribeAsync("#", { qos: 2 });
    // publishAsync resolves on PUBACK (QoS 1) and PUBCOMP (QoS 2).
    await publisher.publishAsync("secret/a", "no", { qos: 1 });
    await publisher.publishAsync("secret/b", "no", { qos: 2, retain: true });
    await publisher.publishAsync("secret/c", "no", { qos: 0 });
    await publisher.publishAsync("open/a", "yes", { qos: 1 });
    await waitFor(() => messages.length >= 1, 5_000, "the allowed message");
    assert.deepEqual(messages, [{ topic: "open/a", payload: "yes", qos: 1, retain: false }]);
    assert.deepEqual(calls.slice(0, 2), [
      ["ap-pub", "secret/a", 1, false],
      ["ap-pub", "secret/b", 2, true],
    ]);
    const stats = broker.stats();
    assert.equal(stats.retained, 0, "a refused retained message is not stored");
    assert.equal(stats.dropped.notAuthorized, 3);
  } finally {
    await subscriber.endAsync();
    await publisher.endAsync();
    await broker.close();
  }
});

Deno.test("authorizeSubscribe: false gives SUBACK 0x80, a QoS number downgrades the grant and the delivery", async () => {
  const calls: [string, string, number][] = [];
  const { broker, port } = await startBroker({
    authorizeSubscribe: (client, filter, qos) => {
      calls.push([client.clientId, filter, qos]);
      if (filter.startsWith("deny/")) return false;
      // An async verdict too: at most QoS 1.
      if (filter.startsWith("cap/")) return Promise.resolve(1 as const);
      return true;
    },
  });
  const socket = await RawSocket.open(port);
  try {
    await socket.connect({ clientId: "as-1" });
    const codes = await socket.subscribe(3, [["deny/x", 1], ["cap/x", 2], ["ok/x", 2]]);
    assert.deepEqual(codes, [0x80, 1, 2]);
    assert.deepEqual(calls, [["as-1", "deny/x", 1], ["as-1", "cap/x", 2], ["as-1", "ok/x", 2]]);
    assert.equal(broker.stats().subscriptions, 2);
    await broker.publish({ topic: "deny/x", payload: "refused", qos: 2 });
    await broker.publish({ topic: "cap/x", payload: "capped", qos: 2 });
    await broker.publish({ topic: "ok/x", payload: "full", qos: 2 });
    const first = parsePublish(await socket.next());
    const second = parsePublish(await socket.next());
    assert.deepEqual([first.topic, first.payload, first.qos], ["cap/x", "capped", 1]);
    assert.deepEqual([second.topic, second.payload, second.qos], ["ok/x", "full", 2]);
  } finally {
    await socket.close();
    await broker.close();
  }
});

Deno.test("authorizeForward refuses delivery to one client only, live and from the retained store", async () => {
  const { broker, port } = await startBroker({
    authorizeForward: (client, topic) =>
      !(client.clientId === "fw-blocked" && topic.startsWith("fw/private")),
  });
  await broker.publish({ topic: "fw/private/retained", payload: "r", retain: true });
  const blocked = await connectMqtt(port, { clientId: "fw-blocked" });
  const allowed = await connectMqtt(port, { clientId: "fw-allowed" });
  try {
    const blockedMessages = collect(blocked);
    const allowedMessages = collect(allowed);
    await blocked.subscribeAsync("fw/#", { qos: 1 });
    await allowed.subscribeAsync("fw/#", { qos: 1 });
    await broker.publish({ topic: "fw/private/live", payload: "p", qos: 1 });
    await broker.publish({ topic: "fw/public", payload: "q", qos: 1 });
    await waitFor(() => allowedMessages.length >= 3, 5_000, "three messages to the allowed client");
    await waitFor(() => blockedMessages.length >= 1, 5_000, "the public message");
    assert.deepEqual(allowedMessages.map((m) => m.topic), [
      "fw/private/retained",
      "fw/private/live",
      "fw/public",
    ]);
    assert.deepEqual(blockedMessages.map((m) => m.topic), ["fw/public"]);
    assert.equal(broker.stats().dropped.forwardDenied, 2);
  } finally {
    await blocked.endAsync();
    await allowed.endAsync();
    await broker.close();
  }
});

Deno.test("two brokers in one process share nothing: same client id on both, retained stays on its broker", async () => {
  const a = await startBroker();
  const b = await startBroker();
  const onA = await connectMqtt(a.port, { clientId: "same" });
  let closedA = false;
  onA.on("close", () => closedA = true);
  const onB = await connectMqtt(b.port, { clientId: "same" });
  try {
    assert.equal(a.broker.stats().sessions, 1);
    assert.equal(b.broker.stats().sessions, 1);
    await a.broker.publish({ topic: "shared/r", payload: "only on a", retain: true });
    assert.equal(a.broker.stats().retained, 1);
    assert.equal(b.broker.stats().retained, 0);

    const messagesB = collect(onB);
    await onB.subscribeAsync("shared/#", { qos: 1 });
    await b.broker.publish({ topic: "shared/marker", payload: "b", qos: 1 });
    await waitFor(() => messagesB.length >= 1, 5_000, "the marker on b");
    assert.deepEqual(messagesB.map((m) => m.topic), ["shared/marker"]);

    // The client on a was not taken over by the one with the same id on b.
    const messagesA = collect(onA);
    await onA.subscribeAsync("shared/#", { qos: 1 });
    await waitFor(() => messagesA.length >= 1, 5_000, "the retained message on a");
    assert.deepEqual(messagesA[0], {
      topic: "shared/r",
      payload: "only on a",
      qos: 0,
      retain: true,
    });
    assert.equal(closedA, false);
    assert.equal(a.broker.stats().messagesOut, 1);
    assert.equal(b.broker.stats().messagesOut, 1);
  } finally {
    await onA.endAsync();
    await onB.endAsync();
    await a.broker.close();
    await b.broker.close();
  }
});

Deno.test("close() is idempotent, closes clients and the port, and the broker refuses further work", async () => {
  const { broker, port } = await startBroker();
  const client = await connectMqtt(port, { clientId: "closing" });
  let clientClosed = false;
  client.on("close", () => clientClosed = true);
  try {
    const first = broker.close();
    const second = broker.close();
    await Promise.all([first, second]);
    await broker.close();
    await waitFor(() => clientClosed, 5_000, "the client to see the close");
    assert.equal(await isListening(port), false);
    await assert.rejects(broker.listen({ hostname: "127.0.0.1", port: 0 }));
    await assert.rejects(broker.publish({ topic: "a", payload: "x" }));
    // A connection handed over after close is closed at once.
    const { conn, peer } = memoryPair();
    await broker.handle(conn);
    assert.equal(peer.closedByBroker, true);
  } finally {
    await client.endAsync();
  }
});

Deno.test("await using closes the broker at the end of the scope", async () => {
  let port = 0;
  let socket: RawSocket | undefined;
  {
    await using broker = new Broker({ logLevel: "silent" });
    port = (await broker.listen({ hostname: "127.0.0.1", port: 0 })).port;
    socket = await RawSocket.open(port);
    assert.deepEqual(await socket.connect({ clientId: "scoped" }), [false, 0]);
  }
  assert.equal(await isListening(port), false, "the listener is closed");
  assert.equal(await socket.closedByPeer(), true, "the client connection is closed");
  await socket.close();
});

Deno.test("bad options throw TypeError/RangeError naming the option", async () => {
  const cases: [() => unknown, typeof TypeError | typeof RangeError, RegExp][] = [
    [() => new Broker({ limits: { maxInflight: 0 } }), RangeError, /maxInflight/],
    [() => new Broker({ limits: { maxInflight: 70_000 } }), RangeError, /maxInflight/],
    [() => new Broker({ limits: { maxConnections: 1.5 } }), TypeError, /maxConnections/],
    // deno-lint-ignore no-explicit-any
    [() => new Broker({ limits: { maxQueued: "5" as any } }), TypeError, /maxQueued/],
    // deno-lint-ignore no-explicit-any
    [() => new Broker({ limits: { maxBogus: 1 } as any }), TypeError, /maxBogus/],
    // deno-lint-ignore no-explicit-any
    [() => new Broker({ authenticate: 5 as any }), TypeError, /authenticate/],
    // deno-lint-ignore no-explicit-any
    [() => new Broker({ authorizeForward: "yes" as any }), TypeError, /authorizeForward/],
    [() => new Broker({ sysIntervalMs: -1 }), RangeError, /sysIntervalMs/],
    [() => new Broker({ sysIntervalMs: 0.5 }), RangeError, /sysIntervalMs/],
    // deno-lint-ignore no-explicit-any
    [() => new Broker({ logLevel: "loud" as any }), RangeError, /logLevel/],
    // deno-lint-ignore no-explicit-any
    [() => new Broker(null as any), TypeError, /options/],
    [
      () => new Broker({ sysInterval: 10 } as unknown as BrokerOptions),
      TypeError,
      /Unknown Broker option "sysInterval"/,
    ],
  ];
  for (const [make, type, pattern] of cases) {
    assert.throws(make, (error: unknown) => {
      assert.ok(error instanceof type, `${make}: expected ${type.name}, got ${error}`);
      assert.match((error as Error).message, pattern, `${make}`);
      return true;
    });
  }
  await using broker = new Broker({ logLevel: "silent" });
  await assert.rejects(broker.listen({ hostname: "127.0.0.1", port: 70_000 }), (error: Error) => {
    assert.ok(error instanceof RangeError);
    assert.match(error.message, /[Pp]ort/);
    return true;
  });
  await assert.rejects(broker.listen({ hostname: "127.0.0.1", port: -1 }), RangeError);
  // Limits are exposed with defaults filled in.
  const limited = new Broker({ logLevel: "silent", limits: { maxInflight: 3 } });
  assert.equal(limited.limits.maxInflight, 3);
  assert.equal(limited.limits.maxQueued, DEFAULT_LIMITS.maxQueued);
  await limited.close();
});

Deno.test("stats() counters move with connections, subscriptions, retained and traffic", async () => {
  const { broker, port } = await startBroker();
  const before = broker.stats();
  assert.equal(before.connections, 0);
  assert.equal(before.messagesIn, 0);
  const sub = await connectMqtt(port, { clientId: "st-sub", clean: false });
  const pub = await connectMqtt(port, { clientId: "st-pub" });
  try {
    const messages = collect(sub);
    await sub.subscribeAsync(["st/a", "st/b"], { qos: 1 });
    await pub.publishAsync("st/a", "1", { qos: 1 });
    await pub.publishAsync("st/b", "2", { qos: 0, retain: true });
    await broker.publish({ topic: "st/a", payload: "3" });
    await waitFor(() => messages.length === 3, 5_000, "three messages");
    const s = broker.stats();
    assert.equal(s.connections, 2);
    assert.equal(s.sessions, 2);
    assert.equal(s.subscriptions, 2);
    assert.equal(s.retained, 1);
    assert.ok(s.retainedBytes >= "st/b".length + 1);
    assert.equal(s.messagesIn, 3);
    assert.equal(s.messagesOut, 3);
    assert.equal(s.connectionsTotal, 2);
    assert.ok(s.bytesIn > before.bytesIn);
    assert.ok(s.bytesOut > before.bytesOut);
  } finally {
    await sub.endAsync();
    await pub.endAsync();
  }
  await waitFor(() => broker.stats().connections === 0, 5_000, "connections to close");
  const after = broker.stats();
  assert.equal(after.sessions, 1, "the persistent session stays while offline");
  assert.equal(after.subscriptions, 2);
  await broker.publish({ topic: "st/a", payload: "offline qos0" });
  assert.equal(broker.stats().dropped.offlineQos0, 1);
  await broker.publish({ topic: "st/a", payload: "offline qos1", qos: 1 });
  assert.equal(broker.stats().queued, 1);
  await broker.close();
});

Deno.test("a frozen subscriber fills only its own queue: queueFull counts its drops, a healthy subscriber gets everything", async () => {
  const maxInflight = 2;
  const maxQueued = 5;
  const total = 50;
  const { broker, port } = await startBroker({
    limits: { maxInflight, maxQueued, maxSocketBufferBytes: 1024 },
  });
  // The frozen subscriber: a raw socket that reads exactly CONNACK and SUBACK, then nothing.
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const frozen = RawSocket.wrap(conn);
  const healthy = await connectMqtt(port, { clientId: "healthy" });
  try {
    await frozen.send(raw.connect({ clientId: "frozen" }));
    await frozen.send(raw.subscribe(1, [["slow/#", 1]]));
    const handshake = await readExactly(conn, 4 + 5);
    assert.deepEqual([...handshake!], [0x20, 2, 0, 0, 0x90, 3, 0, 1, 1]);

    const messages = collect(healthy);
    await healthy.subscribeAsync("slow/#", { qos: 1 });
    const payload = "x".repeat(100);
    for (let i = 0; i < total; i++) {
      await broker.publish({ topic: `slow/${i}`, payload, qos: 1 });
      await waitFor(() => messages.length === i + 1, 5_000, `message ${i} at the healthy client`);
    }
    assert.deepEqual(
      messages.map((m) => m.topic),
      [...Array(total).keys()].map((i) => `slow/${i}`),
    );
    const stats = broker.stats();
    assert.equal(stats.dropped.queueFull, total - maxInflight - maxQueued);
    assert.equal(stats.queued, maxQueued);
    assert.equal(stats.inflight, maxInflight);

    // Thawed: it gets the two in flight, then (as it acknowledges) the five queued, in order.
    frozen.startReading();
    const got: string[] = [];
    while (got.length < maxInflight + maxQueued) {
      const p = parsePublish(await frozen.next());
      assert.equal(p.qos, 1);
      got.push(p.topic);
      await frozen.send(raw.puback(p.packetId!));
    }
    assert.deepEqual(got, ["slow/0", "slow/1", "slow/2", "slow/3", "slow/4", "slow/5", "slow/6"]);
    await broker.publish({ topic: "slow/end", payload: "end", qos: 1 });
    const last = parsePublish(await frozen.next());
    assert.equal(last.topic, "slow/end", "nothing else was kept for the frozen subscriber");
    await waitFor(() => broker.stats().queued === 0, 5_000, "the queue to drain");
  } finally {
    await healthy.endAsync();
    await frozen.close();
    await broker.close();
  }
});

Deno.test("sysIntervalMs publishes retained $SYS/broker/... topics that '#' does not match [MQTT-4.7.2-1]", async () => {
  const { broker, port } = await startBroker({ sysIntervalMs: 50 });
  const sys = await connectMqtt(port, { clientId: "sys-reader" });
  const all = await connectMqtt(port, { clientId: "hash-reader" });
  try {
    const sysMessages = collect(sys);
    const allMessages = collect(all);
    await sys.subscribeAsync("$SYS/broker/#", { qos: 0 });
    await waitFor(
      () => sysMessages.some((m) => m.topic === "$SYS/broker/version"),
      5_000,
      "$SYS/broker/version",
    );
    const version = sysMessages.find((m) => m.topic === "$SYS/broker/version")!;
    assert.match(version.payload, /^denomq /);
    assert.equal(version.retain, true, "the first delivery comes from the retained store");
    for (const name of ["uptime", "clients/connected", "messages/received", "bytes/sent"]) {
      assert.ok(sysMessages.some((m) => m.topic === `$SYS/broker/${name}`), name);
    }
    await waitFor(
      () =>
        sysMessages.some((m) =>
          m.topic === "$SYS/broker/clients/connected" && Number(m.payload) === 2
        ),
      5_000,
      "clients/connected = 2",
    );
    await all.subscribeAsync("#", { qos: 0 });
    const seen = sysMessages.length;
    // Let several intervals pass (observed through the $SYS reader), then check '#'.
    await waitFor(
      () => sysMessages.slice(seen).filter((m) => m.topic === "$SYS/broker/uptime").length >= 3,
      5_000,
      "three more $SYS rounds",
    );
    await broker.publish({ topic: "plain/marker", payload: "m" });
    await waitFor(() => allMessages.length >= 1, 5_000, "the marker");
    assert.deepEqual(allMessages.map((m) => m.topic), ["plain/marker"]);
    // Clients may not publish to $SYS.
    await all.publishAsync("$SYS/broker/version", "fake", { qos: 1 });
    assert.ok(broker.stats().dropped.notAuthorized >= 1);
  } finally {
    await sys.endAsync();
    await all.endAsync();
    await broker.close();
  }
});
