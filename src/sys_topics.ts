/**
 * The `$SYS/broker/…` tree of mosquitto 2.0: totals, gauges and the 1/5/15 minute load averages,
 * published as retained QoS 0 messages every `sysIntervalMs`.
 *
 * @module
 */
import type { BrokerContext } from "./context.ts";
import { Message } from "./message.ts";
import type { ClusterStats, Counters } from "./stats.ts";
import { VERSION } from "./version.ts";

const utf8 = new TextEncoder();

/**
 * The load averages mosquitto 2.0 publishes (`load/messages/received/1min`, …,
 * `load/connections/1min`, `load/sockets/1min`), each from one total counter.
 */
const LOADS: readonly [string, (c: Counters) => number][] = [
  ["messages/received", (c) => c.packetsIn],
  ["messages/sent", (c) => c.packetsOut],
  ["bytes/received", (c) => c.bytesIn],
  ["bytes/sent", (c) => c.bytesOut],
  ["publish/received", (c) => c.messagesIn],
  ["publish/sent", (c) => c.messagesOut],
  ["publish/dropped", (c) => Object.values(c.dropped).reduce((a, b) => a + b, 0)],
  ["connections", (c) => c.connectionsAccepted],
  ["sockets", (c) => c.connectionsTotal],
];
const WINDOWS: readonly [string, number][] = [["1min", 60], ["5min", 300], ["15min", 900]];

/** What the tree is computed from, besides the counters. */
export interface SysSource {
  readonly ctx: BrokerContext;
  /** `Date.now()` when the broker started. */
  readonly startedAt: number;
  /** The cluster link's counters, with `--cluster` (`cluster/…` topics). */
  readonly cluster?: () => ClusterStats | undefined;
}

/**
 * Computes and publishes the tree. Load averages are exponentially damped per-minute rates, as
 * mosquitto computes them: `avg = rate + e^(-dt/window) * (avg - rate)`.
 */
export class SysTopics {
  readonly #source: SysSource;
  readonly #averages = new Map<string, number>();
  #last: number[] = [];
  #lastAt = 0;
  #heapMax = 0;

  constructor(source: SysSource) {
    this.#source = source;
  }

  /** The topic names (under `$SYS/broker/`) and their values now; updates the load averages. */
  values(now = Date.now()): [string, string | number][] {
    const { ctx, startedAt } = this.#source;
    const c = ctx.counters;
    let offline = 0;
    for (const session of ctx.registry.sessions.values()) {
      if (session.link === undefined) offline++;
    }
    const dropped = Object.values(c.dropped).reduce((a, b) => a + b, 0);
    const heap = heapUsed();
    if (heap > this.#heapMax) this.#heapMax = heap;
    const values: [string, string | number][] = [
      ["version", `denomq ${VERSION}`],
      ["uptime", `${Math.floor((now - startedAt) / 1000)} seconds`],
      ["clients/total", ctx.registry.sessions.size],
      ["clients/connected", c.connected],
      ["clients/active", c.connected],
      ["clients/disconnected", offline],
      ["clients/inactive", offline],
      ["clients/maximum", c.connectedMax],
      ["clients/expired", c.sessionsExpired],
      ["messages/stored", ctx.retained.size + c.queued + c.inflight],
      ["messages/received", c.packetsIn],
      ["messages/sent", c.packetsOut],
      ["publish/messages/received", c.messagesIn],
      ["publish/messages/sent", c.messagesOut],
      ["publish/messages/dropped", dropped],
      ["bytes/received", c.bytesIn],
      ["bytes/sent", c.bytesOut],
      ["subscriptions/count", ctx.router.size],
      ["retained messages/count", ctx.retained.size],
      ["store/messages/count", c.queued + c.inflight],
      ["heap/current", heap],
      ["heap/maximum", this.#heapMax],
    ];
    const cluster = this.#source.cluster?.();
    if (cluster !== undefined) {
      values.push(
        ["cluster/node", cluster.node],
        ["cluster/connected", cluster.connected ? 1 : 0],
        ["cluster/server", cluster.server],
        ["cluster/subjects", cluster.subjects],
        ["cluster/messages/in", cluster.messagesIn],
        ["cluster/messages/out", cluster.messagesOut],
      );
    }
    const totals = LOADS.map(([, read]) => read(c));
    const dt = (now - this.#lastAt) / 1000;
    for (let i = 0; i < LOADS.length; i++) {
      const [name] = LOADS[i];
      for (const [window, seconds] of WINDOWS) {
        const key = `load/${name}/${window}`;
        let avg = this.#averages.get(key) ?? 0;
        if (this.#lastAt !== 0 && dt > 0) {
          const rate = ((totals[i] - this.#last[i]) / dt) * 60;
          avg = rate + Math.exp(-dt / seconds) * (avg - rate);
        }
        this.#averages.set(key, avg);
        values.push([key, avg.toFixed(2)]);
      }
    }
    this.#last = totals;
    this.#lastAt = now;
    return values;
  }

  /** Publishes every topic, retained, so a new subscriber sees the tree at once. */
  publish(): void {
    const { ctx } = this.#source;
    for (const [name, value] of this.values()) {
      ctx.publish(
        new Message(`$SYS/broker/${name}`, utf8.encode(String(value)), 0, true),
        undefined,
      );
    }
  }
}

/** V8 heap in use, in bytes; 0 where the runtime does not say. */
export function heapUsed(): number {
  try {
    return Deno.memoryUsage().heapUsed;
  } catch {
    return 0;
  }
}
