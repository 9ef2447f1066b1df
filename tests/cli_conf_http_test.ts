/**
 * The HTTP side (`--http-port`) next to listeners from a mosquitto.conf: the listeners come from
 * the file, the HTTP side from the flags; /readyz says ready, /metrics counts the file's
 * listener's client, and the admin API lists it.
 */
import assert from "node:assert/strict";
import { connectMqtt } from "./_mqttjs.ts";
import { spawn } from "./_util.ts";

const CLI = new URL("../cli.ts", import.meta.url).pathname;
const ROOT = new URL("..", import.meta.url).pathname;
const TOKEN = "conf-http-token-0123456789";

Deno.test("cli: --mosquitto-conf listeners and --http-port together", async () => {
  const dir = await Deno.makeTempDir({ prefix: "denomq-conf-http-" });
  try {
    await Deno.writeTextFile(
      `${dir}/m.conf`,
      "listener 0 127.0.0.1\nallow_anonymous true\n",
    );
    await Deno.writeTextFile(`${dir}/token`, TOKEN + "\n");
    await Deno.chmod(`${dir}/token`, 0o600);
    const cli = spawn(Deno.execPath(), [
      "run",
      "--allow-net",
      `--allow-read=${dir}`,
      CLI,
      "--mosquitto-conf",
      `${dir}/m.conf`,
      "--http-port",
      "0",
      "--http-token-file",
      `${dir}/token`,
      "--sys-interval",
      "0",
    ], { cwd: ROOT, deadlineMs: 60_000 });
    try {
      await cli.waitForOutput("stderr", /listening on http 127\.0\.0\.1:\d+/, 20_000);
      await cli.waitForOutput("stderr", /listening on tcp 127\.0\.0\.1:\d+ \(listener/, 20_000);
      const mqttPort = Number(/listening on tcp 127\.0\.0\.1:(\d+)/.exec(cli.stderr())![1]);
      const httpPort = Number(/listening on http 127\.0\.0\.1:(\d+)/.exec(cli.stderr())![1]);
      const http = `http://127.0.0.1:${httpPort}`;
      const ready = await fetch(`${http}/readyz`);
      assert.equal(ready.status, 200, await ready.text());
      const client = await connectMqtt(mqttPort, { clientId: "from-conf" });
      try {
        const clients = await fetch(`${http}/api/v1/clients`, {
          headers: { authorization: `Bearer ${TOKEN}` },
        });
        assert.equal(clients.status, 200);
        const body = await clients.json();
        assert.deepEqual(
          body.clients.map((c: { clientId: string }) => c.clientId),
          ["from-conf"],
        );
        const metrics = await (await fetch(`${http}/metrics`)).text();
        assert.match(metrics, /^denomq_clients_connected 1$/m);
      } finally {
        await client.endAsync();
      }
    } finally {
      cli.kill("SIGTERM");
      const result = await cli.finished;
      assert.equal(result.code, 0, `exit code; stderr: ${result.stderr}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
