/**
 * TLS-PSK through an stunnel sidecar. Deno's TLS has no PSK, so stunnel terminates TLS-PSK
 * (TLS 1.2 PSK cipher suites and TLS 1.3 PSK) and forwards each connection to a broker listener
 * on loopback, prefixed with a PROXY v1 header that names the real client. That listener reads
 * the header with `acceptProxied(conn, "psk")` before `broker.handle(conn)`.
 *
 * Needs the stunnel binary (Debian/Ubuntu: `apt-get install stunnel4`), `--allow-run` of it and
 * `--allow-read` of the PSK file. Nothing is written to disk: stunnel gets its configuration on
 * stdin (`stunnel -fd 0`) and reads the PSK file itself, after `loadPskFile` checked that stunnel
 * will read it as it looks.
 *
 * @module
 */
import { loadPskFile } from "./psk_file.ts";

/** Options of {@linkcode PskSidecar.start}. */
export interface PskSidecarOptions {
  /**
   * The `identity:hexkey` file (see `parsePskFile`); validated before stunnel starts, then read
   * by stunnel itself (a relative path is relative to the current directory). Keep it mode 0600:
   * stunnel warns otherwise.
   */
  pskFile: string;
  /** Where stunnel listens for TLS-PSK clients, e.g. "0.0.0.0" or "127.0.0.1". */
  hostname: string;
  /** Port stunnel listens on; 0 picks a free one (read it back from `sidecar.port`). */
  port: number;
  /** The broker's PROXY-protocol listener on 127.0.0.1 that stunnel forwards to. */
  targetPort: number;
  /** The stunnel binary. Default "stunnel". */
  stunnel?: string;
  /** Called if stunnel exits on its own after a successful start (not on `stop()`). */
  onExit?: (status: Deno.CommandStatus) => void;
  /**
   * Receives stunnel's log lines (its stderr): "error" for stunnel's err and worse, "warn" for
   * warning, "info" for the rest. Default: errors and warnings to `console.error`.
   */
  log?: (level: "info" | "warn" | "error", message: string) => void;
  /** stunnel's `debug` level. Default "notice" (one line per accepted and closed connection). */
  debug?: StunnelDebugLevel;
  /** How long `start()` waits for stunnel to accept connections. Default 10 000 ms. */
  startTimeoutMs?: number;
  /** How long `stop()` waits after SIGTERM before SIGKILL. Default 5 000 ms. */
  stopTimeoutMs?: number;
}

/** stunnel's syslog-style log levels, from quietest to noisiest. */
export type StunnelDebugLevel = "err" | "warning" | "notice" | "info" | "debug";

/** Options of {@linkcode stunnelConfig}. */
export interface StunnelConfigOptions {
  /** The `identity:hexkey` file stunnel reads (`PSKsecrets`); keep it mode 0600. */
  pskSecretsPath: string;
  /** Where stunnel accepts TLS-PSK clients. */
  hostname: string;
  /** Port where stunnel accepts TLS-PSK clients. */
  port: number;
  /** The broker's PROXY-protocol listener on 127.0.0.1. */
  targetPort: number;
  /** Where stunnel writes its pid; default none. */
  pidFile?: string;
  /** stunnel's log level. Default "notice". */
  debug?: StunnelDebugLevel;
}

/**
 * stunnel's idle timeout, in seconds. Its default (43 200 s) would cut an idle MQTT connection
 * that the broker still considers alive: the longest keep-alive is 65 535 s and the broker
 * allows 1.5 times that [MQTT-3.1.2-24]. Keep-alive is the broker's business, so stay above it.
 */
const STUNNEL_IDLE_TIMEOUT_S = 100_000;
const DEBUG_LEVELS: readonly StunnelDebugLevel[] = ["err", "warning", "notice", "info", "debug"];

function checkConfigValue(name: string, value: string): void {
  // stunnel trims option values: surrounding whitespace would name another file or host.
  if (value === "" || /[\r\n\0]/.test(value) || value !== value.trim()) {
    throw new TypeError(
      `${name} must be a non-empty single line without surrounding whitespace, got ${
        JSON.stringify(value)
      }`,
    );
  }
}

function checkPort(name: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min || value > 65535) {
    throw new RangeError(`${name} must be an integer from ${min} to 65535, got ${value}`);
  }
}

/**
 * The stunnel configuration the sidecar runs: TLS-PSK in, PROXY v1 + plain MQTT out to
 * 127.0.0.1:targetPort. Also the reference for running stunnel yourself (then set `pidFile` or
 * drop `foreground` as your service manager wants).
 *
 * - `sslVersionMin = TLSv1.2`; TLS 1.2 uses the `PSK` cipher suites.
 * - TLS 1.3 PSK only with SHA-256 suites: OpenSSL's PSK callbacks give a TLS 1.3 PSK the SHA-256
 *   hash, so `TLS_AES_256_GCM_SHA384` cannot carry one.
 * - `PSKsecrets` takes `identity:hexkey` lines; stunnel converts hex keys to bytes.
 * - No setuid/chroot: stunnel runs as the broker's user. Logs go to stderr only.
 *
 * @example
 * ```ts
 * import { stunnelConfig } from "./psk_sidecar.ts";
 *
 * console.log(stunnelConfig({
 *   pskSecretsPath: "/etc/denomq/psk.txt",
 *   hostname: "0.0.0.0",
 *   port: 8884,
 *   targetPort: 18884,
 * }));
 * ```
 */
export function stunnelConfig(options: StunnelConfigOptions): string {
  checkConfigValue("pskSecretsPath", options.pskSecretsPath);
  checkConfigValue("hostname", options.hostname);
  checkPort("port", options.port, 1);
  checkPort("targetPort", options.targetPort, 1);
  if (options.pidFile !== undefined) checkConfigValue("pidFile", options.pidFile);
  const debug = options.debug ?? "notice";
  if (!DEBUG_LEVELS.includes(debug)) {
    throw new TypeError(`debug must be one of ${DEBUG_LEVELS.join(", ")}, got "${debug}"`);
  }
  return [
    "; TLS-PSK in front of the MQTT broker: stunnel terminates TLS and forwards to the broker's",
    "; loopback listener with a PROXY v1 header naming the real client.",
    "foreground = yes",
    "syslog = no",
    `debug = ${debug}`,
    `pid = ${options.pidFile ?? ""}`,
    "",
    "[mqtt-psk]",
    `accept = ${options.hostname}:${options.port}`,
    `connect = 127.0.0.1:${options.targetPort}`,
    "protocol = proxy",
    "sslVersionMin = TLSv1.2",
    "ciphers = PSK",
    "ciphersuites = TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256",
    `PSKsecrets = ${options.pskSecretsPath}`,
    "renegotiation = no",
    `TIMEOUTidle = ${STUNNEL_IDLE_TIMEOUT_S}`,
    "",
  ].join("\n");
}

type LogLevel = "info" | "warn" | "error";

function defaultLog(level: LogLevel, message: string): void {
  if (level !== "info") console.error(`stunnel ${level}: ${message}`);
}

/** Resolves after `ms`, or as soon as `wake` settles; never leaves a timer behind. */
function sleep(ms: number, wake: Promise<unknown>): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    new Promise<void>((resolve) => timer = setTimeout(resolve, ms)),
    wake.then(() => {}),
  ]).finally(() => clearTimeout(timer));
}

const LOG_LINE = /^\d{4}\.\d\d\.\d\d \d\d:\d\d:\d\d LOG(\d)\[([^\]]*)\]: (.*)$/;
const EARLY_LINE = /^\[(.)\] (.*)$/;
const ACCEPTED = /accepted connection from .*:(\d+)$/;

/**
 * A running stunnel that terminates TLS-PSK for the broker.
 *
 * @example Run the sidecar in front of a PROXY-protocol listener
 * ```ts ignore
 * import { PskSidecar } from "./psk_sidecar.ts";
 *
 * const sidecar = await PskSidecar.start({
 *   pskFile: "/etc/denomq/psk.txt",
 *   hostname: "0.0.0.0",
 *   port: 8884,
 *   targetPort: 18884, // a listener that runs acceptProxied(conn, "psk") → broker.handle()
 *   onExit: (status) => console.error(`stunnel exited with ${status.code}`),
 * });
 * // ...
 * await sidecar.stop();
 * ```
 */
export class PskSidecar {
  #child: Deno.ChildProcess;
  #hostname: string;
  #port: number;
  #log: (level: LogLevel, message: string) => void;
  #onExit?: (status: Deno.CommandStatus) => void;
  #stopTimeoutMs: number;
  #started = false;
  #exited = false;
  #stopping?: Promise<void>;
  #stderrDone: Promise<void>;
  #tail: string[] = [];
  #maxSeverity: number;
  #startupAccepts = new Set<number>();
  #onStartupAccept?: () => void;
  #probeThreads = new Set<string>();

  private constructor(
    child: Deno.ChildProcess,
    hostname: string,
    port: number,
    options: PskSidecarOptions,
  ) {
    this.#child = child;
    this.#hostname = hostname;
    this.#port = port;
    this.#log = options.log ?? defaultLog;
    this.#onExit = options.onExit;
    this.#stopTimeoutMs = options.stopTimeoutMs ?? 5_000;
    this.#maxSeverity = DEBUG_LEVELS.indexOf(options.debug ?? "notice") + 3;
    this.#stderrDone = this.#pumpStderr(child.stderr).catch(() => {});
    child.status.then((status) => {
      this.#exited = true;
      if (!this.#started || this.#stopping) return;
      this.#log(
        "error",
        `stunnel exited on its own (code ${status.code}, signal ${status.signal})`,
      );
      try {
        this.#onExit?.(status);
      } catch {
        // A failing callback must not become an unhandled rejection.
      }
    }).catch(() => {});
  }

  /**
   * Validates the PSK file, starts stunnel in the foreground with its configuration on stdin
   * (nothing is written to disk; stunnel reads the PSK file itself) and resolves once it accepts
   * connections on `hostname:port`. Fails with stunnel's error output if it exits first, and with
   * an install hint if the binary is missing.
   */
  static async start(options: PskSidecarOptions): Promise<PskSidecar> {
    checkConfigValue("hostname", options.hostname);
    if (options.debug !== undefined && !DEBUG_LEVELS.includes(options.debug)) {
      throw new TypeError(
        `debug must be one of ${DEBUG_LEVELS.join(", ")}, got "${options.debug}"`,
      );
    }
    checkPort("port", options.port, 0);
    checkPort("targetPort", options.targetPort, 1);
    const startTimeoutMs = options.startTimeoutMs ?? 10_000;
    if (!(startTimeoutMs > 0)) throw new RangeError(`startTimeoutMs must be > 0`);
    if (options.stopTimeoutMs !== undefined && !(options.stopTimeoutMs >= 0)) {
      throw new RangeError(`stopTimeoutMs must be >= 0`);
    }
    checkConfigValue("pskFile", options.pskFile);
    await loadPskFile(options.pskFile);
    // Port 0: take a free port, then let stunnel bind it. Another process may grab it in between,
    // so a bind failure is retried with a new port.
    const attempts = options.port === 0 ? 3 : 1;
    for (let attempt = 1;; attempt++) {
      const port = options.port === 0 ? freePort(options.hostname) : options.port;
      try {
        return await PskSidecar.#startOnce(options, port, startTimeoutMs);
      } catch (error) {
        if (attempt >= attempts || !/Address already in use/.test(String(error))) throw error;
      }
    }
  }

  static async #startOnce(
    options: PskSidecarOptions,
    port: number,
    startTimeoutMs: number,
  ): Promise<PskSidecar> {
    const binary = options.stunnel ?? "stunnel";
    const config = stunnelConfig({
      pskSecretsPath: options.pskFile,
      hostname: options.hostname,
      port,
      targetPort: options.targetPort,
      // At least "notice": start() needs stunnel's "accepted connection" lines; the lines
      // beyond the requested level are dropped here.
      debug: options.debug === "info" || options.debug === "debug" ? options.debug : "notice",
    });
    let child: Deno.ChildProcess;
    try {
      // `-fd 0`: the configuration comes on stdin, so no file (and no write permission) is needed.
      child = new Deno.Command(binary, {
        args: ["-fd", "0"],
        stdin: "piped",
        stdout: "null",
        stderr: "piped",
      }).spawn();
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        throw new Error(
          `Cannot start the TLS-PSK sidecar: stunnel binary "${binary}" not found. ` +
            `Install stunnel (Debian/Ubuntu: apt-get install stunnel4) or set its path.`,
          { cause: error },
        );
      }
      throw error;
    }
    const writer = child.stdin.getWriter();
    // A stunnel that exits before reading its stdin fails start() through its exit status.
    writer.write(new TextEncoder().encode(config)).then(() => writer.close()).catch(() => {});
    const sidecar = new PskSidecar(child, options.hostname, port, options);
    try {
      await sidecar.#waitReady(startTimeoutMs);
    } catch (error) {
      await sidecar.stop();
      throw error;
    }
    sidecar.#started = true;
    sidecar.#startupAccepts.clear();
    return sidecar;
  }

  /**
   * Polls with a TCP connect until stunnel accepts. A connect alone could reach another process
   * holding the port (stunnel then fails to bind and exits), so the probe counts only once
   * stunnel has logged accepting it.
   */
  async #waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const exited = this.#child.status;
    const failIfExited = async () => {
      if (!this.#exited) return;
      await this.#stderrDone;
      const status = await exited;
      throw new Error(
        `stunnel exited during start (code ${status.code}): ${this.#why()}`,
      );
    };
    let delayMs = 5;
    for (;;) {
      await failIfExited();
      let probePort: number | undefined;
      try {
        const probe = await Deno.connect({ hostname: this.#hostname, port: this.#port });
        probePort = (probe.localAddr as Deno.NetAddr).port;
        probe.close();
      } catch {
        // Not listening yet.
      }
      while (probePort !== undefined && Date.now() < deadline) {
        // Armed before checking: the line may come in while failIfExited() awaits.
        const accepted = new Promise<void>((resolve) => this.#onStartupAccept = resolve);
        await failIfExited();
        if (this.#startupAccepts.has(probePort)) return;
        await sleep(Math.max(deadline - Date.now(), 0), Promise.race([accepted, exited]));
      }
      if (Date.now() >= deadline) {
        throw new Error(
          `stunnel did not accept on ${this.#hostname}:${this.#port} within ${timeoutMs} ms: ` +
            this.#why(),
        );
      }
      await sleep(delayMs, exited);
      delayMs = Math.min(delayMs * 2, 100);
    }
  }

  // One line for an error message: stunnel's errors and the line before the first (stunnel
  // says "Address already in use" as a notice, then "Binding service failed" as the error);
  // without errors, its last lines.
  #why(): string {
    const first = this.#tail.findIndex((line) => line.startsWith("!"));
    const lines = first < 0
      ? this.#tail.slice(-3)
      : this.#tail.filter((line, i) => i === first - 1 || line.startsWith("!"));
    return lines.map((line) => line.slice(1)).join("; ");
  }

  async #pumpStderr(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let rest = "";
    for await (const chunk of stream) {
      rest += decoder.decode(chunk, { stream: true });
      let newline: number;
      while ((newline = rest.indexOf("\n")) >= 0) {
        this.#onLine(rest.slice(0, newline).replace(/\r$/, ""));
        rest = rest.slice(newline + 1);
      }
    }
    rest += decoder.decode();
    if (rest !== "") this.#onLine(rest);
  }

  #onLine(line: string): void {
    if (line === "") return;
    let severity = 5;
    let message = line;
    const logLine = LOG_LINE.exec(line);
    const early = logLine ? null : EARLY_LINE.exec(line);
    if (logLine) {
      const [, level, thread, text] = logLine;
      severity = Number(level);
      message = text;
      if (this.#probeThreads.has(thread)) {
        if (/^Connection (reset|closed)/.test(text)) this.#probeThreads.delete(thread);
        return;
      }
      const accepted = ACCEPTED.exec(text);
      if (accepted && !this.#started) {
        // Connections before start() returns are the start-up probes (a client racing them
        // would lose only its log lines): keep their failed handshakes out of the log.
        this.#probeThreads.add(thread);
        this.#startupAccepts.add(Number(accepted[1]));
        this.#onStartupAccept?.();
        return;
      }
    } else if (early) {
      // Messages from before stunnel's log is set up: "[!]" errors, "[:]" warnings, "[.]"
      // notices, "[ ]" debug.
      const [, mark, text] = early;
      message = text;
      severity = mark === "!" ? 3 : mark === ":" ? 4 : mark === "." ? 5 : 7;
    }
    // Expected without certificates: PSK authenticates both sides.
    if (message === "No trusted certificates found") severity = 7;
    if (severity > this.#maxSeverity) return;
    this.#tail.push((severity <= 3 ? "!" : " ") + message);
    if (this.#tail.length > 20) this.#tail.shift();
    this.#log(severity <= 3 ? "error" : severity === 4 ? "warn" : "info", message);
  }

  /** stunnel's process id. */
  get pid(): number {
    return this.#child.pid;
  }

  /** The address stunnel accepts TLS-PSK clients on. */
  get hostname(): string {
    return this.#hostname;
  }

  /** The port stunnel accepts TLS-PSK clients on (the chosen one when started with port 0). */
  get port(): number {
    return this.#port;
  }

  /**
   * Stops stunnel (SIGTERM, then SIGKILL after `stopTimeoutMs`) and waits for it to exit.
   * Idempotent; `onExit` is not called.
   */
  stop(): Promise<void> {
    return this.#stopping ??= this.#stop();
  }

  async #stop(): Promise<void> {
    const status = this.#child.status;
    if (!this.#exited) {
      try {
        this.#child.kill("SIGTERM");
      } catch {
        // Exited in the meantime.
      }
      await sleep(this.#stopTimeoutMs, status);
      if (!this.#exited) {
        this.#log("warn", `stunnel ignored SIGTERM for ${this.#stopTimeoutMs} ms; sending SIGKILL`);
        try {
          this.#child.kill("SIGKILL");
        } catch {
          // Exited in the meantime.
        }
      }
    }
    await status;
    await this.#stderrDone;
  }

  /** Same as `stop()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

function freePort(hostname: string): number {
  const listener = Deno.listen({ hostname, port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}
