/**
 * A Deno-native MQTT 5.0 and 3.1.1 broker (one port, the version chosen per connection by its
 * CONNECT) with a bounded registry: every limit is a named option with a documented default and a
 * documented action when it is hit.
 *
 * @example Embed a broker in a program or a test
 * ```ts
 * import { Broker } from "./mod.ts";
 *
 * await using broker = new Broker({
 *   limits: { maxConnections: 10_000, maxInflight: 32, maxQueued: 1_000 },
 *   authenticate: ({ username }) => username === "demo",
 *   authorizePublish: (_client, topic) => !topic.startsWith("$SYS/"),
 * });
 * broker.addEventListener("publish", (e) => console.log(e.detail.topic));
 * const listener = await broker.listen({ hostname: "127.0.0.1", port: 0 });
 * await broker.publish({ topic: "a/b", payload: "hello", qos: 1, retain: true });
 * console.log(listener.port);
 * ```
 *
 * @example Metrics, health, an admin API and a live status page on one HTTP listener
 * ```ts ignore
 * import { Broker, createHttpHandler } from "./mod.ts";
 *
 * await using broker = new Broker();
 * await broker.listen({ port: 1883 });
 * using ops = createHttpHandler(broker, { token: Deno.env.get("DENOMQ_ADMIN_TOKEN") });
 * await using server = Deno.serve({ hostname: "127.0.0.1", port: 9090 }, ops);
 * // GET /metrics, /healthz, /readyz, /; /api/v1/... with "Authorization: Bearer TOKEN"
 * ```
 *
 * @module
 */
export {
  Broker,
  type BrokerEventListener,
  type BrokerOptions,
  type Listener,
  type ListenOptions,
  type PublishOptions,
} from "./src/broker.ts";
export {
  type BooleanLimit,
  DEFAULT_LIMITS,
  type IntegerLimit,
  LIMIT_RANGES,
  type Limits,
} from "./src/options.ts";
export type { BrokerStats, DropCounters } from "./src/stats.ts";
export type { ClusterOptions, ClusterStats } from "./src/cluster/link.ts";
export type {
  BrokerEventMap,
  ClientErrorEventDetail,
  ConnectEventDetail,
  DisconnectEventDetail,
  PublishEventDetail,
  SubscribeEventDetail,
  UnsubscribeEventDetail,
} from "./src/events.ts";
export type {
  AuthenticateEnhancedHook,
  AuthenticateHook,
  AuthenticateRequest,
  AuthenticateResult,
  AuthenticationResult,
  AuthenticationStep,
  AuthorizeForwardHook,
  AuthorizePublishHook,
  AuthorizeSubscribeHook,
  ClientInfo,
  RemoteAddress,
} from "./src/hooks.ts";
export type { MessageProperties } from "./src/message.ts";
export {
  type Properties,
  type ProtocolVersion,
  type QoS,
  REASON,
  type ReasonCode,
  type RetainHandling,
  type Subscription,
} from "./src/codec/packet.ts";
export type { BrokerConn } from "./src/transport/types.ts";
export { createLogger, type Logger, type LogLevel, type LogSink } from "./src/logger.ts";
export {
  createHttpHandler,
  type HttpHandler,
  type HttpHandlerOptions,
} from "./src/http/handler.ts";
export {
  type MetricFamily,
  type MetricSample,
  type MetricType,
  type ReadinessCheck,
  registerMetricFamily,
  registerReadinessCheck,
} from "./src/http/registry.ts";
export { loadTokenFile } from "./src/http/token.ts";
export { FileAuth, type FileAuthOptions, type ReloadResult } from "./src/auth/file_auth.ts";
export {
  DEFAULT_ITERATIONS,
  hashPassword,
  PasswordFile,
  setPasswordInFile,
} from "./src/auth/password_file.ts";
export { Acl, type ClientAcl } from "./src/auth/acl.ts";
export type {
  LoadedSession,
  LoadedState,
  LoadLimits,
  LoadResult,
  OpenReport,
  OutboundRecord,
  OutboundState,
  Persistence,
  SessionRecord,
  SkippedCounts,
  StoredMessage,
  StoredProperties,
  StoredSubscription,
  StoredWill,
} from "./src/persistence/persistence.ts";
export { MemoryPersistence } from "./src/persistence/memory.ts";
export {
  type PersistenceLogLevel,
  SqlitePersistence,
  type SqlitePersistenceOptions,
  type SyncMode,
} from "./src/persistence/sqlite.ts";
export {
  type ConnectionHandler,
  createWebSocketHandler,
  webSocketConn,
  type WebSocketConnOptions,
  type WebSocketHandlerOptions,
} from "./src/transport/websocket.ts";
export {
  PskSidecar,
  type PskSidecarOptions,
  stunnelConfig,
  type StunnelConfigOptions,
  type StunnelDebugLevel,
} from "./src/transport/psk_sidecar.ts";
export {
  type ConfReader,
  DENO_READER,
  loadMosquittoConf,
  MosquittoConfError,
  type MosquittoConfig,
  type MosquittoSettings,
  parseMosquittoConf,
} from "./src/config/mosquitto_conf.ts";
export {
  type ListenerAuthConfig,
  type ListenerConfig,
  ListenerConfigError,
  listenerName,
  type ListenerTlsConfig,
  parseListeners,
} from "./src/config/listeners.ts";
export {
  type AuthHooks,
  BRIDGE_TRANSPORT,
  type ListenerAuth,
  loadListenerAuth,
  startListeners,
  type StartListenersOptions,
  type Stopper,
} from "./src/config/listen.ts";
export {
  type BridgeAddress,
  type BridgeConfig,
  BridgeConfigError,
  type BridgePskConfig,
  type BridgeTlsConfig,
  type BridgeTopic,
  checkBridge,
  checkBridgeTopic,
  localFilter,
  mapIncoming,
  mapOutgoing,
  parseBridges,
  remoteFilter,
} from "./src/bridge/bridge_config.ts";
export {
  type BridgeStats,
  type RunningBridge,
  type RunningBridges,
  startBridges,
  type StartBridgesOptions,
} from "./src/bridge/start.ts";
