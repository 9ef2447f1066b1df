/**
 * The broker as a program: `deno run --allow-net cli.ts [options]`. `--help` lists the options.
 *
 * Each feature asks only for the permission it needs: plain MQTT needs `--allow-net`; a password,
 * ACL, certificate or PSK file needs `--allow-read` of that file; the PSK sidecar needs
 * `--allow-run=stunnel`; `--data-dir` needs `--allow-read` and `--allow-write` of that folder.
 *
 * @module
 */
import { Broker } from "./mod.ts";
import { parseCliArgs, UsageError, VERSION } from "./src/cli_args.ts";
import { helpText } from "./src/cli_args.ts";
import { createLogger, type Logger } from "./src/logger.ts";

/** Something to stop at shutdown, in reverse order of starting. */
type Stopper = () => Promise<void> | void;

function errorText(error: unknown): string {
  if (error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied) {
    return `${error.message.split("\n")[0]}`;
  }
  return error instanceof Error ? error.message.split("\n")[0] : String(error);
}

function readFileFor(flag: string, path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch (error) {
    throw new UsageError(`--${flag} ${path}: ${errorText(error)}`);
  }
}

/** Runs the broker until SIGINT or SIGTERM; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  if (args[0] === "passwd") return await passwd(args.slice(1));
  let config;
  try {
    config = parseCliArgs(args);
  } catch (error) {
    console.error(`error: ${errorText(error)} (see --help)`);
    return 2;
  }
  if (config.help) {
    console.log(helpText());
    return 0;
  }
  if (config.version) {
    console.log(`denomq ${VERSION} (deno ${Deno.version.deno})`);
    return 0;
  }
  const log = createLogger(config.logLevel);
  const stoppers: Stopper[] = [];
  let broker: Broker | undefined;
  try {
    broker = new Broker({
      limits: config.limits,
      logger: log,
      sysIntervalMs: config.sysIntervalS * 1000,
    });
    stoppers.push(() => broker!.close());
    if (config.tcp) await broker.listen({ hostname: config.host, port: config.port });
    if (config.tlsCert !== undefined && config.tlsKey !== undefined) {
      const cert = readFileFor("tls-cert", config.tlsCert);
      const key = readFileFor("tls-key", config.tlsKey);
      try {
        await broker.listen({ hostname: config.host, port: config.tlsPort, tls: { cert, key } });
      } catch (error) {
        throw new UsageError(`--tls-cert/--tls-key: ${errorText(error)}`);
      }
    }
  } catch (error) {
    await stopAll(stoppers, log);
    if (error instanceof UsageError) {
      console.error(`error: ${error.message}`);
      return 2;
    }
    console.error(`error: ${errorText(error)}`);
    return 1;
  }
  const signal = await waitForSignal();
  log.info(`${signal}: shutting down`);
  await stopAll(stoppers, log);
  return 0;
}

async function stopAll(stoppers: Stopper[], log: Logger): Promise<void> {
  for (const stop of stoppers.reverse()) {
    try {
      await stop();
    } catch (error) {
      log.error(`shutdown: ${errorText(error)}`);
    }
  }
}

function waitForSignal(): Promise<string> {
  return new Promise((resolve) => {
    const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
    const handlers = signals.map((signal) => {
      const handler = () => {
        for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
        resolve(signal);
      };
      Deno.addSignalListener(signal, handler);
      return [signal, handler] as const;
    });
  });
}

async function passwd(_args: string[]): Promise<number> {
  console.error("error: passwd is not available yet");
  return 2;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
