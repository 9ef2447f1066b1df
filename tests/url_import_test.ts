/**
 * The module works when imported from a URL, with no config file and no import map: the
 * repository is served over local HTTP and a separate `deno run --no-config` process imports
 * `http://127.0.0.1:PORT/mod.ts`, starts a broker and exchanges a message with itself.
 */
import assert from "node:assert/strict";
import { run } from "./_util.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

const CONTENT_TYPES: Record<string, string> = {
  ts: "application/typescript; charset=utf-8",
  mts: "application/typescript; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  mjs: "text/javascript; charset=utf-8",
  json: "application/json",
};

/** Serves files of the repository, read-only, refusing paths that leave it. */
function serveRepository(): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    const path = decodeURIComponent(new URL(request.url).pathname);
    if (path.split("/").includes("..")) return new Response("forbidden", { status: 403 });
    const type = CONTENT_TYPES[path.split(".").at(-1) ?? ""];
    if (type === undefined) return new Response("not found", { status: 404 });
    try {
      return new Response(await Deno.readFile(ROOT + path), { headers: { "content-type": type } });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
}

/** The program the subprocess runs: raw MQTT bytes, nothing imported but the broker. */
function program(base: string): string {
  return `
import { Broker } from "${base}/mod.ts";

const deadline = setTimeout(() => {
  console.log("TIMEOUT");
  Deno.exit(3);
}, 15_000);
const enc = new TextEncoder();
const str = (s) => { const b = enc.encode(s); return [b.length >> 8, b.length & 255, ...b]; };
const packet = (first, body) => Uint8Array.from([first, body.length, ...body]);

const broker = new Broker({ logLevel: "silent" });
const { port } = await broker.listen({ hostname: "127.0.0.1", port: 0 });
const conn = await Deno.connect({ hostname: "127.0.0.1", port });
let buffer = new Uint8Array(0);
async function next() {
  for (;;) {
    if (buffer.length >= 2 && buffer.length >= 2 + buffer[1]) {
      const p = { type: buffer[0] >> 4, body: buffer.slice(2, 2 + buffer[1]) };
      buffer = buffer.slice(2 + buffer[1]);
      return p;
    }
    const chunk = new Uint8Array(1024);
    const n = await conn.read(chunk);
    if (n === null) throw new Error("connection closed");
    buffer = Uint8Array.from([...buffer, ...chunk.subarray(0, n)]);
  }
}
await conn.write(packet(0x10, [...str("MQTT"), 4, 2, 0, 30, ...str("url-import")]));
const connack = await next();
if (connack.type !== 2 || connack.body[1] !== 0) throw new Error("no CONNACK 0");
await conn.write(packet(0x82, [0, 1, ...str("url/t"), 1]));
const suback = await next();
if (suback.type !== 9 || suback.body[2] !== 1) throw new Error("no SUBACK 1");
await conn.write(packet(0x30, [...str("url/t"), ...enc.encode("hello over a URL")]));
const publish = await next();
const topicLength = (publish.body[0] << 8) | publish.body[1];
const topic = new TextDecoder().decode(publish.body.subarray(2, 2 + topicLength));
const payload = new TextDecoder().decode(publish.body.subarray(2 + topicLength));
if (publish.type !== 3 || topic !== "url/t" || payload !== "hello over a URL") {
  throw new Error("unexpected " + JSON.stringify({ type: publish.type, topic, payload }));
}
conn.close();
await broker.close();
clearTimeout(deadline);
console.log("OK");
`;
}

Deno.test("mod.ts imported from http://127.0.0.1 with --no-config serves a raw MQTT client", async () => {
  const server = serveRepository();
  // A private DENO_DIR: nothing of this test stays in the shared module cache.
  const dir = await Deno.makeTempDir({ prefix: "url_import_test_" });
  try {
    const base = `http://127.0.0.1:${server.addr.port}`;
    const script = `${dir}/main.ts`;
    await Deno.writeTextFile(script, program(base));
    const env = { DENO_DIR: `${dir}/deno_dir`, NO_COLOR: "1" };
    const result = await run(Deno.execPath(), [
      "run",
      "--no-config",
      "--no-lock",
      "--allow-net=127.0.0.1",
      `--allow-import=127.0.0.1:${server.addr.port}`,
      script,
    ], { env, cwd: dir, deadlineMs: 60_000 });
    assert.equal(result.code, 0, `stdout: ${result.stdout}\nstderr: ${result.stderr}`);
    assert.equal(result.stdout.trim(), "OK");

    // The program too runs straight from the URL.
    const cli = await run(Deno.execPath(), [
      "run",
      "--no-config",
      "--no-lock",
      `--allow-import=127.0.0.1:${server.addr.port}`,
      `${base}/cli.ts`,
      "--version",
    ], { env, cwd: dir, deadlineMs: 60_000 });
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, /^denomq \d+\.\d+\.\d+/);
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});
