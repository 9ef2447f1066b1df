/**
 * The `$SYS/broker/…` tree of mosquitto 2.0, read by a real client (npm:mqtt) subscribed to
 * `$SYS/broker/#`: every topic is there, the values follow connections, traffic and expiry.
 */
import assert from "node:assert/strict";
import { Broker } from "../mod.ts";
import { collect, connectMqtt, type Received } from "./_mqttjs.ts";
import { waitFor } from "./_util.ts";

const LOADS = [
  "messages/received",
  "messages/sent",
  "bytes/received",
  "bytes/sent",
  "publish/received",
  "publish/sent",
  "publish/dropped",
  "connections",
  "sockets",
];
const TOPICS = [
  "version",
  "uptime",
  "clients/total",
  "clients/connected",
  "clients/disconnected",
  "clients/maximum",
  "clients/expired",
  "messages/stored",
  "messages/received",
  "messages/sent",
  "publish/messages/received",
  "publish/messages/sent",
  "publish/messages/dropped",
  "bytes/received",
  "bytes/sent",
  "subscriptions/count",
  "retained messages/count",
  "heap/current",
  "heap/maximum",
  ...LOADS.flatMap((load) => ["1min", "5min", "15min"].map((w) => `load/${load}/${w}`)),
];

function latest(messages: Received[], name: string): string | undefined {
  for (let i = messages.length - 1; i >= 0; i--) {
    if (messages[i].topic === `$SYS/broker/${name}`) return messages[i].payload;
  }
  return undefined;
}

Deno.test("$SYS: the mosquitto 2.0 tree is published and follows clients, traffic and expiry", async () => {
  const broker = new Broker({
    logLevel: "silent",
    sysIntervalMs: 100,
    limits: { sessionExpiryMs: 200 },
  });
  const { port } = await broker.listen({ hostname: "127.0.0.1", port: 0 });
  const reader = await connectMqtt(port, { clientId: "sys-reader" });
  const others: Awaited<ReturnType<typeof connectMqtt>>[] = [];
  try {
    const sys = collect(reader);
    await reader.subscribeAsync("$SYS/broker/#", { qos: 0 });
    await waitFor(() => TOPICS.every((t) => latest(sys, t) !== undefined), 10_000, "every topic");
    assert.match(latest(sys, "version")!, /^denomq \d+\.\d+\.\d+$/);
    assert.match(latest(sys, "uptime")!, /^\d+ seconds$/);
    for (const t of TOPICS.filter((t) => t.startsWith("load/"))) {
      assert.match(latest(sys, t)!, /^\d+\.\d\d$/, t);
    }
    assert.ok(Number(latest(sys, "heap/current")) > 0);

    // Two more clients, one of them with a persistent session, and some traffic.
    others.push(await connectMqtt(port, { clientId: "pub" }));
    others.push(await connectMqtt(port, { clientId: "keeper", clean: false }));
    await others[1].subscribeAsync("work/#", { qos: 1 });
    for (let i = 0; i < 20; i++) await others[0].publishAsync("work/x", `job ${i}`, { qos: 1 });
    await waitFor(
      () =>
        latest(sys, "clients/connected") === "3" && latest(sys, "clients/maximum") === "3" &&
        Number(latest(sys, "publish/messages/received")) >= 20 &&
        Number(latest(sys, "load/publish/received/1min")) > 0 &&
        Number(latest(sys, "load/connections/1min")) > 0 &&
        latest(sys, "subscriptions/count") === "2",
      10_000,
      "3 connected, 20 publishes, load averages above 0",
    );
    assert.ok(Number(latest(sys, "heap/maximum")) >= Number(latest(sys, "heap/current")) * 0.5);
    assert.ok(
      Number(latest(sys, "messages/received")) > Number(latest(sys, "publish/messages/received")),
      "messages/… counts every packet, publish/messages/… only PUBLISH",
    );

    // The persistent session goes offline, then expires.
    await others.pop()!.endAsync();
    await waitFor(
      () => latest(sys, "clients/expired") === "1" && latest(sys, "clients/connected") === "2",
      10_000,
      "the offline session expired",
    );
    assert.equal(latest(sys, "clients/maximum"), "3", "the maximum stays");
    assert.equal(latest(sys, "clients/disconnected"), "0");
  } finally {
    for (const client of others) await client.endAsync();
    await reader.endAsync();
    await broker.close();
  }
});
