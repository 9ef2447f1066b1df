/**
 * What other features (cluster links, bridges) add to a broker's operations side: metric
 * families for `GET /metrics` and readiness checks for `GET /readyz`. Kept per broker, so two
 * brokers in one process report apart.
 *
 * @module
 */

/** The Prometheus metric types this exposition writes. */
export type MetricType = "counter" | "gauge" | "summary" | "untyped";

/** One sample: the family's name plus `suffix` (e.g. `_sum`), its labels and value. */
export interface MetricSample {
  /** Appended to the family name: `_sum` and `_count` of a summary. Default none. */
  suffix?: string;
  /** Label names and values; values are escaped when written. */
  labels?: Readonly<Record<string, string>>;
  /** The value; `NaN`, `+Inf` and `-Inf` are written as Prometheus spells them. */
  value: number;
}

/**
 * One metric family. Follow Prometheus naming: base units (`_seconds`, `_bytes`), counters end
 * in `_total` (the name given here is written as it is, on the `# TYPE` line too).
 */
export interface MetricFamily {
  /** `[a-zA-Z_:][a-zA-Z0-9_:]*`, e.g. `denomq_bridge_link_up`. */
  name: string;
  /** One line of help text. */
  help: string;
  /** The `# TYPE` of the family. */
  type: MetricType;
  /** The samples now; called on every scrape, so keep it cheap. */
  collect(): MetricSample[];
}

/**
 * A readiness check for `GET /readyz`: `true` when ready, or a string saying what is missing
 * (`"link to node-b down"`). It may throw; that counts as not ready.
 */
export type ReadinessCheck = () => boolean | string;

interface Registry {
  families: Map<string, MetricFamily>;
  checks: Map<string, ReadinessCheck>;
}

const REGISTRIES = new WeakMap<object, Registry>();
const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

/** The registry of one broker (created on first use). */
export function registryOf(broker: object): Registry {
  let registry = REGISTRIES.get(broker);
  if (registry === undefined) {
    REGISTRIES.set(broker, registry = { families: new Map(), checks: new Map() });
  }
  return registry;
}

/**
 * Adds a metric family to what `GET /metrics` serves for `broker`; returns a function that
 * removes it again. Throws TypeError for a bad or duplicate name.
 *
 * @example A bridge reports whether its link is up
 * ```ts ignore
 * import { Broker, registerMetricFamily } from "./mod.ts";
 *
 * const broker = new Broker();
 * let up = false;
 * const remove = registerMetricFamily(broker, {
 *   name: "denomq_bridge_link_up",
 *   help: "1 while the bridge's link is connected",
 *   type: "gauge",
 *   collect: () => [{ labels: { bridge: "cloud" }, value: up ? 1 : 0 }],
 * });
 * ```
 */
export function registerMetricFamily(broker: object, family: MetricFamily): () => void {
  if (!METRIC_NAME.test(family?.name ?? "")) {
    throw new TypeError(`Metric family name must match ${METRIC_NAME}, got "${family?.name}"`);
  }
  if (typeof family.collect !== "function") {
    throw new TypeError(`Metric family "${family.name}" needs a collect() function`);
  }
  const { families } = registryOf(broker);
  if (families.has(family.name)) {
    throw new TypeError(`Metric family "${family.name}" is registered already`);
  }
  families.set(family.name, family);
  return () => {
    if (families.get(family.name) === family) families.delete(family.name);
  };
}

/**
 * Adds a readiness check, named in `GET /readyz`'s answer; returns a function that removes it.
 *
 * @example A cluster is ready once its peers are connected
 * ```ts ignore
 * import { Broker, registerReadinessCheck } from "./mod.ts";
 *
 * const broker = new Broker();
 * registerReadinessCheck(broker, "cluster", () => peersUp === peers || `${peersUp}/${peers} peers`);
 * ```
 */
export function registerReadinessCheck(
  broker: object,
  name: string,
  check: ReadinessCheck,
): () => void {
  if (typeof name !== "string" || name === "") {
    throw new TypeError("Readiness check name must be a non-empty string");
  }
  if (typeof check !== "function") {
    throw new TypeError(`Readiness check "${name}" must be a function`);
  }
  const { checks } = registryOf(broker);
  if (checks.has(name)) throw new TypeError(`Readiness check "${name}" is registered already`);
  checks.set(name, check);
  return () => {
    if (checks.get(name) === check) checks.delete(name);
  };
}
