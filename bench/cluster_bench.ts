/**
 * `deno task bench:cluster`: cross-node scenarios. Starts one `nats-server -js` with an `mqtt {}`
 * listener, two of our nodes joined through it (`--cluster`) and one node alone, and runs the
 * load generator (bench/loadgen.c) with publishers on node a and subscribers on node b
 * (`--sub-port`), beside the same scenario on one node and on nats-server's own MQTT listener.
 * Prints a table of the rates and their ratios; exits 1 if a run lost or duplicated messages.
 *
 * Options: `--duration S` (3), `--reps N` (1, medians).
 *
 * @module
 */
import { parseArgs } from "node:util";

const BENCH = new URL(".", import.meta.url).pathname;
const ROOT = new URL("..", import.meta.url).pathname;
const OUT = `${BENCH}out`;
const LOADGEN = `${OUT}/loadgen`;

const { values } = parseArgs({
  args: Deno.args,
  options: { duration: { type: "string" }, reps: { type: "string" } },
});
const duration = Number(values.duration ?? 3);
const reps = Number(values.reps ?? 1);

async function exec(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return new TextDecoder().decode(out.stdout);
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function waitListening(port: number, what: string): Promise<void> {
  const end = Date.now() + 30_000;
  for (;;) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch {
      if (Date.now() > end) throw new Error(`${what} did not listen on ${port}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

await Deno.mkdir(OUT, { recursive: true });
await exec(Deno.env.get("CC") ?? "cc", ["-O2", "-o", LOADGEN, `${BENCH}loadgen.c`]);

const store = await Deno.makeTempDir({ prefix: "denomq-bench-nats-" });
const natsPort = freePort();
const natsMqtt = freePort();
const conf = `${store}/nats.conf`;
await Deno.writeTextFile(
  conf,
  `listen: 127.0.0.1:${natsPort}\nserver_name: bench\njetstream { store_dir: "${store}/js" }\n` +
    `mqtt { listen: 127.0.0.1:${natsMqtt} }\n`,
);
const children: Deno.ChildProcess[] = [];
const spawn = (cmd: string, args: string[]) => {
  const child = new Deno.Command(cmd, { args, stdout: "null", stderr: "null", cwd: ROOT }).spawn();
  children.push(child);
  return child;
};
spawn("nats-server", ["-c", conf]);
await waitListening(natsPort, "nats-server");
const node = (port: number, name?: string) =>
  spawn(Deno.execPath(), [
    "run",
    "--allow-net",
    "cli.ts",
    "--host",
    "127.0.0.1",
    "--port",
    String(port),
    "--log-level",
    "warn",
    "--sys-interval",
    "0",
    ...(name ? ["--cluster", `nats://127.0.0.1:${natsPort}`, "--node-name", name] : []),
  ]);
const [a, b, single] = [freePort(), freePort(), freePort()];
node(a, "a");
node(b, "b");
node(single);
for (const port of [a, b, single]) await waitListening(port, "node");

interface Row {
  scenario: string;
  args: string[];
  metric: "rate" | "p50_us" | "p99_us";
}
const rows: Row[] = [
  { scenario: "fanin", args: [], metric: "rate" },
  { scenario: "qos1", args: [], metric: "rate" },
  { scenario: "qos1", args: ["--pubs", "1", "--inflight", "1"], metric: "rate" },
  { scenario: "latency", args: [], metric: "p50_us" },
];
const targets: [string, string[]][] = [
  ["cross-node", ["--port", String(a), "--sub-port", String(b)]],
  ["one node", ["--port", String(single)]],
  ["nats-server mqtt", ["--port", String(natsMqtt)]],
];
let failed = false;
const median = (xs: number[]) => xs.sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const table: string[][] = [];
try {
  for (const row of rows) {
    const results: Record<string, { value: number; p99?: number }> = {};
    for (const [label, args] of targets) {
      const values: number[] = [];
      const p99s: number[] = [];
      for (let i = 0; i < reps; i++) {
        const line = await exec(LOADGEN, [
          row.scenario,
          ...args,
          ...row.args,
          "--duration",
          String(duration),
        ]);
        const json = JSON.parse(line.trim().split("\n").at(-1)!);
        if (!json.ok || json.lost > 0 || json.dup > 0) {
          failed = true;
          console.error(`${label} ${row.scenario}: ${line}`);
        }
        values.push(json[row.metric]);
        if (row.metric === "p50_us") p99s.push(json.p99_us);
      }
      results[label] = { value: median(values), p99: p99s.length ? median(p99s) : undefined };
    }
    const name = `${row.scenario}${row.args.length ? " " + row.args.join(" ") : ""}`;
    const fmt = (r: { value: number; p99?: number }) =>
      r.p99 === undefined ? String(Math.round(r.value)) : `${r.value} / ${r.p99}`;
    const cross = results["cross-node"].value;
    table.push([
      name,
      row.metric === "rate" ? "msg/s" : "p50 / p99 µs",
      fmt(results["cross-node"]),
      fmt(results["one node"]),
      fmt(results["nats-server mqtt"]),
      (cross / results["one node"].value).toFixed(2),
      (cross / results["nats-server mqtt"].value).toFixed(2),
    ]);
  }
} finally {
  for (const child of children) {
    try {
      child.kill("SIGTERM");
    } catch {
      // Gone already.
    }
    await child.status;
  }
  await Deno.remove(store, { recursive: true }).catch(() => {});
}
const head = [
  "scenario",
  "metric",
  "cross-node",
  "one node",
  "nats-server mqtt",
  "cross/one",
  "cross/nats",
];
console.log(`| ${head.join(" | ")} |\n|${head.map(() => " --- ").join("|")}|`);
for (const r of table) console.log(`| ${r.join(" | ")} |`);
Deno.exit(failed ? 1 : 0);
