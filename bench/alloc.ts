/**
 * `deno task bench:alloc`: bytes allocated per forwarded message, measured in an embedded broker
 * (`new Broker()` from mod.ts, default limits) that bench/out/loadgen drives over loopback.
 *
 * Per scenario it starts a fresh broker twice:
 *
 * 1. **clean pass**: V8's cumulative `total_allocated_bytes` (node:v8 `getHeapStatistics()`, every
 *    object the JS heap handed out, young generation included) and the broker's counters, sampled
 *    at the start and the end of loadgen's measured period. Also counted, without allocating per
 *    event: `read()` / `write()` calls per connection (a wrapper given to `broker.handle()` through
 *    `listen({ accept })`) and `setImmediate` calls (the broker-wide flush; nothing else in this
 *    process schedules one), with the gaps between flush runs.
 * 2. **heap-profiled pass** (unless `--no-profile`): V8's sampling heap profiler
 *    (node:inspector, objects collected by minor and major GCs included) gives the heap bytes per
 *    allocation site (the allocating function, inlined callees included, ← the nearest broker
 *    frame).
 * 3. **counting pass** (unless `--no-profile`): a counting `Uint8Array` constructor and `slice`
 *    give the ArrayBuffer bytes, which live outside the V8 heap when larger than 64 bytes and so
 *    are not in `total_allocated_bytes`, by call site (1 in 16 attributed by stack trace).
 *
 * The profiler and the counting slow the broker down (the received/forwarded mix changes in a
 * flood), so the totals come from the clean pass, and per-message figures of the other passes
 * are given per received message as well.
 *
 * @example
 * ```sh
 * deno task bench:alloc                              # fanin, fanout, flood-qos0, flood-qos1
 * deno task bench:alloc --scenarios flood-qos0 --duration 3
 * ```
 *
 * @module
 */
import { Session } from "node:inspector";
import v8 from "node:v8";
import { parseArgs } from "node:util";
import { Broker, type BrokerConn } from "../mod.ts";
import { ensureLoadgen, LOADGEN } from "./bench.ts";

/** loadgen arguments per scenario. */
const SCENARIOS: Record<string, string[]> = {
  // steady QoS 0 fan-in: 8 publishers, 64-byte payloads, a window of 400 each
  fanin: ["fanin"],
  // 1 publisher, 16 subscribers: one encoding shared by 16 deliveries
  fanout: ["fanout"],
  // one publisher as fast as it can, 64 B..4 KiB, one subscriber reading as fast as it can
  "flood-qos0": ["flood", "--qos", "0"],
  "flood-qos1": ["flood", "--qos", "1"],
  "flood-qos0-frozen": ["flood", "--qos", "0", "--frozen", "1"],
  // 10 000 idle clients (CONNECT/CONNACK); figures per connection, measured from before the
  // first connection until all are in (needs `ulimit -n` above ~10 100)
  conns: ["conns"],
};
const DEFAULT_SCENARIOS = ["fanin", "fanout", "flood-qos0", "flood-qos1"];

const USAGE = `usage: deno task bench:alloc [options]

Bytes allocated per forwarded message in an embedded broker driven by bench/out/loadgen.
  --scenarios a,b   any of ${Object.keys(SCENARIOS).join(",")}
                    (default ${DEFAULT_SCENARIOS.join(",")})
  --duration S      measured seconds (default 5)
  --warmup S        seconds of load before measuring (default 1)
  --no-profile      only the clean pass (no allocation sites, no ArrayBuffer bytes)
  --sampling B      heap profiler sampling interval in bytes (default 16384)
  --json FILE       also write every figure as JSON`;

// ------------------------------------------------------------------ counting hooks

/** setImmediate calls and the gaps between the runs of their callbacks. */
const immediate = { calls: 0, runs: 0, last: 0, gaps: [] as number[] };
const realSetImmediate = globalThis.setImmediate;
// deno-lint-ignore no-explicit-any
(globalThis as any).setImmediate = (callback: (...a: unknown[]) => void, ...args: unknown[]) => {
  immediate.calls++;
  return realSetImmediate(() => {
    const now = performance.now();
    if (immediate.last > 0) immediate.gaps.push(now - immediate.last);
    immediate.last = now;
    immediate.runs++;
    callback(...args);
  });
};

/** A connection as the broker sees it, counting calls (no allocation per call). */
class CountedConn implements BrokerConn {
  reads = 0;
  writes = 0;
  writeBytes = 0;
  readonly #conn: Deno.Conn;
  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }
  get remoteAddr(): Deno.Addr {
    return this.#conn.remoteAddr;
  }
  read(buffer: Uint8Array): Promise<number | null> {
    this.reads++;
    return this.#conn.read(buffer);
  }
  write(data: Uint8Array): Promise<number> {
    this.writes++;
    this.writeBytes += data.length;
    return this.#conn.write(data);
  }
  close(): void {
    this.#conn.close();
  }
}

/** ArrayBuffer bytes handed out by `new Uint8Array` and `Uint8Array.prototype.slice`. */
interface ByteSite {
  count: number;
  bytes: number;
  external: number;
}
const RealUint8Array = Uint8Array;
const realSlice = Uint8Array.prototype.slice;
const byteSites = new Map<string, ByteSite>();
let byteTotals = { count: 0, bytes: 0, external: 0 };
const attributeEvery = 16;
let attributeTick = 0;

// The first frame in our code (src/, mod.ts, cli.ts) of the current stack, as "fn file:line".
function ourFrame(skip: number): string {
  const lines = (new Error().stack ?? "").split("\n").slice(1 + skip);
  for (const line of lines) {
    const m = line.match(
      /at (?:(.*?) \()?(?:file:\/\/)?([^()]*\/(?:src\/.*|mod\.ts|cli\.ts)):(\d+):\d+\)?$/,
    );
    if (m) {
      return `${m[1] ?? "(anonymous)"} ${m[2].replace(/^.*\/(src\/|mod\.ts|cli\.ts)/, "$1")}:${
        m[3]
      }`;
    }
  }
  return "(outside the broker)";
}

function noteBytes(n: number, how: string): void {
  // V8 keeps typed arrays of at most 64 bytes inside the heap; larger ones get a backing store
  const external = n > 64 ? n : 0;
  byteTotals.count++;
  byteTotals.bytes += n;
  byteTotals.external += external;
  if (++attributeTick % attributeEvery !== 0) return;
  const key = `${how} ← ${ourFrame(2)}`;
  const site = byteSites.get(key) ?? { count: 0, bytes: 0, external: 0 };
  site.count += attributeEvery;
  site.bytes += n * attributeEvery;
  site.external += external * attributeEvery;
  byteSites.set(key, site);
}

function countUint8Arrays(on: boolean): void {
  if (!on) {
    globalThis.Uint8Array = RealUint8Array;
    RealUint8Array.prototype.slice = realSlice;
    return;
  }
  byteSites.clear();
  byteTotals = { count: 0, bytes: 0, external: 0 };
  const proxy: typeof Uint8Array = new Proxy(RealUint8Array, {
    construct(target, args, newTarget) {
      const made = Reflect.construct(target, args, newTarget === proxy ? target : newTarget);
      // a view on an existing buffer allocates no bytes
      if (!(args[0] instanceof ArrayBuffer)) noteBytes(made.byteLength, "new Uint8Array");
      return made;
    },
  });
  globalThis.Uint8Array = proxy;
  RealUint8Array.prototype.slice = function (this: Uint8Array, start?: number, end?: number) {
    const made = realSlice.call(this, start, end);
    noteBytes(made.byteLength, "Uint8Array.slice");
    return made;
  } as typeof realSlice;
}

// ------------------------------------------------------------------ heap profiler

interface ProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: ProfileNode[];
}

function inspectorPost<T>(session: Session, method: string, params?: object): Promise<T> {
  return new Promise((resolve, reject) =>
    session.post(
      method,
      params ?? {},
      (error: Error | null, result: unknown) => error ? reject(error) : resolve(result as T),
    )
  );
}

function frameName(f: ProfileNode["callFrame"]): string {
  const file = f.url.replace(/^.*\/(src\/|mod\.ts|cli\.ts)/, "$1").replace(/^.*\//, "");
  return `${f.functionName || "(anonymous)"} ${file}:${f.lineNumber + 1}`;
}

function isOurs(url: string): boolean {
  return /\/src\/|\/mod\.ts$|\/cli\.ts$/.test(url);
}

const INSTRUMENTATION = new Set(["noteBytes", "ourFrame"]);

/** Heap bytes per (allocating function ← nearest frame of ours). */
function heapSites(head: ProfileNode): Map<string, number> {
  const out = new Map<string, number>();
  const walk = (node: ProfileNode, ours: string) => {
    // the Uint8Array counting's own bookkeeping (stack traces) is not the broker's
    if (INSTRUMENTATION.has(node.callFrame.functionName) && /alloc\.ts$/.test(node.callFrame.url)) {
      return;
    }
    const here = isOurs(node.callFrame.url) ? frameName(node.callFrame) : ours;
    if (node.selfSize > 0) {
      const self = frameName(node.callFrame);
      const key = self === here ? self : `${self} ← ${here || "(outside the broker)"}`;
      out.set(key, (out.get(key) ?? 0) + node.selfSize);
    }
    for (const child of node.children) walk(child, here);
  };
  walk(head, "");
  return out;
}

// ------------------------------------------------------------------ one pass

interface Sample {
  t: number;
  connections: number;
  allocated: number;
  messagesIn: number;
  messagesOut: number;
  bytesIn: number;
  bytesOut: number;
  queueFull: number;
  immediates: number;
  flushRuns: number;
  reads: number[];
  writes: number[];
  writeBytes: number[];
}

interface PassResult {
  elapsedS: number;
  forwarded: number;
  received: number;
  dropped: number;
  heapBytes: number;
  flushRuns: number;
  flushCalls: number;
  gapP50: number;
  gapP99: number;
  gapMax: number;
  reads: number;
  maxReadsOneConn: number;
  writes: number;
  maxWritesOneConn: number;
  writeBytesOfThat: number;
  loadgen: Record<string, unknown>;
  heap?: Map<string, number>;
  heapSampled?: number;
  bytes?: { count: number; bytes: number; external: number };
  byteSites?: Map<string, ByteSite>;
}

// V8's cumulative count of heap bytes handed out (node:v8's types do not list it yet).
function totalAllocated(): number {
  const stats = v8.getHeapStatistics() as unknown as Record<string, number>;
  const total = stats.total_allocated_bytes;
  if (typeof total !== "number") throw new Error("this Deno's V8 has no total_allocated_bytes");
  return total;
}

function pct(v: number[], q: number): number {
  if (v.length === 0) return NaN;
  const s = [...v].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

async function which(name: string): Promise<string | undefined> {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      if ((await Deno.stat(`${dir}/${name}`)).isFile) return `${dir}/${name}`;
    } catch {
      // not there
    }
  }
  return undefined;
}

async function runPass(
  scenario: string,
  opts: { durationS: number; warmupS: number; sampling: number },
  mode: "clean" | "heap" | "bytes",
  taskset: string | undefined,
): Promise<PassResult> {
  const broker = new Broker({ logLevel: "warn" });
  const conns: CountedConn[] = [];
  const listener = await broker.listen({
    hostname: "127.0.0.1",
    port: 0,
    accept: (conn) => {
      const counted = new CountedConn(conn);
      conns.push(counted);
      return Promise.resolve(counted);
    },
  });
  const args = [
    ...SCENARIOS[scenario],
    "--port",
    `${listener.port}`,
    "--pid",
    `${Deno.pid}`,
    "--duration",
    `${opts.durationS}`,
    "--warmup",
    `${opts.warmupS}`,
    "--label",
    `alloc-${scenario}`,
  ];
  const argv = taskset ? [taskset, "-c", "1", LOADGEN, ...args] : [LOADGEN, ...args];
  const spawn = () =>
    new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn().output();
  const perConnection = scenario === "conns";
  let output = perConnection ? undefined : spawn();

  const sample = (): Sample => {
    const s = broker.stats();
    return {
      t: performance.now(),
      connections: s.connectionsTotal,
      allocated: totalAllocated(),
      messagesIn: s.messagesIn,
      messagesOut: s.messagesOut,
      bytesIn: s.bytesIn,
      bytesOut: s.bytesOut,
      queueFull: s.dropped.queueFull,
      immediates: immediate.calls,
      flushRuns: immediate.runs,
      reads: conns.map((c) => c.reads),
      writes: conns.map((c) => c.writes),
      writeBytes: conns.map((c) => c.writeBytes),
    };
  };
  // loadgen connects and subscribes first: the measured period starts about `warmup` after the
  // publishers are up; waiting for the first message in makes the two line up within a turn
  const started = performance.now();
  while (
    !perConnection && broker.stats().messagesIn === 0 && performance.now() - started < 30_000
  ) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  if (!perConnection) await new Promise((resolve) => setTimeout(resolve, opts.warmupS * 1000));
  let session: Session | undefined;
  if (mode === "bytes") countUint8Arrays(true);
  if (mode === "heap") {
    session = new Session();
    session.connect();
    await inspectorPost(session, "HeapProfiler.enable");
    await inspectorPost(session, "HeapProfiler.startSampling", {
      samplingInterval: opts.sampling,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    });
  }
  immediate.gaps = [];
  immediate.last = 0;
  const a = sample();
  if (perConnection) {
    // from the first connection to the last CONNACK
    output = spawn();
    const all = 10_000; // loadgen conns' default
    while (broker.stats().connectionsTotal < all && performance.now() - a.t < 60_000) {
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  } else {
    await new Promise((resolve) => setTimeout(resolve, opts.durationS * 1000));
  }
  const b = sample();
  let heap: Map<string, number> | undefined;
  let heapSampled: number | undefined;
  let bytes: PassResult["bytes"];
  let sites: PassResult["byteSites"];
  if (mode === "bytes") {
    countUint8Arrays(false);
    bytes = { ...byteTotals };
    sites = new Map(byteSites);
  }
  if (session !== undefined) {
    const { profile } = await inspectorPost<{ profile: { head: ProfileNode } }>(
      session,
      "HeapProfiler.stopSampling",
    );
    heap = heapSites(profile.head);
    heapSampled = [...heap.values()].reduce((x, y) => x + y, 0);
    session.disconnect();
  }
  const gaps = immediate.gaps;
  const out = await output!;
  const line = new TextDecoder().decode(out.stdout).trim().split("\n").pop() ?? "";
  let loadgen: Record<string, unknown>;
  try {
    loadgen = JSON.parse(line);
  } catch {
    loadgen = { ok: false, error: new TextDecoder().decode(out.stderr).slice(0, 300) };
  }
  await listener.close();
  await broker.close();

  const readsPerConn = a.reads.map((r, i) => b.reads[i] - r);
  const writesPerConn = a.writes.map((w, i) => b.writes[i] - w);
  const busiestWriter = writesPerConn.indexOf(Math.max(...writesPerConn));
  // per connection in `conns`: "forwarded" and "received" then count connections
  const units = (x: number) => perConnection ? b.connections - a.connections : x;
  return {
    elapsedS: (b.t - a.t) / 1000,
    forwarded: units(b.messagesOut - a.messagesOut),
    received: units(b.messagesIn - a.messagesIn),
    dropped: b.queueFull - a.queueFull,
    heapBytes: b.allocated - a.allocated,
    flushRuns: b.flushRuns - a.flushRuns,
    flushCalls: b.immediates - a.immediates,
    gapP50: pct(gaps, 0.5),
    gapP99: pct(gaps, 0.99),
    gapMax: gaps.length ? Math.max(...gaps) : NaN,
    reads: readsPerConn.reduce((x, y) => x + y, 0),
    maxReadsOneConn: Math.max(...readsPerConn),
    writes: writesPerConn.reduce((x, y) => x + y, 0),
    maxWritesOneConn: writesPerConn[busiestWriter] ?? 0,
    writeBytesOfThat: (b.writeBytes[busiestWriter] ?? 0) - (a.writeBytes[busiestWriter] ?? 0),
    loadgen,
    heap,
    heapSampled,
    bytes,
    byteSites: sites,
  };
}

// ------------------------------------------------------------------ report

function n(x: number, digits = 0): string {
  if (!Number.isFinite(x)) return "-";
  return x.toLocaleString("en-US", {
    maximumFractionDigits: digits,
    minimumFractionDigits: digits,
  });
}

function report(
  scenario: string,
  clean: PassResult,
  profiled: PassResult | undefined,
  counted: PassResult | undefined,
): string[] {
  const out: string[] = [];
  const perS = (x: number) => x / clean.elapsedS;
  const lg = clean.loadgen;
  out.push(`## ${scenario}  (loadgen ${SCENARIOS[scenario].join(" ")})`);
  if (scenario === "conns") {
    out.push("");
    out.push('(conns: every "message" below is one connection: CONNECT in, CONNACK out)');
  }
  out.push("");
  out.push(`clean pass, ${n(clean.elapsedS, 2)} s measured:`);
  out.push(
    `  forwarded ${n(perS(clean.forwarded))} msg/s, received ${n(perS(clean.received))} msg/s, ` +
      `dropped (queue full) ${n(perS(clean.dropped))} msg/s; loadgen: rate ${lg.rate}, ` +
      `pub_rate ${lg.pub_rate}, broker_cpu ${lg.broker_cpu}, ok ${lg.ok}`,
  );
  out.push(
    `  V8 heap bytes allocated per forwarded message: ${
      n(clean.heapBytes / clean.forwarded)
    }  (per received message: ${n(clean.heapBytes / clean.received)}; ${
      n(perS(clean.heapBytes) / 1e6, 1)
    } MB/s)`,
  );
  if (counted?.bytes) {
    // scaled by the clean pass's received/forwarded mix: most of it is per received message
    const extRcvd = counted.bytes.external / counted.received;
    const extFwd = extRcvd * clean.received / clean.forwarded;
    out.push(
      `  ArrayBuffer bytes outside the heap (counting pass): ${n(extRcvd)} per received message` +
        ` = ${n(extFwd)} per forwarded message at this mix`,
    );
    out.push(
      `  => bytes allocated per forwarded message: ${
        n(clean.heapBytes / clean.forwarded + extFwd)
      } (heap ${n(clean.heapBytes / clean.forwarded)} + ArrayBuffers ${n(extFwd)}); per ` +
        `received message: ${n(clean.heapBytes / clean.received + extRcvd)}`,
    );
  }
  out.push(
    `  flush (setImmediate) runs ${n(perS(clean.flushRuns))}/s, gap between runs p50 ${
      n(clean.gapP50, 2)
    } ms, p99 ${n(clean.gapP99, 2)} ms, max ${n(clean.gapMax, 1)} ms`,
  );
  out.push(
    `  read() calls ${n(perS(clean.reads))}/s over all connections (busiest one ${
      n(perS(clean.maxReadsOneConn))
    }/s) = ${n(clean.reads / clean.flushRuns, 1)} reads per flush; ${
      n(clean.forwarded / clean.flushRuns, 1)
    } messages forwarded per flush`,
  );
  out.push(
    `  write() calls ${n(perS(clean.writes))}/s (busiest connection ${
      n(perS(clean.maxWritesOneConn))
    }/s, ${n(clean.writeBytesOfThat / Math.max(1, clean.maxWritesOneConn))} bytes per write)`,
  );
  if (profiled?.heap && profiled.heapSampled) {
    out.push("");
    out.push(
      `heap-profiled pass (${n(profiled.forwarded / profiled.elapsedS)} forwarded and ${
        n(profiled.received / profiled.elapsedS)
      } received msg/s under the profiler): heap sampled ${
        n(profiled.heapSampled / profiled.forwarded)
      } bytes per forwarded message, ${
        n(profiled.heapSampled / profiled.received)
      } per received; top sites (allocating function ← nearest broker frame):`,
    );
    out.push(`  B/fwd msg  B/rcvd msg  share  site`);
    const sites = [...profiled.heap.entries()].sort((x, y) => y[1] - x[1]).slice(0, 16);
    for (const [site, bytes] of sites) {
      out.push(
        `  ${n(bytes / profiled.forwarded).padStart(9)}  ${
          n(bytes / profiled.received).padStart(10)
        }  ${n(100 * bytes / profiled.heapSampled, 1).padStart(4)}%  ${site}`,
      );
    }
  }
  if (counted?.bytes) {
    const profiled = counted;
    out.push("");
    out.push(
      `counting pass (${n(profiled.forwarded / profiled.elapsedS)} forwarded and ${
        n(profiled.received / profiled.elapsedS)
      } received msg/s): Uint8Array allocations: ${
        n(profiled.bytes!.count / profiled.forwarded, 2)
      } per forwarded ` +
        `(${n(profiled.bytes!.count / profiled.received, 2)} per received) ` +
        `message, ${
          n(profiled.bytes!.bytes / profiled.forwarded)
        } bytes (of which outside the heap ${
          n(profiled.bytes!.external / profiled.forwarded)
        }); by site (1 in ${attributeEvery} attributed):`,
    );
    const bsites = [...profiled.byteSites!.entries()].sort((x, y) => y[1].bytes - x[1].bytes)
      .slice(0, 10);
    out.push(`  B/fwd msg  B/rcvd msg  per rcvd msg  B each  site`);
    for (const [site, s] of bsites) {
      out.push(
        `  ${n(s.bytes / profiled.forwarded).padStart(9)}  ${
          n(s.bytes / profiled.received).padStart(10)
        }  ${n(s.count / profiled.received, 3).padStart(12)}  ${
          n(s.bytes / s.count).padStart(6)
        }  ${site}`,
      );
    }
  }
  out.push("");
  return out;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      scenarios: { type: "string" },
      duration: { type: "string" },
      warmup: { type: "string" },
      "no-profile": { type: "boolean" },
      sampling: { type: "string" },
      json: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const scenarios = (values.scenarios ?? DEFAULT_SCENARIOS.join(",")).split(",").filter((s) => s);
  for (const s of scenarios) {
    if (!(s in SCENARIOS)) {
      console.error(`bench:alloc: unknown scenario "${s}" (see --help)`);
      Deno.exit(2);
    }
  }
  const opts = {
    durationS: Number(values.duration ?? 5),
    warmupS: Number(values.warmup ?? 1),
    profile: !values["no-profile"],
    sampling: Number(values.sampling ?? 16384),
  };
  await ensureLoadgen();
  // the broker (this process, every thread) on CPU 0, loadgen on CPU 1, as in `deno task bench`
  const taskset = await which("taskset");
  if (taskset) {
    await new Deno.Command(taskset, {
      args: ["-a", "-p", "-c", "0", `${Deno.pid}`],
      stdout: "null",
      stderr: "null",
    }).output();
  }
  console.log(
    `# bench:alloc ${
      new Date().toISOString()
    }  deno ${Deno.version.deno}, V8 ${Deno.version.v8}, ` +
      `${navigator.hardwareConcurrency} CPUs, loadavg ${Deno.loadavg().join(" ")}; ` +
      `${opts.warmupS} s warm-up + ${opts.durationS} s per pass` +
      (taskset ? "; broker CPU 0, loadgen CPU 1" : "; not pinned"),
  );
  console.log("");
  const all: Record<string, unknown> = {};
  for (const scenario of scenarios) {
    const clean = await runPass(scenario, opts, "clean", taskset);
    const profiled = opts.profile ? await runPass(scenario, opts, "heap", taskset) : undefined;
    const counted = opts.profile ? await runPass(scenario, opts, "bytes", taskset) : undefined;
    for (const line of report(scenario, clean, profiled, counted)) console.log(line);
    const plain = (p: PassResult | undefined) =>
      p && {
        ...p,
        heap: p.heap && Object.fromEntries(p.heap),
        byteSites: p.byteSites && Object.fromEntries(p.byteSites),
      };
    all[scenario] = { clean: plain(clean), heap: plain(profiled), bytes: plain(counted) };
  }
  if (values.json) await Deno.writeTextFile(values.json, JSON.stringify(all, null, 2) + "\n");
}

if (import.meta.main) await main();
