/**
 * The NATS side of the cluster in-process, against a real nats-server: the subject mapping as
 * nats-server itself matches it, and shared subscriptions across nodes through a host that
 * records deliveries (the broker's `$share` support comes with MQTT 5.0).
 */
import assert from "node:assert/strict";
// deno-lint-ignore no-import-prefix
import * as nats from "npm:@nats-io/transport-node@3.4.0";
import { startCluster } from "../src/cluster/nats_cluster.ts";
import type { ClusterHost, ClusterLink } from "../src/cluster/link.ts";
import { filterToSubjects, topicToSubject } from "../src/cluster/subject.ts";
import { createLogger } from "../src/logger.ts";
import { Message } from "../src/message.ts";
import { DEFAULT_LIMITS } from "../src/options.ts";
import { matchTopic } from "../src/topic/topic.ts";
import { mulberry32 } from "../src/_test_prng.ts";
import { NATS_SERVER, startNats } from "./_cluster.ts";
import { waitFor } from "./_util.ts";

const ignore = NATS_SERVER === undefined;

Deno.test({
  name: "subject mapping: nats-server's own matching agrees with matchTopic on random pairs",
  ignore,
  async fn() {
    const server = await startNats();
    const nc = await nats.connect({ servers: server.url });
    try {
      const rnd = mulberry32(7);
      const levels = ["a", "", ".", "*", ">", " x", "é", "$", "~"];
      const topic = () =>
        Array.from(
          { length: 1 + Math.floor(rnd() * 3) },
          () => levels[Math.floor(rnd() * levels.length)],
        ).join("/");
      const topics = [...new Set(Array.from({ length: 40 }, topic))];
      const filters = new Set<string>(["#", "+", "+/+", "$/#", "a/#", "/#", "+/#"]);
      for (const t of topics.slice(0, 25)) {
        const parts = t.split("/");
        filters.add(parts.map((p) => rnd() < 0.3 ? "+" : p).join("/"));
        filters.add(parts.slice(0, Math.max(1, parts.length - 1)).join("/") + "/#");
      }
      const got = new Map<string, Set<string>>();
      const subs = [];
      for (const filter of filters) {
        got.set(filter, new Set());
        for (const subject of filterToSubjects("m", filter)) {
          subs.push(nc.subscribe(subject, {
            callback: (_e, msg) => {
              got.get(filter)!.add(msg.string());
            },
          }));
        }
      }
      // Delivered after every earlier message of this connection: the end of the sample.
      const end = nc.subscribe("m.end", { max: 1 });
      await nc.flush();
      for (const t of topics) nc.publish(topicToSubject("m", t), t);
      nc.publish("m.end", "end");
      for await (const _ of end) break;
      let matches = 0;
      for (const filter of filters) {
        const expected = topics.filter((t) => matchTopic(filter, t)).sort();
        matches += expected.length;
        assert.deepEqual(
          [...got.get(filter)!].sort(),
          expected,
          `filter ${JSON.stringify(filter)}`,
        );
      }
      assert.ok(matches > 20, `only ${matches} matches: the sample proves little`);
      for (const s of subs) s.unsubscribe();
    } finally {
      await nc.close();
      await server.stop();
    }
  },
});

function fakeHost(deliveries: string[], name: string): ClusterHost {
  return {
    log: createLogger("warn"),
    limits: DEFAULT_LIMITS,
    deliver: () => {},
    setRetained: () => {},
    release: () => undefined,
    deliverShared: (group, filter, message) => {
      deliveries.push(`${name} ${group} ${filter} ${new TextDecoder().decode(message.payload)}`);
      return true;
    },
  };
}

Deno.test({
  name: "$share across nodes: each message of a group goes to exactly one member node",
  ignore,
  async fn() {
    const server = await startNats();
    const links: ClusterLink[] = [];
    const deliveries: string[] = [];
    try {
      for (const name of ["m1", "m2", "pub"]) {
        links.push(
          await startCluster(
            { servers: [server.url], nodeName: name },
            fakeHost(deliveries, name),
          ),
        );
      }
      const [m1, m2, pub] = links;
      m1.sharedAdded("g", "sh/#");
      m2.sharedAdded("g", "sh/#");
      pub.sharedAdded("g", "sh/#"); // the publishing node is a member too
      m2.sharedAdded("other", "sh/+");
      await Promise.all(links.map((l) => l.settled()));
      const N = 100;
      const enc = new TextEncoder();
      for (let i = 0; i < N; i++) {
        pub.forward(new Message("sh/x", enc.encode(`q0-${i}`), 0, false), false);
        pub.forward(new Message("sh/y", enc.encode(`q1-${i}`), 1, false), false);
      }
      await pub.settled();
      await waitFor(() => deliveries.length >= 4 * N, 15_000, `${4 * N} deliveries`);
      const g = deliveries.filter((d) => d.includes(" g "));
      const other = deliveries.filter((d) => d.includes(" other "));
      // Group g: every message once over the three member nodes.
      const payloads = g.map((d) => d.split(" ").at(-1)!).sort();
      const want = Array.from({ length: N }, (_, i) => [`q0-${i}`, `q1-${i}`]).flat().sort();
      assert.deepEqual(payloads, want);
      assert.ok(new Set(g.map((d) => d.split(" ")[0])).size >= 2, "shared over member nodes");
      // Group other has one member node: it gets all of them.
      assert.equal(other.length, 2 * N);
      assert.ok(other.every((d) => d.startsWith("m2 ")));
    } finally {
      for (const l of links) await l.close();
      await server.stop();
    }
  },
});

Deno.test({
  name: "cluster option of the API: stats() and $SYS show the node's cluster link",
  ignore,
  async fn() {
    const server = await startNats();
    const { Broker } = await import("../mod.ts");
    const broker = new Broker({
      logLevel: "warn",
      sysIntervalMs: 100,
      cluster: { servers: [server.url], nodeName: "api" },
    });
    const { client } = await import("./_cluster.ts");
    let c: Awaited<ReturnType<typeof client>> | undefined;
    try {
      const { port } = await broker.listen({ hostname: "127.0.0.1", port: 0 });
      c = await client(port, { clientId: "sys" });
      await c.mqtt.subscribeAsync(["$SYS/broker/cluster/#", "t/#"], { qos: 0 });
      await c.mqtt.publishAsync("t/1", "x", { qos: 1 });
      await waitFor(
        () =>
          c!.messages.some((m) =>
            m.topic === "$SYS/broker/cluster/messages/out" && m.payload !== "0"
          ),
        10_000,
        "$SYS/broker/cluster/messages/out > 0",
      );
      const stats = broker.stats().cluster!;
      assert.equal(stats.node, "api");
      assert.equal(stats.connected, true);
      assert.ok(stats.subjects >= 2, `subjects ${stats.subjects}`);
      assert.ok(stats.messagesOut >= 1);
      const sys = new Map(c.messages.map((m) => [m.topic, m.payload]));
      assert.equal(sys.get("$SYS/broker/cluster/node"), "api");
      assert.equal(sys.get("$SYS/broker/cluster/connected"), "1");
    } finally {
      await c?.end();
      await broker.close();
      await server.stop();
    }
  },
});

Deno.test({
  name: "interest-based routing: a node without a matching subscription receives nothing",
  ignore,
  async fn() {
    const server = await startNats();
    const { Broker } = await import("../mod.ts");
    const { client } = await import("./_cluster.ts");
    const brokers = ["x", "y", "z"].map((nodeName) =>
      new Broker({ logLevel: "warn", cluster: { servers: [server.url], nodeName } })
    );
    const clients: Awaited<ReturnType<typeof client>>[] = [];
    try {
      const ports = [];
      for (const b of brokers) {
        ports.push((await b.listen({ hostname: "127.0.0.1", port: 0 })).port);
      }
      const sub = await client(ports[1], { clientId: "ysub" });
      clients.push(sub);
      await sub.mqtt.subscribeAsync("only/y/#", { qos: 1 });
      const zsub = await client(ports[2], { clientId: "zsub" });
      clients.push(zsub);
      await zsub.mqtt.subscribeAsync("elsewhere/#", { qos: 1 });
      const pub = await client(ports[0], { clientId: "xpub" });
      clients.push(pub);
      for (let i = 0; i < 20; i++) {
        await pub.mqtt.publishAsync("only/y/t", String(i), { qos: (i % 2) as 0 | 1 });
      }
      // A marker on each path (core and JetStream) for z: once both are in, so is anything z
      // would have got before them.
      await pub.mqtt.publishAsync("elsewhere/end", "0", { qos: 0 });
      await pub.mqtt.publishAsync("elsewhere/end", "1", { qos: 1 });
      await waitFor(() => sub.messages.length === 20, 10_000, "20 messages on y");
      await waitFor(() => zsub.messages.length === 2, 10_000, "the markers on z");
      assert.equal(brokers[1].stats().cluster!.messagesIn, 20);
      assert.equal(brokers[2].stats().cluster!.messagesIn, 2, "z got only what it subscribed to");
      assert.equal(brokers[0].stats().cluster!.messagesOut, 22);
    } finally {
      for (const c of clients) await c.end();
      for (const b of brokers) await b.close();
      await server.stop();
    }
  },
});

Deno.test({
  name: "a node whose consumer was deleted under it makes it again",
  ignore,
  async fn() {
    const server = await startNats();
    const { Broker } = await import("../mod.ts");
    const { client } = await import("./_cluster.ts");
    // deno-lint-ignore no-import-prefix
    const { jetstreamManager } = await import("npm:@nats-io/jetstream@3.4.0");
    const brokers = ["x", "y"].map((nodeName) =>
      new Broker({ logLevel: "silent", cluster: { servers: [server.url], nodeName } })
    );
    const clients: Awaited<ReturnType<typeof client>>[] = [];
    const nc = await nats.connect({ servers: server.url });
    try {
      const ports = [];
      for (const b of brokers) {
        ports.push((await b.listen({ hostname: "127.0.0.1", port: 0 })).port);
      }
      const sub = await client(ports[1], { clientId: "ysub" });
      clients.push(sub);
      await sub.mqtt.subscribeAsync("gone/#", { qos: 1 });
      const jsm = await jetstreamManager(nc);
      const names: string[] = [];
      for await (const info of jsm.consumers.list("dmq_MSGS")) names.push(info.name);
      // "gone/#" is two subjects, "gone" and "gone.>": two consumers.
      const mine = names.filter((n) => n.startsWith("y_"));
      assert.equal(mine.length, 2, names.join());
      for (const name of mine) await jsm.consumers.delete("dmq_MSGS", name);
      const pub = await client(ports[0], { clientId: "xpub" });
      clients.push(pub);
      await waitFor(
        async () => {
          await pub.mqtt.publishAsync("gone/x", "back", { qos: 1 });
          return await waitFor(() => sub.messages.length > 0, 1_000).then(() => true, () => false);
        },
        30_000,
        "a message through the re-made consumer",
      );
    } finally {
      for (const c of clients) await c.end();
      for (const b of brokers) await b.close();
      await nc.close();
      await server.stop();
    }
  },
});
