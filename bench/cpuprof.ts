/**
 * Summarises a V8 `.cpuprofile` (from `deno run --cpu-prof --cpu-prof-dir=DIR ...`, written when
 * the process exits, SIGTERM included): self time per function and inclusive time per broker
 * function, over the whole profile or over its busiest window.
 *
 * @example Profile the broker during the conns scenario
 * ```sh
 * deno run --cpu-prof --cpu-prof-dir=/tmp/prof --allow-net cli.ts --port 1884 --max-connections 20000 &
 * bench/out/loadgen conns --port 1884 --pid $! ; kill %1
 * deno run --allow-read bench/cpuprof.ts /tmp/prof/CPU.*.cpuprofile --window 2
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    window: { type: "string" },
    from: { type: "string" },
    to: { type: "string" },
    timeline: { type: "boolean" },
    top: { type: "string" },
  },
});
if (positionals.length !== 1) {
  console.error(
    "usage: cpuprof.ts FILE.cpuprofile [--window S | --from S --to S] [--timeline] [--top N]",
  );
  Deno.exit(2);
}
const profile: Profile = JSON.parse(await Deno.readTextFile(positionals[0]));
const top = Number(values.top ?? 30);

const byId = new Map<number, Node>();
const parent = new Map<number, number>();
for (const node of profile.nodes) {
  byId.set(node.id, node);
  for (const c of node.children ?? []) parent.set(c, node.id);
}

// sample times (µs from the start)
const times: number[] = [];
let t = 0;
for (const d of profile.timeDeltas) times.push(t += d);

// the busiest window: most non-idle samples within `window` seconds; or --from/--to seconds
let from = 0, to = times.length;
if (values.from !== undefined || values.to !== undefined) {
  const a = Number(values.from ?? 0) * 1e6, b = Number(values.to ?? Infinity) * 1e6;
  from = times.findIndex((x) => x >= a);
  const end = times.findIndex((x) => x > b);
  to = end < 0 ? times.length : end;
} else if (values.window !== undefined) {
  const span = Number(values.window) * 1e6;
  const idle = (i: number) => byId.get(profile.samples[i])!.callFrame.functionName === "(idle)";
  let best = -1, busy = 0, lo = 0;
  for (let hi = 0; hi < times.length; hi++) {
    if (!idle(hi)) busy++;
    while (times[hi] - times[lo] > span) if (!idle(lo++)) busy--;
    if (busy > best) {
      best = busy;
      from = lo;
      to = hi + 1;
    }
  }
}

if (values.timeline) {
  // busy ms per 250 ms, to find the phases
  const buckets: number[] = [];
  for (let i = 0; i + 1 < times.length; i++) {
    if (byId.get(profile.samples[i])!.callFrame.functionName === "(idle)") continue;
    const b = Math.floor(times[i] / 250_000);
    buckets[b] = (buckets[b] ?? 0) + (times[i + 1] - times[i]);
  }
  console.log("timeline, busy ms per 250 ms:");
  for (let b = 0; b < buckets.length; b++) {
    console.log(`  ${(b / 4).toFixed(2).padStart(6)} s  ${((buckets[b] ?? 0) / 1e3).toFixed(0)}`);
  }
}

function name(n: Node): string {
  const f = n.callFrame;
  const file = f.url.replace(/^.*\/(src\/|bench\/|mod\.ts|cli\.ts)/, "$1").replace(/^.*\//, "");
  return `${f.functionName || "(anonymous)"}${file ? ` ${file}:${f.lineNumber + 1}` : ""}`;
}
const isOurs = (n: Node) => /\/src\/|\/mod\.ts$|\/cli\.ts$/.test(n.callFrame.url);

const self = new Map<string, number>();
const inclusive = new Map<string, number>();
let total = 0;
for (let i = from; i < to; i++) {
  // the time of sample i is the delta to the next one
  const dt = (i + 1 < times.length ? times[i + 1] : times[i]) - times[i];
  let node = byId.get(profile.samples[i])!;
  total += dt;
  self.set(name(node), (self.get(name(node)) ?? 0) + dt);
  const seen = new Set<string>();
  for (;;) {
    const k = name(node);
    if (isOurs(node) && !seen.has(k)) {
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + dt);
    }
    const p = parent.get(node.id);
    if (p === undefined) break;
    node = byId.get(p)!;
  }
}

const idle = self.get("(idle)") ?? 0;
console.log(
  `# ${positionals[0]}: ${((times[to - 1] - times[from]) / 1e6).toFixed(2)} s of ${
    (times[times.length - 1] / 1e6).toFixed(2)
  } s, ${to - from} samples; busy ${((total - idle) / 1e3).toFixed(0)} ms (idle ${
    (idle / 1e3).toFixed(0)
  } ms)`,
);
const pct = (x: number) => `${(100 * x / (total - idle)).toFixed(1).padStart(5)}%`;
console.log(`\nself time (share of busy time):`);
for (
  const [k, v] of [...self.entries()].filter(([k]) => k !== "(idle)").sort((a, b) => b[1] - a[1])
    .slice(0, top)
) {
  console.log(`  ${pct(v)}  ${(v / 1e3).toFixed(1).padStart(8)} ms  ${k}`);
}
console.log(`\ninclusive time of broker functions (src/, mod.ts, cli.ts):`);
for (const [k, v] of [...inclusive.entries()].sort((a, b) => b[1] - a[1]).slice(0, top)) {
  console.log(`  ${pct(v)}  ${(v / 1e3).toFixed(1).padStart(8)} ms  ${k}`);
}
