/**
 * Bridges: MQTT clients inside the broker, each connected to a remote broker, that carry the
 * configured topics out, in or both ways, as mosquitto's `connection` sections do.
 *
 * The client is npm:mqtt (MQTT.js), loaded only when a bridge runs (the CLI and
 * {@link startBridges} import this file on demand), so `mod.ts` stays light.
 *
 * One bridge is three clients:
 * - `remote`: the connection to the remote broker (TCP, TLS, or TLS-PSK through stunnel); its
 *   will and a retained "1" make the notification topic;
 * - `local out`: a persistent session in this broker (`localClientId`, clean session false)
 *   subscribed to the outgoing topics. Each message is acknowledged to this broker only once the
 *   remote acknowledged it; while the remote is away the messages wait in that session's queue
 *   (bounded by the broker's limits, counted when dropped, and stored with `--data-dir`) and go
 *   out in order when it is back;
 * - `local in`: publishes what arrives from the remote into this broker under its ACLs, retained
 *   store and limits; the remote's message is acknowledged once this broker acknowledged it.
 *
 * Loops with `both` topics: towards the remote, `try_private` (mosquitto's bridge flag, protocol
 * level | 0x80) or, with MQTT 5, No Local on the remote subscriptions; when the remote refuses
 * the flag, the bridge retries without it and drops the remote's echoes of its own messages.
 * Towards this broker, the echo of each message the bridge published locally is dropped.
 *
 * @module
 */
// The bundled ESM build: the Node build reads the environment when loaded (readable-stream and
// debug), which would make a bridge need --allow-env. Streams come from our own builders.
// deno-lint-ignore no-import-prefix
import mqttBundle from "npm:mqtt@5.16.0/dist/mqtt.esm";
// deno-lint-ignore no-import-prefix
import type * as MqttTypes from "npm:mqtt@5.16.0";

// deno-lint-ignore no-namespace
namespace mqtt {
  export type MqttClient = MqttTypes.MqttClient;
  export type IPublishPacket = MqttTypes.IPublishPacket;
}
const MqttClient = (mqttBundle as unknown as typeof MqttTypes).MqttClient;
import { Buffer } from "node:buffer";
import type { Broker } from "../broker.ts";
import type { QoS } from "../codec/packet.ts";
import { createLogger, type Logger } from "../logger.ts";
import { BRIDGE_TRANSPORT } from "../config/listen.ts";
import { duplexOver, memoryPair } from "./_streams.ts";
import { type PskClient, startPskClient } from "./_psk_client.ts";
import {
  type BridgeConfig,
  checkBridge,
  localFilter,
  mapIncoming,
  mapOutgoing,
  remoteFilter,
} from "./bridge_config.ts";

/** What {@link startBridges} takes besides the bridges. */
export interface StartBridgesOptions {
  /** Default: the broker's own logger is not reachable, so a stderr logger at "info". */
  log?: Logger;
  /** stunnel binary for TLS-PSK bridges. Default "stunnel". */
  stunnel?: string;
}

/** Counters of one bridge. */
export interface BridgeStats {
  /** Whether the remote connection is up. */
  connected: boolean;
  /** Messages sent to the remote and acknowledged (QoS 0: sent). */
  messagesOut: number;
  /** Messages received from the remote and published here. */
  messagesIn: number;
  /** QoS 0 messages dropped because the remote was away. */
  droppedOffline: number;
  /** Echoes of the bridge's own messages that were dropped (loop prevention). */
  echoesDropped: number;
  /** Successful connections to the remote so far. */
  connects: number;
  /** Whether the remote took the bridge flag (try_private); false after it refused it. */
  asBridge: boolean;
}

/** A running bridge. */
export interface RunningBridge {
  /** The connection name. */
  readonly name: string;
  /** A snapshot of its counters. */
  stats(): BridgeStats;
  /**
   * Resolves once the remote connection is up and the bridge's subscriptions (here and at the
   * remote) are acknowledged (for tests and start scripts).
   */
  connected(): Promise<void>;
  /** Stops it: a retained 0 to the remote, then every client. */
  close(): Promise<void>;
}

/** Several running bridges. */
export interface RunningBridges {
  /** In the order given. */
  readonly bridges: readonly RunningBridge[];
  /** Stops them all. */
  close(): Promise<void>;
}

/**
 * Sends mosquitto's bridge flag (protocol level | 0x80) in the client's CONNECT while `when()`.
 * MQTT.js has no option for it, but its packet writer (mqtt-packet) has: add it to the CONNECT
 * packet. The local clients always send it: this broker then gives their subscriptions Retain As
 * Published, so live retained messages go out retained, as from mosquitto's bridges.
 */
function withBridgeFlag(remote: mqtt.MqttClient, when: () => boolean): mqtt.MqttClient {
  const client = remote as unknown as {
    _writePacket(packet: { cmd: string; bridgeMode?: boolean }, cb?: unknown): void;
  };
  const write = client._writePacket.bind(client);
  client._writePacket = (packet, cb) =>
    write(packet.cmd === "connect" && when() ? { ...packet, bridgeMode: true } : packet, cb);
  return remote;
}

const ECHO_TTL_MS = 5 * 60_000;
const MAX_ECHOES = 10_000;

/** Messages the bridge sent one way whose echo, if it comes back, is dropped once. */
class EchoFilter {
  #entries = new Map<string, number[]>();
  #count = 0;

  static key(topic: string, payload: Uint8Array): string {
    // FNV-1a over the payload; with the topic and length, collisions do not matter in practice.
    let h = 0x811c9dc5;
    for (let i = 0; i < payload.length; i++) {
      h ^= payload[i];
      h = Math.imul(h, 0x01000193);
    }
    return `${topic}\0${payload.length}\0${(h >>> 0).toString(36)}`;
  }

  expect(key: string): void {
    if (this.#count >= MAX_ECHOES) this.#expire(true);
    const list = this.#entries.get(key);
    const at = Date.now();
    if (list === undefined) this.#entries.set(key, [at]);
    else list.push(at);
    this.#count++;
  }

  take(key: string): boolean {
    const list = this.#entries.get(key);
    if (list === undefined) return false;
    const now = Date.now();
    while (list.length > 0 && now - list[0] > ECHO_TTL_MS) {
      list.shift();
      this.#count--;
    }
    const found = list.length > 0;
    if (found) {
      list.shift();
      this.#count--;
    }
    if (list.length === 0) this.#entries.delete(key);
    return found;
  }

  #expire(all: boolean): void {
    const now = Date.now();
    for (const [key, list] of this.#entries) {
      const before = list.length;
      while (list.length > 0 && (all || now - list[0] > ECHO_TTL_MS)) list.shift();
      this.#count -= before - list.length;
      if (list.length === 0) this.#entries.delete(key);
      if (!all) continue;
    }
  }
}

function errorText(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split("\n")[0];
}

function delays(config: BridgeConfig): () => number {
  const r = config.restartTimeoutS ?? [5, 30];
  if (!Array.isArray(r)) return () => r * 1000;
  const [base, cap] = r;
  let previous = base;
  const next = () => {
    // Decorrelated jitter, as mosquitto's restart_timeout BASE CAP.
    previous = Math.min(cap, base + Math.random() * (previous * 3 - base));
    return previous * 1000;
  };
  (next as { reset?: () => void }).reset = () => previous = base;
  return next;
}

class Bridge implements RunningBridge {
  readonly name: string;
  #config: BridgeConfig;
  #broker: Broker;
  #log: Logger;
  #stunnel: string | undefined;
  #remote!: mqtt.MqttClient;
  #localOut!: mqtt.MqttClient;
  #localIn!: mqtt.MqttClient;
  #psk: PskClient | undefined;
  #closed = false;
  #attempt = 0;
  #addressIndex = 0;
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  #nextDelay: () => number;
  #private: boolean;
  #fallbackNow = false;
  #remoteEchoes = new EchoFilter();
  #localEchoes = new EchoFilter();
  #waiters: (() => void)[] = [];
  #readyWaiters: (() => void)[] = [];
  #localSubscribed = false;
  #remoteSubscribed = false;
  #stats: BridgeStats = {
    connected: false,
    messagesOut: 0,
    messagesIn: 0,
    droppedOffline: 0,
    echoesDropped: 0,
    connects: 0,
    asBridge: false,
  };
  #clientId: string;
  #notificationTopic: string;
  #v5: boolean;

  constructor(broker: Broker, config: BridgeConfig, log: Logger, stunnel?: string) {
    this.name = config.name;
    this.#config = config;
    this.#broker = broker;
    this.#log = log;
    this.#stunnel = stunnel;
    this.#nextDelay = delays(config);
    this.#private = config.protocolVersion !== "mqttv50" && (config.tryPrivate ?? true);
    this.#clientId = config.clientId ?? `denomq.${config.name}`;
    this.#notificationTopic = config.notificationTopic ??
      `$SYS/broker/connection/${this.#clientId}/state`;
    this.#v5 = config.protocolVersion === "mqttv50";
  }

  stats(): BridgeStats {
    return { ...this.#stats, asBridge: this.#private };
  }

  connected(): Promise<void> {
    if (this.#ready()) return Promise.resolve();
    return new Promise((resolve) => this.#readyWaiters.push(resolve));
  }

  #ready(): boolean {
    return this.#stats.connected && this.#localSubscribed && this.#remoteSubscribed;
  }

  #checkReady(): void {
    if (this.#ready()) { for (const wake of this.#readyWaiters.splice(0)) wake(); }
  }

  async start(): Promise<void> {
    const c = this.#config;
    if (c.psk !== undefined) {
      this.#psk = await startPskClient({
        identity: c.psk.identity,
        key: c.psk.key,
        addresses: c.addresses,
        stunnel: this.#stunnel,
        log: (level, message) => this.#log[level](`bridge ${this.name}: stunnel: ${message}`),
      });
    }
    const localId = c.localClientId ?? `local.${this.#clientId}`;
    const local = (id: string, clean: boolean) =>
      withBridgeFlag(
        new MqttClient(() => {
          const pair = memoryPair({ hostname: "bridge", port: 0, transport: BRIDGE_TRANSPORT });
          this.#broker.handle(pair.conn, BRIDGE_TRANSPORT, `bridge:${this.name}`);
          return pair.stream;
        }, {
          clientId: id,
          clean,
          protocolVersion: 4,
          // An in-memory link cannot die silently; and while the remote is away this client holds
          // its next packet on purpose, so it could not answer pings anyway.
          keepalive: 0,
          reconnectPeriod: 1000,
          username: c.localUsername,
          password: c.localPassword,
          resubscribe: false,
          timerVariant: "native",
          // Connected at once below, once the CONNECT writer is wrapped.
          manualConnect: true,
        }),
        () => true,
      ).connect();
    if (c.notifications !== false) {
      await this.#broker.publish({
        topic: this.#notificationTopic,
        payload: "0",
        qos: 1,
        retain: true,
      })
        .catch((error) => this.#log.warn(`bridge ${this.name}: notification: ${errorText(error)}`));
    }
    this.#localIn = local(`${localId}.in`, true);
    this.#localIn.on(
      "error",
      (e) => this.#log.warn(`bridge ${this.name}: local in: ${errorText(e)}`),
    );
    this.#localOut = local(localId, c.localCleanSession ?? false);
    this.#localOut.on(
      "error",
      (e) => this.#log.warn(`bridge ${this.name}: local out: ${errorText(e)}`),
    );
    const outTopics = c.topics.filter((t) => t.direction !== "in");
    this.#localOut.handleMessage = (packet, callback) => {
      this.#outgoing(packet).then(() => callback(), (error) => {
        // Only when closing: leave it unacknowledged, the session keeps it.
        if (!this.#closed) this.#log.error(`bridge ${this.name}: ${errorText(error)}`);
      });
    };
    // Subscribed at every connect, as mosquitto does: a stored session may hold the topics of an
    // older configuration (messages on topics no longer configured are acknowledged and dropped).
    this.#localOut.on("connect", () => {
      if (outTopics.length === 0) {
        this.#localSubscribed = true;
        return this.#checkReady();
      }
      this.#localOut.subscribe(
        Object.fromEntries(outTopics.map((t) => [localFilter(t), { qos: t.qos }])),
        (error) => {
          if (error) this.#log.error(`bridge ${this.name}: local subscribe: ${errorText(error)}`);
          else {
            this.#localSubscribed = true;
            this.#checkReady();
          }
        },
      );
    });
    this.#remote = this.#connectRemote();
  }

  #streamBuilder = () => {
    const c = this.#config;
    if (this.#psk !== undefined) {
      const port = this.#psk.port;
      return duplexOver(
        Deno.connect({ hostname: "127.0.0.1", port }),
        (error) => this.#log.warn(`bridge ${this.name}: stunnel: ${errorText(error)}`),
      );
    }
    const address = c.addresses[this.#addressIndex % c.addresses.length];
    this.#log.debug(`bridge ${this.name}: connecting to ${address.host}:${address.port}`);
    // MQTT.js passes on only stream errors that carry a code: say every one here.
    const onError = (error: Error) =>
      this.#log.warn(`bridge ${this.name}: ${address.host}:${address.port}: ${errorText(error)}`);
    if (c.tls === undefined) {
      return duplexOver(Deno.connect({ hostname: address.host, port: address.port }), onError);
    }
    const tls = c.tls;
    return duplexOver(
      Promise.resolve().then(async () => {
        const read = (path: string | undefined) =>
          path === undefined ? undefined : Deno.readTextFile(path);
        const [ca, cert, key] = await Promise.all([
          read(tls.caFile),
          read(tls.certFile),
          read(tls.keyFile),
        ]);
        return await Deno.connectTls({
          hostname: address.host,
          port: address.port,
          caCerts: ca === undefined ? undefined : [ca],
          ...(cert !== undefined && key !== undefined ? { cert, key } : {}),
          alpnProtocols: tls.alpn === undefined ? undefined : [tls.alpn],
        });
      }),
      onError,
    );
  };

  #connectRemote(): mqtt.MqttClient {
    const c = this.#config;
    const notifications = c.notifications !== false && c.notificationsLocalOnly !== true;
    const remote = new MqttClient(this.#streamBuilder, {
      clientId: this.#clientId,
      clean: c.cleanSession ?? false,
      protocolVersion: this.#v5 ? 5 : 4,
      keepalive: c.keepAliveS ?? 60,
      // Reconnects are ours: backoff, address failover.
      reconnectPeriod: 0,
      // Connected below, once the CONNECT writer is wrapped.
      manualConnect: true,
      connectTimeout: 30_000,
      username: c.remoteUsername,
      password: c.remotePassword,
      resubscribe: false,
      timerVariant: "native",
      will: notifications
        ? { topic: this.#notificationTopic, payload: Buffer.from("0"), qos: 1, retain: true }
        : undefined,
    });
    // mosquitto's try_private; with MQTT 5, No Local on the subscriptions instead.
    withBridgeFlag(remote, () => this.#private);
    const inTopics = c.topics.filter((t) => t.direction !== "out");
    remote.handleMessage = (packet, callback) => {
      this.#incoming(packet).then(() => callback(), (error) => {
        if (!this.#closed) this.#log.error(`bridge ${this.name}: ${errorText(error)}`);
      });
    };
    remote.on("connect", () => {
      const address = c.addresses[this.#addressIndex % c.addresses.length];
      this.#log.info(
        `bridge ${this.name}: connected to ${address.host}:${address.port}` +
          (this.#private ? " (as a bridge)" : ""),
      );
      this.#attempt = 0;
      (this.#nextDelay as { reset?: () => void }).reset?.();
      if (!(c.roundRobin ?? false)) this.#addressIndex = 0;
      this.#stats.connected = true;
      this.#stats.connects++;
      if (inTopics.length > 0) {
        const subscriptions = Object.fromEntries(inTopics.map((t) => [
          remoteFilter(t),
          this.#v5 ? { qos: t.qos, nl: true, rap: true } : { qos: t.qos },
        ]));
        remote.subscribe(subscriptions, (error) => {
          if (error) this.#log.error(`bridge ${this.name}: remote subscribe: ${errorText(error)}`);
          else {
            this.#remoteSubscribed = true;
            this.#checkReady();
          }
        });
      } else {
        this.#remoteSubscribed = true;
      }
      if (notifications) {
        remote.publish(this.#notificationTopic, "1", { qos: 1, retain: true });
      }
      if (c.notifications !== false) this.#notifyLocal("1");
      for (const wake of this.#waiters.splice(0)) wake();
      this.#checkReady();
    });
    remote.on("error", (error) => {
      const code = (error as { code?: number }).code;
      // A remote that does not know the bridge flag refuses the protocol level: go without it.
      if (this.#private && (code === 1 || code === 132)) {
        this.#log.info(`bridge ${this.name}: the remote refused try_private; going on without it`);
        this.#private = false;
        this.#fallbackNow = true;
        return;
      }
      // Stream errors are logged by the stream (above); here the rest (CONNACK refusals...).
      if (typeof code === "number" || code === undefined) {
        this.#log.warn(`bridge ${this.name}: ${errorText(error)}`);
      }
    });
    remote.on("close", () => {
      this.#remoteSubscribed = false;
      if (this.#stats.connected) {
        this.#stats.connected = false;
        this.#log.warn(`bridge ${this.name}: connection to the remote lost`);
        if (c.notifications !== false) this.#notifyLocal("0");
      }
      this.#scheduleReconnect(remote);
    });
    remote.connect();
    return remote;
  }

  #scheduleReconnect(remote: mqtt.MqttClient): void {
    if (this.#closed || this.#reconnectTimer !== undefined) return;
    const immediate = this.#fallbackNow || (this.#attempt === 0 && this.#stats.connects > 0);
    this.#fallbackNow = false;
    const delay = immediate ? 0 : this.#nextDelay();
    this.#attempt++;
    this.#addressIndex++;
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      if (this.#closed) return;
      remote.reconnect();
    }, delay);
  }

  #notifyLocal(state: string): void {
    this.#broker.publish({ topic: this.#notificationTopic, payload: state, qos: 1, retain: true })
      .catch((error) => this.#log.warn(`bridge ${this.name}: notification: ${errorText(error)}`));
  }

  /** Waits for the remote connection; rejects when the bridge closes. */
  #remoteUp(): Promise<void> {
    if (this.#closed) return Promise.reject(new Error("bridge closed"));
    if (this.#stats.connected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.#waiters.push(() => this.#closed ? reject(new Error("bridge closed")) : resolve());
    });
  }

  async #outgoing(packet: mqtt.IPublishPacket): Promise<void> {
    const payload = packet.payload as Uint8Array;
    if (this.#localEchoes.take(EchoFilter.key(packet.topic, payload))) {
      this.#stats.echoesDropped++;
      return;
    }
    const mapped = mapOutgoing(this.#config.topics, packet.topic);
    if (mapped === undefined) return;
    const qos = Math.min(packet.qos, mapped.qos) as QoS;
    const retain = (this.#config.outgoingRetain ?? true) && packet.retain;
    if (qos === 0 && !this.#stats.connected) {
      this.#stats.droppedOffline++;
      return;
    }
    // Without the bridge flag and without No Local, the remote sends our own message back.
    const echoes = !this.#private && !this.#v5 &&
      mapIncoming(this.#config.topics, mapped.topic) !== undefined;
    for (;;) {
      await this.#remoteUp();
      const remote = this.#remote;
      if (echoes) this.#remoteEchoes.expect(EchoFilter.key(mapped.topic, payload));
      try {
        await remote.publishAsync(mapped.topic, Buffer.from(payload), { qos, retain });
        this.#stats.messagesOut++;
        return;
      } catch (error) {
        if (this.#closed) throw error;
        // The connection went away before the ack and the client gave the message up: resend.
        if (echoes) this.#remoteEchoes.take(EchoFilter.key(mapped.topic, payload));
        if (qos === 0) {
          this.#stats.droppedOffline++;
          return;
        }
      }
    }
  }

  async #incoming(packet: mqtt.IPublishPacket): Promise<void> {
    const payload = packet.payload as Uint8Array;
    if (this.#remoteEchoes.take(EchoFilter.key(packet.topic, payload))) {
      this.#stats.echoesDropped++;
      return;
    }
    const mapped = mapIncoming(this.#config.topics, packet.topic);
    if (mapped === undefined) return;
    const qos = Math.min(packet.qos, mapped.qos) as QoS;
    // This broker delivers the message to the bridge's own outgoing session too: drop that echo.
    const echo = mapOutgoing(this.#config.topics, mapped.topic) !== undefined;
    const key = EchoFilter.key(mapped.topic, payload);
    if (echo) this.#localEchoes.expect(key);
    try {
      await this.#localIn.publishAsync(mapped.topic, Buffer.from(payload), {
        qos,
        retain: packet.retain,
      });
      this.#stats.messagesIn++;
    } catch (error) {
      if (echo) this.#localEchoes.take(key);
      throw error;
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#reconnectTimer);
    for (const wake of this.#waiters.splice(0)) wake();
    for (const wake of this.#readyWaiters.splice(0)) wake();
    const c = this.#config;
    if (
      this.#stats.connected && c.notifications !== false && c.notificationsLocalOnly !== true
    ) {
      await this.#remote.publishAsync(this.#notificationTopic, "0", { qos: 1, retain: true })
        .catch(() => {});
    }
    await Promise.all([
      this.#remote?.endAsync(true),
      this.#localOut?.endAsync(true),
      this.#localIn?.endAsync(true),
    ].map((p) => p?.catch(() => {})));
    await this.#psk?.stop();
  }
}

/**
 * Starts bridges on a broker. Needs `--allow-net` to the remotes, `--allow-read` of TLS files,
 * and for TLS-PSK `--allow-run` of stunnel and `--allow-write` of the temporary directory.
 *
 * @example
 * ```ts ignore
 * import { Broker } from "../../mod.ts";
 * import { startBridges } from "./start.ts";
 *
 * const broker = new Broker();
 * const bridges = await startBridges(broker, [{
 *   name: "central",
 *   addresses: [{ host: "broker.example", port: 1883 }],
 *   topics: [{ pattern: "#", direction: "both", qos: 1, localPrefix: "", remotePrefix: "gw1/" }],
 * }]);
 * // ...
 * await bridges.close();
 * ```
 *
 * @throws {TypeError} for a bad bridge (see `checkBridge`).
 */
export async function startBridges(
  broker: Broker,
  configs: readonly BridgeConfig[],
  options: StartBridgesOptions = {},
): Promise<RunningBridges> {
  for (const c of configs) checkBridge(c);
  const log = options.log ?? createLogger("info");
  const bridges: Bridge[] = [];
  try {
    for (const c of configs) {
      const bridge = new Bridge(broker, c, log, options.stunnel);
      bridges.push(bridge);
      await bridge.start();
    }
  } catch (error) {
    await Promise.all(bridges.map((b) => b.close()));
    throw error;
  }
  return {
    bridges,
    close: async () => {
      await Promise.all(bridges.map((b) => b.close()));
    },
  };
}
