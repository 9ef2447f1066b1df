/**
 * `deno task bench`: builds the load generator (bench/loadgen.c), starts a fresh broker for
 * every run, runs the scenarios against our broker and, when `mosquitto` is on PATH, against
 * mosquitto in the same session (interleaved), and prints a table with ratios ours/mosquitto.
 * Results also go to `bench/out/results-<timestamp>.json`. See bench/README.md.
 *
 * @example Run every scenario once, 5 s each
 * ```sh
 * deno task bench
 * deno task bench --scenarios fanin,latency --duration 3 --reps 3
 * deno task bench --broker-cmd "node my-broker.mjs --port {PORT}" --no-mosquitto
 * ```
 *
 * @module
 */
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

/** The scenarios, in the order they run. */
export const SCENARIOS = [
  "fanin",
  "fanout",
  "qos1",
  "qos1-durable",
  "latency",
  "conns",
  "wildcard",
  "flood-qos0",
  "flood-qos0-frozen",
  "flood-qos1",
  "flood-qos1-frozen",
  "flood-many",
] as const;
/** One of {@linkcode SCENARIOS}. */
export type Scenario = typeof SCENARIOS[number];

/** Names for several scenarios at once in `--scenarios`. */
export const SCENARIO_GROUPS: Record<string, Scenario[]> = {
  flood: ["flood-qos0", "flood-qos0-frozen", "flood-qos1", "flood-qos1-frozen", "flood-many"],
};

/** The flood scenarios: loadgen's `flood`, no window, loss reported rather than failing. */
function isFlood(scenario: Scenario): boolean {
  return scenario.startsWith("flood-");
}

/**
 * `qos1-durable` is loadgen's `qos1` with a persistent subscriber session, against brokers that
 * persist it: ours with `--data-dir` (a fresh temporary directory per run), mosquitto with
 * `persistence true`. Every other scenario is the loadgen scenario of the same name.
 */
function loadgenScenario(scenario: Scenario): string {
  if (isFlood(scenario)) return "flood";
  return scenario === "qos1-durable" ? "qos1" : scenario;
}

/** Extra loadgen flags per scenario (before --loadgen-args). */
const LOADGEN_SCENARIO_ARGS: Partial<Record<Scenario, string[]>> = {
  // Only a persistent session's messages are stored: with clean sessions nothing would be.
  "qos1-durable": ["--persistent-subs"],
  // One publisher as fast as it can, 64 B..4 KiB payloads, one subscriber reading as fast as it
  // can; "-frozen" adds a subscriber that subscribes and never reads.
  "flood-qos0": ["--qos", "0"],
  "flood-qos0-frozen": ["--qos", "0", "--frozen", "1"],
  "flood-qos1": ["--qos", "1"],
  "flood-qos1-frozen": ["--qos", "1", "--frozen", "1"],
  // 50 publishers flooding one subscriber that reads 1 MB/s: what holds the broker's memory.
  "flood-many": ["--qos", "0", "--pubs", "50", "--sub-rate", "1000000"],
};

/** Scenarios that run against a broker keeping its state on disk. */
function isDurable(scenario: Scenario): boolean {
  return scenario === "qos1-durable";
}

/** A row of the table: a field of loadgen's JSON line and which direction is better. */
interface Metric {
  label: string;
  key: string;
  better: "higher" | "lower" | "info";
}

const CPU_ROWS: Metric[] = [
  { label: "broker CPU (cores)", key: "broker_cpu", better: "info" },
  { label: "loadgen CPU (cores)", key: "lg_cpu", better: "info" },
  { label: "broker's core busy", key: "broker_cores_busy", better: "info" },
  { label: "loadgen's core busy", key: "lg_cores_busy", better: "info" },
];
const PER_CPU: Metric = { label: "msg per broker CPU-s", key: "rate_per_cpu", better: "higher" };

const QOS1_METRICS: Metric[] = [
  { label: "delivered msg/s", key: "rate", better: "higher" },
  PER_CPU,
  { label: "lost", key: "lost", better: "lower" },
  { label: "duplicates", key: "dup", better: "lower" },
];

/** The flood rows; `rss_*_mb` are added by the bench from loadgen's `rss_*_kb`. */
const FLOOD_METRICS: Metric[] = [
  { label: "healthy sub msg/s", key: "rate", better: "higher" },
  { label: "published msg/s", key: "pub_rate", better: "info" },
  { label: "delivered %", key: "delivered_pct", better: "higher" },
  { label: "lost (healthy sub)", key: "lost", better: "lower" },
  PER_CPU,
  { label: "RSS idle, MB", key: "rss_idle_mb", better: "lower" },
  { label: "RSS peak, MB", key: "rss_peak_mb", better: "lower" },
  { label: "RSS growth, MB", key: "rss_growth_mb", better: "lower" },
];

/** What the table shows per scenario (keys are loadgen JSON fields, plus `rate_per_cpu`). */
const METRICS: Record<Scenario, Metric[]> = {
  fanin: [
    { label: "delivered msg/s", key: "rate", better: "higher" },
    PER_CPU,
    { label: "lost", key: "lost", better: "lower" },
  ],
  fanout: [
    { label: "deliveries/s", key: "rate", better: "higher" },
    PER_CPU,
    { label: "lost", key: "lost", better: "lower" },
  ],
  qos1: QOS1_METRICS,
  // The same measurement with the store on: the rows must match for the durable/in-memory ratio.
  "qos1-durable": QOS1_METRICS,
  latency: [
    { label: "p50 µs", key: "p50_us", better: "lower" },
    { label: "p99 µs", key: "p99_us", better: "lower" },
    { label: "max µs", key: "max_us", better: "lower" },
  ],
  conns: [
    { label: "connect all, ms", key: "connect_ms", better: "lower" },
    { label: "RSS bytes/conn", key: "bytes_per_conn", better: "lower" },
    { label: "RSS with conns, kB", key: "rss_after_kb", better: "lower" },
  ],
  wildcard: [
    { label: "delivered msg/s", key: "rate", better: "higher" },
    PER_CPU,
    { label: "subscribe all, ms", key: "subscribe_ms", better: "lower" },
    { label: "lost", key: "lost", better: "lower" },
  ],
  "flood-qos0": FLOOD_METRICS,
  "flood-qos0-frozen": FLOOD_METRICS,
  "flood-qos1": FLOOD_METRICS,
  "flood-qos1-frozen": FLOOD_METRICS,
  "flood-many": FLOOD_METRICS,
};

/** Extra flags for our broker per scenario (limits the scenario needs, whatever the defaults). */
const OUR_SCENARIO_ARGS: Partial<Record<Scenario, string[]>> = {
  conns: ["--max-connections", "20000"],
};

const USAGE = `usage: deno task bench [options]

Runs each scenario against a freshly started broker per run: ours (cli.ts) and, when
mosquitto is on PATH, mosquitto (interleaved), and prints medians and ratios ours/mosquitto.

  --scenarios a,b      any of ${SCENARIOS.join(",")},
                       or "flood" for every flood-* scenario (default: all)
  --duration S         measured seconds per run (default 5)
  --warmup S           seconds of load before measuring (default 1)
  --reps N             repetitions; the table shows medians (default 1)
  --no-mosquitto       only our broker
  --broker-cmd "CMD"   bench this shell command instead of our broker; {PORT} (and $PORT)
                       is its port; it must listen on 127.0.0.1 only
  --extra-args "ARGS"  more flags for our broker (split on spaces), e.g. "--max-queued 5000"
  --data-dir DIR       passed to our broker as --data-dir DIR (and grants it read/write there);
                       qos1-durable always uses a fresh temporary directory instead
  --loadgen-args "A"   more flags for every loadgen run (split on spaces), e.g. "--window 64";
                       bench/out/loadgen --help lists them
  --no-pin             do not pin the broker to CPU 0 and the load generator to CPU 1
  --cluster            then the cross-node scenarios (bench/cluster_bench.ts: two nodes through
                       nats-server, beside one node and nats-server's MQTT listener)
  --help               this text

Results: a table on stdout, one progress line per run on stderr, and
bench/out/results-<timestamp>.json. Exit status 0 = every run ok, 1 = some run failed,
2 = bad usage or missing tools.`;

/** What the command line asked for. */
export interface BenchOptions {
  scenarios: Scenario[];
  durationS: number;
  warmupS: number;
  reps: number;
  mosquitto: boolean;
  brokerCmd?: string;
  extraArgs: string[];
  loadgenArgs: string[];
  dataDir?: string;
  pin: boolean;
  /** Also the cross-node scenarios of bench/cluster_bench.ts, after the others. */
  cluster: boolean;
}

/** Parses bench flags; throws a TypeError with a one-line message on a bad flag. */
export function parseBenchArgs(args: string[]): BenchOptions | "help" {
  // these take other programs' flags as values: accept "--extra-args --max-queued 5000"
  // (node:util would call a value starting with "-" ambiguous and want "--extra-args=...")
  const passThrough = new Set(["--extra-args", "--loadgen-args", "--broker-cmd"]);
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (passThrough.has(args[i]) && i + 1 < args.length) joined.push(`${args[i]}=${args[++i]}`);
    else joined.push(args[i]);
  }
  let values;
  try {
    ({ values } = parseArgs({
      args: joined,
      strict: true,
      allowPositionals: false,
      options: {
        scenarios: { type: "string" },
        duration: { type: "string" },
        warmup: { type: "string" },
        reps: { type: "string" },
        "no-mosquitto": { type: "boolean" },
        "broker-cmd": { type: "string" },
        "extra-args": { type: "string" },
        "loadgen-args": { type: "string" },
        "data-dir": { type: "string" },
        "no-pin": { type: "boolean" },
        cluster: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (e) {
    throw new TypeError((e as Error).message.split("\n")[0]);
  }
  if (values.help) return "help";
  const scenarios: Scenario[] = [];
  const names = (values.scenarios ?? SCENARIOS.join(",")).split(",")
    .flatMap((s) => SCENARIO_GROUPS[s.trim()] ?? [s]);
  for (const s of names) {
    const name = s.trim();
    if (!name) continue;
    if (!(SCENARIOS as readonly string[]).includes(name)) {
      throw new TypeError(
        `--scenarios: unknown scenario "${name}" (known: ${SCENARIOS.join(",")}, flood)`,
      );
    }
    if (!scenarios.includes(name as Scenario)) scenarios.push(name as Scenario);
  }
  if (scenarios.length === 0) throw new TypeError("--scenarios: no scenario given");
  const num = (flag: string, v: string | undefined, dflt: number, min: number, max: number) => {
    if (v === undefined) return dflt;
    const n = Number(v);
    if (v.trim() === "" || !Number.isFinite(n) || n < min || n > max) {
      throw new TypeError(`--${flag}: expected a number from ${min} to ${max}, got "${v}"`);
    }
    return n;
  };
  const reps = num("reps", values.reps, 1, 1, 1000);
  if (!Number.isInteger(reps)) {
    throw new TypeError(`--reps: expected an integer, got "${values.reps}"`);
  }
  const brokerCmd = values["broker-cmd"];
  if (brokerCmd !== undefined && !brokerCmd.includes("{PORT}") && !brokerCmd.includes("$PORT")) {
    throw new TypeError("--broker-cmd: the command must contain {PORT} (or $PORT)");
  }
  return {
    scenarios,
    durationS: num("duration", values.duration, 5, 0.5, 3600),
    warmupS: num("warmup", values.warmup, 1, 0, 600),
    reps,
    mosquitto: !values["no-mosquitto"],
    brokerCmd,
    extraArgs: (values["extra-args"] ?? "").split(/\s+/).filter((a) => a !== ""),
    loadgenArgs: (values["loadgen-args"] ?? "").split(/\s+/).filter((a) => a !== ""),
    dataDir: values["data-dir"] === undefined ? undefined : resolve(values["data-dir"]),
    pin: !values["no-pin"],
    cluster: values.cluster === true,
  };
}

// ------------------------------------------------------------------ environment

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
const REPO_DIR = dirname(BENCH_DIR);
const OUT_DIR = `${BENCH_DIR}/out`;
const LOADGEN_SRC = `${BENCH_DIR}/loadgen.c`;
export const LOADGEN = `${OUT_DIR}/loadgen`;

/** Absolute path of an executable (a name looked up on PATH, or a path), or undefined. */
async function which(name: string): Promise<string | undefined> {
  const candidates = name.includes("/")
    ? [resolve(name)]
    : (Deno.env.get("PATH") ?? "").split(":").filter((d) => d !== "").map((d) => `${d}/${name}`);
  for (const path of candidates) {
    try {
      const st = await Deno.stat(path);
      if (st.isFile && st.mode !== null && (st.mode & 0o111) !== 0) return path;
    } catch {
      // not there
    }
  }
  return undefined;
}

async function run(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  const r = await new Deno.Command(cmd, { args, stdin: "null", stdout: "piped", stderr: "piped" })
    .output();
  const td = new TextDecoder();
  return { code: r.code, out: td.decode(r.stdout) + td.decode(r.stderr) };
}

async function mtime(path: string): Promise<number | undefined> {
  try {
    return (await Deno.stat(path)).mtime?.getTime() ?? 0;
  } catch {
    return undefined;
  }
}

/** Builds bench/out/loadgen when missing or older than its source; exits 2 without a C compiler. */
export async function ensureLoadgen(): Promise<void> {
  const bin = await mtime(LOADGEN);
  const src = await mtime(LOADGEN_SRC);
  if (src === undefined) fail(`${LOADGEN_SRC} is missing`, 2);
  if (bin !== undefined && bin >= src) return;
  const cc = Deno.env.get("CC") ?? "cc";
  if (!(await which(cc))) {
    fail(
      `no C compiler ("${cc}") found: install gcc (Debian/Ubuntu: apt-get install build-essential)`,
      2,
    );
  }
  await Deno.mkdir(OUT_DIR, { recursive: true });
  progress(`building ${LOADGEN} with ${cc}`);
  // build beside and rename: a concurrent bench never runs a half-written binary
  const tmp = `${LOADGEN}.${Deno.pid}.tmp`;
  const r = await run(cc, ["-O2", "-Wall", "-Wextra", "-o", tmp, LOADGEN_SRC]);
  if (r.code !== 0) {
    console.error(r.out.trimEnd());
    await Deno.remove(tmp).catch(() => {});
    fail(`building the load generator failed (${cc} exit ${r.code})`, 1);
  }
  await Deno.rename(tmp, LOADGEN);
  if (r.out.trim()) console.error(r.out.trimEnd()); // warnings: show them, they are defects
}

function fail(message: string, code: number): never {
  console.error(`bench: ${message}`);
  Deno.exit(code);
}

function progress(line: string): void {
  const t = new Date().toTimeString().slice(0, 8);
  console.error(`${t} ${line}`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A port nobody listens on at 127.0.0.1 right now. */
function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

// ---------------------------------------------------------------------- brokers

/** How to start one broker under test. */
interface BrokerSpec {
  name: string;
  /** argv for `exec` (our broker, mosquitto) or a shell command line (--broker-cmd). */
  command: (port: number, scenario: Scenario) => Promise<BrokerCommand>;
}

/**
 * An argv to exec, or a shell command line; `files` and `dirs` (recursively) are removed when
 * the broker stops.
 */
interface BrokerCommand {
  argv?: string[];
  shell?: string;
  files?: string[];
  dirs?: string[];
}

interface RunningBroker {
  child: Deno.ChildProcess;
  /** Started by setsid: the broker's pid is its process group id, and the group is signalled. */
  group: boolean;
  pid: number;
  exited: boolean;
  files: string[];
  dirs: string[];
}

interface Tools {
  setsid?: string;
  taskset?: string;
  pin: boolean;
}

function ourBroker(opts: BenchOptions): BrokerSpec {
  const cli = `${REPO_DIR}/cli.ts`;
  return {
    name: "ours",
    command: async (port, scenario) => {
      const perms = ["--allow-net"];
      const extra = [...(OUR_SCENARIO_ARGS[scenario] ?? []), ...opts.extraArgs];
      const dirs: string[] = [];
      const dataDir = isDurable(scenario)
        ? await Deno.makeTempDir({ prefix: "bench-durable-" })
        : opts.dataDir;
      if (isDurable(scenario)) dirs.push(dataDir!);
      if (dataDir !== undefined) {
        perms.push(`--allow-read=${dataDir}`, `--allow-write=${dataDir}`);
        extra.push("--data-dir", dataDir);
      }
      const cliArgs = ["--host", "127.0.0.1", "--port", `${port}`];
      // warn: like mosquitto's generated config (errors and warnings only); logging every
      // connection would be measured too
      cliArgs.push("--log-level", "warn");
      const argv = [Deno.execPath(), "run", ...perms, cli, ...cliArgs];
      return { argv: [...argv, ...extra], dirs };
    },
  };
}

function customBroker(cmd: string): BrokerSpec {
  return {
    name: "custom",
    command: (port) => Promise.resolve({ shell: cmd.replaceAll("{PORT}", `${port}`) }),
  };
}

function mosquittoBroker(bin: string): BrokerSpec {
  return {
    name: "mosquitto",
    command: async (port, scenario) => {
      const conf = `${OUT_DIR}/mosquitto-${port}.conf`;
      // qos1-durable: mosquitto's own persistence, in a fresh directory. Note that mosquitto
      // writes its in-memory state to mosquitto.db only every autosave_interval (1800 s) and at
      // exit, not before each PUBACK: the column shows what its persistence mode costs, not the
      // same promise as ours.
      const dirs: string[] = [];
      const persistence = ["persistence false"];
      if (isDurable(scenario)) {
        const dir = await Deno.makeTempDir({ prefix: "bench-mosquitto-" });
        dirs.push(dir);
        persistence.splice(0, 1, "persistence true", `persistence_location ${dir}/`);
      }
      // max_queued_messages 0 (unlimited): Debian 12's mosquitto 2.0.11 strands QoS 1
      // messages in its queue (inflight quota bug, fixed in 2.0.13) and then drops them at
      // the default limit of 1000; loadgen bounds what is outstanding itself.
      // Flood scenarios: mosquitto's default queue limit (1000 messages), as a user would run
      // it. Unlimited, a subscriber that never reads makes mosquitto hold every message (measured:
      // +250 MB in 3 s), which says nothing about either broker.
      const queue = isFlood(scenario) ? [] : ["max_queued_messages 0"];
      await Deno.writeTextFile(
        conf,
        [
          `listener ${port} 127.0.0.1`,
          "allow_anonymous true",
          ...persistence,
          ...queue,
          "log_dest stderr",
          "log_type error",
          "log_type warning",
          "",
        ].join("\n"),
      );
      return { argv: [bin, "-c", conf], files: [conf], dirs };
    },
  };
}

/**
 * One CONNECT/CONNACK round trip by loadgen; with `pgid` it also reports the process of that
 * group holding the listening socket and whether the port is bound to loopback only (loadgen
 * reads /proc, which Deno allows only with --allow-all). Undefined when the broker did not answer.
 */
async function probe(
  port: number,
  pgid: number,
): Promise<{ listener_pid?: number; loopback_only?: boolean } | undefined> {
  const r = await new Deno.Command(LOADGEN, {
    args: ["probe", "--port", `${port}`, "--timeout", "1", "--pgid", `${pgid}`],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).output();
  if (r.code !== 0) return undefined;
  try {
    return JSON.parse(new TextDecoder().decode(r.stdout));
  } catch {
    return undefined;
  }
}

let current: RunningBroker | undefined;

async function startBroker(
  spec: BrokerSpec,
  port: number,
  scenario: Scenario,
  tools: Tools,
  log: string,
): Promise<RunningBroker> {
  const cmd = await spec.command(port, scenario);
  const cleanup = async () => {
    for (const f of cmd.files ?? []) await Deno.remove(f).catch(() => {});
    for (const d of cmd.dirs ?? []) await Deno.remove(d, { recursive: true }).catch(() => {});
  };
  // The shell raises the open-files limit (10 000 clients need more than the usual 1024),
  // sends output to the log, then becomes the broker (exec keeps the pid for /proc).
  const prologue =
    `exec >>"$BENCH_LOG" 2>&1; ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; `;
  const script = cmd.argv ? `${prologue}exec "$@"` : `${prologue}${cmd.shell}`;
  const argv: string[] = [];
  if (tools.setsid) argv.push(tools.setsid);
  if (tools.pin && tools.taskset) argv.push(tools.taskset, "-c", "0");
  argv.push("bash", "-c", script, "bench-broker", ...(cmd.argv ?? []));
  let child: Deno.ChildProcess;
  try {
    await Deno.writeTextFile(log, `=== ${new Date().toISOString()} ${scenario} port ${port}\n`, {
      append: true,
    });
    child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      cwd: REPO_DIR,
      env: { BENCH_LOG: log, PORT: `${port}` },
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
  } catch (e) {
    await cleanup();
    throw e;
  }
  const b: RunningBroker = {
    child,
    group: !!tools.setsid,
    pid: child.pid,
    exited: false,
    files: cmd.files ?? [],
    dirs: cmd.dirs ?? [],
  };
  current = b;
  child.status.then(() => b.exited = true);
  try {
    return await waitReady(spec, b, port, log);
  } catch (e) {
    await stopBroker(b);
    throw e;
  }
}

async function waitReady(
  spec: BrokerSpec,
  b: RunningBroker,
  port: number,
  log: string,
): Promise<RunningBroker> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (b.exited) throw new Error(`${spec.name} exited during start-up (see ${log})`);
    const answer = await probe(port, b.group ? b.child.pid : 0);
    if (answer) {
      if (answer.loopback_only === false) {
        await stopBroker(b);
        fail(`${spec.name} listens on a non-loopback address on port ${port}; refusing to run`, 1);
      }
      if (answer.listener_pid && answer.listener_pid > 0) b.pid = answer.listener_pid;
      return b;
    }
    await sleep(100);
  }
  throw new Error(`${spec.name} did not answer CONNECT on port ${port} within 30 s (see ${log})`);
}

async function stopBroker(b: RunningBroker): Promise<void> {
  const signal = (sig: Deno.Signal) => {
    try {
      Deno.kill(b.group ? -b.child.pid : b.child.pid, sig);
    } catch {
      // already gone
    }
  };
  if (!b.exited) {
    signal("SIGTERM");
    const deadline = Date.now() + 5000;
    while (!b.exited && Date.now() < deadline) await sleep(50);
  }
  signal("SIGKILL"); // whatever the group left behind
  await b.child.status;
  for (const f of b.files) await Deno.remove(f).catch(() => {});
  for (const d of b.dirs) await Deno.remove(d, { recursive: true }).catch(() => {});
  if (current === b) current = undefined;
}

// ------------------------------------------------------------------------- runs

/** loadgen's JSON line (numbers, booleans, strings), plus what the bench adds. */
type RunResult = Record<string, unknown> & {
  broker: string;
  scenario: Scenario;
  rep: number;
  ok: boolean;
};

async function runLoadgen(
  scenario: Scenario,
  port: number,
  pid: number,
  label: string,
  opts: BenchOptions,
  tools: Tools,
): Promise<Record<string, unknown>> {
  const args = [
    loadgenScenario(scenario),
    "--port",
    `${port}`,
    "--pid",
    `${pid}`,
    "--duration",
    `${opts.durationS}`,
    "--warmup",
    `${opts.warmupS}`,
    "--label",
    label,
    ...(LOADGEN_SCENARIO_ARGS[scenario] ?? []),
    ...opts.loadgenArgs,
  ];
  const argv = tools.pin && tools.taskset
    ? [tools.taskset, "-c", "1", LOADGEN, ...args]
    : [LOADGEN, ...args];
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const limitMs = (opts.durationS + opts.warmupS + 120) * 1000;
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // finished meanwhile
    }
  }, limitMs);
  const r = await child.output();
  clearTimeout(timer);
  const td = new TextDecoder();
  const err = td.decode(r.stderr);
  if (err.trim()) {
    await Deno.writeTextFile(`${OUT_DIR}/loadgen.stderr`, `=== ${label} ${scenario}\n${err}`, {
      append: true,
    });
  }
  const line = td.decode(r.stdout).trim().split("\n").pop() ?? "";
  try {
    return JSON.parse(line);
  } catch {
    return {
      ok: false,
      first_error: `loadgen exit ${r.code}, no result: ${err.trim().slice(0, 200)}`,
    };
  }
}

async function runOne(
  spec: BrokerSpec,
  scenario: Scenario,
  rep: number,
  opts: BenchOptions,
  tools: Tools,
): Promise<RunResult> {
  const port = freePort();
  const log = `${OUT_DIR}/broker-${spec.name}.log`;
  let b: RunningBroker;
  try {
    b = await startBroker(spec, port, scenario, tools, log);
  } catch (e) {
    return { broker: spec.name, scenario, rep, ok: false, first_error: (e as Error).message };
  }
  try {
    const r = await runLoadgen(scenario, port, b.pid, `${spec.name}#${rep}`, opts, tools);
    const rate = r.rate, cpu = r.broker_cpu;
    if (typeof rate === "number" && typeof cpu === "number" && cpu > 0.01) {
      r.rate_per_cpu = Math.round(rate / cpu);
    }
    for (const k of ["rss_idle", "rss_peak", "rss_growth"]) {
      const kb = r[`${k}_kb`];
      if (typeof kb === "number" && kb >= 0) r[`${k}_mb`] = Math.round(kb / 1024 * 10) / 10;
    }
    if (b.exited) {
      r.ok = false;
      r.first_error ||= "the broker exited during the run";
    }
    return { ...r, broker: spec.name, scenario, rep, ok: r.ok === true };
  } finally {
    await stopBroker(b);
  }
}

// ------------------------------------------------------------------------ table

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function fmt(x: number | undefined): string {
  if (x === undefined || !Number.isFinite(x)) return "-";
  if (Math.abs(x) >= 1000) return Math.round(x).toLocaleString("en-US");
  if (Number.isInteger(x)) return `${x}`;
  return Math.abs(x) < 10 ? x.toFixed(2) : x.toFixed(1);
}

/** One table row: per broker the median (and range with several reps). */
export interface SummaryRow {
  scenario: Scenario;
  metric: string;
  key: string;
  better: Metric["better"];
  values: Record<string, { median: number; min: number; max: number; n: number; failed: number }>;
  ratio?: number;
}

function summarize(results: RunResult[], names: string[], opts: BenchOptions): SummaryRow[] {
  const rows: SummaryRow[] = [];
  for (const scenario of opts.scenarios) {
    for (const m of [...METRICS[scenario], ...CPU_ROWS]) {
      const row: SummaryRow = {
        scenario,
        metric: m.label,
        key: m.key,
        better: m.better,
        values: {},
      };
      for (const name of names) {
        const runs = results.filter((r) => r.scenario === scenario && r.broker === name);
        const v = runs.map((r) => r[m.key]).filter((x): x is number =>
          typeof x === "number" && x >= 0
        );
        if (v.length === 0) continue;
        row.values[name] = {
          median: median(v),
          min: Math.min(...v),
          max: Math.max(...v),
          n: v.length,
          failed: runs.filter((r) => !r.ok).length,
        };
      }
      const [a, b] = names.map((n) => row.values[n]?.median);
      if (names.length === 2 && a !== undefined && b !== undefined && b !== 0) row.ratio = a / b;
      rows.push(row);
    }
  }
  return rows;
}

/**
 * Per broker and QoS: median healthy delivery with the frozen subscriber / without it, when both
 * flood scenarios ran.
 */
function frozenRatios(rows: SummaryRow[], names: string[]): Record<string, Record<string, number>> {
  const rate = (scenario: Scenario) =>
    rows.find((r) => r.scenario === scenario && r.key === "rate")?.values;
  const out: Record<string, Record<string, number>> = {};
  for (const qos of ["qos0", "qos1"]) {
    const plain = rate(`flood-${qos}` as Scenario);
    const frozen = rate(`flood-${qos}-frozen` as Scenario);
    for (const name of names) {
      const a = frozen?.[name]?.median;
      const b = plain?.[name]?.median;
      if (a !== undefined && b !== undefined && b > 0) (out[qos] ??= {})[name] = a / b;
    }
  }
  return out;
}

/** Per broker: median qos1-durable rate / median qos1 rate, when both scenarios ran. */
function durableRatios(rows: SummaryRow[], names: string[]): Record<string, number> {
  const rate = (scenario: Scenario) =>
    rows.find((r) => r.scenario === scenario && r.key === "rate")?.values;
  const plain = rate("qos1");
  const durable = rate("qos1-durable");
  const out: Record<string, number> = {};
  for (const name of names) {
    const a = durable?.[name]?.median;
    const b = plain?.[name]?.median;
    if (a !== undefined && b !== undefined && b > 0) out[name] = a / b;
  }
  return out;
}

function renderTable(rows: SummaryRow[], names: string[], reps: number): string {
  const head = ["scenario", "metric", "better", ...names];
  if (names.length === 2) head.push(`${names[0]}/${names[1]}`);
  const body = rows.map((r) => {
    const cells = [r.scenario, r.metric, r.better];
    for (const n of names) {
      const v = r.values[n];
      let cell = v ? fmt(v.median) : "-";
      if (v && reps > 1) cell += ` [${fmt(v.min)}..${fmt(v.max)}]`;
      if (v?.failed) cell += ` (${v.failed} failed)`;
      cells.push(cell);
    }
    if (names.length === 2) cells.push(r.ratio === undefined ? "-" : r.ratio.toFixed(2));
    return cells;
  });
  const width = head.map((h, i) => Math.max(h.length, ...body.map((c) => c[i].length)));
  const line = (c: string[]) =>
    c.map((x, i) => (i < 3 ? x.padEnd(width[i]) : x.padStart(width[i]))).join("  ").trimEnd();
  return [line(head), width.map((w) => "-".repeat(w)).join("  "), ...body.map(line)].join("\n");
}

function runSummary(r: RunResult): string {
  const keys = [...METRICS[r.scenario], ...CPU_ROWS.slice(0, 2)].map((m) => m.key).filter((k) =>
    k !== "rate_per_cpu"
  );
  const parts = keys.filter((k) => typeof r[k] === "number").map((k) =>
    `${k}=${fmt(r[k] as number)}`
  );
  const status = r.ok ? "ok" : `FAILED: ${String(r.first_error ?? "?")}`;
  return `${parts.join(" ")} (${status})`;
}

// ------------------------------------------------------------------------- main

async function main(): Promise<void> {
  let opts: BenchOptions | "help";
  try {
    opts = parseBenchArgs(Deno.args);
  } catch (e) {
    fail(`${(e as Error).message} (see --help)`, 2);
  }
  if (opts === "help") {
    console.log(USAGE);
    return;
  }
  if (!(await which("bash"))) fail("bash is needed to start brokers", 2);
  await Deno.mkdir(OUT_DIR, { recursive: true });
  await ensureLoadgen();

  const tools: Tools = {
    setsid: await which("setsid"),
    taskset: await which("taskset"),
    pin: opts.pin,
  };
  if (tools.pin && (!tools.taskset || navigator.hardwareConcurrency < 2)) {
    progress("pinning off (needs taskset and 2 CPUs)");
    tools.pin = false;
  }

  const brokers: BrokerSpec[] = [];
  if (opts.brokerCmd !== undefined) {
    brokers.push(customBroker(opts.brokerCmd));
  } else {
    try {
      await Deno.stat(`${REPO_DIR}/cli.ts`);
    } catch {
      fail(`${REPO_DIR}/cli.ts not found (use --broker-cmd to bench another broker)`, 2);
    }
    brokers.push(ourBroker(opts));
  }
  let mosquittoVersion: string | undefined;
  const mosquitto = opts.mosquitto ? await which("mosquitto") : undefined;
  if (mosquitto) {
    brokers.push(mosquittoBroker(mosquitto));
    mosquittoVersion = (await run(mosquitto, ["-h"])).out.match(/version ([\w.-]+)/)?.[1];
  } else if (opts.mosquitto) {
    progress("mosquitto not on PATH: no comparison column (apt-get install mosquitto)");
  }
  const names = brokers.map((b) => b.name);

  const stopAll = () => {
    if (current) {
      try {
        Deno.kill(current.group ? -current.child.pid : current.child.pid, "SIGKILL");
      } catch {
        // gone
      }
    }
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", stopAll);
  Deno.addSignalListener("SIGTERM", stopAll);

  const started = new Date();
  const total = opts.reps * opts.scenarios.length * brokers.length;
  progress(
    `${total} runs: scenarios ${opts.scenarios.join(",")}, ${opts.reps} rep(s), ` +
      `${opts.warmupS} s warm-up + ${opts.durationS} s measured, brokers ${names.join(", ")}, ` +
      `pinning ${tools.pin ? "broker CPU 0, loadgen CPU 1" : "off"}`,
  );
  const results: RunResult[] = [];
  let n = 0;
  for (let rep = 1; rep <= opts.reps; rep++) {
    for (const scenario of opts.scenarios) {
      // interleaved, and the order flips every other repetition, so that drift on a shared
      // machine hits every broker alike
      const order = rep % 2 === 1 ? brokers : [...brokers].reverse();
      for (const spec of order) {
        const r = await runOne(spec, scenario, rep, opts, tools);
        results.push(r);
        progress(`[${++n}/${total}] ${scenario} ${spec.name} rep ${rep}: ${runSummary(r)}`);
      }
    }
  }

  const rows = summarize(results, names, opts);
  const host = {
    os: `${Deno.build.os} ${Deno.osRelease()}`,
    cpus: navigator.hardwareConcurrency,
    loadavg: Deno.loadavg(),
    deno: Deno.version.deno,
    mosquitto: mosquittoVersion,
  };
  const stamp = started.toISOString().replace(/[:.]/g, "-");
  const file = `${OUT_DIR}/results-${stamp}.json`;
  await Deno.writeTextFile(
    file,
    JSON.stringify(
      {
        started: started.toISOString(),
        finished: new Date().toISOString(),
        host,
        options: opts,
        tools,
        summary: rows,
        durableRatios: durableRatios(rows, names),
        frozenRatios: frozenRatios(rows, names),
        runs: results,
      },
      null,
      2,
    ) + "\n",
  );

  const failed = results.filter((r) => !r.ok);
  console.log(
    `# ${started.toISOString()}  ${host.os}, ${host.cpus} CPUs, deno ${host.deno}` +
      (mosquittoVersion ? `, mosquitto ${mosquittoVersion}` : ""),
  );
  console.log(
    `# ${opts.reps} rep(s), ${opts.warmupS} s warm-up + ${opts.durationS} s measured per run, ` +
      `pinning ${tools.pin ? "broker CPU 0 / loadgen CPU 1" : "off"}` +
      (opts.reps > 1 ? "; cells: median [min..max]" : ""),
  );
  console.log(renderTable(rows, names, opts.reps));
  const durable = durableRatios(rows, names);
  if (Object.keys(durable).length > 0) {
    const cells = Object.entries(durable).map(([name, ratio]) =>
      `${name} ${ratio.toFixed(2)}${name === "ours" ? " (target >= 0.5)" : ""}`
    );
    console.log(
      `# qos1-durable / qos1, delivered msg/s (same broker, same run): ${cells.join(", ")}`,
    );
  }
  for (const [qos, ratios] of Object.entries(frozenRatios(rows, names))) {
    const cells = Object.entries(ratios).map(([name, ratio]) => `${name} ${ratio.toFixed(2)}`);
    console.log(
      `# flood-${qos}-frozen / flood-${qos}, healthy sub msg/s (same broker, same run): ${
        cells.join(", ")
      }`,
    );
  }
  if (names.length === 2) {
    console.log(
      `# ratio = ${names[0]} / ${
        names[1]
      }: for "higher" rows > 1 is better, for "lower" rows < 1 is better.`,
    );
  }
  console.log(
    "# CPU rows: CPU seconds per second of the broker process / of loadgen (1.00 = one core busy);",
  );
  console.log(
    "# core busy: share of time the CPU(s) each may run on were busy with anything (softirq included).",
  );
  for (const r of results) {
    const { broker_cpu: bc, broker_cores_busy: bb, lg_cpu: lc, lg_cores_busy: lb } = r;
    const where = `${r.scenario} ${r.broker} rep ${r.rep}`;
    if (typeof lb === "number" && typeof lc === "number" && lb > 0.9) {
      const detail = `loadgen process ${fmt(lc)}, the rest softirq or other load`;
      console.log(
        `# WARNING ${where}: loadgen's core ${fmt(lb)} busy (${detail}): may be the limit`,
      );
    }
    if (typeof bc === "number" && typeof bb === "number" && bb - bc > 0.25) {
      const detail = `broker process ${fmt(bc)}`;
      console.log(
        `# WARNING ${where}: broker's core ${fmt(bb)} busy (${detail}): other load on it`,
      );
    }
  }
  for (const r of failed) {
    console.log(`# FAILED ${r.scenario} ${r.broker} rep ${r.rep}: ${String(r.first_error ?? "?")}`);
  }
  console.log(`# results: ${file}`);
  Deno.removeSignalListener("SIGINT", stopAll);
  Deno.removeSignalListener("SIGTERM", stopAll);
  let clusterFailed = false;
  if (opts.cluster) {
    const status = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-net",
        "--allow-read",
        "--allow-write",
        "--allow-run",
        "--allow-env",
        `${BENCH_DIR}/cluster_bench.ts`,
        "--duration",
        String(opts.durationS),
        "--reps",
        String(opts.reps),
      ],
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    clusterFailed = !status.success;
  }
  if (failed.length > 0 || clusterFailed) Deno.exit(1);
}

if (import.meta.main) {
  try {
    await main();
  } finally {
    if (current) await stopBroker(current); // never leave a broker behind
  }
}
