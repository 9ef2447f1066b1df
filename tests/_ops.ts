/**
 * Helpers of the operations tests: an HTTP side on port 0 for a broker, and the reference
 * Prometheus parser (Debian python3-prometheus-client) reading what `/metrics` serves.
 *
 * @module
 */
import assert from "node:assert/strict";
import { type Broker, createHttpHandler, type HttpHandlerOptions } from "../mod.ts";
import { run } from "./_util.ts";

/** A running `Deno.serve` with the broker's HTTP handler. */
export interface OpsServer {
  readonly port: number;
  readonly url: string;
  /** `fetch` of a path on the server. */
  get(path: string, init?: RequestInit): Promise<Response>;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Serves `createHttpHandler(broker, options)` on 127.0.0.1, port 0. */
export function serveOps(broker: Broker, options: HttpHandlerOptions = {}): OpsServer {
  const handler = createHttpHandler(broker, options);
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
  const port = server.addr.port;
  const url = `http://127.0.0.1:${port}`;
  let closing: Promise<void> | undefined;
  const close = () =>
    closing ??= server.shutdown().finally(() => {
      handler.close();
    });
  return {
    port,
    url,
    get: (path, init) => fetch(url + path, init),
    close,
    [Symbol.asyncDispose]: close,
  };
}

// The parser script: the exposition on stdin, one JSON object per sample on stdout.
const PARSE = `
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append({"family": family.name, "type": family.type, "name": s.name,
                    "labels": s.labels, "value": s.value})
print(json.dumps(out))
`;

let python: string | undefined | null = null;

/** Debian's python3 with prometheus_client, even when another python3 comes first on PATH. */
export function prometheusPython(): string | undefined {
  if (python !== null) return python;
  python = undefined;
  for (const candidate of ["/usr/bin/python3", "python3"]) {
    try {
      const { success } = new Deno.Command(candidate, {
        args: ["-c", "import prometheus_client.parser"],
        stdout: "null",
        stderr: "null",
      }).outputSync();
      if (success) return python = candidate;
    } catch {
      // Not runnable.
    }
  }
  return python;
}

/** One sample as the reference parser read it. */
export interface ParsedSample {
  family: string;
  type: string;
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses an exposition with the reference parser; fails the test if it refuses it. */
export async function parsePrometheus(text: string): Promise<ParsedSample[]> {
  const py = prometheusPython();
  assert.ok(
    py !== undefined,
    "needs Debian package python3-prometheus-client (the reference parser); .ci/run installs it",
  );
  const result = await run(py, ["-c", PARSE], { stdin: text, deadlineMs: 20_000 });
  assert.equal(result.code, 0, `the reference parser refused the exposition: ${result.stderr}`);
  return JSON.parse(result.stdout);
}

/** The value of one sample: by sample name and, optionally, labels. NaN when absent. */
export function sampleValue(
  samples: ParsedSample[],
  name: string,
  labels: Record<string, string> = {},
): number {
  const hit = samples.find((s) =>
    s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  );
  return hit?.value ?? NaN;
}

/** Fetches `/metrics` and parses it with the reference parser. */
export async function scrape(server: OpsServer): Promise<ParsedSample[]> {
  const response = await server.get("/metrics");
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  return await parsePrometheus(await response.text());
}
