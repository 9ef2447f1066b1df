/**
 * Starts a broker for one test: ours (from `../mod.ts`) by default, or a real `mosquitto` when
 * `MQTT_TEST_BROKER=mosquitto`, to validate the tests themselves against a reference broker.
 *
 * @module
 */
import assert from "node:assert/strict";
import { describe, parsePublish, pingreq, puback, publish, RawClient, TYPE } from "./_raw.ts";
import type { Connack5, ConnectOptions } from "./_raw.ts";
import { memoryPair } from "./_memory_conn.ts";
import type { Broker, BrokerOptions, Limits } from "../mod.ts";

/** True when the tests run against mosquitto instead of our broker. */
export const MOSQUITTO: boolean = Deno.env.get("MQTT_TEST_BROKER") === "mosquitto";

/**
 * How long a 1 s keep alive may take to close a silent connection: 1.5 s [MQTT-3.1.2-24] plus
 * slack for a loaded machine. mosquitto 2.0.11 only checks keep alives every ~5 s, so it gets more
 * room (a deviation of the reference broker, not a MAY).
 */
export const KEEP_ALIVE_CLOSE_MS: number = MOSQUITTO ? 8_000 : 3_500;

/** Options of {@link startBroker}. */
export interface StartOptions {
  /** Our limits. Under mosquitto they are ignored (tests depending on them are skipped there). */
  limits?: Partial<Limits>;
  /** Anything else for `new Broker(...)` (hooks, logLevel). */
  brokerOptions?: Omit<BrokerOptions, "limits">;
  /** Extra mosquitto.conf lines (mosquitto only). */
  mosquittoConfig?: string[];
  /** 5.0 limits and features, given once and mapped both to our broker and to mosquitto.conf. */
  v5?: V5Knobs;
}

/**
 * The broker-side 5.0 settings the tests turn. Each maps to our `BrokerOptions` in
 * {@link ourV5Options} and, where mosquitto has a setting for it, to mosquitto.conf in
 * {@link mosquittoV5Config}; tests of the others are ours only.
 */
export interface V5Knobs {
  /** Server Keep Alive cap in seconds (ours `maxKeepAlive`, mosquitto `max_keepalive`). */
  maxKeepAlive?: number;
  /** The broker's Receive Maximum (ours `receiveMaximum`, mosquitto `max_inflight_messages`). */
  receiveMaximum?: number;
  /** The broker's Topic Alias Maximum (ours `topicAliasMaximum`, mosquitto `max_topic_alias`). */
  topicAliasMaximum?: number;
  /** Maximum QoS (ours `features.maxQos`, mosquitto `max_qos`). */
  maxQos?: 0 | 1 | 2;
  /** Retain Available (ours `features.retain`, mosquitto `retain_available`). */
  retainAvailable?: boolean;
  /** The broker's Maximum Packet Size in bytes (ours `maxPacketSize`, mosquitto `max_packet_size`). */
  maxPacketSize?: number;
  /** Cap on Session Expiry Interval, seconds (ours `maxSessionExpiry`). */
  maxSessionExpiry?: number;
  /** Cap on Message Expiry Interval, seconds (ours `maxMessageExpiry`). */
  maxMessageExpiry?: number;
  /** Wildcard Subscription Available (ours `features.wildcardSubscriptions`). */
  wildcardSubscriptions?: boolean;
  /** Subscription Identifier Available (ours `features.subscriptionIdentifiers`). */
  subscriptionIdentifiers?: boolean;
  /** Shared Subscription Available (ours `features.sharedSubscriptions`). */
  sharedSubscriptions?: boolean;
  /** Response Information prefix (ours `responseInformation`). */
  responseInformation?: string;
  /** Installs the test's enhanced authentication method {@link TEST_AUTH_METHOD} (ours). */
  challengeAuth?: boolean;
  /**
   * One topic nobody may publish or subscribe to (ours: `authorizePublish`/`authorizeSubscribe`
   * hooks; mosquitto: an acl_file with `topic deny` for it and `topic readwrite #`).
   */
  denyTopic?: string;
}

/**
 * The enhanced authentication method of the tests: CONNECT carries Authentication Data "hello",
 * the broker answers AUTH 0x18 with "challenge", the client answers AUTH 0x18 with the challenge
 * reversed ("egnellahc") and gets CONNACK 0x00 with Authentication Data "welcome"; any other
 * answer gets 0x87. Re-authentication (AUTH 0x19) runs the same exchange.
 */
export const TEST_AUTH_METHOD = "TEST-CHALLENGE";

/** One step of enhanced authentication as the hook sees it (shape agreed in v5-notes.md). */
export interface TestAuthStep {
  method: string;
  data?: Uint8Array;
  reauthenticate?: boolean;
  step?: number;
}

/** The hook's answer. */
export type TestAuthResult =
  | { result: "continue"; data?: Uint8Array }
  | { result: "success"; data?: Uint8Array }
  | { result: "failure"; reasonCode?: number };

/** The test method as a hook. */
export function challengeAuth(step: TestAuthStep): TestAuthResult {
  const text = new TextDecoder();
  const enc = new TextEncoder();
  if (step.method !== TEST_AUTH_METHOD) return { result: "failure", reasonCode: 0x8c };
  const data = step.data === undefined ? "" : text.decode(step.data);
  if (data === "hello") return { result: "continue", data: enc.encode("challenge") };
  if (data === "egnellahc") return { result: "success", data: enc.encode("welcome") };
  return { result: "failure", reasonCode: 0x87 };
}

/** Our BrokerOptions for the knobs (the one place that knows proto5's option names). */
export function ourV5Options(
  v5: V5Knobs,
): { limits: Record<string, number | boolean>; options: Record<string, unknown> } {
  const limits: Record<string, number | boolean> = {};
  const options: Record<string, unknown> = {};
  const put = (name: string, value: number | boolean | undefined) => {
    if (value !== undefined) limits[name] = value;
  };
  put("maxKeepAlive", v5.maxKeepAlive);
  put("receiveMaximum", v5.receiveMaximum);
  put("topicAliasMaximum", v5.topicAliasMaximum);
  put("maxPacketSize", v5.maxPacketSize);
  put("maxSessionExpiry", v5.maxSessionExpiry);
  put("maxMessageExpiry", v5.maxMessageExpiry);
  put("maxQos", v5.maxQos);
  put("retainAvailable", v5.retainAvailable);
  put("wildcardSubscriptionAvailable", v5.wildcardSubscriptions);
  put("subscriptionIdentifierAvailable", v5.subscriptionIdentifiers);
  put("sharedSubscriptionAvailable", v5.sharedSubscriptions);
  if (v5.responseInformation !== undefined) options.responseInformation = v5.responseInformation;
  if (v5.challengeAuth) {
    options.authenticateEnhanced = (step: TestAuthStep) => challengeAuth(step);
  }
  if (v5.denyTopic !== undefined) {
    const deny = v5.denyTopic;
    options.authorizePublish = (_c: unknown, topic: string) => topic !== deny;
    options.authorizeSubscribe = (_c: unknown, filter: string) => filter !== deny;
  }
  return { limits, options };
}

/** mosquitto.conf lines for the knobs mosquitto has. */
export function mosquittoV5Config(v5: V5Knobs): string[] {
  const lines: string[] = [];
  if (v5.maxKeepAlive !== undefined) lines.push(`max_keepalive ${v5.maxKeepAlive}`);
  if (v5.receiveMaximum !== undefined) lines.push(`max_inflight_messages ${v5.receiveMaximum}`);
  if (v5.topicAliasMaximum !== undefined) lines.push(`max_topic_alias ${v5.topicAliasMaximum}`);
  if (v5.maxQos !== undefined) lines.push(`max_qos ${v5.maxQos}`);
  if (v5.retainAvailable === false) lines.push("retain_available false");
  if (v5.maxPacketSize !== undefined) lines.push(`max_packet_size ${v5.maxPacketSize}`);
  return lines;
}

/** A running broker plus a tracker for the raw clients a test opens. */
export interface RunningBroker {
  port: number;
  /** Our broker; undefined under mosquitto. */
  broker?: Broker;
  /** Opens a raw TCP connection; it is closed by `close()`. */
  client(label?: string): Promise<RawClient>;
  /** Opens a raw connection, sends CONNECT and expects CONNACK 0. */
  connect(o?: ConnectOptions, label?: string): Promise<RawClient>;
  /** Opens a raw connection, sends a 5.0 CONNECT and expects CONNACK 0x00. */
  connect5(o?: ConnectOptions, label?: string): Promise<RawClient & { connack: Connack5 }>;
  /**
   * Ours only: a raw client over an in-memory pair handed to `broker.handle()` (no socket). Closed
   * by `close()` like the others.
   */
  memoryClient(label?: string): RawClient;
  /** `connect` for version 4, `connect5` for version 5 (tests looped over both versions). */
  connectV(version: number, o?: ConnectOptions, label?: string): Promise<RawClient>;
  /** Closes every client opened through this object, then the broker. Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Starts a broker on 127.0.0.1 and a free port. */
export async function startBroker(options: StartOptions = {}): Promise<RunningBroker> {
  const started = MOSQUITTO ? await startMosquitto(options) : await startOurs(options);
  const clients: RawClient[] = [];
  const handled: Promise<void>[] = [];
  let closing: Promise<void> | undefined;
  const running: RunningBroker = {
    port: started.port,
    broker: started.broker,
    async client(label = `client${clients.length + 1}`) {
      const c = await RawClient.connect(started.port, label);
      clients.push(c);
      return c;
    },
    async connect(o: ConnectOptions = {}, label?: string) {
      const c = await running.client(label ?? o.clientId ?? undefined);
      await c.handshake(o);
      return c;
    },
    async connect5(o: ConnectOptions = {}, label?: string) {
      const c = await running.client(label ?? o.clientId ?? undefined);
      const connack = await c.handshake5(o);
      return Object.assign(c, { connack });
    },
    memoryClient(label = `memory${clients.length + 1}`) {
      if (started.broker === undefined) throw new Error("memoryClient needs our broker");
      const [client, server] = memoryPair();
      handled.push(started.broker.handle(server, "memory"));
      const c = RawClient.wrap(client, label);
      clients.push(c);
      return c;
    },
    connectV(version: number, o: ConnectOptions = {}, label?: string) {
      return version === 5 ? running.connect5(o, label) : running.connect(o, label);
    },
    close() {
      closing ??= (async () => {
        await Promise.all(clients.map((c) => c.close()));
        await Promise.all(handled);
        await started.stop();
      })();
      return closing;
    },
    [Symbol.asyncDispose]() {
      return running.close();
    },
  };
  return running;
}

interface Started {
  port: number;
  broker?: Broker;
  stop(): Promise<void>;
}

async function startOurs(options: StartOptions): Promise<Started> {
  // Imported on demand so that a run against mosquitto does not load our broker at all.
  const { Broker } = await import("../mod.ts");
  const v5 = ourV5Options(options.v5 ?? {});
  const limits = { ...options.limits, ...v5.limits } as Partial<Limits>;
  const broker = new Broker({
    logLevel: "silent",
    ...(v5.options as BrokerOptions),
    ...options.brokerOptions,
    limits: Object.keys(limits).length > 0 ? limits : options.limits,
  });
  const server = await broker.listen({ hostname: "127.0.0.1", port: 0 });
  return {
    port: server.port,
    broker,
    async stop() {
      await server.close();
      await broker.close();
    },
  };
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function startMosquitto(options: StartOptions): Promise<Started> {
  const port = freePort();
  const dir = await Deno.makeTempDir({ prefix: "mqtt_test_mosquitto_" });
  const config = [
    `listener ${port} 127.0.0.1`,
    "allow_anonymous true",
    "persistence false",
    // Matches our default maxPacketSize so that the "huge packet" test is meaningful there too.
    ...(options.v5?.maxPacketSize === undefined ? ["max_packet_size 1048576"] : []),
    ...mosquittoV5Config(options.v5 ?? {}),
    ...(options.mosquittoConfig ?? []),
  ];
  if (options.v5?.denyTopic !== undefined) {
    await Deno.writeTextFile(
      `${dir}/acl`,
      `topic deny ${options.v5.denyTopic}\ntopic readwrite #\n`,
    );
    // mosquitto (started as root) reads the ACL after dropping to its own user.
    await Deno.chmod(dir, 0o755);
    await Deno.chmod(`${dir}/acl`, 0o644);
    config.push(`acl_file ${dir}/acl`);
  }
  const logToStderr = Deno.env.get("MQTT_TEST_MOSQUITTO_LOG") === "1";
  if (logToStderr) config.push("log_dest stderr", "log_type all");
  await Deno.writeTextFile(`${dir}/mosquitto.conf`, config.join("\n") + "\n");
  const child = new Deno.Command("mosquitto", {
    args: ["-c", `${dir}/mosquitto.conf`],
    stdin: "null",
    stdout: "null",
    stderr: logToStderr ? "inherit" : "null",
  }).spawn();
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // already exited
    }
    await child.status;
    await Deno.remove(dir, { recursive: true });
  };
  // Wait (with a deadline) until mosquitto accepts connections.
  const deadline = Date.now() + 5_000;
  while (true) {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
      break;
    } catch (e) {
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`mosquitto did not start on port ${port}: ${e}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  return { port, stop };
}

/** A client connected before a hostile action, to check afterwards that the broker still serves. */
export interface Healthy {
  /** PINGREQ → PINGRESP and a QoS 1 round trip on the old connection, then the same on a new one. */
  check(): Promise<void>;
}

/** Connects a healthy client (subscribed to its own topic) to be checked after a hostile action. */
export async function healthyClient(b: RunningBroker, label = "healthy"): Promise<Healthy> {
  const old = await b.connect({ clientId: `${label}-old` }, `${label}-old`);
  await old.subscribe(1, [[`${label}/old`, 1]]);
  let n = 0;
  const roundTrip = async (c: RawClient, topic: string) => {
    n++;
    await c.send(pingreq());
    await c.expectPacket(TYPE.PINGRESP);
    await c.send(publish({ topic, qos: 1, packetId: n, payload: `ok${n}` }));
    // The PUBACK and the delivery may come in either order.
    const got = [await c.nextPacket(), await c.nextPacket()];
    const ack = got.find((p) => p.type === TYPE.PUBACK);
    const msg = got.find((p) => p.type === TYPE.PUBLISH);
    assert.ok(ack && msg, `${c.label}: expected PUBACK and PUBLISH, got ${got.map(describe)}`);
    assert.equal(parsePublish(msg).text, `ok${n}`);
    await c.send(puback(parsePublish(msg).packetId!));
  };
  return {
    async check() {
      await roundTrip(old, `${label}/old`);
      const fresh = await b.connect({ clientId: `${label}-new${n}` }, `${label}-new`);
      await fresh.subscribe(1, [[`${label}/new`, 1]]);
      await roundTrip(fresh, `${label}/new`);
    },
  };
}

/** Polls `condition` every 10 ms until it holds; fails after `timeoutMs` naming `what`. */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 3_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Ours must send DISCONNECT `reasonCode` and close. mosquitto 2.0.11 closes in these cases too,
 * but sometimes without a DISCONNECT and sometimes naming another code (0x81 where the standard
 * says protocol error 0x82): recorded deviations, accepted only under mosquitto.
 */
export async function expectDisconnectOrMosquittoClose(
  c: RawClient,
  reasonCode: number,
  timeoutMs?: number,
): Promise<void> {
  if (!MOSQUITTO) {
    await c.expectDisconnect(reasonCode, timeoutMs);
    return;
  }
  const p = await c.nextPacket(timeoutMs).catch(() => undefined);
  if (p !== undefined) {
    assert.equal(
      p.type,
      TYPE.DISCONNECT,
      `${c.label}: expected DISCONNECT or close, got ${describe(p)}`,
    );
    assert.ok(
      p.body.length === 0 || p.body[0] >= 0x80,
      `${c.label}: DISCONNECT reason ${p.body[0]}`,
    );
  }
  await c.expectClosed(timeoutMs);
}
