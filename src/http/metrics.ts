/**
 * `GET /metrics`: the broker's state in the Prometheus text exposition format (version 0.0.4),
 * one family per thing an operator graphs, named as Prometheus asks (`_total` counters, base
 * units), plus the families other features registered.
 *
 * @module
 */
import { CONNACK } from "../codec/packet.ts";
import { internalsOf } from "../introspection.ts";
import type { DropCounters } from "../stats.ts";
import { VERSION } from "../version.ts";
import type { EventLoopMonitor } from "./event_loop.ts";
import { type MetricFamily, type MetricSample, registryOf } from "./registry.ts";

/** The content type of the text exposition format. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** `connectRefused` index → the `reason` label of `denomq_connections_refused_total`. */
export const REFUSED_REASONS: Readonly<Record<number, string>> = {
  [CONNACK.unacceptableProtocolVersion]: "unacceptable_protocol_version",
  [CONNACK.identifierRejected]: "identifier_rejected",
  [CONNACK.serverUnavailable]: "server_unavailable",
  [CONNACK.badUsernameOrPassword]: "bad_username_or_password",
  [CONNACK.notAuthorized]: "not_authorized",
};

/** `DropCounters` key → the `reason` label of `denomq_messages_dropped_total`. */
export const DROP_REASONS: Readonly<Record<keyof DropCounters, string>> = {
  queueFull: "queue_full",
  offlineQos0: "offline_qos0",
  retainedFull: "retained_full",
  notAuthorized: "not_authorized",
  forwardDenied: "forward_denied",
  sessionDiscarded: "session_discarded",
  expired: "expired",
  packetTooLarge: "packet_too_large",
  memoryLimit: "memory_limit",
};

const PROCESS_START_SECONDS = (() => {
  try {
    return (Date.now() - performance.now()) / 1000;
  } catch {
    return Date.now() / 1000;
  }
})();

function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

function writeFamily(out: string[], family: MetricFamily): void {
  let samples: MetricSample[];
  try {
    samples = family.collect();
  } catch {
    return; // A failing collector costs its family, not the scrape.
  }
  out.push(`# HELP ${family.name} ${family.help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`);
  out.push(`# TYPE ${family.name} ${family.type}`);
  for (const sample of samples) {
    const labels = sample.labels === undefined
      ? ""
      : `{${Object.entries(sample.labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",")}}`;
    out.push(`${family.name}${sample.suffix ?? ""}${labels} ${formatValue(sample.value)}`);
  }
}

function gauge(name: string, help: string, value: () => number): MetricFamily {
  return { name, help, type: "gauge", collect: () => [{ value: value() }] };
}

function counter(name: string, help: string, value: () => number): MetricFamily {
  return { name, help, type: "counter", collect: () => [{ value: value() }] };
}

function memory(): Deno.MemoryUsage | undefined {
  try {
    return Deno.memoryUsage();
  } catch {
    return undefined;
  }
}

/** The built-in families of one broker. */
export function brokerFamilies(broker: object, loop?: EventLoopMonitor): MetricFamily[] {
  const internals = internalsOf(broker);
  const { ctx } = internals;
  const c = ctx.counters;
  // Walked once per scrape and shared by the families that need a pass over the sessions.
  let sessionScan: { online: number; offline: number; queuedBytes: number } | undefined;
  const scan = () => {
    if (sessionScan !== undefined) return sessionScan;
    let online = 0;
    let queuedBytes = 0;
    for (const session of ctx.registry.sessions.values()) {
      if (session.link !== undefined) online++;
      queuedBytes += session.queuedBytes;
    }
    return sessionScan = { online, offline: ctx.registry.sessions.size - online, queuedBytes };
  };
  let mem: Deno.MemoryUsage | undefined;
  const families: MetricFamily[] = [
    {
      name: "denomq_build_info",
      help: "Always 1; the version is a label.",
      type: "gauge",
      collect: () => {
        sessionScan = undefined; // First family: a new scrape starts here.
        mem = memory();
        return [{ labels: { version: VERSION }, value: 1 }];
      },
    },
    gauge(
      "process_start_time_seconds",
      "Start time of the process since the Unix epoch, in seconds.",
      () => PROCESS_START_SECONDS,
    ),
    gauge(
      "denomq_uptime_seconds",
      "Seconds since the broker was created.",
      () => (Date.now() - internals.startedAt) / 1000,
    ),
    gauge(
      "denomq_connections",
      "Open network connections, before and after CONNECT.",
      () => internals.connections.size,
    ),
    gauge("denomq_clients_connected", "Clients whose CONNECT was accepted.", () => c.connected),
    gauge(
      "denomq_clients_connected_max",
      "Most clients connected at once since the start.",
      () => c.connectedMax,
    ),
    counter(
      "denomq_network_connections_total",
      "Network connections handled since the start, refused ones included.",
      () => c.connectionsTotal,
    ),
    counter(
      "denomq_connections_accepted_total",
      "CONNECTs accepted (CONNACK 0 sent).",
      () => c.connectionsAccepted,
    ),
    {
      name: "denomq_connections_refused_total",
      help: "CONNECTs refused, by CONNACK reason.",
      type: "counter",
      collect: () =>
        Object.entries(REFUSED_REASONS).map(([code, reason]) => ({
          labels: { reason },
          value: c.connectRefused[Number(code)] ?? 0,
        })),
    },
    {
      name: "denomq_sessions",
      help: "Sessions held, by state: online (connected) or offline (persistent, waiting).",
      type: "gauge",
      collect: () => [
        { labels: { state: "online" }, value: scan().online },
        { labels: { state: "offline" }, value: scan().offline },
      ],
    },
    counter(
      "denomq_sessions_expired_total",
      "Offline persistent sessions removed because they expired.",
      () => c.sessionsExpired,
    ),
    gauge("denomq_subscriptions", "Subscriptions over all sessions.", () => ctx.router.size),
    gauge(
      "denomq_retained_messages",
      "Retained messages stored, the broker's own $SYS topics included.",
      () => ctx.retained.size,
    ),
    gauge(
      "denomq_retained_bytes",
      "Topic and payload bytes of the retained messages (what maxRetainedBytes bounds).",
      () => ctx.retained.bytes,
    ),
    gauge(
      "denomq_queued_messages",
      "Messages waiting in session queues, over all sessions.",
      () => c.queued,
    ),
    gauge(
      "denomq_queued_bytes",
      "Topic and payload bytes waiting in session queues, over all sessions.",
      () => scan().queuedBytes,
    ),
    gauge(
      "denomq_memory_used_bytes",
      "Bytes the memoryLimit counts now: queued and in-flight messages, retained messages, unwritten socket bytes.",
      () => c.memory.used,
    ),
    counter(
      "denomq_memory_pauses_total",
      "Times a publisher's reads were paused because memoryLimit was reached.",
      () => c.memoryPauses,
    ),
    gauge(
      "denomq_inflight_messages",
      "QoS 1/2 messages sent and not yet acknowledged, over all sessions.",
      () => c.inflight,
    ),
    counter(
      "denomq_messages_received_total",
      "PUBLISH packets received from clients, and publish() calls of the process.",
      () => c.messagesIn,
    ),
    counter("denomq_messages_sent_total", "PUBLISH packets sent to clients.", () => c.messagesOut),
    counter(
      "denomq_packets_received_total",
      "MQTT packets of any type received.",
      () => c.packetsIn,
    ),
    counter("denomq_packets_sent_total", "MQTT packets of any type sent.", () => c.packetsOut),
    counter(
      "denomq_bytes_received_total",
      "MQTT bytes read from clients (after TLS or WebSocket framing).",
      () => c.bytesIn,
    ),
    counter("denomq_bytes_sent_total", "MQTT bytes written to clients.", () => c.bytesOut),
    {
      name: "denomq_messages_dropped_total",
      help: "Messages not delivered or not stored, by reason.",
      type: "counter",
      collect: () =>
        (Object.keys(DROP_REASONS) as (keyof DropCounters)[]).map((key) => ({
          labels: { reason: DROP_REASONS[key] },
          value: c.dropped[key],
        })),
    },
    counter(
      "denomq_protocol_errors_total",
      "Connections closed for a protocol violation or a malformed packet.",
      () => c.protocolErrors,
    ),
    gauge(
      "process_resident_memory_bytes",
      "Resident set size of the process, in bytes.",
      () => mem?.rss ?? NaN,
    ),
    gauge("denomq_heap_used_bytes", "V8 heap in use, in bytes.", () => mem?.heapUsed ?? NaN),
    gauge(
      "denomq_heap_total_bytes",
      "V8 heap reserved, in bytes.",
      () => mem?.heapTotal ?? NaN,
    ),
    gauge(
      "denomq_external_memory_bytes",
      "Memory of objects outside the V8 heap (buffers), in bytes.",
      () => mem?.external ?? NaN,
    ),
  ];
  const store = internals.store;
  if (store !== undefined) {
    families.push(
      counter(
        "denomq_store_commits_total",
        "Batches (transactions) the store committed.",
        () => store.commits,
      ),
    );
    if (store.commitMs !== undefined) {
      families.push({
        name: "denomq_store_commit_duration_seconds",
        help: "Time spent committing batches to the store.",
        type: "summary",
        collect: () => [
          { suffix: "_sum", value: (store.commitMs ?? 0) / 1000 },
          { suffix: "_count", value: store.commits },
        ],
      });
    }
  }
  if (loop !== undefined) {
    families.push(
      gauge(
        "denomq_event_loop_delay_seconds",
        "How late the latest 500 ms timer ran: the delay work queued behind the event loop saw.",
        () => loop.latestSeconds,
      ),
      gauge(
        "denomq_event_loop_delay_max_seconds",
        "The worst event-loop delay of roughly the last 20 to 30 seconds.",
        () => loop.maxSeconds,
      ),
    );
  }
  return families;
}

/** The whole exposition for `broker`: the built-in families, then the registered ones. */
export function renderMetrics(broker: object, loop?: EventLoopMonitor): string {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const family of brokerFamilies(broker, loop)) {
    seen.add(family.name);
    writeFamily(out, family);
  }
  for (const family of registryOf(broker).families.values()) {
    if (!seen.has(family.name)) writeFamily(out, family);
  }
  return out.join("\n") + "\n";
}
