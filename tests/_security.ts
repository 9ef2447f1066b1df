/**
 * Helpers of the end-to-end security, transport and rate-limit tests: the CLI run as a
 * subprocess with exactly the permissions a feature needs, in a scratch directory, so that
 * `--allow-read=cert.pem` means that file and nothing else; a throwaway CA made with `openssl`.
 *
 * @module
 */
import assert from "node:assert/strict";
import { run, type RunResult, spawn, type Spawned, waitFor, which, withDeadline } from "./_util.ts";

/** The deno binary running the tests. */
export const DENO: string = Deno.execPath();
/** The CLI, by absolute path: loading it needs no permission. */
export const CLI: string = new URL("../cli.ts", import.meta.url).pathname;

/** Whether each external tool these tests drive is installed (for `ignore:`). */
export const HAVE = {
  openssl: which("openssl") !== undefined,
  stunnel: which("stunnel") !== undefined,
  mosquittoClients: which("mosquitto_pub") !== undefined && which("mosquitto_sub") !== undefined,
  mosquittoPasswd: which("mosquitto_passwd") !== undefined,
};

/** A scratch directory, removed on dispose. */
export async function scratchDir(
  prefix: string,
): Promise<{ path: string; [Symbol.asyncDispose](): Promise<void> }> {
  const path = await Deno.makeTempDir({ prefix });
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true });
    },
  };
}

/** Runs openssl in `dir`; fails the test with its stderr when it fails. */
async function openssl(dir: string, args: string[]): Promise<void> {
  const made = await run("openssl", args, { cwd: dir });
  assert.equal(made.code, 0, `openssl ${args.join(" ")}: ${made.stderr}`);
}

/**
 * Writes into `dir`: `ca.pem` (a throwaway CA), `cert.pem` + `key.pem` (a server certificate it
 * signs, SAN 127.0.0.1 and localhost) and `other.key` (a key that matches nothing).
 */
export async function makeCertificates(dir: string): Promise<void> {
  await Deno.writeTextFile(
    `${dir}/leaf.ext`,
    "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
  );
  const ec = ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out"];
  await Promise.all([
    openssl(dir, [...ec, "ca.key"]),
    openssl(dir, [...ec, "key.pem"]),
    openssl(dir, [...ec, "other.key"]),
  ]);
  await Promise.all([
    openssl(dir, [
      ...["req", "-x509", "-new", "-key", "ca.key", "-out", "ca.pem", "-days", "1"],
      ...["-subj", "/CN=denomq test CA"],
    ]),
    openssl(dir, ["req", "-new", "-key", "key.pem", "-out", "leaf.csr", "-subj", "/CN=localhost"]),
  ]);
  await openssl(dir, [
    ...["x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key"],
    ...["-CAcreateserial", "-out", "cert.pem", "-days", "1", "-extfile", "leaf.ext"],
  ]);
}

/** A listener line of the CLI: transport and port. */
export type Ports = Record<string, number>;

/** The CLI running as a subprocess. */
export interface RunningCli {
  readonly process: Spawned;
  /** Port of each listener the CLI logged, by transport ("tcp", "tls", "ws", "wss", "psk", "tls-psk"). */
  readonly ports: Ports;
  /** stunnel's pid when the CLI logged one. */
  readonly stunnelPid?: number;
  /** Everything on stderr so far. */
  stderr(): string;
  /** Sends `signal` (default SIGTERM) and waits for the exit. */
  stop(signal?: Deno.Signal): Promise<RunResult>;
  /** Stops the CLI if it still runs (SIGTERM, SIGKILL after 5 s) and waits for it. */
  [Symbol.asyncDispose](): Promise<void>;
}

const LISTENING = /listening on ([\w-]+) 127\.0\.0\.1:(\d+)/g;

/**
 * Starts `deno run PERMISSIONS cli.ts --host 127.0.0.1 --sys-interval 0 ARGS` in `cwd` and
 * waits until it logged a listener for each of `transports`.
 */
export async function startCli(
  cwd: string,
  permissions: string[],
  args: string[],
  transports: string[],
  options: { env?: Record<string, string> } = {},
): Promise<RunningCli> {
  const process = spawn(
    DENO,
    ["run", ...permissions, CLI, "--host", "127.0.0.1", "--sys-interval", "0", ...args],
    { cwd, deadlineMs: 60_000, env: options.env },
  );
  const ports: Ports = {};
  const parse = () => {
    for (const [, transport, port] of process.stderr().matchAll(LISTENING)) {
      ports[transport] = Number(port);
    }
    return transports.every((t) => ports[t] !== undefined);
  };
  let exited = false;
  process.finished.then(() => exited = true, () => exited = true);
  try {
    await waitFor(
      () => {
        if (parse()) return true;
        if (exited) throw new Error(`the CLI exited during start: ${process.stderr()}`);
        return false;
      },
      20_000,
      `listeners ${transports.join(", ")}`,
    );
  } catch (error) {
    await stopGracefully(process);
    throw error;
  }
  const pid = /stunnel pid (\d+)/.exec(process.stderr());
  return {
    process,
    ports,
    stunnelPid: pid ? Number(pid[1]) : undefined,
    stderr: () => process.stderr(),
    async stop(signal: Deno.Signal = "SIGTERM") {
      process.kill(signal);
      return await process.finished;
    },
    [Symbol.asyncDispose]: () => stopGracefully(process),
  };
}

/**
 * SIGTERM, then SIGKILL after 5 s. SIGTERM first: a broker killed outright cannot stop its
 * stunnel, which would outlive it.
 */
async function stopGracefully(process: Spawned): Promise<void> {
  process.kill("SIGTERM");
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    process.finished,
    new Promise<void>((resolve) => timer = setTimeout(resolve, 5_000)),
  ]);
  clearTimeout(timer);
  process.kill("SIGKILL");
  await process.finished;
}

/** Runs the CLI to completion (for the ones that must refuse to start). */
export function runCli(cwd: string, permissions: string[], args: string[]): Promise<RunResult> {
  return run(DENO, ["run", ...permissions, CLI, "--host", "127.0.0.1", ...args], {
    cwd,
    deadlineMs: 30_000,
  });
}

/**
 * Asserts the CLI refused to start the way the issue asks: exit `code`, exactly one line on
 * stderr that includes every one of `names`, no stack trace, nothing on stdout.
 */
export function assertOneLineRefusal(result: RunResult, names: string[], code = 2): string {
  const lines = result.stderr.split("\n").filter((line) => line !== "");
  assert.equal(result.code, code, `exit code; stderr: ${result.stderr}`);
  assert.equal(lines.length, 1, `exactly one line on stderr, got: ${result.stderr}`);
  for (const name of names) assert.ok(lines[0].includes(name), `"${name}" in: ${lines[0]}`);
  assert.ok(!/^\s+at /m.test(result.stderr), `stack trace: ${result.stderr}`);
  assert.equal(result.stdout, "");
  return lines[0];
}

/** Waits until the CLI logged a line matching `pattern` (after `from` characters of stderr). */
export async function waitForLog(
  cli: RunningCli,
  pattern: RegExp,
  from = 0,
  deadlineMs = 10_000,
): Promise<RegExpExecArray> {
  let match: RegExpExecArray | null = null;
  await waitFor(
    () => (match = pattern.exec(cli.stderr().slice(from))) !== null,
    deadlineMs,
    `${pattern} in the broker's log (tail: ${JSON.stringify(cli.stderr().slice(-600))})`,
  );
  return match!;
}

/**
 * Whether a process with this pid exists and is not a zombie. Asks `ps`: reading `/proc/PID`
 * would need `--allow-all` under Deno, which the test task does not grant.
 */
export async function processAlive(pid: number): Promise<boolean> {
  const ps = await run("ps", ["-o", "stat=", "-p", String(pid)], { deadlineMs: 5_000 });
  return ps.code === 0 && ps.stdout.trim() !== "" && !ps.stdout.trim().startsWith("Z");
}

/**
 * `promise` with a deadline; the error names `what` and ends with the broker's last log lines,
 * so that a hang says where it hung.
 */
export async function within<T>(
  cli: RunningCli,
  promise: Promise<T>,
  deadlineMs: number,
  what: string,
): Promise<T> {
  try {
    return await withDeadline(promise, deadlineMs, what);
  } catch (error) {
    throw new Error(
      `${(error as Error).message}\nbroker log tail:\n${cli.stderr().slice(-1500)}`,
    );
  }
}
