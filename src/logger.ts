/**
 * A small levelled logger: one line per event, to stderr, with the level first.
 *
 * @module
 */

/** Log levels, most verbose first. "silent" logs nothing. */
export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";

/** Where log lines go. */
export type LogSink = (level: Exclude<LogLevel, "silent">, message: string) => void;

/** The logger the broker and CLI use. */
export interface Logger {
  /** The least severe level that is written; "silent" writes nothing. */
  readonly level: LogLevel;
  /** Logs detail for troubleshooting: per-client events, refused subscriptions, expiries. */
  debug(message: string): void;
  /** Logs normal operation: listeners, refused CONNECTs, reloads, shutdown. */
  info(message: string): void;
  /** Logs something that needs attention but keeps the broker serving. */
  warn(message: string): void;
  /** Logs a failure: an internal error, a failed store write, a sidecar that died. */
  error(message: string): void;
  /** Whether a line at `level` would be written, to skip building costly messages. */
  enabled(level: Exclude<LogLevel, "silent">): boolean;
}

const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3, silent: 4 };

/** All log levels, for validating options and flags. */
export const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error", "silent"];

const encoder = new TextEncoder();

// Lines logged in one burst (say, a thousand clients connecting in one event-loop tick) are
// written with one system call at the end of it rather than one each.
let pending: string[] = [];
let flushQueued = false;

function writeStderr(text: string): void {
  try {
    const bytes = encoder.encode(text);
    let offset = 0;
    while (offset < bytes.length) offset += Deno.stderr.writeSync(bytes.subarray(offset));
  } catch {
    // stderr closed: nothing sensible to do.
  }
}

/** Writes the lines the default sink holds; it also runs by itself after each burst. */
export function flushLogs(): void {
  flushQueued = false;
  if (pending.length === 0) return;
  const text = pending.join("");
  pending = [];
  writeStderr(text);
}

/**
 * The default sink: `2026-11-22T10:00:00.000Z info message` on stderr. Lines are written at the
 * end of the current burst of work (a microtask), errors at once with what came before them.
 */
export const stderrSink: LogSink = (level, message) => {
  pending.push(`${new Date().toISOString()} ${level} ${message}\n`);
  if (level === "error") return flushLogs();
  if (!flushQueued) {
    flushQueued = true;
    queueMicrotask(flushLogs);
  }
};

/**
 * A sink for log collectors: one JSON object per line on stderr,
 * `{"time":"2026-11-22T10:00:00.000Z","level":"info","msg":"…"}`. Batched like
 * {@linkcode stderrSink}.
 */
export const jsonStderrSink: LogSink = (level, message) => {
  pending.push(
    `{"time":"${new Date().toISOString()}","level":"${level}","msg":${JSON.stringify(message)}}\n`,
  );
  if (level === "error") return flushLogs();
  if (!flushQueued) {
    flushQueued = true;
    queueMicrotask(flushLogs);
  }
};

/** Log line formats: `text` (the default) or one JSON object per line. */
export type LogFormat = "text" | "json";

/** All log formats, for validating flags. */
export const LOG_FORMATS: readonly LogFormat[] = ["text", "json"];

/** The stderr sink of a log format. */
export function sinkFor(format: LogFormat): LogSink {
  return format === "json" ? jsonStderrSink : stderrSink;
}

/**
 * `host:port` as an operator reads it: IPv6 addresses in brackets (`[::1]:1883`), as in URLs.
 */
export function formatAddress(hostname: string, port: number): string {
  return hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
}

/** Creates a logger that drops lines below `level`. */
export function createLogger(level: LogLevel = "info", sink: LogSink = stderrSink): Logger {
  if (!(level in RANK)) throw new RangeError(`Log level must be one of ${LOG_LEVELS.join(", ")}`);
  const min = RANK[level];
  const at = (l: Exclude<LogLevel, "silent">) => (message: string) => {
    if (RANK[l] >= min) sink(l, message);
  };
  return {
    level,
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    enabled: (l) => RANK[l] >= min,
  };
}
