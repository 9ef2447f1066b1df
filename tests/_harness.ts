/**
 * Starts a broker for one test: ours (from `../mod.ts`) by default, or a real `mosquitto` when
 * `MQTT_TEST_BROKER=mosquitto`, to validate the tests themselves against a reference broker.
 *
 * @module
 */
import assert from "node:assert/strict";
import { describe, parsePublish, pingreq, puback, publish, RawClient, TYPE } from "./_raw.ts";
import type { ConnectOptions } from "./_raw.ts";
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
  /** Closes every client opened through this object, then the broker. Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Starts a broker on 127.0.0.1 and a free port. */
export async function startBroker(options: StartOptions = {}): Promise<RunningBroker> {
  const started = MOSQUITTO ? await startMosquitto(options) : await startOurs(options);
  const clients: RawClient[] = [];
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
    close() {
      closing ??= (async () => {
        await Promise.all(clients.map((c) => c.close()));
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
  const broker = new Broker({
    logLevel: "silent",
    ...options.brokerOptions,
    limits: options.limits,
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
    "max_packet_size 1048576",
    ...(options.mosquittoConfig ?? []),
  ];
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
