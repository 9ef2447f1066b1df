/**
 * The light entry point to bridges: `startBridges()` loads the MQTT client (npm:mqtt, in
 * `bridge.ts`) only when it is called, so importing `mod.ts` does not.
 *
 * @module
 */
import type { Broker } from "../broker.ts";
import type { BridgeConfig } from "./bridge_config.ts";
import type { RunningBridges, StartBridgesOptions } from "./bridge.ts";

export type { BridgeStats, RunningBridge, RunningBridges, StartBridgesOptions } from "./bridge.ts";

/**
 * Starts bridges on a broker: each is an MQTT client inside the broker connected to a remote
 * broker (see `BridgeConfig`). Needs `--allow-net` to the remotes, `--allow-read` of TLS files,
 * and for TLS-PSK `--allow-run` of stunnel and read/write of the temporary directory.
 *
 * @example Bridge every topic under "gw/" to a central broker and back
 * ```ts ignore
 * import { Broker, startBridges } from "./mod.ts";
 *
 * const broker = new Broker();
 * await broker.listen({ port: 1883 });
 * const bridges = await startBridges(broker, [{
 *   name: "central",
 *   addresses: [{ host: "central.example", port: 1883 }],
 *   topics: [{ pattern: "#", direction: "both", qos: 1, localPrefix: "gw/", remotePrefix: "site1/" }],
 * }]);
 * await bridges.bridges[0].connected();
 * // ...
 * await bridges.close();
 * ```
 *
 * @param broker The local broker.
 * @param configs The bridges.
 * @param options A logger and the stunnel binary.
 * @returns The running bridges; `close()` stops them.
 * @throws {TypeError} for a bad bridge, naming it and the key at fault.
 */
export async function startBridges(
  broker: Broker,
  configs: readonly BridgeConfig[],
  options: StartBridgesOptions = {},
): Promise<RunningBridges> {
  const { startBridges } = await import("./bridge.ts");
  return await startBridges(broker, configs, options);
}
