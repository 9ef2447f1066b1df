/**
 * Bridges against real remotes: mosquitto (plain, TLS with openssl-made certificates, TLS-PSK
 * through stunnel) and another of our brokers. Topics out, in and both with prefixes, QoS, no
 * loops, notifications, 50 QoS 1 messages kept through an outage of the remote and delivered in
 * order, the queue kept across a restart of the local broker (--data-dir), and the CLI with
 * `--allow-net --allow-read` only.
 */
import assert from "node:assert/strict";
import type mqtt from "npm:mqtt@5.16.0";
import { Broker, type BrokerOptions } from "../mod.ts";
import { createLogger } from "../src/logger.ts";
import { SqlitePersistence } from "../src/persistence/sqlite.ts";
import type { BridgeConfig } from "../src/bridge/bridge_config.ts";
import { type RunningBridges, startBridges } from "../src/bridge/bridge.ts";
import { collect, connectMqtt } from "./_mqttjs.ts";
import { HAVE_MOSQUITTO, startOurs } from "./_conf_brokers.ts";
import { freePort, isListening, spawn, type Spawned, waitFor, which } from "./_util.ts";
import { makeCertificates } from "./_security.ts";

const HAVE_STUNNEL = which("stunnel") !== undefined;
const HAVE_OPENSSL = which("openssl") !== undefined;
const silent = createLogger("silent");

/** A remote mosquitto on a fixed port that can be stopped and started again. */
class RemoteMosquitto {
  #process: Spawned | undefined;
  constructor(readonly dir: string, readonly port: number, readonly lines: string[] = []) {}

  async start(): Promise<void> {
    const file = `${this.dir}/remote.conf`;
    await Deno.writeTextFile(
      file,
      [
        "user root",
        "persistence true",
        `persistence_location ${this.dir}/`,
        `listener ${this.port} 127.0.0.1`,
        "allow_anonymous true",
        ...this.lines,
      ].join("\n") + "\n",
    );
    this.#process = spawn("mosquitto", ["-c", file], { deadlineMs: 300_000 });
    const p = this.#process;
    let exited = false;
    p.finished.then(() => exited = true);
    await waitFor(
      async () => {
        if (exited) throw new Error(`mosquitto exited: ${p.stderr()}`);
        return await isListening(this.port);
      },
      20_000,
      "remote mosquitto",
    );
  }

  async stop(): Promise<void> {
    this.#process?.kill("SIGTERM");
    await this.#process?.finished;
    this.#process = undefined;
  }
}

/** The remote side as seen by a test: publish there, watch there. */
interface Remote {
  port: number;
  stop(): Promise<void>;
  start(): Promise<void>;
}

async function withRemote(
  kind: "mosquitto" | "ours",
  fn: (remote: Remote, dir: string) => Promise<void>,
  lines: string[] = [],
  ours: Omit<BrokerOptions, "persistence" | "logLevel"> = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "denomq-bridge-" });
  const port = freePort();
  let remote: Remote;
  if (kind === "mosquitto") {
    const m = new RemoteMosquitto(dir, port, lines);
    remote = { port, start: () => m.start(), stop: () => m.stop() };
  } else {
    let broker: Broker | undefined;
    remote = {
      port,
      async start() {
        broker = new Broker({
          ...ours,
          logLevel: "silent",
          persistence: new SqlitePersistence({ dir: `${dir}/remote` }),
        });
        await broker.listen({ hostname: "127.0.0.1", port });
      },
      async stop() {
        await broker?.close();
        broker = undefined;
      },
    };
  }
  await remote.start();
  try {
    await fn(remote, dir);
  } finally {
    await remote.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

interface Seen {
  topic: string;
  payload: string;
  qos: number;
}

function watch(client: mqtt.MqttClient): Seen[] {
  const seen: Seen[] = [];
  client.on("message", (topic, payload, packet) => {
    seen.push({ topic, payload: payload.toString(), qos: packet.qos });
  });
  return seen;
}

function count(seen: Seen[], topic: string, payload?: string): number {
  return seen.filter((s) => s.topic === topic && (payload === undefined || s.payload === payload))
    .length;
}

async function localBroker(persistenceDir?: string): Promise<[Broker, number]> {
  const broker = new Broker({
    logLevel: "silent",
    persistence: persistenceDir === undefined
      ? undefined
      : new SqlitePersistence({ dir: persistenceDir }),
  });
  const { port } = await broker.listen({ hostname: "127.0.0.1", port: 0 });
  return [broker, port];
}

function bridgeTo(port: number, extra: Partial<BridgeConfig> = {}): BridgeConfig {
  return {
    name: "up",
    clientId: "gw1",
    addresses: [{ host: "127.0.0.1", port }],
    restartTimeoutS: 0.2,
    topics: [
      { pattern: "#", direction: "out", qos: 1, localPrefix: "gw/out/", remotePrefix: "site/gw/" },
      { pattern: "#", direction: "in", qos: 1, localPrefix: "gw/cmd/", remotePrefix: "site/cmd/" },
      { pattern: "shared/#", direction: "both", qos: 1, localPrefix: "", remotePrefix: "" },
    ],
    ...extra,
  };
}

/** Topics out, in and both with prefixes; QoS; no loop; notifications. */
async function flows(
  remotePort: number,
  remoteKind: string,
  extra: Partial<BridgeConfig> = {},
): Promise<void> {
  const [broker, localPort] = await localBroker();
  let bridges: RunningBridges | undefined;
  const clients: mqtt.MqttClient[] = [];
  const v5 = extra.protocolVersion === "mqttv50";
  try {
    bridges = await startBridges(broker, [bridgeTo(remotePort, extra)], { log: silent });
    const bridge = bridges.bridges[0];
    await bridge.connected();
    const localSub = await connectMqtt(localPort, { clientId: "lsub" });
    const localPub = await connectMqtt(localPort, { clientId: "lpub" });
    const remoteSub = await connectMqtt(remotePort, { clientId: "rsub" });
    const remotePub = await connectMqtt(remotePort, { clientId: "rpub" });
    clients.push(localSub, localPub, remoteSub, remotePub);
    const atLocal = watch(localSub);
    const atRemote = watch(remoteSub);
    await localSub.subscribeAsync(["#", "$SYS/broker/connection/#"], { qos: 1 });
    await remoteSub.subscribeAsync(["#", "$SYS/broker/connection/#"], { qos: 1 });
    // Notifications: retained "1" locally (and at a remote that takes $SYS from a bridge).
    const state = "$SYS/broker/connection/gw1/state";
    await waitFor(() => count(atLocal, state, "1") === 1, 10_000, "local state 1");
    if (remoteKind === "mosquitto") {
      await waitFor(() => count(atRemote, state, "1") === 1, 10_000, "remote state 1");
    }
    await localPub.publishAsync("gw/out/temp", "21", { qos: 1 });
    await remotePub.publishAsync("site/cmd/reboot", "now", { qos: 1 });
    await localPub.publishAsync("shared/a", "from-local", { qos: 1 });
    await remotePub.publishAsync("shared/b", "from-remote", { qos: 1 });
    // Two rounds of markers: an echo loop would have sent its copies by then.
    for (const round of ["1", "2"]) {
      await localPub.publishAsync("gw/out/end", round, { qos: 1 });
      await remotePub.publishAsync("site/cmd/end", round, { qos: 1 });
      await waitFor(
        () => count(atRemote, "site/gw/end", round) === 1,
        10_000,
        `remote end ${round}`,
      );
      await waitFor(() => count(atLocal, "gw/cmd/end", round) === 1, 10_000, `local end ${round}`);
    }
    assert.deepEqual(atRemote.filter((s) => s.topic === "site/gw/temp"), [
      { topic: "site/gw/temp", payload: "21", qos: 1 },
    ]);
    assert.deepEqual(atLocal.filter((s) => s.topic === "gw/cmd/reboot"), [
      { topic: "gw/cmd/reboot", payload: "now", qos: 1 },
    ]);
    assert.equal(count(atRemote, "gw/out/temp"), 0, "the local prefix does not reach the remote");
    // Exactly once on each side: no loop.
    assert.equal(count(atRemote, "shared/a"), 1, "shared/a at the remote");
    assert.equal(count(atLocal, "shared/a"), 1, "shared/a locally");
    assert.equal(count(atRemote, "shared/b"), 1, "shared/b at the remote");
    assert.equal(count(atLocal, "shared/b"), 1, "shared/b locally");
    assert.equal(count(atLocal, "gw/cmd/end"), 2);
    assert.equal(count(atRemote, "site/gw/end"), 2);
    const stats = bridge.stats();
    assert.equal(stats.connected, true);
    assert.ok(stats.echoesDropped >= 1, "the local echo of shared/b was dropped");
    // mosquitto and ours take try_private and send nothing back (only the local echo of shared/b
    // is dropped); a remote that refuses it (CONNACK 0x01), the bridge goes on without and drops
    // the remote's echo of shared/a itself. With MQTT 5, No Local at the remote does the same.
    const refusing = remoteKind === "ours refusing the bridge flag";
    assert.equal(stats.asBridge, !v5 && !refusing);
    assert.equal(stats.echoesDropped, refusing ? 2 : 1);
  } finally {
    await Promise.all(clients.map((c) => c.endAsync()));
    await bridges?.close();
    await broker.close();
  }
}

Deno.test({
  name: "bridge to mosquitto: topics out, in and both with prefixes, QoS 1, no loop, state 1",
  ignore: !HAVE_MOSQUITTO,
  async fn() {
    await withRemote("mosquitto", (remote) => flows(remote.port, "mosquitto"));
  },
});

Deno.test({
  name: "bridge to mosquitto with bridge_protocol_version mqttv50: No Local, no loop",
  ignore: !HAVE_MOSQUITTO,
  async fn() {
    await withRemote(
      "mosquitto",
      (remote) => flows(remote.port, "mosquitto", { protocolVersion: "mqttv50" }),
    );
  },
});

Deno.test({
  name: "bridge to another of ours: try_private taken (No Local at the remote): no loop",
  async fn() {
    await withRemote("ours", (remote) => flows(remote.port, "ours"));
  },
});

Deno.test({
  name: "bridge to a remote that refuses try_private: retried without, echoes dropped: no loop",
  async fn() {
    // CONNACK 0x01 for the bridge flag, as brokers without it (and ours before it) answer.
    const authenticate = (request: { bridge?: boolean }) => request.bridge === true ? 0x01 : true;
    await withRemote(
      "ours",
      (remote) => flows(remote.port, "ours refusing the bridge flag"),
      [],
      { authenticate },
    );
  },
});

/**
 * A live retained message published here on an `out` topic reaches the remote retained: the
 * bridge's session here carries the bridge flag, so it gets Retain As Published.
 */
async function liveRetained(remotePort: number): Promise<void> {
  const [broker, localPort] = await localBroker();
  let bridges: RunningBridges | undefined;
  const clients: mqtt.MqttClient[] = [];
  try {
    bridges = await startBridges(broker, [bridgeTo(remotePort)], { log: silent });
    await bridges.bridges[0].connected();
    const before = await connectMqtt(remotePort, { clientId: "rbefore" });
    clients.push(before);
    const live = watch(before);
    await before.subscribeAsync("site/gw/#", { qos: 1 });
    const pub = await connectMqtt(localPort, { clientId: "lpub" });
    clients.push(pub);
    await pub.publishAsync("gw/out/r", "kept", { qos: 1, retain: true });
    await waitFor(() => count(live, "site/gw/r", "kept") === 1, 10_000, "live at the remote");
    // Stored there as retained: a new subscriber gets it with retain 1.
    const after = await connectMqtt(remotePort, { clientId: "rafter" });
    clients.push(after);
    const got = collect(after);
    await after.subscribeAsync("site/gw/r", { qos: 1 });
    await waitFor(() => got.length === 1, 10_000, "retained at the remote");
    assert.deepEqual(got, [{ topic: "site/gw/r", payload: "kept", qos: 1, retain: true }]);
  } finally {
    await Promise.all(clients.map((c) => c.endAsync()));
    await bridges?.close();
    await broker.close();
  }
}

Deno.test({
  name: "bridge to another of ours: a live retained message goes out retained",
  async fn() {
    await withRemote("ours", (remote) => liveRetained(remote.port));
  },
});

Deno.test({
  name: "bridge to mosquitto: a live retained message goes out retained",
  ignore: !HAVE_MOSQUITTO,
  async fn() {
    await withRemote("mosquitto", (remote) => liveRetained(remote.port));
  },
});

/** 50 QoS 1 messages published while the remote is away arrive in order once it is back. */
async function outage(remote: Remote, localDir: string | undefined, restartLocal: boolean) {
  let [broker, localPort] = await localBroker(localDir);
  let bridges: RunningBridges | undefined;
  const clients: mqtt.MqttClient[] = [];
  try {
    const config = bridgeTo(remote.port, {
      topics: [{
        pattern: "#",
        direction: "out",
        qos: 1,
        localPrefix: "data/",
        remotePrefix: "site/",
      }],
    });
    bridges = await startBridges(broker, [config], { log: silent });
    await bridges.bridges[0].connected();
    // A persistent subscriber at the remote, so the remote keeps what arrives while it is away.
    const first = await connectMqtt(remote.port, { clientId: "rsub", clean: false });
    await first.subscribeAsync("site/#", { qos: 1 });
    await first.endAsync();
    await remote.stop();
    await waitFor(() => !bridges!.bridges[0].stats().connected, 10_000, "bridge offline");
    const pub = await connectMqtt(localPort, { clientId: "lpub" });
    for (let i = 0; i < 50; i++) await pub.publishAsync(`data/n`, String(i), { qos: 1 });
    await pub.endAsync();
    if (restartLocal) {
      await bridges.close();
      await broker.close();
      [broker, localPort] = await localBroker(localDir);
      bridges = await startBridges(broker, [config], { log: silent });
    }
    await remote.start();
    const sub = await connectMqtt(remote.port, { clientId: "rsub", clean: false });
    clients.push(sub);
    const seen = watch(sub);
    await waitFor(() => seen.length >= 50, 30_000, "50 messages at the remote");
    await bridges.bridges[0].connected();
    assert.deepEqual(
      seen.map((s) => s.payload),
      Array.from({ length: 50 }, (_, i) => String(i)),
      "in order, once each",
    );
    assert.ok(seen.every((s) => s.topic === "site/n" && s.qos === 1));
  } finally {
    await Promise.all(clients.map((c) => c.endAsync()));
    await bridges?.close();
    await broker.close();
  }
}

Deno.test({
  name: "bridge to mosquitto: 50 QoS 1 messages kept through an outage and delivered in order",
  ignore: !HAVE_MOSQUITTO,
  async fn() {
    await withRemote("mosquitto", (remote) => outage(remote, undefined, false));
  },
});

Deno.test({
  name: "bridge to another of ours: 50 QoS 1 messages kept through an outage, in order",
  async fn() {
    await withRemote("ours", (remote) => outage(remote, undefined, false));
  },
});

Deno.test({
  name: "bridge with a store: the queue for the remote survives a restart of the local broker",
  ignore: !HAVE_MOSQUITTO,
  async fn() {
    await withRemote("mosquitto", (remote, dir) => outage(remote, `${dir}/local`, true));
  },
});

async function oneWay(config: BridgeConfig, remotePort: number): Promise<void> {
  const [broker, localPort] = await localBroker();
  let bridges: RunningBridges | undefined;
  const clients: mqtt.MqttClient[] = [];
  try {
    bridges = await startBridges(broker, [config], { log: silent });
    await bridges.bridges[0].connected();
    const sub = await connectMqtt(remotePort, { clientId: "rsub" });
    const pub = await connectMqtt(localPort, { clientId: "lpub" });
    clients.push(sub, pub);
    const seen = watch(sub);
    await sub.subscribeAsync("site/#", { qos: 1 });
    await pub.publishAsync("data/x", "secret-channel", { qos: 1 });
    await waitFor(() => count(seen, "site/x", "secret-channel") === 1, 10_000, "site/x");
  } finally {
    await Promise.all(clients.map((c) => c.endAsync()));
    await bridges?.close();
    await broker.close();
  }
}

Deno.test({
  name: "bridge over TLS to mosquitto, its certificate checked against bridge_cafile (openssl)",
  ignore: !HAVE_MOSQUITTO || !HAVE_OPENSSL,
  async fn() {
    const certs = await Deno.makeTempDir({ prefix: "denomq-bridge-tls-" });
    try {
      await makeCertificates(certs);
      const tlsPort = freePort();
      await withRemote("mosquitto", async (remote) => {
        await oneWay(
          bridgeTo(tlsPort, {
            tls: { caFile: `${certs}/ca.pem` },
            topics: [{
              pattern: "#",
              direction: "out",
              qos: 1,
              localPrefix: "data/",
              remotePrefix: "site/",
            }],
          }),
          remote.port,
        );
      }, [
        `listener ${tlsPort} 127.0.0.1`,
        `certfile ${certs}/cert.pem`,
        `keyfile ${certs}/key.pem`,
      ]);
    } finally {
      await Deno.remove(certs, { recursive: true });
    }
  },
});

Deno.test({
  name: "bridge over TLS: a remote certificate from an unknown CA is refused (no bridge_cafile)",
  ignore: !HAVE_MOSQUITTO || !HAVE_OPENSSL,
  async fn() {
    const certs = await Deno.makeTempDir({ prefix: "denomq-bridge-tls-" });
    try {
      await makeCertificates(certs);
      const tlsPort = freePort();
      await withRemote("mosquitto", async () => {
        const broker = new Broker({ logLevel: "silent" });
        const lines: string[] = [];
        const log = createLogger("info", (_level, message) => lines.push(message));
        const bridges = await startBridges(broker, [bridgeTo(tlsPort, { tls: {} })], { log });
        try {
          await waitFor(
            () => lines.some((l) => /certificate|UnknownIssuer/i.test(l)),
            15_000,
            "a certificate error",
          );
          assert.equal(bridges.bridges[0].stats().connects, 0);
        } finally {
          await bridges.close();
          await broker.close();
        }
      }, [
        `listener ${tlsPort} 127.0.0.1`,
        `certfile ${certs}/cert.pem`,
        `keyfile ${certs}/key.pem`,
      ]);
    } finally {
      await Deno.remove(certs, { recursive: true });
    }
  },
});

Deno.test({
  name: "bridge over TLS-PSK to mosquitto through stunnel in client mode",
  ignore: !HAVE_MOSQUITTO || !HAVE_STUNNEL,
  async fn() {
    const keys = await Deno.makeTempDir({ prefix: "denomq-bridge-psk-" });
    try {
      const key = "00112233445566778899aabbccddeeff";
      await Deno.writeTextFile(`${keys}/psk`, `gw1-id:${key}\n`);
      const pskPort = freePort();
      await withRemote("mosquitto", async (remote) => {
        await oneWay(
          bridgeTo(pskPort, {
            psk: { identity: "gw1-id", key },
            topics: [{
              pattern: "#",
              direction: "out",
              qos: 1,
              localPrefix: "data/",
              remotePrefix: "site/",
            }],
          }),
          remote.port,
        );
      }, [`listener ${pskPort} 127.0.0.1`, "psk_hint denomq", `psk_file ${keys}/psk`]);
    } finally {
      await Deno.remove(keys, { recursive: true });
    }
  },
});

Deno.test({
  name: "cli: --mosquitto-conf with a connection section, --allow-net --allow-read only",
  ignore: !HAVE_MOSQUITTO,
  async fn() {
    await withRemote("mosquitto", async (remote, dir) => {
      const local = freePort();
      const file = `${dir}/local.conf`;
      await Deno.writeTextFile(
        file,
        [
          `listener ${local} 127.0.0.1`,
          "allow_anonymous true",
          "sys_interval 0",
          "connection central",
          `address 127.0.0.1:${remote.port}`,
          "clientid gw-cli",
          "restart_timeout 1",
          "topic # both 1 gw/ site/",
        ].join("\n") + "\n",
      );
      await using ours = await startOurs(file, [local], ["--allow-net", "--allow-read"]);
      await ours.process.waitForOutput("stderr", "bridge central: connected", 20_000);
      const sub = await connectMqtt(remote.port, { clientId: "rsub" });
      const seen = watch(sub);
      await sub.subscribeAsync("site/#", { qos: 1 });
      const pub = await connectMqtt(local, { clientId: "lpub" });
      await pub.publishAsync("gw/hello", "world", { qos: 1 });
      await waitFor(() => count(seen, "site/hello", "world") === 1, 10_000, "site/hello");
      await Promise.all([sub.endAsync(), pub.endAsync()]);
      await ours.stop();
      assert.doesNotMatch(ours.process.stderr(), /error/i, ours.process.stderr());
    });
  },
});

Deno.test("bridge address failover: the first address is down, the second one is used", async () => {
  await withRemote("ours", async (remote) => {
    const down = freePort();
    await oneWay(
      bridgeTo(down, {
        addresses: [{ host: "127.0.0.1", port: down }, { host: "127.0.0.1", port: remote.port }],
        topics: [{
          pattern: "#",
          direction: "out",
          qos: 1,
          localPrefix: "data/",
          remotePrefix: "site/",
        }],
      }),
      remote.port,
    );
  });
});

Deno.test("bridge: the outage queue is the session's, bounded by maxQueued and counted when full", async () => {
  await withRemote("ours", async (remote) => {
    const broker = new Broker({ logLevel: "silent", limits: { maxInflight: 1, maxQueued: 5 } });
    const { port: localPort } = await broker.listen({ hostname: "127.0.0.1", port: 0 });
    let bridges: RunningBridges | undefined;
    const clients: mqtt.MqttClient[] = [];
    try {
      const config = bridgeTo(remote.port, {
        topics: [{
          pattern: "#",
          direction: "out",
          qos: 1,
          localPrefix: "data/",
          remotePrefix: "site/",
        }],
      });
      bridges = await startBridges(broker, [config], { log: silent });
      await bridges.bridges[0].connected();
      const first = await connectMqtt(remote.port, { clientId: "rsub", clean: false });
      await first.subscribeAsync("site/#", { qos: 1 });
      await first.endAsync();
      await remote.stop();
      await waitFor(() => !bridges!.bridges[0].stats().connected, 10_000, "bridge offline");
      const pub = await connectMqtt(localPort, { clientId: "lpub" });
      clients.push(pub);
      for (let i = 0; i < 20; i++) await pub.publishAsync("data/n", String(i), { qos: 1 });
      // One held by the bridge (waiting for the remote), five queued, the rest dropped.
      await waitFor(() => broker.stats().dropped.queueFull === 14, 10_000, "14 dropped");
      await remote.start();
      const sub = await connectMqtt(remote.port, { clientId: "rsub", clean: false });
      clients.push(sub);
      const seen = watch(sub);
      await waitFor(() => seen.length >= 6, 20_000, "6 messages at the remote");
      assert.deepEqual(seen.map((s) => s.payload), ["0", "1", "2", "3", "4", "5"]);
    } finally {
      await Promise.all(clients.map((c) => c.endAsync()));
      await bridges?.close();
      await broker.close();
    }
  });
});
