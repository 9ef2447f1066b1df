/**
 * The admin API with a store: a retained message deleted through `DELETE /api/v1/retained/…`
 * stays deleted after a restart on the same `--data-dir`.
 */
import assert from "node:assert/strict";
import { Broker, SqlitePersistence } from "../mod.ts";
import { serveOps } from "./_ops.ts";

const TOKEN = "store-token-0123";
const auth = { headers: { authorization: `Bearer ${TOKEN}` } };

Deno.test("admin API: a retained message deleted with a store stays deleted after a restart", async () => {
  const dir = await Deno.makeTempDir({ prefix: "http_admin_store_" });
  try {
    {
      await using broker = new Broker({
        logLevel: "silent",
        persistence: new SqlitePersistence({ dir }),
      });
      await broker.ready;
      await broker.publish({ topic: "keep/me", payload: "1", qos: 1, retain: true });
      await broker.publish({ topic: "drop/me", payload: "2", qos: 1, retain: true });
      await using server = serveOps(broker, { token: TOKEN });
      const response = await server.get("/api/v1/retained/drop/me", { method: "DELETE", ...auth });
      assert.equal(response.status, 200);
      await response.body?.cancel();
    }
    await using again = new Broker({
      logLevel: "silent",
      persistence: new SqlitePersistence({ dir }),
    });
    await again.ready;
    await using server = serveOps(again, { token: TOKEN });
    const body = await (await server.get("/api/v1/retained", auth)).json();
    assert.deepEqual(body.retained.map((m: { topic: string }) => m.topic), ["keep/me"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
