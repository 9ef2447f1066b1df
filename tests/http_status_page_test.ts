/**
 * The live status page in a real browser: headless Chromium (Debian `chromium`) loads `GET /`,
 * its own script polls the broker, and the DOM shows the live connection count, follows a
 * change, lists the clients (with the admin token), draws the rate chart, and says when the
 * broker is unreachable.
 */
import assert from "node:assert/strict";
import { Broker } from "../mod.ts";
import { DROP_REASONS } from "../src/http/metrics.ts";
import { CHROMIUM, dumpDom, openBrowser } from "./_chromium.ts";
import { connectMqtt } from "./_mqttjs.ts";
import { serveOps } from "./_ops.ts";
import { spawn, waitFor } from "./_util.ts";

const metric = (name: string) => `document.querySelector('[data-metric="${name}"]')?.textContent`;

Deno.test({
  name: CHROMIUM === undefined
    ? "status page in headless Chromium (fails: needs Debian package chromium)"
    : "status page in headless Chromium shows and follows the live connection count, lists clients, says when unreachable",
  sanitizeResources: true,
  async fn() {
    const broker = new Broker({ logLevel: "silent" });
    const { port } = await broker.listen({ hostname: "127.0.0.1", port: 0 });
    const server = serveOps(broker, { token: "page-token-123" });
    const clients: Awaited<ReturnType<typeof connectMqtt>>[] = [];
    await using page = await openBrowser();
    try {
      await page.navigate(`${server.url}/?refresh=300#token=page-token-123`);
      await page.waitFor(`${metric("connections")} === "0"`, "connections 0 in the DOM");
      await page.waitFor(
        `document.querySelector("#state").dataset.state === "live"`,
        "the page says live",
      );
      // The token left the address bar at once (it is kept for the session only).
      assert.equal(await page.evaluate("location.hash"), "");

      for (const id of ["phone-a", "phone-b", "phone-c"]) {
        clients.push(await connectMqtt(port, { clientId: id, username: `user-${id}` }));
      }
      await page.waitFor(`${metric("connections")} === "3"`, "connections 3 in the DOM");
      await page.waitFor(
        `document.querySelectorAll("#clients tr[data-client-id]").length === 3`,
        "three rows in the client list",
      );
      const row = await page.evaluate<string[]>(
        `[...document.querySelector('#clients tr[data-client-id="phone-b"]').cells].map((c) => c.textContent)`,
      );
      assert.equal(row[0], "phone-b");
      assert.match(row[1], /^127\.0\.0\.1:\d+$/);
      assert.equal(row[2], "tcp");
      assert.equal(row[3], "3.1.1");
      assert.equal(row[4], "user-phone-b");

      // Traffic makes the chart's peak rate non-zero.
      const [sub, pub] = clients;
      await sub.subscribeAsync("rate/#", { qos: 0 });
      for (let i = 0; i < 200; i++) await pub.publishAsync("rate/x", "r", { qos: 1 });
      await page.waitFor(`${metric("rate-peak")} !== "0"`, "a non-zero peak rate");
      await page.waitFor(`${metric("subscriptions")} === "1"`, "subscriptions 1");
      // The chart is drawn by the page's own script: the canvas has painted pixels.
      const painted = await page.evaluate<number>(`(() => {
        const c = document.querySelector("#rates");
        const data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) n++;
        return n;
      })()`);
      assert.ok(painted > 0, "the rate chart is drawn");
      assert.equal(
        await page.evaluate(`document.querySelectorAll("#drops [data-drop]").length`),
        Object.keys(DROP_REASONS).length,
        "drops by reason (one row per DropCounters key)",
      );
      assert.match(await page.evaluate<string>(metric("memory")), /^\d+(\.\d)? (KiB|MiB|GiB)$/);

      // Readable on a phone: at 360 px nothing makes the page wider than the screen.
      await page.send("Emulation.setDeviceMetricsOverride", {
        width: 360,
        height: 740,
        deviceScaleFactor: 2,
        mobile: true,
      });
      await page.waitFor("innerWidth === 360", "the phone viewport");
      assert.ok(
        await page.evaluate<boolean>("document.documentElement.scrollWidth <= innerWidth"),
        "no horizontal scrolling at 360 px",
      );

      // The count follows a change the other way.
      await clients.pop()!.endAsync();
      await page.waitFor(`${metric("connections")} === "2"`, "connections 2 in the DOM");
      await page.waitFor(
        `document.querySelectorAll("#clients tr[data-client-id]").length === 2`,
        "two rows in the client list",
      );

      // The broker's HTTP side goes away: the page says so, and keeps the last values.
      await server.close();
      await page.waitFor(
        `document.querySelector("#state").dataset.state === "unreachable"`,
        "the page says unreachable",
      );
      assert.equal(
        await page.evaluate(`getComputedStyle(document.querySelector("#banner")).display`),
        "block",
      );
      assert.equal(await page.evaluate(metric("connections")), "2");
    } finally {
      for (const client of clients) await client.endAsync();
      await server.close();
      await broker.close();
    }
  },
});

Deno.test({
  name: CHROMIUM === undefined
    ? "status page with chromium --dump-dom (fails: needs Debian package chromium)"
    : "status page with chromium --dump-dom: the served DOM holds the live connection count, and a second load the new one",
  async fn() {
    const broker = new Broker({ logLevel: "silent" });
    const { port } = await broker.listen({ hostname: "127.0.0.1", port: 0 });
    await using server = serveOps(broker);
    const clients: Awaited<ReturnType<typeof connectMqtt>>[] = [];
    const connections = (html: string) => /data-metric="connections"[^>]*>([^<]*)</.exec(html)?.[1];
    try {
      for (const id of ["dump-a", "dump-b"]) {
        clients.push(await connectMqtt(port, { clientId: id }));
      }
      assert.equal(connections(await dumpDom(server.url + "/")), "2");
      await clients.pop()!.endAsync();
      await waitFor(() => broker.stats().connections === 1, 10_000, "one connection left");
      assert.equal(connections(await dumpDom(server.url + "/")), "1");
    } finally {
      for (const client of clients) await client.endAsync();
      await broker.close();
    }
  },
});

Deno.test({
  name: CHROMIUM === undefined
    ? "status page of the CLI in headless Chromium (fails: needs Debian package chromium)"
    : "status page of the CLI (deno run --allow-net --allow-read cli.ts … --http-token-file F) in headless Chromium follows the connection count",
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "status_page_cli_" });
    await Deno.writeTextFile(`${dir}/token`, "cli-page-token");
    await Deno.chmod(`${dir}/token`, 0o600);
    const cli = spawn(Deno.execPath(), [
      "run",
      "--allow-net",
      "--allow-read",
      new URL("../cli.ts", import.meta.url).pathname,
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "--http-port",
      "0",
      "--http-token-file",
      `${dir}/token`,
    ], { deadlineMs: 120_000 });
    const clients: Awaited<ReturnType<typeof connectMqtt>>[] = [];
    try {
      await cli.waitForOutput("stderr", /listening on http 127\.0\.0\.1:\d+/, 30_000);
      const mqttPort = Number(/listening on tcp 127\.0\.0\.1:(\d+)/.exec(cli.stderr())![1]);
      const httpPort = Number(/listening on http 127\.0\.0\.1:(\d+)/.exec(cli.stderr())![1]);
      await using page = await openBrowser();
      await page.navigate(`http://127.0.0.1:${httpPort}/?refresh=300#token=cli-page-token`);
      await page.waitFor(`${metric("connections")} === "0"`, "connections 0");
      clients.push(await connectMqtt(mqttPort, { clientId: "cli-page-1" }));
      await page.waitFor(`${metric("connections")} === "1"`, "connections 1");
      await page.waitFor(
        `document.querySelector('#clients tr[data-client-id="cli-page-1"]') !== null`,
        "the client in the list",
      );
      clients.push(await connectMqtt(mqttPort, { clientId: "cli-page-2" }));
      await page.waitFor(`${metric("connections")} === "2"`, "connections 2");
      await clients.shift()!.endAsync();
      await page.waitFor(`${metric("connections")} === "1"`, "connections 1 again");
    } finally {
      for (const client of clients) await client.endAsync();
      cli.kill("SIGTERM");
      const result = await cli.finished;
      await Deno.remove(dir, { recursive: true });
      assert.equal(result.code, 0, result.stderr);
    }
  },
});
