/**
 * The cluster on NATS JetStream. Loaded by the broker with a dynamic import only when a cluster
 * is configured, so that `mod.ts` pulls in no NATS code for users without one.
 *
 * What goes where (PREFIX defaults to `dmq`; subjects map topics through `subject.ts`):
 * - `PREFIX.0.…` core NATS, QoS 0 messages. Each node subscribes only to the subjects of its
 *   local filters (refcounted), with `noEcho`, so only nodes with a matching subscription get a
 *   message, and never the node that published it.
 * - `PREFIX.1.…` stream `PREFIX_MSGS` (interest retention), QoS 1 and 2 messages. The publishing
 *   node waits for JetStream's ack before PUBACK/PUBREC; each node reads, per local filter, a
 *   durable pull consumer named after the node, so a node that was cut off from NATS, or
 *   restarted with its sessions (`--data-dir`), catches up. `Nats-Msg-Id` dedupes retries.
 * - `PREFIX.r.…` stream `PREFIX_RETAINED`, one message per subject: the retained messages. Every
 *   node mirrors it into its retained store (read at start, then followed).
 * - KV bucket `PREFIX_sessions`: which node holds a client id, and a persistent session's
 *   subscriptions. `PREFIX.t.NODE` is where a node asks another to hand a client id over.
 *
 * @module
 */
// deno-lint-ignore no-import-prefix
import * as nats from "npm:@nats-io/transport-node@3.4.0";
// deno-lint-ignore no-import-prefix
import * as jsapi from "npm:@nats-io/jetstream@3.4.0";
// deno-lint-ignore no-import-prefix
import { type KV, Kvm } from "npm:@nats-io/kv@3.4.0";
import type { QoS } from "../codec/packet.ts";
import { Message, type MessageProperties } from "../message.ts";
import type { SubscriptionOptions } from "../session/session.ts";
import { matchTopic } from "../topic/topic.ts";
import type {
  ClusterHost,
  ClusterLink,
  ClusterOptions,
  ClusterStats,
  SessionMessage,
  SessionState,
} from "./link.ts";
import { validateClusterOptions } from "./link.ts";
import {
  base64,
  decodeSessionState,
  encodeSessionState,
  subscriptionEntry,
  unbase64,
} from "./session_state.ts";
import { filterToSubjects, subjectToTopic, topicToSubject } from "./subject.ts";

// nats-server's default max_control_line is 4 KiB and a PUB line carries the subject: longer
// subjects would end the NATS connection, so such messages stay on this node.
const MAX_SUBJECT = 3_000;
const HOUR_NS = 3600 * 1e9;
const TAKEOVER_TIMEOUT_MS = 2_000;
const SEEN_JS = 65_536;
// Pull requests last this long (heartbeats every half of it): when a consumer's leader moves to
// another NATS server, the node notices within about this time instead of nats.js's 30 s.
const PULL_EXPIRES_MS = 5_000;

const utf8 = new TextEncoder();
const text = new TextDecoder();

interface Envelope {
  origin: string;
  seq: number;
  qos: QoS;
  retain: boolean;
  payload: Uint8Array;
  /** A 5.0 message's properties and expiry (flag 16). */
  extra?: Extra;
}

/** What a 5.0 message carries beyond topic, payload, QoS and retain. */
interface Extra {
  properties?: MessageProperties;
  /** Epoch ms; 0 = never. */
  expiresAt: number;
}

// Flag of an envelope: after the sequence, u32 length and JSON of the message's Extra (5.0
// properties, expiry), then the payload. 5.0 messages with properties are few: JSON is enough.
const EXTRA = 16;

function extraBytes(message: Message): Uint8Array | undefined {
  const props = message.properties;
  if (props === undefined && message.expiresAt === 0) return undefined;
  const json: { p?: Record<string, unknown>; e?: number } = {};
  if (props !== undefined) {
    json.p = props.correlationData === undefined
      ? { ...props }
      : { ...props, correlationData: base64(props.correlationData) };
  }
  if (message.expiresAt !== 0) json.e = message.expiresAt;
  return utf8.encode(JSON.stringify(json));
}

function decodeExtra(bytes: Uint8Array): Extra {
  const json = JSON.parse(text.decode(bytes));
  const extra: Extra = { expiresAt: typeof json.e === "number" ? json.e : 0 };
  if (json.p !== undefined) {
    const p = json.p;
    if (typeof p.correlationData === "string") p.correlationData = unbase64(p.correlationData);
    extra.properties = p as MessageProperties;
  }
  return extra;
}

/** The message an envelope carries, 5.0 properties and expiry included. */
function messageOf(topic: string, env: Envelope, retain: boolean): Message {
  const extra = env.extra;
  return extra === undefined
    ? new Message(topic, env.payload, env.qos, retain)
    : new Message(topic, env.payload, env.qos, retain, extra.properties, extra.expiresAt);
}

// One scratch view for the sequence: a DataView per message is a measurable cost.
const SCRATCH = new Uint8Array(8);
const SCRATCH_VIEW = new DataView(SCRATCH.buffer);

// flags (qos | retain << 2), origin length, origin, seq (float64), payload.
function encodeEnvelope(origin: Uint8Array, seq: number, message: Message): Uint8Array {
  const extra = extraBytes(message);
  const head = 2 + origin.length + 8 + (extra === undefined ? 0 : 4 + extra.length);
  const out = new Uint8Array(head + message.payload.length);
  out[0] = message.qos | (message.retain ? 4 : 0) | (extra === undefined ? 0 : EXTRA);
  out[1] = origin.length;
  out.set(origin, 2);
  SCRATCH_VIEW.setFloat64(0, seq);
  out.set(SCRATCH, 2 + origin.length);
  if (extra !== undefined) {
    const at = 2 + origin.length + 8;
    new DataView(out.buffer).setUint32(at, extra.length);
    out.set(extra, at + 4);
  }
  out.set(message.payload, head);
  return out;
}

// Origins are ASCII (node name, "/", hex): cheaper than a TextDecoder per message.
function ascii(data: Uint8Array, from: number, to: number): string {
  let s = "";
  for (let i = from; i < to; i++) s += String.fromCharCode(data[i]);
  return s;
}

// Topics repeat: the mapping of the last ones is kept (cleared when full).
class MappingCache {
  #map = new Map<string, string>();
  get(key: string, make: (key: string) => string): string {
    let value = this.#map.get(key);
    if (value === undefined) {
      if (this.#map.size >= 4096) this.#map.clear();
      this.#map.set(key, value = make(key));
    }
    return value;
  }
}

// QoS 0 messages of one turn for one subject travel as one NATS message: the header of an
// envelope with flag 8, then per message its flags byte, u32 length and payload.
const BATCH = 8;

function encodeBatch(origin: Uint8Array, seq: number, messages: Message[]): Uint8Array {
  const head = 2 + origin.length + 8;
  let size = head;
  for (const m of messages) size += 5 + m.payload.length;
  const out = new Uint8Array(size);
  out[0] = BATCH;
  out[1] = origin.length;
  out.set(origin, 2);
  SCRATCH_VIEW.setFloat64(0, seq);
  out.set(SCRATCH, 2 + origin.length);
  const view = new DataView(out.buffer);
  let at = head;
  for (const m of messages) {
    out[at] = m.qos | (m.retain ? 4 : 0);
    view.setUint32(at + 1, m.payload.length);
    out.set(m.payload, at + 5);
    at += 5 + m.payload.length;
  }
  return out;
}

/** Calls `visit` for each message of an envelope (one, or the members of a batch). */
function eachMessage(env: Envelope, flags: number, visit: (env: Envelope) => void): void {
  if ((flags & BATCH) === 0) return visit(env);
  const data = env.payload;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  for (let at = 0; at + 5 <= data.length;) {
    const length = view.getUint32(at + 1);
    visit({
      origin: env.origin,
      seq: env.seq,
      qos: (data[at] & 3) as QoS,
      retain: (data[at] & 4) !== 0,
      payload: data.subarray(at + 5, at + 5 + length),
    });
    at += 5 + length;
  }
}

function decodeEnvelope(data: Uint8Array): Envelope {
  const n = data[1];
  for (let i = 0; i < 8; i++) SCRATCH[i] = data[2 + n + i];
  const env: Envelope = {
    qos: (data[0] & 3) as QoS,
    retain: (data[0] & 4) !== 0,
    origin: ascii(data, 2, 2 + n),
    seq: SCRATCH_VIEW.getFloat64(0),
    payload: data.subarray(2 + n + 8),
  };
  if ((data[0] & (EXTRA | BATCH)) === EXTRA) {
    const at = 2 + n + 8;
    const length = new DataView(data.buffer, data.byteOffset).getUint32(at);
    env.extra = decodeExtra(data.subarray(at + 4, at + 4 + length));
    env.payload = data.subarray(at + 4 + length);
  }
  return env;
}

function hex(s: string): string {
  let out = "";
  for (const b of utf8.encode(s)) out += b.toString(16).padStart(2, "0");
  return out;
}

// FNV-1a over 2 × 32 bits: consumer names must be short and made of plain characters.
function hash(s: string): string {
  let a = 0x811c9dc5;
  let b = 0x01000193;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995) ^ (b >>> 13);
  }
  return (a >>> 0).toString(36) + (b >>> 0).toString(36);
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message.split("\n")[0] : String(error);
}

function isBrokerSys(topic: string): boolean {
  return topic.startsWith("$SYS") && (topic.length === 4 || topic.charCodeAt(4) === 47);
}

interface SessionRecord {
  node: string;
  clean: boolean;
  subscriptions: SessionState["subscriptions"];
  /** Epoch ms; 0 while connected (then `expiryMs` after `savedAt` counts). */
  expiresAt: number;
  /** The session's own expiry once offline (5.0; 0 = never); absent: the broker's. */
  expiryMs?: number;
  savedAt: number;
}

interface Interest {
  refs: number;
  sub?: nats.Subscription;
  messages?: jsapi.ConsumerMessages;
  consumer: string;
  more?: nats.Subscription[];
  moreMessages?: jsapi.ConsumerMessages[];
}

/**
 * Connects to NATS, makes sure the streams and the bucket exist, loads the retained messages
 * and starts serving takeover requests. Rejects with one line naming the URLs when NATS cannot
 * be reached.
 */
export async function startCluster(
  options: ClusterOptions,
  host: ClusterHost,
): Promise<ClusterLink> {
  validateClusterOptions(options);
  const cluster = new NatsCluster(options, host);
  await cluster.start();
  return cluster;
}

class NatsCluster implements ClusterLink {
  readonly #host: ClusterHost;
  readonly #options: ClusterOptions;
  readonly #node: string;
  readonly #p: string;
  readonly #origin: string;
  readonly #originBytes: Uint8Array;
  readonly #msgStream: string;
  readonly #retainedStream: string;
  #nc!: nats.NatsConnection;
  #connectOptions: nats.NodeConnectionOptions = {};
  #takeovers: nats.Subscription | undefined;
  #js!: jsapi.JetStreamClient;
  #jsm!: jsapi.JetStreamManager;
  #kv!: KV;
  #seq = 0;
  #coreSeq = 0;
  #coreBatch = new Map<string, Message[]>();
  #coreScheduled = false;
  #interest = new Map<string, Interest>();
  #shared = new Map<string, Interest>();
  // Queue subscriptions need a connection that also gets this node's own messages.
  #echo: nats.NatsConnection | undefined;
  #lastSeq = new Map<string, number>();
  #seenJs = new Set<number>();
  #connected = false;
  #closed = false;
  #releasing: string | undefined;
  #claiming = new Set<string>();
  #retry = new Set<string>();
  // Client ids taken in `claim`, waiting for the rest once adopted: from a live node (phase 2),
  // or, from a dead one, a second replay of the stream (what came during the first).
  #handing = new Map<string, { node: string } | { record: SessionRecord; seen: Set<string> }>();
  readonly #ids = new WeakMap<Message, string>();
  readonly #handingTimers = new Map<string, ReturnType<typeof setTimeout>>();
  #counters = { messagesOut: 0, messagesIn: 0, publishRetries: 0, tooLong: 0 };
  #retainedFollower: jsapi.ConsumerMessages | undefined;
  // Everything the acks of this turn wait for; one promise per event-loop turn.
  #tail: Promise<void> = Promise.resolve();
  #batch: Promise<unknown>[] | undefined;
  #warned = false;
  #subjects = new MappingCache();
  #topics = new MappingCache();

  constructor(options: ClusterOptions, host: ClusterHost) {
    this.#options = options;
    this.#host = host;
    this.#node = options.nodeName;
    this.#p = options.prefix ?? "dmq";
    this.#origin = `${this.#node}/${crypto.randomUUID().slice(0, 8)}`;
    this.#originBytes = utf8.encode(this.#origin);
    this.#msgStream = `${this.#p}_MSGS`;
    this.#retainedStream = `${this.#p}_RETAINED`;
  }

  async start(): Promise<void> {
    const o = this.#options;
    const where = o.servers.join(",");
    const connectOptions: nats.NodeConnectionOptions = this.#connectOptions = {
      servers: o.servers,
      name: `denomq ${this.#node}`,
      noEcho: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
    };
    if (o.user !== undefined) connectOptions.user = o.user;
    if (o.password !== undefined) connectOptions.pass = o.password;
    if (o.token !== undefined) connectOptions.token = o.token;
    if (o.credsFile !== undefined) {
      let creds: Uint8Array;
      try {
        creds = await Deno.readFile(o.credsFile);
      } catch (error) {
        throw new Error(`cannot read the NATS credentials ${o.credsFile}: ${errorText(error)}`);
      }
      connectOptions.authenticator = nats.credsAuthenticator(creds);
    }
    if (o.tlsCaFile !== undefined) connectOptions.tls = { caFile: o.tlsCaFile };
    try {
      this.#nc = await nats.connect(connectOptions);
    } catch (error) {
      throw new Error(`cannot connect to NATS at ${where}: ${errorText(error)}`);
    }
    this.#connected = true;
    this.#watchStatus();
    // A NATS cluster that has just started may still be electing its JetStream leader.
    const deadline = Date.now() + 20_000;
    for (;;) {
      try {
        await this.#setUp();
        break;
      } catch (error) {
        const retry = /temporarily unavailable|no responders|timeout|TIMEOUT|503/i.test(
          errorText(error),
        );
        if (retry && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 250));
          continue;
        }
        await this.#nc.close().catch(() => {});
        throw new Error(`NATS at ${where}: JetStream: ${errorText(error)}`);
      }
    }
    this.#host.log.info(
      `cluster: node ${this.#node} joined through NATS ${this.#nc.getServer()}`,
    );
  }

  async #setUp(): Promise<void> {
    const o = this.#options;
    this.#jsm = await jsapi.jetstreamManager(this.#nc);
    this.#js = jsapi.jetstream(this.#nc);
    const replicas = o.replicas ?? 1;
    await this.#ensureStream({
      name: this.#msgStream,
      subjects: [`${this.#p}.1.>`],
      // Kept for an hour (not only until the interested consumers acked): a session whose
      // node died while it was offline is rebuilt elsewhere from what came since.
      retention: jsapi.RetentionPolicy.Limits,
      storage: jsapi.StorageType.File,
      num_replicas: replicas,
      max_age: HOUR_NS,
      duplicate_window: 120 * 1e9,
    });
    await this.#ensureStream({
      name: this.#retainedStream,
      subjects: [`${this.#p}.r.>`],
      retention: jsapi.RetentionPolicy.Limits,
      storage: jsapi.StorageType.File,
      num_replicas: replicas,
      max_msgs_per_subject: 1,
    });
    this.#kv = await new Kvm(this.#nc).create(`${this.#p}_sessions`, { replicas, history: 1 });
    this.#takeovers ??= this.#nc.subscribe(`${this.#p}.t.${this.#node}`, {
      callback: (error, msg) => {
        if (error === null) this.#answerTakeover(msg);
      },
    });
    await this.#followRetained();
    await this.#nc.flush();
  }

  async #ensureStream(config: Partial<jsapi.StreamConfig> & { name: string }): Promise<void> {
    try {
      await this.#jsm.streams.info(config.name);
      return;
    } catch {
      // Not there yet.
    }
    try {
      await this.#jsm.streams.add(config);
    } catch (error) {
      // Another node may have made it meanwhile.
      await this.#jsm.streams.info(config.name).catch(() => {
        throw error;
      });
    }
  }

  #watchStatus(): void {
    (async () => {
      for await (const s of this.#nc.status()) {
        if (s.type === "disconnect") {
          this.#connected = false;
          this.#host.log.warn(
            `cluster: lost NATS ${s.server}; local delivery goes on, reconnecting`,
          );
        } else if (s.type === "reconnect") {
          this.#connected = true;
          this.#warned = false;
          this.#host.log.info(`cluster: reconnected to NATS ${s.server}`);
          this.#retryConsumers();
        }
      }
    })().catch(() => {});
  }

  // The retained stream, newest per subject, read to its end now and then followed.
  async #followRetained(): Promise<void> {
    this.#retainedFollower?.stop();
    const info = await this.#jsm.streams.info(this.#retainedStream);
    const last = info.state.last_seq;
    const consumer = await this.#js.consumers.get(this.#retainedStream, {
      filter_subjects: `${this.#p}.r.>`,
      deliver_policy: jsapi.DeliverPolicy.LastPerSubject,
    });
    const messages = await consumer.consume({ expires: PULL_EXPIRES_MS });
    this.#retainedFollower = messages;
    let caughtUp: () => void = () => {};
    const loaded = new Promise<void>((resolve) => caughtUp = resolve);
    if (info.state.messages === 0) caughtUp();
    const prefix = `${this.#p}.r`;
    (async () => {
      for await (const m of messages) {
        try {
          const env = decodeEnvelope(m.data);
          const topic = subjectToTopic(prefix, m.subject);
          this.#host.setRetained(messageOf(topic, env, true));
        } catch (error) {
          this.#host.log.warn(`cluster: bad retained message on ${m.subject}: ${errorText(error)}`);
        }
        if (m.seq >= last) caughtUp();
      }
    })().catch((error) => this.#host.log.error(`cluster: retained follower: ${errorText(error)}`));
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      loaded,
      new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          this.#host.log.warn("cluster: retained messages not all loaded within 10 s");
          resolve();
        }, 10_000);
      }),
    ]);
    clearTimeout(timer);
  }

  #track(p: Promise<unknown>): void {
    if (this.#batch === undefined) {
      const batch: Promise<unknown>[] = this.#batch = [];
      const previous = this.#tail;
      this.#tail = new Promise<void>((resolve) => {
        setImmediate(() => {
          this.#batch = undefined;
          resolve(Promise.all([previous, ...batch]).then(() => {}));
        });
      });
    }
    this.#batch.push(p);
  }

  // Until JetStream has it: acks wait, so a retry keeps the promise of an ack.
  #publishDurably(subject: string, data: Uint8Array, msgID: string): Promise<void> {
    const attempt = (): Promise<void> =>
      this.#js.publish(subject, data, { msgID, timeout: 5_000 }).then(
        () => {},
        (error) => {
          if (this.#closed) return;
          this.#counters.publishRetries++;
          if (!this.#warned) {
            this.#warned = true;
            this.#host.log.warn(
              `cluster: JetStream publish failed (${errorText(error)}); retrying, acks wait`,
            );
          }
          return new Promise<void>((resolve) => setTimeout(resolve, 250)).then(attempt);
        },
      );
    return attempt();
  }

  forward(message: Message, retainedChanged: boolean): void {
    if (this.#closed || isBrokerSys(message.topic)) return;
    const tail = this.#subjects.get(message.topic, (topic) => topicToSubject("", topic));
    if (tail.length > MAX_SUBJECT) {
      this.#counters.tooLong++;
      return;
    }
    this.#counters.messagesOut++;
    if (message.qos === 0) {
      // Gathered per subject until the end of the turn (order per topic is kept).
      const subject = `${this.#p}.0${tail}`;
      const list = this.#coreBatch.get(subject);
      if (list === undefined) this.#coreBatch.set(subject, [message]);
      else list.push(message);
      if (!this.#coreScheduled) {
        this.#coreScheduled = true;
        setImmediate(this.#flushCore);
      }
      if (!retainedChanged) return;
    }
    const seq = ++this.#seq;
    const data = encodeEnvelope(this.#originBytes, seq, message);
    if (message.qos > 0) {
      // Identities serve the hand-over of QoS ≥ 1 messages only.
      this.#ids.set(message, `${this.#origin}:${seq}`);
      this.#track(this.#publishDurably(`${this.#p}.1${tail}`, data, `${this.#origin}-${seq}`));
    }
    if (retainedChanged) {
      this.#track(this.#publishDurably(`${this.#p}.r${tail}`, data, `${this.#origin}-r${seq}`));
    }
  }

  // One NATS message per subject and turn; its sequence orders this node's core messages, which
  // is how a receiver drops the second copy of one (two of its subjects matching it).
  readonly #flushCore = () => {
    this.#coreScheduled = false;
    if (this.#closed) {
      this.#coreBatch.clear();
      return;
    }
    for (const [subject, messages] of this.#coreBatch) {
      // A batch carries no 5.0 properties: a turn with such a message sends one envelope each.
      if (
        messages.length === 1 ||
        messages.some((m) => m.properties !== undefined || m.expiresAt !== 0)
      ) {
        for (const m of messages) {
          this.#nc.publish(subject, encodeEnvelope(this.#originBytes, ++this.#coreSeq, m));
        }
        continue;
      }
      this.#nc.publish(subject, encodeBatch(this.#originBytes, ++this.#coreSeq, messages));
    }
    this.#coreBatch.clear();
  };

  settled(): Promise<void> {
    return this.#tail;
  }

  async restored(): Promise<void> {
    await this.#tail;
    // Consumers a previous run of this node left for filters no restored session has: their
    // backlog belongs to sessions that are gone, not to whoever subscribes next.
    const mine = new Set([...this.#interest.values()].map((e) => e.consumer));
    const stale: string[] = [];
    try {
      for await (const info of this.#jsm.consumers.list(this.#msgStream)) {
        const name = info.name;
        if (name.startsWith(this.#node + "_") && !mine.has(name)) stale.push(name);
      }
    } catch (error) {
      this.#host.log.warn(`cluster: cannot list the consumers: ${errorText(error)}`);
    }
    for (const name of stale) {
      await this.#jsm.consumers.delete(this.#msgStream, name).catch(() => {});
    }
    if (stale.length > 0) {
      this.#host.log.info(`cluster: removed ${stale.length} consumers of a previous run`);
    }
  }

  idOf(message: Message): string | undefined {
    return this.#ids.get(message);
  }

  adopted(clientId: string, merge: (late: SessionMessage[]) => void): void {
    const pending = this.#handing.get(clientId);
    if (pending === undefined) return;
    this.#handing.delete(clientId);
    clearTimeout(this.#handingTimers.get(clientId));
    this.#handingTimers.delete(clientId);
    if ("record" in pending) {
      // Messages published while the first replay ran: replay again once the subscriptions are
      // live, leaving out what the first replay or the live subscriptions brought.
      const interest = Promise.all(this.#batch ?? []);
      this.#track(
        interest.then(async () => {
          const again = await this.#replay(pending.record);
          merge(again.filter((m) => !pending.seen.has(m.id!)));
        }).catch((error) => {
          this.#host.log.warn(`cluster: second replay for ${JSON.stringify(clientId)}: ${error}`);
        }),
      );
      return;
    }
    const from = pending.node;
    // Phase 2 once the adopted session's subscriptions are on NATS (they were added in this
    // turn, before this call): what reached the session on the old node meanwhile comes over.
    const interest = Promise.all(this.#batch ?? []);
    this.#track(
      interest.then(async () => {
        const reply = await this.#nc.request(
          `${this.#p}.t.${from}`,
          JSON.stringify({ clientId, handOver: true, phase: 2 }),
          { timeout: TAKEOVER_TIMEOUT_MS },
        );
        const late = decodeSessionState(reply.data);
        if (late !== undefined) merge(late.messages);
      }).catch((error) => {
        this.#host.log.warn(
          `cluster: the rest of ${JSON.stringify(clientId)}'s session did not come from ${from}: ${
            errorText(error)
          }`,
        );
      }),
    );
  }

  filterAdded(filter: string): void {
    for (const tail of filterToSubjects("", filter)) {
      const interest = this.#interest.get(tail);
      if (interest !== undefined) {
        interest.refs++;
        continue;
      }
      const entry: Interest = {
        refs: 1,
        consumer: `${this.#node}_${hash(tail)}`,
      };
      this.#interest.set(tail, entry);
      this.#subscribeCore(tail, entry);
      // Without NATS, SUBACK does not wait: the consumer is made once NATS is back.
      if (!this.#connected) {
        this.#retry.add(tail);
        continue;
      }
      this.#track(this.#consumeStream(tail, entry));
    }
  }

  // The consumer of a subject whose set-up failed is tried again after the next reconnect.
  #consumeStream(tail: string, entry: Interest): Promise<void> {
    return this.#subscribe(tail, entry).catch((error) => {
      if (this.#closed) return;
      this.#host.log.warn(`cluster: consumer for ${tail}: ${errorText(error)}; retried later`);
      this.#retry.add(tail);
      // Connected: again in a second (a NATS cluster electing a leader, say); else on reconnect.
      if (this.#connected) this.#retrySoon();
    });
  }

  #retrySoon(): void {
    const timer = setTimeout(() => this.#retryConsumers(), 1_000);
    Deno.unrefTimer(timer);
  }

  #retryConsumers(): void {
    const tails = [...this.#retry];
    this.#retry.clear();
    for (const tail of tails) {
      const entry = this.#interest.get(tail);
      if (entry !== undefined && entry.refs > 0 && entry.messages === undefined) {
        this.#consumeStream(tail, entry);
      }
    }
  }

  filterRemoved(filter: string): void {
    for (const tail of filterToSubjects("", filter)) {
      const entry = this.#interest.get(tail);
      if (entry === undefined || --entry.refs > 0) continue;
      this.#interest.delete(tail);
      entry.sub?.unsubscribe();
      entry.messages?.stop();
      entry.refs = -1;
      if (!this.#closed) {
        this.#jsm.consumers.delete(this.#msgStream, entry.consumer).catch(() => {});
      }
    }
  }

  sharedAdded(group: string, filter: string): void {
    const key = `${group}\n${filter}`;
    const existing = this.#shared.get(key);
    if (existing !== undefined) {
      existing.refs++;
      return;
    }
    const entry: Interest = { refs: 1, consumer: `share_${hash(key)}` };
    this.#shared.set(key, entry);
    this.#track(
      this.#subscribeShared(group, filter, entry).catch((error) => {
        this.#host.log.error(
          `cluster: cannot join $share/${group}/${filter}: ${errorText(error)}`,
        );
      }),
    );
  }

  sharedRemoved(group: string, filter: string): void {
    const key = `${group}\n${filter}`;
    const entry = this.#shared.get(key);
    if (entry === undefined || --entry.refs > 0) return;
    this.#shared.delete(key);
    entry.refs = -1;
    entry.sub?.unsubscribe();
    for (const s of entry.more ?? []) s.unsubscribe();
    entry.messages?.stop();
    for (const m of entry.moreMessages ?? []) m.stop();
    // The group's consumer is shared with the other nodes: it goes when none reads it.
  }

  // One NATS queue group per (group, filter) for QoS 0 and one JetStream consumer shared by every
  // member node for QoS ≥ 1: each message goes to one node, which gives it to one local member.
  async #subscribeShared(group: string, filter: string, entry: Interest): Promise<void> {
    const echo = this.#echo ??= await nats.connect({
      ...this.#connectOptions,
      name: `denomq ${this.#node} shared`,
      noEcho: false,
    });
    const queue = entry.consumer;
    const prefix0 = `${this.#p}.0`;
    const prefix1 = `${this.#p}.1`;
    const deliver = (subject: string, prefix: string, env: Envelope): boolean => {
      const topic = subjectToTopic(prefix, subject);
      const message = messageOf(topic, env, env.retain);
      this.#counters.messagesIn++;
      return this.#host.deliverShared?.(group, filter, message) ?? false;
    };
    entry.more = [];
    entry.moreMessages = [];
    for (const tail of filterToSubjects("", filter)) {
      entry.more.push(echo.subscribe(prefix0 + tail, {
        queue,
        callback: (error, msg) => {
          if (error !== null) return;
          const subject = msg.subject;
          eachMessage(
            decodeEnvelope(msg.data),
            msg.data[0],
            (one) => deliver(subject, prefix0, one),
          );
        },
      }));
      const name = `${queue}_${hash(tail)}`;
      try {
        await this.#jsm.consumers.info(this.#msgStream, name);
      } catch {
        await this.#jsm.consumers.add(this.#msgStream, {
          durable_name: name,
          filter_subject: prefix1 + tail,
          ack_policy: jsapi.AckPolicy.Explicit,
          deliver_policy: jsapi.DeliverPolicy.New,
          max_ack_pending: 10_000,
          inactive_threshold: HOUR_NS,
        }).catch(async (error) => {
          // Another member node made it meanwhile.
          await this.#jsm.consumers.info(this.#msgStream, name).catch(() => {
            throw error;
          });
        });
      }
      if (entry.refs < 0) return;
      const consumer = await this.#js.consumers.get(this.#msgStream, name);
      const messages = await consumer.consume({ max_messages: 256, expires: PULL_EXPIRES_MS });
      entry.moreMessages.push(messages);
      (async () => {
        for await (const m of messages) {
          if (deliver(m.subject, prefix1, decodeEnvelope(m.data))) m.ack();
          else m.nak();
        }
      })().catch((error) => {
        if (!this.#closed) this.#host.log.error(`cluster: consumer ${name}: ${errorText(error)}`);
      });
    }
    await echo.flush();
  }

  // Core subscriptions are the client's: nats.js makes them again after a reconnect.
  #subscribeCore(tail: string, entry: Interest): void {
    const prefix0 = `${this.#p}.0`;
    entry.sub = this.#nc.subscribe(prefix0 + tail, {
      callback: (error, msg) => {
        if (error !== null) return;
        try {
          this.#fromCore(prefix0, msg);
        } catch (error) {
          this.#host.log.error(`cluster: message on ${msg.subject}: ${errorText(error)}`);
        }
      },
    });
  }

  async #subscribe(tail: string, entry: Interest): Promise<void> {
    const name = entry.consumer;
    try {
      await this.#jsm.consumers.info(this.#msgStream, name);
    } catch {
      await this.#jsm.consumers.add(this.#msgStream, {
        durable_name: name,
        filter_subject: `${this.#p}.1${tail}`,
        ack_policy: jsapi.AckPolicy.Explicit,
        deliver_policy: jsapi.DeliverPolicy.New,
        max_ack_pending: 10_000,
        inactive_threshold: HOUR_NS,
      });
    }
    if (entry.refs < 0) return; // Removed meanwhile.
    const consumer = await this.#js.consumers.get(this.#msgStream, name);
    const messages = await consumer.consume({
      max_messages: 1024,
      expires: PULL_EXPIRES_MS,
      // A consumer deleted under us ends the loop, and it is made again (see below).
      abort_on_missing_resource: true,
    });
    if (entry.refs < 0) {
      messages.stop();
      return;
    }
    entry.messages = messages;
    const prefix1 = `${this.#p}.1`;
    (async () => {
      for await (const m of messages) {
        try {
          this.#fromStream(prefix1, m);
        } catch (error) {
          this.#host.log.error(`cluster: message on ${m.subject}: ${errorText(error)}`);
          m.term();
        }
      }
    })().catch((error) => {
      if (!this.#closed) this.#host.log.error(`cluster: consumer ${name}: ${errorText(error)}`);
    }).finally(() => {
      // Ended without being stopped by us (the consumer went, say): make it again.
      if (this.#closed || entry.refs < 0 || entry.messages !== messages) return;
      entry.messages = undefined;
      this.#retry.add(tail);
      this.#retrySoon();
    });
    await this.#nc.flush();
  }

  #fromCore(prefix: string, msg: nats.Msg): void {
    const data = msg.data;
    const env = decodeEnvelope(data);
    // A message matching two of this node's subjects comes once per subject, in publish order.
    const last = this.#lastSeq.get(env.origin);
    if (last !== undefined && env.seq <= last) return;
    this.#lastSeq.set(env.origin, env.seq);
    const subject = msg.subject;
    eachMessage(env, data[0], (one) => this.#deliver(prefix, subject, one));
  }

  #fromStream(prefix: string, m: jsapi.JsMsg): void {
    const env = decodeEnvelope(m.data);
    // The publishing node delivered it locally already; overlapping filters bring it twice.
    if (env.origin.startsWith(this.#node + "/") || this.#seenJs.has(m.seq)) {
      m.ack();
      return;
    }
    this.#seenJs.add(m.seq);
    if (this.#seenJs.size > SEEN_JS) {
      this.#seenJs.delete(this.#seenJs.values().next().value!);
    }
    this.#deliver(prefix, m.subject, env);
    m.ack();
  }

  #deliver(prefix: string, subject: string, env: Envelope): void {
    let topic: string;
    try {
      topic = this.#topics.get(subject, (s) => subjectToTopic(prefix, s));
    } catch {
      return;
    }
    this.#counters.messagesIn++;
    const message = messageOf(topic, env, env.retain);
    if (env.qos > 0) this.#ids.set(message, `${env.origin}:${env.seq}`);
    this.#host.deliver(message);
  }

  #answerTakeover(msg: nats.Msg): void {
    let state: SessionState | undefined;
    try {
      const request = JSON.parse(text.decode(msg.data));
      this.#releasing = request.clientId;
      state = this.#host.release(
        String(request.clientId),
        request.handOver === true,
        request.phase === 2 ? 2 : 1,
        (message) => this.#ids.get(message),
      );
    } catch (error) {
      this.#host.log.error(`cluster: takeover request: ${errorText(error)}`);
    } finally {
      this.#releasing = undefined;
    }
    msg.respond(encodeSessionState(state));
  }

  async claim(clientId: string, clean: boolean): Promise<SessionState | undefined> {
    // Without NATS the client is served here alone (no takeover elsewhere, no hand-over).
    if (this.#closed || !this.#connected) return undefined;
    const key = hex(clientId);
    this.#claiming.add(clientId);
    // The local part of the CONNECT runs in the turn claim resolves in; it may end an older
    // session of this id here, which must not delete the record this claim writes.
    const done = () => setTimeout(() => this.#claiming.delete(clientId), 0);
    try {
      const entry = await this.#kv.get(key);
      const record: SessionRecord | undefined = entry !== null && entry.operation === "PUT"
        ? entry.json<SessionRecord>()
        : undefined;
      let state: SessionState | undefined;
      if (record !== undefined && record.node !== this.#node) {
        try {
          const reply = await this.#nc.request(
            `${this.#p}.t.${record.node}`,
            JSON.stringify({ clientId, handOver: !clean, phase: 1 }),
            { timeout: TAKEOVER_TIMEOUT_MS },
          );
          state = decodeSessionState(reply.data);
          if (state !== undefined && !clean) this.#hold(clientId, { node: record.node });
        } catch {
          // That node is gone: the record's subscriptions are what is left of the session, and
          // the stream holds what was published since it went offline.
          state = this.#fromRecord(record, clean);
          if (state !== undefined && record.expiresAt !== 0) {
            state.messages = await this.#replay(record).catch((error) => {
              this.#host.log.warn(`cluster: replay for ${JSON.stringify(clientId)}: ${error}`);
              return [];
            });
            const seen = new Set(state.messages.map((m) => m.id!));
            this.#hold(clientId, { record, seen });
          }
          if (state !== undefined) {
            this.#host.log.info(
              `cluster: node ${record.node} did not answer for ${JSON.stringify(clientId)}; ` +
                `resuming its subscriptions` + (record.expiresAt !== 0
                  ? ` and ${state.messages.length} messages published since it went offline`
                  : `; what was in flight to it there is lost`),
            );
          }
        }
      } else if (record !== undefined) {
        state = this.#fromRecord(record, clean);
      }
      const mine: SessionRecord = {
        node: this.#node,
        clean,
        subscriptions: clean ? [] : state?.subscriptions ?? [],
        expiresAt: 0,
        savedAt: Date.now(),
      };
      await this.#kv.put(key, JSON.stringify(mine));
      return clean ? undefined : state;
    } catch (error) {
      this.#host.log.warn(
        `cluster: could not claim ${JSON.stringify(clientId)} cluster-wide: ${errorText(error)}`,
      );
      return undefined;
    } finally {
      done();
    }
  }

  // QoS ≥ 1 messages for the record's filters published since it was saved (offline), oldest
  // first, each once, at the QoS the session's subscriptions grant; at most maxQueued.
  async #replay(record: SessionRecord): Promise<SessionMessage[]> {
    const since = new Date(record.savedAt).toISOString();
    const prefix = `${this.#p}.1`;
    const limit = this.#host.limits.maxQueued;
    const found = new Map<number, SessionMessage>();
    for (const { topicFilter } of record.subscriptions) {
      for (const tail of filterToSubjects("", topicFilter)) {
        const consumer = await this.#js.consumers.get(this.#msgStream, {
          filter_subjects: prefix + tail,
          deliver_policy: jsapi.DeliverPolicy.StartTime,
          opt_start_time: since,
        });
        try {
          for (;;) {
            if (found.size >= limit) break;
            const m = await consumer.next({ expires: 1_000 });
            if (m === null) break;
            if (!found.has(m.seq)) {
              const env = decodeEnvelope(m.data);
              const topic = subjectToTopic(prefix, m.subject);
              let granted = -1;
              for (const s of record.subscriptions) {
                if (s.qos > granted && matchTopic(s.topicFilter, topic)) granted = s.qos;
              }
              const qos = Math.min(granted, env.qos) as QoS;
              if (qos > 0) {
                found.set(m.seq, {
                  topic,
                  payload: env.payload,
                  qos,
                  retain: false,
                  packetId: 0,
                  state: 0,
                  id: `${env.origin}:${env.seq}`,
                  ...(env.extra?.properties === undefined
                    ? {}
                    : { properties: env.extra.properties }),
                  ...(env.extra?.expiresAt ? { expiresAt: env.extra.expiresAt } : {}),
                });
              }
            }
            if (m.info.pending === 0) break;
          }
        } finally {
          await consumer.delete().catch(() => {});
        }
      }
    }
    return [...found.entries()].sort((x, y) => x[0] - y[0]).map(([, m]) => m);
  }

  // Until `adopted` takes it; a CONNECT that closed before does not leave it behind.
  #hold(
    clientId: string,
    pending: { node: string } | { record: SessionRecord; seen: Set<string> },
  ): void {
    clearTimeout(this.#handingTimers.get(clientId));
    this.#handing.set(clientId, pending);
    const timer = setTimeout(() => {
      this.#handingTimers.delete(clientId);
      if (this.#handing.get(clientId) === pending) this.#handing.delete(clientId);
    }, 30_000);
    Deno.unrefTimer(timer);
    this.#handingTimers.set(clientId, timer);
  }

  #fromRecord(record: SessionRecord, clean: boolean): SessionState | undefined {
    if (clean || record.clean) return undefined;
    const expiry = record.expiryMs ?? this.#host.limits.sessionExpiryMs;
    const expiresAt = record.expiresAt !== 0
      ? record.expiresAt
      : expiry === 0
      ? 0
      : record.savedAt + expiry;
    if (expiresAt !== 0 && expiresAt <= Date.now()) return undefined;
    return { subscriptions: record.subscriptions, messages: [], inboundQos2: [] };
  }

  sessionSaved(
    clientId: string,
    subscriptions: ReadonlyMap<string, SubscriptionOptions>,
    expiresAt: number,
    expiryMs?: number,
  ): void {
    if (this.#closed || clientId === this.#releasing) return;
    const record: SessionRecord = {
      node: this.#node,
      clean: false,
      subscriptions: [...subscriptions].map(([topicFilter, options]) =>
        subscriptionEntry(topicFilter, options)
      ),
      expiresAt,
      ...(expiryMs === undefined ? {} : { expiryMs }),
      savedAt: Date.now(),
    };
    const put = this.#kv.put(hex(clientId), JSON.stringify(record)).catch((error) =>
      this.#host.log.warn(`cluster: session record not saved: ${errorText(error)}`)
    );
    // Without NATS acks do not wait for the record (it is written on the next change).
    if (this.#connected) this.#track(put);
  }

  sessionDeleted(clientId: string): void {
    if (this.#closed || clientId === this.#releasing || this.#claiming.has(clientId)) return;
    this.#kv.delete(hex(clientId)).catch(() => {});
  }

  stats(): ClusterStats {
    return {
      node: this.#node,
      connected: this.#connected && !this.#closed,
      server: this.#connected ? this.#nc.getServer() : "",
      subjects: this.#interest.size * 2,
      ...this.#counters,
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    if (this.#coreBatch.size > 0) this.#flushCore();
    // What clients were promised goes out first, but a NATS that is gone cannot hold us.
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.#tail.catch(() => {}),
      new Promise<void>((resolve) => timer = setTimeout(resolve, 2_000)),
    ]);
    clearTimeout(timer);
    this.#closed = true;
    for (const timer of this.#handingTimers.values()) clearTimeout(timer);
    this.#handingTimers.clear();
    for (const entry of this.#interest.values()) entry.messages?.stop();
    this.#retainedFollower?.stop();
    for (const entry of this.#shared.values()) for (const m of entry.moreMessages ?? []) m.stop();
    await this.#echo?.drain().catch(() => {});
    try {
      await this.#nc.drain();
    } catch {
      await this.#nc.close().catch(() => {});
    }
  }
}
