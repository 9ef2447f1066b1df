/**
 * Seeded random packet sequences, 3.1.1 and 5.0, against one broker over in-memory connections:
 * whatever a client sends, a connection may only end for a `DecodeError` or a `ProtocolError`
 * (never an internal error of ours), the broker keeps serving, and it closes cleanly.
 *
 * Packets are built with our encoder from random fields (valid and invalid ones: topic aliases,
 * reason codes, packet ids in and out of state, subscription options, properties), with now and
 * then raw random bytes. This is a robustness check of the handlers, not a conformance test.
 */
import assert from "node:assert/strict";
import { Broker, createLogger } from "../mod.ts";
import { encodePacket } from "../src/codec/encoder.ts";
import type { Packet, Properties } from "../src/codec/packet.ts";
import { mulberry32 } from "../src/_test_prng.ts";
import { memoryPair } from "./_memory_conn.ts";

const enc = new TextEncoder();

function generator(seed: number) {
  const random = mulberry32(seed);
  const int = (n: number) => Math.floor(random() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)];
  const topics = ["a", "a/b", "a/b/c", "$SYS/x", "", "t/+", "r/#", "$share/g/a"];
  const filters = ["a/#", "+/b", "#", "a", "$share/g/a/#", "$share/g", "$share//a", "a/#/b"];
  const reason = () => pick([0, 0, 0x04, 0x10, 0x18, 0x19, 0x80, 0x87, 0x92, 0x97]);
  const id = () => pick([1, 2, 3, int(65535) + 1]);
  const props = (): Properties | undefined => {
    if (random() < 0.4) return undefined;
    const p: Properties = {};
    if (random() < 0.3) p.topicAlias = pick([0, 1, 2, 10, 11, 300]);
    if (random() < 0.3) p.messageExpiryInterval = pick([0, 1, 3600]);
    if (random() < 0.3) p.userProperties = [["k", "v"], ["k", "w"]];
    if (random() < 0.2) p.payloadFormatIndicator = random() < 0.5;
    if (random() < 0.2) p.contentType = "text/plain";
    if (random() < 0.2) p.responseTopic = "resp/x";
    if (random() < 0.2) p.correlationData = Uint8Array.of(1, 2);
    return p;
  };
  const packet = (v5: boolean): Packet => {
    switch (int(11)) {
      case 0:
      case 1:
      case 2: {
        const qos = pick([0, 1, 2] as const);
        return {
          type: "publish",
          topic: pick(topics),
          payload: random() < 0.1 ? Uint8Array.of(0xff, 0xfe) : enc.encode("p"),
          qos,
          retain: random() < 0.2,
          dup: false,
          packetId: qos > 0 ? id() : undefined,
          properties: v5 ? props() : undefined,
        };
      }
      case 3:
        return {
          type: pick(["puback", "pubrec", "pubrel", "pubcomp"] as const),
          packetId: id(),
          reasonCode: v5 ? reason() : undefined,
        };
      case 4:
        return {
          type: "subscribe",
          packetId: id(),
          subscriptions: [{
            topicFilter: pick(filters),
            qos: pick([0, 1, 2] as const),
            ...(v5
              ? {
                noLocal: random() < 0.2,
                retainAsPublished: random() < 0.5,
                retainHandling: pick([0, 1, 2] as const),
              }
              : {}),
          }],
          properties: v5 && random() < 0.3 ? { subscriptionIdentifier: int(5) + 1 } : undefined,
        };
      case 5:
        return { type: "unsubscribe", packetId: id(), topicFilters: [pick(filters)] };
      case 6:
        return { type: "pingreq" };
      case 7:
        return v5
          ? {
            type: "auth",
            reasonCode: pick([0, 0x18, 0x19]),
            properties: { authenticationMethod: pick(["M", "other"]) },
          }
          : { type: "pingreq" };
      case 8:
        return v5 && random() < 0.5
          ? {
            type: "disconnect",
            reasonCode: pick([0, 0x04]),
            properties: random() < 0.5 ? { sessionExpiryInterval: pick([0, 10]) } : undefined,
          }
          : { type: "pingreq" };
      default:
        return {
          type: "publish",
          topic: "a/b",
          payload: enc.encode("q"),
          qos: 1,
          retain: false,
          dup: false,
          packetId: id(),
        };
    }
  };
  return { random, int, pick, packet };
}

Deno.test("fuzz: random 3.1.1 and 5.0 packet sequences end connections only for client faults", async () => {
  const errors: string[] = [];
  const logger = createLogger("error", (_level, message) => errors.push(message));
  await using broker = new Broker({
    logger,
    limits: { topicAliasMaximum: 10, receiveMaximum: 4, maxInflight: 4 },
    authenticateEnhanced: ({ step }) =>
      step === 0 ? { result: "continue", data: Uint8Array.of(1) } : { result: "success" },
  });
  const faults: string[] = [];
  broker.addEventListener("clientError", (e) => {
    const { name, message } = e.detail.error;
    if (name !== "DecodeError" && name !== "ProtocolError") faults.push(`${name}: ${message}`);
  });
  const g = generator(20261203);
  const served: Promise<void>[] = [];
  for (let round = 0; round < 300; round++) {
    const v5 = g.random() < 0.6;
    const [client, server] = memoryPair();
    served.push(broker.handle(server, "memory"));
    // Read and drop whatever the broker answers, until it closes.
    const drain = (async () => {
      const buffer = new Uint8Array(4096);
      try {
        while ((await client.read(buffer)) !== null) { /* drop */ }
      } catch {
        // closed under us
      }
    })();
    const clientId = `c${g.int(6)}`;
    const connect: Packet = {
      type: "connect",
      protocolName: "MQTT",
      protocolLevel: v5 ? 5 : 4,
      cleanSession: g.random() < 0.5,
      keepAlive: 0,
      clientId,
      will: g.random() < 0.3
        ? {
          topic: "w/x",
          payload: enc.encode("w"),
          qos: 1,
          retain: false,
          properties: v5 ? { willDelayInterval: g.pick([0, 1]) } : undefined,
        }
        : undefined,
      properties: v5
        ? {
          sessionExpiryInterval: g.pick([0, 60]),
          receiveMaximum: g.pick([1, 10]),
          maximumPacketSize: g.pick([64, 100_000]),
          ...(g.random() < 0.1 ? { authenticationMethod: "M" } : {}),
        }
        : undefined,
    };
    const chunks: Uint8Array[] = [encodePacket(connect, v5 ? 5 : 4)];
    for (let i = 0, n = 1 + g.int(12); i < n; i++) {
      if (g.random() < 0.03) {
        chunks.push(Uint8Array.from({ length: 1 + g.int(8) }, () => g.int(256)));
        continue;
      }
      try {
        chunks.push(encodePacket(g.packet(v5), v5 ? 5 : 4));
      } catch {
        // A combination the encoder refuses to write: skip it.
      }
    }
    for (const chunk of chunks) {
      try {
        await client.write(chunk);
      } catch {
        break; // the broker closed the connection
      }
    }
    // Let the broker work through what was sent (a few turns), then hang up.
    for (let turn = 0; turn < 5; turn++) await new Promise((resolve) => setImmediate(resolve));
    client.close();
    await drain;
  }
  const stats = broker.stats();
  // The sequences reached the handlers: messages were routed and violations were caught.
  assert.ok(stats.messagesIn > 50, `messagesIn ${stats.messagesIn}`);
  assert.ok(stats.protocolErrors > 10, `protocolErrors ${stats.protocolErrors}`);
  await broker.close();
  await Promise.all(served);
  assert.deepEqual(faults, []);
  assert.deepEqual(errors.filter((line) => line.includes("internal error")), []);
});
