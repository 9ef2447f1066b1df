/**
 * One mosquitto.conf, two brokers: the real mosquitto (`mosquitto -c FILE`) and ours
 * (`cli.ts --mosquitto-conf FILE`), each as a subprocess, waited for until every port of the
 * file accepts connections.
 *
 * @module
 */
import { isListening, spawn, type Spawned, waitFor, which } from "./_util.ts";

/** Whether the real broker is installed. */
export const HAVE_MOSQUITTO: boolean = which("mosquitto") !== undefined;

const CLI = new URL("../cli.ts", import.meta.url).pathname;

/** A broker running from a conf file. */
export interface ConfBroker {
  readonly kind: "mosquitto" | "ours";
  readonly process: Spawned;
  /** Stops it (SIGTERM) and waits. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

async function started(process: Spawned, ports: number[], what: string): Promise<void> {
  let exited = false;
  process.finished.then(() => exited = true, () => exited = true);
  await waitFor(
    async () => {
      if (exited) throw new Error(`${what} exited during start: ${process.stderr()}`);
      for (const port of ports) if (!await isListening(port)) return false;
      return true;
    },
    30_000,
    `${what} listening on ${ports.join(", ")}`,
  );
}

function handle(kind: ConfBroker["kind"], process: Spawned): ConfBroker {
  let stopped: Promise<void> | undefined;
  const stop = () =>
    stopped ??= (async () => {
      process.kill("SIGTERM");
      await process.finished;
    })();
  return { kind, process, stop, [Symbol.asyncDispose]: stop };
}

/** Runs `mosquitto -c file` and waits for `ports`. */
export async function startMosquitto(file: string, ports: number[]): Promise<ConfBroker> {
  const process = spawn("mosquitto", ["-c", file], { deadlineMs: 120_000 });
  const broker = handle("mosquitto", process);
  try {
    await started(process, ports, "mosquitto");
  } catch (error) {
    await broker.stop();
    throw error;
  }
  return broker;
}

/**
 * Runs `deno run PERMISSIONS cli.ts --mosquitto-conf file` and waits for `ports`.
 * `ready` is an extra stderr pattern to wait for (e.g. a bridge's "connected").
 */
export async function startOurs(
  file: string,
  ports: number[],
  permissions: string[],
  extraArgs: string[] = [],
): Promise<ConfBroker> {
  const process = spawn(
    Deno.execPath(),
    ["run", ...permissions, CLI, "--mosquitto-conf", file, ...extraArgs],
    { deadlineMs: 120_000 },
  );
  const broker = handle("ours", process);
  try {
    await started(process, ports, "cli.ts");
  } catch (error) {
    await broker.stop();
    throw error;
  }
  return broker;
}
