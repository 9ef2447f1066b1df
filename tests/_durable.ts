/**
 * Helpers for the durability tests: the CLI as a subprocess on a data directory (port 0, the real
 * port read from its log), and an in-process broker on a `SqlitePersistence` that can be
 * restarted on the same directory.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import {
  Broker,
  type BrokerOptions,
  createLogger,
  SqlitePersistence,
  type SyncMode,
} from "../mod.ts";
import { spawn, type Spawned } from "./_util.ts";

const CLI = fileURLToPath(new URL("../cli.ts", import.meta.url));

/** A broker started from cli.ts in a child process. */
export interface CliBroker {
  /** The port it listens on (it was started with `--port 0`). */
  readonly port: number;
  readonly process: Spawned;
  /** stderr so far (the log goes there). */
  stderr(): string;
}

/**
 * Starts `deno run --allow-net --allow-read=DIR --allow-write=DIR cli.ts --host 127.0.0.1
 * --port 0 --data-dir DIR …` and resolves once it logs its TCP listener.
 */
export async function startCli(dir: string, args: string[] = []): Promise<CliBroker> {
  const process = spawnCli(dir, args);
  const pattern = /listening on tcp 127\.0\.0\.1:(\d+)/;
  try {
    await process.waitForOutput("stderr", pattern, 15_000);
  } catch (error) {
    process.kill("SIGKILL");
    await process.finished;
    throw error;
  }
  const port = Number(process.stderr().match(pattern)![1]);
  return { port, process, stderr: () => process.stderr() };
}

/** Spawns cli.ts on `dir` (see {@linkcode startCli}) without waiting for anything. */
export function spawnCli(dir: string, args: string[] = []): Spawned {
  return spawn(Deno.execPath(), [
    "run",
    "--no-config",
    "--allow-net",
    `--allow-read=${dir}`,
    `--allow-write=${dir}`,
    CLI,
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    "--data-dir",
    dir,
    "--log-level",
    "info",
    ...args,
  ], { deadlineMs: 60_000 });
}

/** An in-process broker on a SQLite store in `dir`; `restart()` closes it and opens a new one. */
export class DurableBroker {
  readonly dir: string;
  readonly options: BrokerOptions;
  readonly sync: SyncMode;
  /** Every log line of every broker started so far, level first. */
  readonly lines: string[] = [];
  broker!: Broker;
  port = 0;

  private constructor(dir: string, options: BrokerOptions, sync: SyncMode) {
    this.dir = dir;
    this.options = options;
    this.sync = sync;
  }

  /** Starts a broker on `dir` and listens on 127.0.0.1, port 0. */
  static async start(
    dir: string,
    options: BrokerOptions = {},
    sync: SyncMode = "normal",
  ): Promise<DurableBroker> {
    const b = new DurableBroker(dir, options, sync);
    await b.#open();
    return b;
  }

  async #open(): Promise<void> {
    const sink = (level: string, message: string) => this.lines.push(`${level} ${message}`);
    const logger = createLogger("info", sink);
    const persistence = new SqlitePersistence({
      dir: this.dir,
      sync: this.sync,
      log: (level, message) => sink(level, `persistence: ${message}`),
    });
    this.broker = new Broker({ ...this.options, logger, persistence });
    this.port = (await this.broker.listen({ hostname: "127.0.0.1", port: 0 })).port;
  }

  /** Closes the broker (every connection, then the store) and starts a new one on the same dir. */
  async restart(): Promise<void> {
    await this.broker.close();
    await this.#open();
  }

  /** Closes the broker. */
  close(): Promise<void> {
    return this.broker.close();
  }
}

/** A temporary directory for one test, removed afterwards. */
export async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "durable_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
