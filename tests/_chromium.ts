/**
 * Headless Chromium (Debian package `chromium`) driven over the Chrome DevTools protocol, for
 * tests of pages the broker serves: open a page, evaluate expressions in it.
 *
 * @module
 */
import { spawn, type Spawned, waitFor, which } from "./_util.ts";

/** The Chromium binary, if installed. */
export const CHROMIUM = which("chromium") ?? which("chromium-browser");

/** A page in a headless Chromium. */
export interface BrowserPage {
  /** Evaluates `expression` in the page and returns its (JSON) value. */
  evaluate<T = unknown>(expression: string): Promise<T>;
  /** Navigates the page to `url`. */
  navigate(url: string): Promise<void>;
  /** Sends a DevTools protocol command to the page. */
  send(method: string, params?: Record<string, unknown>): Promise<unknown>;
  /** Polls `expression` until it is truthy; rejects at the deadline naming `what`. */
  waitFor(expression: string, what: string, deadlineMs?: number): Promise<void>;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Starts Chromium with a fresh profile and attaches to its first page. */
export async function openBrowser(): Promise<BrowserPage> {
  if (CHROMIUM === undefined) throw new Error("needs Debian package chromium");
  const profile = await Deno.makeTempDir({ prefix: "chromium_profile_" });
  const browser: Spawned = spawn(CHROMIUM, [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    `--user-data-dir=${profile}`,
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
    "about:blank",
  ], { deadlineMs: 120_000 });
  let socket: WebSocket | undefined;
  const stop = async () => {
    try {
      socket?.close();
    } catch {
      // Closed already.
    }
    browser.kill("SIGTERM");
    await browser.finished;
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  };
  try {
    await browser.waitForOutput("stderr", /DevTools listening on ws:\/\/[^\s]+/, 60_000);
    const endpoint = /DevTools listening on (ws:\/\/[^\s]+)/.exec(browser.stderr())![1];
    const http = new URL(endpoint);
    const base = `http://${http.host}`;
    let target: { webSocketDebuggerUrl: string } | undefined;
    await waitFor(
      async () => {
        const list = await (await fetch(`${base}/json/list`)).json() as {
          type: string;
          webSocketDebuggerUrl: string;
        }[];
        target = list.find((t) => t.type === "page");
        return target !== undefined;
      },
      30_000,
      "a page target",
    );
    socket = new WebSocket(target!.webSocketDebuggerUrl);
    await new Promise<void>((resolve, reject) => {
      socket!.onopen = () => resolve();
      socket!.onerror = () => reject(new Error("cannot open the DevTools WebSocket"));
    });
  } catch (error) {
    await stop();
    throw error;
  }
  const ws = socket!;
  let nextId = 0;
  const pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  ws.onmessage = (event) => {
    const message = JSON.parse(String(event.data));
    const waiter = message.id === undefined ? undefined : pending.get(message.id);
    if (waiter === undefined) return;
    pending.delete(message.id);
    if (message.error) waiter.reject(new Error(JSON.stringify(message.error)));
    else waiter.resolve(message.result);
  };
  ws.onclose = () => {
    for (const waiter of pending.values()) waiter.reject(new Error("DevTools socket closed"));
    pending.clear();
  };
  const send = (method: string, params: Record<string, unknown> = {}) =>
    new Promise<unknown>((resolve, reject) => {
      const id = ++nextId;
      pending.set(id, { resolve, reject });
      ws.send(JSON.stringify({ id, method, params }));
    });
  const evaluate = async <T>(expression: string): Promise<T> => {
    const result = await send("Runtime.evaluate", { expression, returnByValue: true }) as {
      result: { value: T };
      exceptionDetails?: unknown;
    };
    if (result.exceptionDetails) {
      throw new Error(`evaluate ${expression}: ${JSON.stringify(result.exceptionDetails)}`);
    }
    return result.result.value;
  };
  await send("Page.enable");
  await send("Runtime.enable");
  let closing: Promise<void> | undefined;
  return {
    evaluate,
    send,
    async navigate(url) {
      await send("Page.navigate", { url });
    },
    async waitFor(expression, what, deadlineMs = 20_000) {
      let last: unknown;
      await waitFor(
        async () => {
          try {
            last = await evaluate(expression);
          } catch (error) {
            last = error;
          }
          return Boolean(last) && !(last instanceof Error);
        },
        deadlineMs,
        `${what} (last: ${String(last)})`,
      );
    },
    close: () => closing ??= stop(),
    [Symbol.asyncDispose]: () => closing ??= stop(),
  };
}

/** Loads `url` in a fresh headless Chromium and returns the DOM it serialized (`--dump-dom`). */
export async function dumpDom(url: string): Promise<string> {
  if (CHROMIUM === undefined) throw new Error("needs Debian package chromium");
  const profile = await Deno.makeTempDir({ prefix: "chromium_profile_" });
  try {
    const browser = spawn(CHROMIUM, [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-dev-shm-usage",
      `--user-data-dir=${profile}`,
      "--dump-dom",
      url,
    ], { deadlineMs: 120_000 });
    const result = await browser.finished;
    if (result.code !== 0) {
      throw new Error(`chromium --dump-dom exited ${result.code}: ${result.stderr}`);
    }
    return result.stdout;
  } finally {
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  }
}
