/**
 * Cluster test helpers: a real `nats-server -js` on a free loopback port with a temporary store,
 * broker nodes from `cli.ts` as subprocesses, and npm:mqtt clients that record what they get.
 *
 * @module
 */
// Inline and exactly versioned, like every dependency here (see tests/imports_test.ts).
// deno-lint-ignore no-import-prefix
import mqtt from "npm:mqtt@5.16.0";
import { freePort, spawn, type Spawned, waitFor, which } from "./_util.ts";

const CLI = new URL("../cli.ts", import.meta.url).pathname;
const ROOT = new URL("..", import.meta.url).pathname;
const DENO = Deno.execPath();

/** The nats-server binary, or undefined (the cluster tests are then ignored). */
export const NATS_SERVER: string | undefined = which("nats-server") ??
  (() => {
    try {
      return Deno.statSync("/usr/sbin/nats-server").isFile ? "/usr/sbin/nats-server" : undefined;
    } catch {
      return undefined;
    }
  })();

/** A running nats-server. */
export interface Nats {
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  readonly process: Spawned;
  /** Kills the server; its store directory goes too unless `keepStore`. */
  stop(keepStore?: boolean): Promise<void>;
}

/**
 * Starts `nats-server -js` on a free loopback port with a temporary store directory (or the
 * given port and store, to restart one).
 */
export async function startNats(
  options: { port?: number; dir?: string; extra?: string[]; config?: string } = {},
): Promise<Nats> {
  const dir = options.dir ?? await Deno.makeTempDir({ prefix: "denomq-nats-" });
  const port = options.port ?? freePort();
  const extra = options.extra ?? [];
  const process = spawn(
    NATS_SERVER!,
    options.config !== undefined ? ["-c", options.config] : [
      "-js",
      "-a",
      "127.0.0.1",
      "-p",
      String(port),
      "-sd",
      dir,
      ...extra,
    ],
    { deadlineMs: 180_000 },
  );
  await process.waitForOutput("stderr", "Server is ready", 10_000);
  return {
    port,
    url: `nats://127.0.0.1:${port}`,
    dir,
    process,
    async stop(keepStore = false) {
      process.kill("SIGKILL");
      await process.finished;
      if (!keepStore) await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** A broker node from cli.ts. */
export interface Node {
  readonly name: string;
  readonly port: number;
  readonly process: Spawned;
  stop(signal?: Deno.Signal): Promise<void>;
}

/** Starts `cli.ts --cluster URL --node-name NAME` on a free port; resolves once it listens. */
export async function startNode(
  natsUrl: string,
  name: string,
  extra: string[] = [],
  permissions = ["--allow-net"],
): Promise<Node> {
  const process = spawn(DENO, [
    "run",
    ...permissions,
    CLI,
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    "--sys-interval",
    "0",
    "--cluster",
    natsUrl,
    "--node-name",
    name,
    ...extra,
  ], { cwd: ROOT, deadlineMs: 120_000 });
  await process.waitForOutput("stderr", /listening on tcp 127\.0\.0\.1:\d+/, 30_000);
  const port = Number(process.stderr().match(/listening on tcp 127\.0\.0\.1:(\d+)/)![1]);
  return {
    name,
    port,
    process,
    async stop(signal: Deno.Signal = "SIGTERM") {
      process.kill(signal);
      await process.finished;
    },
  };
}

/** A message as a test checks it. */
export interface Got {
  topic: string;
  payload: string;
  qos: number;
  retain: boolean;
  /** 5.0 PUBLISH properties, when there are any. */
  properties?: Record<string, unknown>;
}

/** An MQTT client with what it received. */
export interface Client {
  readonly mqtt: mqtt.MqttClient;
  readonly messages: Got[];
  readonly sessionPresent: boolean;
  end(): Promise<void>;
}

/** Connects an npm:mqtt 3.1.1 client that does not reconnect; resolves on CONNACK. */
export async function client(port: number, options: mqtt.IClientOptions = {}): Promise<Client> {
  const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    ...options,
  });
  const messages: Got[] = [];
  c.on("message", (topic, payload, packet) => {
    const got: Got = { topic, payload: payload.toString(), qos: packet.qos, retain: packet.retain };
    if (packet.properties !== undefined) got.properties = { ...packet.properties };
    messages.push(got);
  });
  const connack = await new Promise<mqtt.IConnackPacket>((resolve, reject) => {
    c.once("connect", resolve);
    c.once("error", reject);
  });
  c.on("error", () => {});
  return {
    mqtt: c,
    messages,
    sessionPresent: connack.sessionPresent,
    end: () => c.endAsync(true),
  };
}

/** Waits until `c` holds at least `n` messages matching `pred`. */
export function received(
  c: Client,
  n: number,
  pred: (m: Got) => boolean = () => true,
  deadlineMs = 15_000,
): Promise<void> {
  return waitFor(
    () => c.messages.filter(pred).length >= n,
    deadlineMs,
    `${n} messages (have ${c.messages.filter(pred).length})`,
  );
}

/** A cluster: one nats-server and N nodes; disposed in reverse. */
export async function startCluster(names: string[], extra: string[] = []): Promise<{
  nats: Nats;
  nodes: Node[];
  clients: Client[];
  connect(node: Node, options?: mqtt.IClientOptions): Promise<Client>;
  [Symbol.asyncDispose](): Promise<void>;
}> {
  const nats = await startNats();
  const nodes: Node[] = [];
  const clients: Client[] = [];
  try {
    for (const name of names) nodes.push(await startNode(nats.url, name, extra));
  } catch (error) {
    for (const node of nodes) await node.stop("SIGKILL");
    await nats.stop();
    throw error;
  }
  return {
    nats,
    nodes,
    clients,
    async connect(node, options) {
      const c = await client(node.port, options);
      clients.push(c);
      return c;
    },
    async [Symbol.asyncDispose]() {
      for (const c of clients) await c.end().catch(() => {});
      for (const node of nodes) await node.stop().catch(() => {});
      await nats.stop();
    },
  };
}

/** Three nats-servers with JetStream, clustered over routes; `urls` joins them with commas. */
export async function startNatsCluster(): Promise<{
  servers: Nats[];
  urls: string;
  [Symbol.asyncDispose](): Promise<void>;
}> {
  const ports = [freePort(), freePort(), freePort()];
  const routes = [freePort(), freePort(), freePort()];
  const servers: Nats[] = [];
  const starting = ports.map(async (port, i) => {
    const dir = await Deno.makeTempDir({ prefix: "denomq-nats-" });
    const conf = `${dir}/nats.conf`;
    await Deno.writeTextFile(
      conf,
      `server_name: n${i}\nlisten: 127.0.0.1:${port}\njetstream { store_dir: "${dir}/js" }\n` +
        `cluster {\n  name: denomq\n  listen: 127.0.0.1:${routes[i]}\n  routes: [${
          routes.filter((_, j) => j !== i).map((r) => `nats-route://127.0.0.1:${r}`).join(", ")
        }]\n}\n`,
    );
    return await startNats({ port, dir, config: conf });
  });
  for (const s of await Promise.allSettled(starting)) {
    if (s.status === "fulfilled") servers.push(s.value);
  }
  if (servers.length < 3) {
    for (const s of servers) await s.stop();
    throw new Error("a nats-server of the cluster did not start");
  }
  return {
    servers,
    urls: servers.map((s) => s.url).join(","),
    async [Symbol.asyncDispose]() {
      for (const s of servers) await s.stop();
    },
  };
}

/**
 * A message store to share between two connections of one persistent client (as a file would
 * be): ending the first connection does not empty it.
 */
export function clientStore(): mqtt.Store {
  const store = new mqtt.Store();
  store.close = (cb?: () => void) => {
    cb?.();
    return store;
  };
  return store;
}
