import assert from "node:assert/strict";
// deno-lint-ignore no-import-prefix
import mqtt from "npm:mqtt@5.16.0";
import type { RemoteAddress } from "../hooks.ts";
import type { BrokerConn } from "./types.ts";
import {
  createWebSocketHandler,
  webSocketConn,
  WS_CLOSE_MESSAGE_TOO_BIG,
  WS_CLOSE_UNSUPPORTED_DATA,
} from "./websocket.ts";

/**
 * Just enough MQTT, by hand, to drive a real client: CONNECT → CONNACK, SUBSCRIBE → SUBACK
 * (QoS 0), PUBLISH QoS 0 echoed back, PINGREQ → PINGRESP, DISCONNECT closes.
 */
class FakeBroker {
  readonly packetTypes: number[] = [];
  readonly remotes: RemoteAddress[] = [];
  readonly done: Promise<void>[] = [];
  #readSize: number;
  #gate?: Promise<void>;

  constructor(options: { readSize?: number; gate?: Promise<void> } = {}) {
    this.#readSize = options.readSize ?? 4096;
    this.#gate = options.gate;
  }

  handle(conn: BrokerConn): Promise<void> {
    this.remotes.push(conn.remoteAddr as RemoteAddress);
    const run = this.#run(conn);
    this.done.push(run);
    return run;
  }

  async #run(conn: BrokerConn): Promise<void> {
    await this.#gate;
    const buffer = new Uint8Array(this.#readSize);
    let pending = new Uint8Array(0);
    try {
      for (;;) {
        const n = await conn.read(buffer);
        if (n === null) return;
        pending = Uint8Array.of(...pending, ...buffer.subarray(0, n));
        for (;;) {
          const packet = takePacket(pending);
          if (!packet) break;
          pending = pending.subarray(packet.length);
          if (!await this.#answer(conn, packet)) return;
        }
      }
    } finally {
      conn.close();
    }
  }

  async #answer(conn: BrokerConn, packet: Uint8Array): Promise<boolean> {
    const type = packet[0] >> 4;
    this.packetTypes.push(type);
    const body = packet.subarray(packet.length - remainingLength(packet));
    switch (type) {
      case 1: // CONNECT
        await conn.write(Uint8Array.of(0x20, 0x02, 0x00, 0x00));
        break;
      case 8: { // SUBSCRIBE: packet id, then (length, filter, qos)*
        let filters = 0;
        for (let i = 2; i < body.length; i += 2 + ((body[i] << 8) | body[i + 1]) + 1) filters++;
        await conn.write(
          Uint8Array.of(0x90, 2 + filters, body[0], body[1], ...new Array(filters).fill(0)),
        );
        break;
      }
      case 3: // PUBLISH QoS 0: echo
        await conn.write(packet.slice());
        break;
      case 12: // PINGREQ
        await conn.write(Uint8Array.of(0xd0, 0x00));
        break;
      case 14: // DISCONNECT
        return false;
    }
    return true;
  }
}

function remainingLength(packet: Uint8Array): number {
  let value = 0;
  for (let i = 1, shift = 0; i < 5 && i < packet.length; i++, shift += 7) {
    value |= (packet[i] & 0x7f) << shift;
    if ((packet[i] & 0x80) === 0) return value;
  }
  return -1;
}

/** The first whole packet in `bytes`, or undefined. */
function takePacket(bytes: Uint8Array): Uint8Array | undefined {
  if (bytes.length < 2) return undefined;
  const length = remainingLength(bytes);
  if (length < 0) return undefined;
  let headerBytes = 2;
  while (bytes[headerBytes - 1] & 0x80) headerBytes++;
  if (bytes.length < headerBytes + length) return undefined;
  return bytes.subarray(0, headerBytes + length);
}

const CONNECT = Uint8Array.of(
  0x10,
  0x10,
  0x00,
  0x04,
  0x4d,
  0x51,
  0x54,
  0x54,
  0x04,
  0x02,
  0x00,
  0x3c, // header, keepalive 60
  0x00,
  0x04,
  0x77,
  0x73,
  0x2d,
  0x31, // client id "ws-1"
);
const SUBSCRIBE = Uint8Array.of(0x82, 0x06, 0x00, 0x07, 0x00, 0x01, 0x74, 0x00); // id 7, "t" QoS 0
const PUBLISH = Uint8Array.of(0x30, 0x06, 0x00, 0x01, 0x74, 0x68, 0x69, 0x21); // "t" "hi!"

/** Waits until `condition()` holds, polling, or fails after `timeoutMs`. */
async function waitFor(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** `promise`, or a rejection after `timeoutMs`. */
async function withTimeout<T>(promise: Promise<T>, what: string, timeoutMs = 5000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`Timed out waiting for ${what}`)), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A raw WebSocket client collecting binary frames and the close event. */
async function openClient(url: string, protocols: string | string[] = "mqtt") {
  const ws = new WebSocket(url, protocols);
  ws.binaryType = "arraybuffer";
  const frames: Uint8Array[] = [];
  ws.addEventListener("message", (e) => frames.push(new Uint8Array(e.data as ArrayBuffer)));
  const closed = new Promise<CloseEvent>((resolve) => ws.addEventListener("close", resolve));
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      ws.addEventListener("open", () => resolve(), { once: true });
      ws.addEventListener("error", () => reject(new Error(`cannot open ${url}`)), { once: true });
      timer = setTimeout(() => reject(new Error(`timed out opening ${url}`)), 5000);
    });
  } catch (error) {
    ws.close();
    await closed;
    throw error;
  } finally {
    clearTimeout(timer);
  }
  const received = () => Uint8Array.from(frames.flatMap((f) => [...f]));
  return { ws, frames, closed, received };
}

function serve(handler: Deno.ServeHandler) {
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
}

Deno.test("npm:mqtt connects, subscribes, publishes and receives over ws:// through the adapter", async () => {
  const broker = new FakeBroker();
  await using server = serve(createWebSocketHandler(broker));
  const client = await mqtt.connectAsync(`ws://127.0.0.1:${server.addr.port}/mqtt`, {
    protocolVersion: 4,
    reconnectPeriod: 0,
    clientId: "mqttjs-ws",
  });
  try {
    const message = new Promise<[string, string]>((resolve) =>
      client.once("message", (topic, payload) => resolve([topic, payload.toString()]))
    );
    await client.subscribeAsync("t/1");
    await client.publishAsync("t/1", "hello over websocket");
    assert.deepEqual(await message, ["t/1", "hello over websocket"]);
  } finally {
    await client.endAsync();
  }
  await Promise.all(broker.done);
  assert.deepEqual(broker.packetTypes, [1, 8, 3, 14]);
  assert.equal(broker.remotes[0].transport, "ws");
  assert.equal(broker.remotes[0].hostname, "127.0.0.1");
  assert.ok(broker.remotes[0].port > 0);
});

Deno.test("a packet split over two frames and two packets in one frame [MQTT-6.0.0-2] [MQTT-6.0.0-3]", async () => {
  // A 3-byte read buffer also makes the adapter keep leftovers of every frame.
  const broker = new FakeBroker({ readSize: 3 });
  await using server = serve(createWebSocketHandler(broker, { transport: "wss" }));
  const client = await openClient(`ws://127.0.0.1:${server.addr.port}/mqtt`);
  assert.equal(client.ws.protocol, "mqtt");
  client.ws.send(CONNECT.subarray(0, 5));
  client.ws.send(CONNECT.subarray(5));
  await waitFor(() => client.received().length >= 4, "CONNACK");
  assert.deepEqual(client.received(), Uint8Array.of(0x20, 0x02, 0x00, 0x00));
  client.ws.send(Uint8Array.of(...SUBSCRIBE, ...PUBLISH));
  const expected = Uint8Array.of(0x20, 0x02, 0x00, 0x00, 0x90, 0x03, 0x00, 0x07, 0x00, ...PUBLISH);
  await waitFor(() => client.received().length >= expected.length, "SUBACK and PUBLISH");
  assert.deepEqual(client.received(), expected);
  assert.ok(client.frames.every((f) => f.length > 0));
  client.ws.close();
  await client.closed;
  await Promise.all(broker.done);
  assert.deepEqual(broker.packetTypes, [1, 8, 3]);
  assert.equal(broker.remotes[0].transport, "wss");
});

Deno.test("a text frame closes the connection [MQTT-6.0.0-1]", async () => {
  const broker = new FakeBroker();
  await using server = serve(createWebSocketHandler(broker));
  const client = await openClient(`ws://127.0.0.1:${server.addr.port}/mqtt`);
  client.ws.send(CONNECT);
  await waitFor(() => client.received().length >= 4, "CONNACK");
  client.ws.send("\x10\x00");
  const event = await client.closed;
  assert.equal(event.code, WS_CLOSE_UNSUPPORTED_DATA);
  await Promise.all(broker.done); // the broker's read() resolved null
  assert.deepEqual(broker.packetTypes, [1]);
});

Deno.test("inbound frames past maxInboundBytes close the socket with 1009 while the broker is not reading", async () => {
  let open!: () => void;
  const broker = new FakeBroker({ gate: new Promise((resolve) => open = resolve) });
  await using server = serve(createWebSocketHandler(broker, { maxInboundBytes: 64 }));
  const client = await openClient(`ws://127.0.0.1:${server.addr.port}/mqtt`);
  client.ws.send(new Uint8Array(40));
  client.ws.send(new Uint8Array(40));
  const event = await client.closed;
  assert.equal(event.code, WS_CLOSE_MESSAGE_TOO_BIG);
  open();
  await Promise.all(broker.done);
  assert.deepEqual(broker.packetTypes, [], "queued bytes are dropped, not handed to the broker");
});

Deno.test("the handler answers 404 off the path, 400 without an upgrade, 400 for a foreign subprotocol", async () => {
  const broker = new FakeBroker();
  await using server = serve(createWebSocketHandler(broker, { path: "/ws" }));
  const base = `http://127.0.0.1:${server.addr.port}`;
  const offPath = await fetch(`${base}/mqtt`);
  assert.equal(offPath.status, 404);
  await offPath.body?.cancel();
  const plain = await fetch(`${base}/ws`);
  assert.equal(plain.status, 400);
  assert.match(await plain.text(), /Expected a WebSocket upgrade/);
  await assert.rejects(openClient(`ws://127.0.0.1:${server.addr.port}/ws`, "chat"), /cannot open/);
  assert.equal(broker.remotes.length, 0);
});

Deno.test("the handler accepts mqttv3.1 and clients offering no subprotocol", async () => {
  const broker = new FakeBroker();
  await using server = serve(createWebSocketHandler(broker));
  const url = `ws://127.0.0.1:${server.addr.port}/mqtt`;
  const old = await openClient(url, ["chat", "mqttv3.1"]);
  assert.equal(old.ws.protocol, "mqttv3.1");
  const preferred = await openClient(url, ["mqttv3.1", "mqtt"]);
  assert.equal(preferred.ws.protocol, "mqtt");
  const none = await openClient(url, []);
  assert.equal(none.ws.protocol, "");
  for (const c of [old, preferred, none]) {
    c.ws.send(CONNECT);
    await waitFor(() => c.received().length >= 4, "CONNACK");
    c.ws.close();
    await c.closed;
  }
  await Promise.all(broker.done);
  assert.deepEqual(broker.packetTypes, [1, 1, 1]);
});

Deno.test("write() waits while bufferedAmount is over the high-water mark, then resolves", async () => {
  const HIGH_WATER_MARK = 16 * 1024;
  const CHUNK = 60_000; // one frame: 4-byte header + payload
  let serverConn!: BrokerConn;
  let serverSocket!: WebSocket;
  const ready = Promise.withResolvers<void>();
  await using server = serve((request, info) => {
    const port = (info.remoteAddr as Deno.NetAddr).port;
    const { socket, response } = Deno.upgradeWebSocket(request, { protocol: "mqtt" });
    serverSocket = socket;
    serverConn = webSocketConn(
      socket,
      { hostname: "127.0.0.1", port, transport: "ws" },
      { writeHighWaterMark: HIGH_WATER_MARK },
    );
    socket.addEventListener("open", () => ready.resolve(), { once: true });
    return response;
  });
  // A hand-made client that completes the handshake and then does not read.
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  await tcp.write(new TextEncoder().encode(
    "GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
      "Sec-WebSocket-Protocol: mqtt\r\n\r\n",
  ));
  let headBytes = new Uint8Array(0);
  const buffer = new Uint8Array(64 * 1024);
  let headEnd = -1;
  while (headEnd < 0) {
    const n = await tcp.read(buffer);
    assert.ok(n !== null);
    headBytes = Uint8Array.of(...headBytes, ...buffer.subarray(0, n));
    headEnd = new TextDecoder("latin1").decode(headBytes).indexOf("\r\n\r\n");
  }
  const head = new TextDecoder("latin1").decode(headBytes.subarray(0, headEnd));
  assert.match(head, /^HTTP\/1\.1 101/);
  assert.match(head, /sec-websocket-protocol: mqtt/i);
  await withTimeout(ready.promise, "server socket open");

  // Write until one write is held back: once the kernel buffers are full (the client does not
  // read), bufferedAmount stays over the mark. Without backpressure all 1000 writes (60 MB)
  // would resolve at once and the test fails.
  let writes = 0;
  let pending = false;
  let held: Promise<number> | undefined;
  const payload = new Uint8Array(CHUNK).fill(0x42);
  for (; writes < 1000 && !held; writes++) {
    pending = true;
    const write = serverConn.write(payload).then((n) => {
      pending = false;
      // Resolved only once the socket took the bytes down to the mark.
      assert.ok(serverSocket.bufferedAmount <= HIGH_WATER_MARK);
      return n;
    });
    try {
      await waitFor(() => !pending, "write", 1000);
    } catch {
      held = write;
    }
  }
  assert.ok(held, "a write was held back while the client did not read");
  assert.ok(serverSocket.bufferedAmount > HIGH_WATER_MARK);

  // Now the client reads everything: the held write completes and every byte arrives.
  const expected = writes * (CHUNK + 4);
  let total = headBytes.length - (headEnd + 4);
  while (total < expected) {
    const n = await tcp.read(buffer);
    assert.ok(n !== null);
    total += n;
  }
  assert.equal(await held, CHUNK);
  assert.equal(total, expected);

  serverConn.close();
  await assert.rejects(serverConn.write(payload), Deno.errors.BrokenPipe);
  assert.equal(await serverConn.read(new Uint8Array(4)), null);
  tcp.close();
});
