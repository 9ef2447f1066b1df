/**
 * Three broker nodes from cli.ts joined through a real nats-server with JetStream, driven by
 * npm:mqtt clients: routing between every pair, QoS 1/2 streams, retained messages, takeover
 * with the will, persistent sessions moving between nodes, kill -9 of a node.
 */
import assert from "node:assert/strict";
import { freePort, raw, rawPacket, RawSocket, run, waitFor } from "./_util.ts";
import {
  client,
  clientStore,
  NATS_SERVER,
  type Node,
  received,
  startCluster,
  startNats,
  startNatsCluster,
  startNode,
} from "./_cluster.ts";
import { HAVE, makeCertificates, scratchDir } from "./_security.ts";

const ignore = NATS_SERVER === undefined;
const CLI = new URL("../cli.ts", import.meta.url).pathname;

function publish(
  c: { mqtt: { publishAsync: (t: string, p: string, o: object) => Promise<unknown> } },
  topic: string,
  payload: string,
  qos: 0 | 1 | 2 = 0,
  retain = false,
) {
  return c.mqtt.publishAsync(topic, payload, { qos, retain });
}

Deno.test({
  name: "cluster: unreachable NATS at start is one line naming the URL, exit 1",
  ignore,
  async fn() {
    const result = await run(Deno.execPath(), [
      "run",
      "--allow-net",
      CLI,
      "--port",
      "0",
      "--cluster",
      "nats://127.0.0.1:1",
      "--node-name",
      "a",
    ], { deadlineMs: 30_000 });
    assert.equal(result.code, 1, result.stderr);
    const lines = result.stderr.trim().split("\n");
    assert.equal(lines.length, 1, result.stderr);
    assert.match(lines[0], /^error: .*nats:\/\/127\.0\.0\.1:1/);
  },
});

Deno.test({
  name: "cluster: every pair of nodes routes exact and wildcard filters once, no echo",
  ignore,
  async fn() {
    await using cluster = await startCluster(["a", "b", "c"]);
    const { nodes } = cluster;
    // On each node: one exact-ish filter and one overlapping wildcard, on two sessions, so the
    // node holds two NATS subjects that both match (it must still deliver once per session).
    const exact = [];
    const wild = [];
    for (const node of nodes) {
      const e = await cluster.connect(node, { clientId: `exact-${node.name}` });
      await e.mqtt.subscribeAsync(`pair/+/to/${node.name}`, { qos: 0 });
      exact.push(e);
      const w = await cluster.connect(node, { clientId: `wild-${node.name}` });
      await w.mqtt.subscribeAsync(["pair/#", "odd/#"], { qos: 0 });
      wild.push(w);
    }
    const pubs = [];
    for (const node of nodes) {
      pubs.push(await cluster.connect(node, { clientId: `pub-${node.name}` }));
    }
    for (let j = 0; j < nodes.length; j++) {
      for (const to of nodes) await publish(pubs[j], `pair/${nodes[j].name}/to/${to.name}`, "x");
    }
    // Levels with ".", "*", ">", spaces, Unicode and empty levels survive the subject mapping.
    const odd = "odd/a.b/*/>/ sp ace/é日😀//~2E";
    await publish(pubs[0], odd, "odd");
    for (let i = 0; i < nodes.length; i++) {
      await received(exact[i], 3);
      await received(wild[i], 10);
    }
    // Whatever else was going to arrive has: the last publish is in on every node.
    for (let i = 0; i < nodes.length; i++) {
      const topics = exact[i].messages.map((m) => m.topic).sort();
      assert.deepEqual(topics, nodes.map((n) => `pair/${n.name}/to/${nodes[i].name}`).sort());
      assert.equal(wild[i].messages.length, 10, JSON.stringify(wild[i].messages));
      assert.equal(new Set(wild[i].messages.map((m) => m.topic)).size, 10);
      assert.ok(wild[i].messages.some((m) => m.topic === odd && m.payload === "odd"));
    }
    // Per-publisher order is kept across nodes.
    for (let k = 0; k < 50; k++) await publish(pubs[0], `pair/a/to/c`, String(k));
    await received(exact[2], 53);
    assert.deepEqual(
      exact[2].messages.slice(3).map((m) => Number(m.payload)),
      Array.from({ length: 50 }, (_, k) => k),
    );
    // The $-rule: "#" does not get $ topics from another node, "$x/#" does.
    const dollar = await cluster.connect(nodes[1], { clientId: "dollar" });
    await dollar.mqtt.subscribeAsync("$x/#", { qos: 0 });
    await publish(pubs[0], "$x/y", "d");
    await received(dollar, 1);
    await publish(pubs[0], "pair/end/to/all", "end");
    await received(wild[1], 11);
    assert.ok(!wild[1].messages.some((m) => m.topic.startsWith("$")));
    const stats = nodes.map((n) => n.name);
    assert.equal(stats.length, 3);
  },
});

Deno.test({
  name: "cluster: QoS 1 and 2 streams across nodes, no loss, in order, no QoS 2 duplicates",
  ignore,
  async fn() {
    await using cluster = await startCluster(["a", "b"]);
    const [a, b] = cluster.nodes;
    const sub = await cluster.connect(b, { clientId: "qsub", clean: false });
    await sub.mqtt.subscribeAsync({ "s1/#": { qos: 1 }, "s2/#": { qos: 2 } });
    const pub = await cluster.connect(a, { clientId: "qpub" });
    const N = 300;
    const sends = [];
    for (let i = 0; i < N; i++) {
      sends.push(publish(pub, "s1/x", String(i), 1));
      sends.push(publish(pub, "s2/x", String(i), 2));
    }
    await Promise.all(sends);
    await received(sub, 2 * N);
    const q1 = sub.messages.filter((m) => m.topic === "s1/x").map((m) => Number(m.payload));
    const q2 = sub.messages.filter((m) => m.topic === "s2/x").map((m) => Number(m.payload));
    const all = Array.from({ length: N }, (_, i) => i);
    assert.deepEqual(q1, all);
    assert.deepEqual(q2, all);
    assert.ok(sub.messages.filter((m) => m.topic === "s2/x").every((m) => m.qos === 2));
  },
});

Deno.test({
  name: "cluster: retained messages are set and cleared everywhere, and loaded by a new node",
  ignore,
  async fn() {
    await using cluster = await startCluster(["a", "b"]);
    const [a, b] = cluster.nodes;
    const pa = await cluster.connect(a, { clientId: "ra" });
    await publish(pa, "ret/x", "v1", 1, true);
    await publish(pa, "ret/x", "v2", 1, true);
    await publish(pa, "ret/y", "y", 1, true);
    // Set on a, delivered on SUBSCRIBE at b.
    const sb = await cluster.connect(b, { clientId: "rb" });
    await waitFor(
      async () => {
        const probe = await client(b.port, { clientId: "probe" });
        await probe.mqtt.subscribeAsync("ret/x", { qos: 1 });
        await waitFor(() => true);
        const ok = await waitFor(() => probe.messages.length > 0, 500).then(
          () => true,
          () => false,
        );
        const v = probe.messages[0]?.payload;
        await probe.end();
        return ok && v === "v2";
      },
      10_000,
      "ret/x = v2 on node b",
    );
    // A node started later loads them.
    const c = await startNode(cluster.nats.url, "c");
    cluster.nodes.push(c);
    const sc = await cluster.connect(c, { clientId: "rc" });
    await sc.mqtt.subscribeAsync("ret/#", { qos: 1 });
    await received(sc, 2);
    assert.deepEqual(
      sc.messages.map((m) => [m.topic, m.payload, m.retain]).sort(),
      [["ret/x", "v2", true], ["ret/y", "y", true]],
    );
    // Cleared on b with an empty payload: gone on a and c too.
    await publish(sb, "ret/x", "", 1, true);
    await publish(sb, "ret/z", "marker", 1, true);
    for (const node of [a, c]) {
      await waitFor(
        async () => {
          const probe = await client(node.port, { clientId: `probe-${node.name}` });
          await probe.mqtt.subscribeAsync("ret/#", { qos: 1 });
          const ok = await waitFor(() => probe.messages.some((m) => m.topic === "ret/z"), 500)
            .then(() => true, () => false);
          const topics = probe.messages.map((m) => m.topic).sort();
          await probe.end();
          return ok && topics.join() === "ret/y,ret/z";
        },
        10_000,
        `ret/x cleared on ${node.name}`,
      );
    }
  },
});

Deno.test({
  name:
    "cluster: a client id connecting on another node takes over; the old node publishes the will",
  ignore,
  async fn() {
    await using cluster = await startCluster(["a", "b", "c"]);
    const [a, b, c] = cluster.nodes;
    const watcher = await cluster.connect(c, { clientId: "watcher" });
    await watcher.mqtt.subscribeAsync("will/#", { qos: 1 });
    const first = await cluster.connect(a, {
      clientId: "dup",
      will: { topic: "will/dup", payload: "gone", qos: 1, retain: false },
    });
    let closed = false;
    first.mqtt.on("close", () => closed = true);
    const second = await cluster.connect(b, { clientId: "dup" });
    await waitFor(() => closed, 10_000, "the first connection closed by node a");
    await received(watcher, 1);
    assert.deepEqual(watcher.messages.map((m) => [m.topic, m.payload]), [["will/dup", "gone"]]);
    assert.equal(second.mqtt.connected, true);
  },
});

Deno.test({
  name: "cluster: a persistent session resumes on another node with its subscriptions and queue",
  ignore,
  async fn() {
    await using cluster = await startCluster(["a", "b", "c"]);
    const [a, b, c] = cluster.nodes;
    const s1 = await cluster.connect(a, { clientId: "roamer", clean: false });
    assert.equal(s1.sessionPresent, false);
    await s1.mqtt.subscribeAsync("roam/#", { qos: 1 });
    await s1.end();
    const pub = await cluster.connect(c, { clientId: "roampub" });
    for (let i = 0; i < 5; i++) await publish(pub, "roam/q", `q${i}`, 1);
    // Queued on node a while away; the client comes back on node b.
    const s2 = await cluster.connect(b, { clientId: "roamer", clean: false });
    assert.equal(s2.sessionPresent, true);
    await received(s2, 5);
    assert.deepEqual(s2.messages.map((m) => m.payload), ["q0", "q1", "q2", "q3", "q4"]);
    // Its subscription works on b from now on.
    await publish(pub, "roam/q", "after", 1);
    await received(s2, 6);
    assert.equal(s2.messages[5].payload, "after");
    // And a clean session discards it everywhere.
    await s2.end();
    const s3 = await cluster.connect(a, { clientId: "roamer", clean: true });
    assert.equal(s3.sessionPresent, false);
    await s3.end();
    const s4 = await cluster.connect(c, { clientId: "roamer", clean: false });
    assert.equal(s4.sessionPresent, false);
  },
});

Deno.test({
  name: "cluster: kill -9 of a node: acknowledged QoS 1 reaches the other node, sessions resume",
  ignore,
  async fn() {
    await using cluster = await startCluster(["a", "b", "c"]);
    const [a, b, c] = cluster.nodes;
    const sub = await cluster.connect(b, { clientId: "ksub", clean: false });
    await sub.mqtt.subscribeAsync("k/#", { qos: 1 });
    // A persistent session on the node that will die, offline there with a message queued.
    const victim = await cluster.connect(a, { clientId: "victim", clean: false });
    await victim.mqtt.subscribeAsync("v/#", { qos: 1 });
    await victim.end();
    const early = await cluster.connect(b, { clientId: "early" });
    await publish(early, "v/0", "queued before the kill", 1);
    const pub = await cluster.connect(a, { clientId: "kpub" });
    const N = 200;
    const acks = [];
    for (let i = 0; i < N; i++) acks.push(publish(pub, "k/x", String(i), 1));
    await Promise.all(acks);
    // Every PUBACK is in: kill the accepting node at once.
    await a.stop("SIGKILL");
    await received(sub, N);
    assert.deepEqual(
      [...new Set(sub.messages.map((m) => Number(m.payload)))].sort((x, y) => x - y),
      Array.from({ length: N }, (_, i) => i),
    );
    // The others keep serving each other.
    const pc = await cluster.connect(c, { clientId: "kpc" });
    await publish(pc, "k/after", "alive", 1);
    await received(sub, 1, (m) => m.topic === "k/after");
    // The dead node's client resumes elsewhere with its subscriptions.
    await publish(pc, "v/1", "while away", 2);
    const back = await cluster.connect(c, { clientId: "victim", clean: false });
    assert.equal(back.sessionPresent, true);
    await publish(pc, "v/2", "resumed", 1);
    await received(back, 3);
    assert.deepEqual(back.messages.map((m) => [m.topic, m.qos]), [["v/0", 1], ["v/1", 1], [
      "v/2",
      1,
    ]]);
  },
});

Deno.test({
  name:
    "cluster: NATS restarting later: local delivery goes on, the node reconnects and catches up",
  ignore,
  async fn() {
    const nats = await startNats();
    const a = await startNode(nats.url, "a");
    const b = await startNode(nats.url, "b");
    const clients = [];
    try {
      const local = await client(a.port, { clientId: "local" });
      clients.push(local);
      await local.mqtt.subscribeAsync("n/#", { qos: 1 });
      const pa = await client(a.port, { clientId: "pa" });
      clients.push(pa);
      const remote = await client(b.port, { clientId: "remote", clean: false });
      clients.push(remote);
      await remote.mqtt.subscribeAsync("n/#", { qos: 1 });
      await nats.stop(true);
      await a.process.waitForOutput("stderr", /lost NATS/, 10_000);
      // QoS 0 stays local and is delivered at once.
      await publish(pa, "n/0", "local0", 0);
      await received(local, 1);
      // A QoS 1 publish is delivered locally, but acknowledged only once JetStream has it.
      let acked = false;
      const ack = publish(pa, "n/1", "local1", 1).then(() => acked = true);
      await received(local, 2);
      assert.equal(acked, false);
      // Clients still connect and subscribe meanwhile (served by their node alone).
      const late = await client(b.port, { clientId: "late" });
      clients.push(late);
      await late.mqtt.subscribeAsync("late/#", { qos: 1 });
      const again = await startNats({ port: nats.port, dir: nats.dir });
      try {
        await a.process.waitForOutput("stderr", /reconnected to NATS/, 20_000);
        await ack;
        assert.equal(acked, true);
        // Node b catches up: the message JetStream took after the outage reaches it.
        await received(remote, 1, (m) => m.payload === "local1", 20_000);
        assert.equal(local.messages.length, 2);
        // The subscription made during the outage gets its consumer once NATS is back.
        await b.process.waitForOutput("stderr", /reconnected to NATS/, 20_000);
        await waitFor(
          async () => {
            await publish(pa, "late/x", "after", 1);
            return await waitFor(() => late.messages.length > 0, 1_000).then(
              () => true,
              () => false,
            );
          },
          20_000,
          "late/x on node b",
        );
      } finally {
        await again.stop();
      }
    } finally {
      for (const c of clients) await c.end().catch(() => {});
      await a.stop();
      await b.stop();
      await Deno.remove(nats.dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "cluster: --reuse-port lets two nodes listen on one port, joined through NATS",
  ignore: ignore || Deno.build.os !== "linux",
  async fn() {
    const nats = await startNats();
    const port = freePort();
    const flags = ["--reuse-port", "--port", String(port)];
    const permissions = ["--allow-net", "--unstable-net"];
    const nodes: Node[] = [];
    const clients = [];
    try {
      nodes.push(await startNode(nats.url, "r1", flags, permissions));
      nodes.push(await startNode(nats.url, "r2", flags, permissions));
      for (const node of nodes) assert.equal(node.port, port);
      // Whichever node the kernel picks for each client, they are one broker.
      // Clients until the kernel has given each node some (bounded: 2^-40 to fail by chance).
      const subs = [];
      const has = (i: number) => (node: Node) =>
        node.process.stderr().includes(`client "rp${i}" connected`);
      const served = [false, false];
      for (let i = 0; i < 40 && !(served[0] && served[1]); i++) {
        const c = await client(port, { clientId: `rp${i}` });
        clients.push(c);
        await c.mqtt.subscribeAsync("rp/#", { qos: 1 });
        subs.push(c);
        await waitFor(() => nodes.some(has(i)), 5_000, `rp${i} logged by a node`);
        nodes.forEach((node, k) => served[k] ||= has(i)(node));
      }
      assert.deepEqual(served, [true, true], "both nodes accepted clients on the shared port");
      await publish(subs[0], "rp/x", "hello", 1);
      for (const c of subs) await received(c, 1);
    } finally {
      for (const c of clients) await c.end().catch(() => {});
      for (const node of nodes) await node.stop();
      await nats.stop();
    }
  },
});

Deno.test({
  name: "cluster: NATS user/password and token; a wrong password is one line, exit 1",
  ignore,
  async fn() {
    const secured = await startNats({ extra: ["--user", "mq", "--pass", "s3cret"] });
    try {
      const ok = await startNode(secured.url, "auth", [
        "--cluster-user",
        "mq",
        "--cluster-password",
        "s3cret",
      ]);
      await ok.stop();
      const bad = await run(Deno.execPath(), [
        "run",
        "--allow-net",
        CLI,
        "--port",
        "0",
        "--cluster",
        secured.url,
        "--node-name",
        "auth",
        "--cluster-user",
        "mq",
        "--cluster-password",
        "wrong",
      ], { deadlineMs: 30_000 });
      assert.equal(bad.code, 1, bad.stderr);
      assert.equal(bad.stderr.trim().split("\n").length, 1, bad.stderr);
      assert.match(bad.stderr, new RegExp(`^error: .*${secured.url}.*(auth|Authorization)`, "i"));
    } finally {
      await secured.stop();
    }
    const token = await startNats({ extra: ["--auth", "t0ken"] });
    try {
      const node = await startNode(token.url, "tok", ["--cluster-token", "t0ken"]);
      await node.stop();
    } finally {
      await token.stop();
    }
  },
});

Deno.test({
  name:
    "cluster: a NATS server of a 3-server NATS cluster dies: nodes fail over, nothing acked lost",
  ignore,
  async fn() {
    await using natsCluster = await startNatsCluster();
    const flags = ["--cluster-replicas", "3"];
    const a = await startNode(natsCluster.urls, "a", flags);
    const b = await startNode(natsCluster.urls, "b", flags);
    const clients = [];
    try {
      const sub = await client(b.port, { clientId: "fsub", clean: false });
      clients.push(sub);
      await sub.mqtt.subscribeAsync("f/#", { qos: 1 });
      const pub = await client(a.port, { clientId: "fpub" });
      clients.push(pub);
      const N = 50;
      const batch = async (from: number) => {
        const acks = [];
        for (let i = from; i < from + N; i++) acks.push(publish(pub, "f/x", String(i), 1));
        await Promise.all(acks);
      };
      await batch(0);
      // Kill the NATS server node a publishes through.
      const server = a.process.stderr().match(/joined through NATS 127\.0\.0\.1:(\d+)/)![1];
      const victim = natsCluster.servers.find((s) => s.port === Number(server))!;
      await victim.process.kill("SIGKILL");
      await victim.process.finished;
      await a.process.waitForOutput("stderr", /reconnected to NATS/, 20_000);
      await batch(N);
      await received(sub, 2 * N, () => true, 30_000).catch((error) => {
        throw new Error(`${error.message}; node b: ${b.process.stderr().slice(-1500)}`);
      });
      assert.deepEqual(
        [...new Set(sub.messages.map((m) => Number(m.payload)))].sort((x, y) => x - y),
        Array.from({ length: 2 * N }, (_, i) => i),
      );
    } finally {
      for (const c of clients) await c.end().catch(() => {});
      await a.stop();
      await b.stop();
    }
  },
});

Deno.test({
  name: "cluster: a node restarted after kill -9 does not hand its old backlog to new subscribers",
  ignore,
  async fn() {
    await using cluster = await startCluster(["a", "b"]);
    const [a, b] = cluster.nodes;
    const first = await client(a.port, { clientId: "old" });
    await first.mqtt.subscribeAsync("back/#", { qos: 1 });
    await a.stop("SIGKILL");
    await first.end().catch(() => {});
    const pub = await cluster.connect(b, { clientId: "bpub" });
    await publish(pub, "back/x", "stale", 1);
    const again = await startNode(cluster.nats.url, "a");
    cluster.nodes[0] = again;
    const fresh = await cluster.connect(again, { clientId: "new" });
    await fresh.mqtt.subscribeAsync("back/#", { qos: 1 });
    await publish(pub, "back/x", "fresh", 1);
    await received(fresh, 1);
    await publish(pub, "back/end", "end", 1);
    await received(fresh, 2);
    assert.deepEqual(fresh.messages.map((m) => m.payload), ["fresh", "end"]);
  },
});

Deno.test({
  name: "cluster: a node with --data-dir killed and restarted gets what its sessions missed",
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "denomq-cluster-data-" });
    const permissions = ["--allow-net", `--allow-read=${dir}`, `--allow-write=${dir}`];
    await using cluster = await startCluster(["b"]);
    try {
      const a = await startNode(cluster.nats.url, "a", ["--data-dir", dir], permissions);
      cluster.nodes.push(a);
      const s1 = await client(a.port, { clientId: "keeper", clean: false });
      await s1.mqtt.subscribeAsync("keep/#", { qos: 1 });
      await s1.end();
      await a.stop("SIGKILL");
      const pub = await cluster.connect(cluster.nodes[0], { clientId: "kp" });
      for (let i = 0; i < 5; i++) await publish(pub, "keep/x", `m${i}`, 1);
      const again = await startNode(cluster.nats.url, "a", ["--data-dir", dir], permissions);
      cluster.nodes[1] = again;
      const s2 = await cluster.connect(again, { clientId: "keeper", clean: false });
      assert.equal(s2.sessionPresent, true);
      await received(s2, 5);
      assert.deepEqual(s2.messages.map((m) => m.payload), ["m0", "m1", "m2", "m3", "m4"]);
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name:
    "cluster: an inbound QoS 2 awaiting PUBREL moves with the session: resent on another node, routed once [MQTT-4.3.3-2]",
  ignore,
  async fn() {
    await using cluster = await startCluster(["a", "b"]);
    const [a, b] = cluster.nodes;
    const sub = await cluster.connect(a, { clientId: "q2sub" });
    await sub.mqtt.subscribeAsync("q2/#", { qos: 2 });
    const p1 = await RawSocket.open(a.port);
    try {
      assert.deepEqual(await p1.connect({ clientId: "q2pub", cleanSession: false }), [false, 0]);
      await p1.send(raw.publish("q2/x", "once", { qos: 2, packetId: 7 }));
      const pubrec = await p1.next();
      assert.equal(pubrec.type, 5, "PUBREC");
    } finally {
      p1.close();
    }
    await received(sub, 1);
    // The publisher comes back on node b and resends the PUBLISH (DUP), then releases it.
    const p2 = await RawSocket.open(b.port);
    try {
      assert.deepEqual(await p2.connect({ clientId: "q2pub", cleanSession: false }), [true, 0]);
      const dup = raw.publish("q2/x", "once", { qos: 2, packetId: 7 });
      dup[0] |= 0x08;
      await p2.send(dup);
      assert.equal((await p2.next()).type, 5, "PUBREC again");
      await p2.send(rawPacket(0x62, [0, 7]));
      assert.equal((await p2.next()).type, 7, "PUBCOMP");
      await p2.send(raw.publish("q2/end", "end", { qos: 1, packetId: 8 }));
      assert.equal((await p2.next()).type, 4, "PUBACK");
    } finally {
      p2.close();
    }
    await received(sub, 2);
    assert.deepEqual(sub.messages.map((m) => m.payload), ["once", "end"]);
  },
});

Deno.test({
  name: "cluster: ACLs apply as on one node: refused publishes stay on their node",
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "denomq-cluster-acl-" });
    const acl = `${dir}/acl`;
    await Deno.writeTextFile(acl, "topic readwrite open/#\ntopic read ro/#\n");
    const flags = ["--acl-file", acl];
    const permissions = ["--allow-net", `--allow-read=${acl}`];
    await using cluster = await startCluster([]);
    try {
      const a = await startNode(cluster.nats.url, "a", flags, permissions);
      cluster.nodes.push(a);
      const b = await startNode(cluster.nats.url, "b", flags, permissions);
      cluster.nodes.push(b);
      const sub = await cluster.connect(b, { clientId: "aclsub" });
      const granted = await sub.mqtt.subscribeAsync(["open/#", "ro/#"], { qos: 1 });
      assert.deepEqual(granted.map((g) => g.qos), [1, 1]);
      // mqtt.js rejects a SUBACK 0x80.
      await assert.rejects(sub.mqtt.subscribeAsync("closed/#", { qos: 1 }));
      const pub = await cluster.connect(a, { clientId: "aclpub" });
      await publish(pub, "ro/x", "refused: read only", 1);
      await publish(pub, "closed/x", "refused: no rule", 1);
      await publish(pub, "open/x", "allowed", 1);
      await received(sub, 1);
      await publish(pub, "open/end", "end", 1);
      await received(sub, 2);
      assert.deepEqual(sub.messages.map((m) => m.payload), ["allowed", "end"]);
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "cluster: session expiry holds cluster-wide, also for a session whose node died",
  ignore,
  async fn() {
    const flags = ["--session-expiry-ms", "1000", "--log-level", "debug"];
    await using cluster = await startCluster(["a", "b", "c"], flags);
    const [a, b, c] = cluster.nodes;
    // Expired by the node that holds it: gone for the others too.
    const s1 = await client(a.port, { clientId: "short", clean: false });
    await s1.mqtt.subscribeAsync("exp/#", { qos: 1 });
    await s1.end();
    await a.process.waitForOutput("stderr", `session "short" expired`, 10_000);
    const back = await cluster.connect(b, { clientId: "short", clean: false });
    assert.equal(back.sessionPresent, false);
    // A session left offline on a node that then died: its record expires all the same.
    const s2 = await client(c.port, { clientId: "orphan", clean: false });
    await s2.mqtt.subscribeAsync("exp/#", { qos: 1 });
    await s2.end();
    await c.stop("SIGKILL");
    // No fixed sleep: the broker's own clock is what counts; wait past the expiry, then check.
    const due = Date.now() + 1_500;
    await waitFor(() => Date.now() > due, 5_000, "the expiry");
    const late = await cluster.connect(a, { clientId: "orphan", clean: false });
    assert.equal(late.sessionPresent, false);
  },
});

Deno.test({
  name: "cluster: --cluster-tls-ca connects to a NATS server over TLS; without it the node refuses",
  ignore: ignore || !HAVE.openssl,
  async fn() {
    await using dir = await scratchDir("denomq-cluster-tls-");
    await makeCertificates(dir.path);
    const tls = await startNats({
      extra: ["--tls", "--tlscert", `${dir.path}/cert.pem`, "--tlskey", `${dir.path}/key.pem`],
    });
    try {
      const ca = `${dir.path}/ca.pem`;
      const node = await startNode(tls.url, "secure", ["--cluster-tls-ca", ca], [
        "--allow-net",
        `--allow-read=${ca}`,
      ]);
      const c = await client(node.port, { clientId: "overtls" });
      await c.mqtt.subscribeAsync("tls/#", { qos: 1 });
      await c.mqtt.publishAsync("tls/x", "ok", { qos: 1 });
      await received(c, 1);
      await c.end();
      await node.stop();
      // Without the CA the server's certificate is not trusted: one line, exit 1.
      const refused = await run(Deno.execPath(), [
        "run",
        "--allow-net",
        CLI,
        "--port",
        "0",
        "--cluster",
        tls.url,
        "--node-name",
        "insecure",
      ], { deadlineMs: 30_000 });
      assert.equal(refused.code, 1, refused.stderr);
      assert.equal(refused.stderr.trim().split("\n").length, 1, refused.stderr);
      assert.match(refused.stderr, new RegExp(`^error: .*${tls.url}`));
    } finally {
      await tls.stop();
    }
  },
});

Deno.test({
  name:
    "cluster: a persistent subscriber moving between nodes under a QoS 2 stream loses nothing, gets nothing twice",
  ignore,
  async fn() {
    await using cluster = await startCluster(["a", "b", "c"]);
    const [a, b, c] = cluster.nodes;
    // The client keeps its QoS 2 state across its two connections, as a persistent client does.
    const incomingStore = clientStore();
    const first = await cluster.connect(a, { clientId: "mover", clean: false, incomingStore });
    await first.mqtt.subscribeAsync("mv/#", { qos: 2 });
    const pub = await cluster.connect(c, { clientId: "mvpub" });
    const N = 400;
    let sent = 0;
    const publishing = (async () => {
      for (; sent < N; sent++) await publish(pub, "mv/x", String(sent), 2);
    })();
    await waitFor(() => sent >= N / 4, 20_000, "a quarter published");
    await first.end();
    const second = await cluster.connect(b, { clientId: "mover", clean: false, incomingStore });
    assert.equal(second.sessionPresent, true);
    await publishing;
    const got = () => [...first.messages, ...second.messages].map((m) => Number(m.payload));
    await waitFor(() => got().length >= N, 20_000, `${N} messages (have ${got().length})`);
    await publish(pub, "mv/end", "end", 2);
    await received(second, 1, (m) => m.topic === "mv/end");
    const all = got().filter((n) => !Number.isNaN(n));
    assert.equal(all.length, N, "no duplicates");
    assert.deepEqual([...all].sort((x, y) => x - y), Array.from({ length: N }, (_, i) => i));
  },
});

Deno.test({
  name: "cluster: a session resumed on another node under load gets CONNACK first [MQTT-3.2.0-1]",
  ignore,
  async fn() {
    await using cluster = await startCluster(["a", "b"]);
    const [a, b] = cluster.nodes;
    const s1 = await RawSocket.open(a.port);
    try {
      await s1.connect({ clientId: "first", cleanSession: false });
      await s1.subscribe(1, [["load/#", 1]]);
    } finally {
      s1.close();
    }
    const pub = await cluster.connect(a, { clientId: "loader" });
    let stop = false;
    const flood = (async () => {
      for (let i = 0; !stop; i++) await publish(pub, "load/x", String(i), 1);
    })();
    try {
      for (let round = 0; round < 5; round++) {
        const s2 = await RawSocket.open(round % 2 === 0 ? b.port : a.port);
        try {
          await s2.send(raw.connect({ clientId: "first", cleanSession: false }));
          const firstPacket = await s2.next(10_000);
          assert.equal(
            firstPacket.type,
            2,
            `round ${round}: first packet type ${firstPacket.type}`,
          );
        } finally {
          s2.close();
        }
      }
    } finally {
      stop = true;
      await flood;
    }
  },
});

Deno.test({
  name: "cluster: the retained limit holds cluster-wide (--max-retained)",
  ignore,
  async fn() {
    await using cluster = await startCluster(["a", "b"], ["--max-retained", "2"]);
    const [a, b] = cluster.nodes;
    const pa = await cluster.connect(a, { clientId: "rla" });
    await publish(pa, "rl/1", "one", 1, true);
    await publish(pa, "rl/2", "two", 1, true);
    // Once b holds both, a third retained topic published on b finds the store full.
    const watch = await cluster.connect(b, { clientId: "rlw" });
    await waitFor(
      async () => {
        const probe = await client(b.port, { clientId: "rlprobe" });
        await probe.mqtt.subscribeAsync("rl/#", { qos: 1 });
        const ok = await waitFor(() => probe.messages.length >= 2, 500).then(
          () => true,
          () => false,
        );
        await probe.end();
        return ok;
      },
      10_000,
      "both retained messages on b",
    );
    await publish(watch, "rl/3", "three", 1, true);
    await publish(watch, "rl/1", "one again", 1, true); // replacing stays possible
    for (const node of [a, b]) {
      await waitFor(
        async () => {
          const probe = await client(node.port, { clientId: `rl-${node.name}` });
          await probe.mqtt.subscribeAsync("rl/#", { qos: 1 });
          const ok = await waitFor(() => probe.messages.length >= 2, 500).then(
            () => true,
            () => false,
          );
          const seen = probe.messages.map((m) => `${m.topic}=${m.payload}`).sort().join();
          await probe.end();
          return ok && seen === "rl/1=one again,rl/2=two";
        },
        10_000,
        `two retained topics on ${node.name}`,
      );
    }
  },
});

Deno.test({
  name:
    "cluster: an unreadable --cluster-creds or --cluster-tls-ca file is a usage error naming it, exit 2",
  ignore,
  async fn() {
    for (const flag of ["--cluster-creds", "--cluster-tls-ca"]) {
      const result = await run(Deno.execPath(), [
        "run",
        "--allow-net",
        "--allow-read",
        CLI,
        "--port",
        "0",
        "--cluster",
        "nats://127.0.0.1:1",
        "--node-name",
        "a",
        flag,
        "/nonexistent/file",
      ], { deadlineMs: 30_000 });
      assert.equal(result.code, 2, result.stderr);
      assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
      assert.match(result.stderr, new RegExp(`^error: ${flag} /nonexistent/file: `));
    }
  },
});
