/**
 * The default store: state in Maps, nothing survives the process.
 *
 * @module
 */
import { clearImmediate, setImmediate } from "node:timers";
import type {
  LoadLimits,
  LoadResult,
  OpenReport,
  OutboundRecord,
  OutboundState,
  Persistence,
  SessionRecord,
  StoredMessage,
  StoredProperties,
  StoredSubscription,
  StoredWill,
} from "./persistence.ts";

const encoder = new TextEncoder();

/**
 * A {@linkcode Persistence} that keeps everything in Maps.
 *
 * Changes are applied at once and `commit()` resolves at once (there is nothing to wait for).
 * Batches are still counted per event-loop turn, like the durable store does, so `commits` and
 * `pending` mean the same thing for both. The state outlives `close()`: calling `open()` again on
 * the same instance finds it, so a broker can be restarted from it within one process. Records
 * are copied in and out; payloads are shared, not copied.
 *
 * @example Restart from the same instance
 * ```ts
 * import { MemoryPersistence } from "./memory.ts";
 *
 * const store = new MemoryPersistence();
 * await store.open();
 * store.setRetained({ topic: "a", payload: new Uint8Array([1]), qos: 0, retain: true });
 * await store.close();
 * await store.open();
 * const { retained } = store.load({
 *   maxSessions: 10,
 *   maxRetained: 10,
 *   maxRetainedBytes: 1024,
 *   maxQueued: 10,
 * });
 * console.log(retained.length); // 1
 * await store.close();
 * ```
 */
export class MemoryPersistence implements Persistence {
  #retained = new Map<string, StoredMessage>();
  #sessions = new Map<string, SessionRecord>();
  #outbound = new Map<string, Map<number, OutboundRecord>>();
  #inbound = new Map<string, Set<number>>();
  #open = false;
  #opened = false;
  #pending = false;
  #commits = 0;
  #immediate: ReturnType<typeof setImmediate> | undefined;

  /** True while changes made this turn have not been counted as a batch. */
  get pending(): boolean {
    return this.#pending;
  }

  /** Batches (event-loop turns with changes) since the store was created. */
  get commits(): number {
    return this.#commits;
  }

  /** Opens the store; `created` is true only the first time. */
  open(): Promise<OpenReport> {
    const created = !this.#opened;
    this.#opened = true;
    this.#open = true;
    return Promise.resolve({ created });
  }

  /** Returns copies of the stored state within `limits`; deletes what is left out. */
  load(limits: LoadLimits): LoadResult {
    if (!this.#open) throw new Error("Cannot load: the store is not open");
    const now = limits.now ?? Date.now();
    const skipped = {
      sessions: 0,
      expiredSessions: 0,
      retained: 0,
      messages: 0,
      expiredMessages: 0,
    };
    const expiredWills: LoadResult["expiredWills"] = [];
    const isExpired = (m: StoredMessage) =>
      m.expiresAt !== undefined && m.expiresAt !== 0 &&
      m.expiresAt <= now;

    const retained: StoredMessage[] = [];
    let retainedBytes = 0;
    for (const topic of [...this.#retained.keys()].sort()) {
      const message = this.#retained.get(topic)!;
      const size = encoder.encode(topic).length + message.payload.length;
      if (isExpired(message)) {
        skipped.expiredMessages++;
        this.setRetained({ ...message, payload: new Uint8Array(0) });
      } else if (
        retained.length < limits.maxRetained && retainedBytes + size <= limits.maxRetainedBytes
      ) {
        retained.push(copyMessage(message, true));
        retainedBytes += size;
      } else {
        skipped.retained++;
        this.setRetained({ ...message, payload: new Uint8Array(0) });
      }
    }

    const sessions: LoadResult["sessions"] = [];
    for (const clientId of [...this.#sessions.keys()].sort()) {
      const record = this.#sessions.get(clientId)!;
      const expired = record.expiresAt !== 0 && record.expiresAt <= now;
      if (expired || sessions.length >= limits.maxSessions) {
        if (expired) {
          skipped.expiredSessions++;
          if (record.will !== undefined) {
            expiredWills.push({ clientId, will: copyWill(record.will) });
          }
        } else skipped.sessions++;
        skipped.messages += this.#outbound.get(clientId)?.size ?? 0;
        this.deleteSession(clientId);
        continue;
      }
      const outbound: OutboundRecord[] = [];
      const records = [...(this.#outbound.get(clientId)?.values() ?? [])].sort((a, b) =>
        a.seq - b.seq
      );
      let queued = 0;
      for (const r of records) {
        if (r.state === "queued" && isExpired(r.message)) {
          skipped.expiredMessages++;
          this.deleteOutbound(clientId, r.seq);
        } else if (r.state === "queued" && ++queued > limits.maxQueued) {
          skipped.messages++;
          this.deleteOutbound(clientId, r.seq);
        } else {
          outbound.push(copyOutbound(r));
        }
      }
      sessions.push({
        ...copySession(record),
        outbound,
        inboundQos2: [...(this.#inbound.get(clientId) ?? [])].sort((a, b) => a - b),
      });
    }
    // Messages of sessions that do not exist are never loaded: drop them.
    for (const clientId of this.#outbound.keys()) {
      if (this.#sessions.has(clientId)) continue;
      skipped.messages += this.#outbound.get(clientId)!.size;
      this.#outbound.delete(clientId);
      this.#touch();
    }
    for (const clientId of this.#inbound.keys()) {
      if (!this.#sessions.has(clientId)) this.#inbound.delete(clientId);
    }
    return { retained, sessions, skipped, expiredWills };
  }

  /** Stores or (empty payload) deletes a retained message. */
  setRetained(message: StoredMessage): void {
    if (!this.#open) return;
    if (message.payload.length === 0) this.#retained.delete(message.topic);
    else this.#retained.set(message.topic, copyMessage(message, true));
    this.#touch();
  }

  /** Inserts or replaces a session record. */
  saveSession(record: SessionRecord): void {
    if (!this.#open) return;
    this.#sessions.set(record.clientId, copySession(record));
    this.#touch();
  }

  /** Deletes a session and its messages. */
  deleteSession(clientId: string): void {
    if (!this.#open) return;
    this.#sessions.delete(clientId);
    this.#outbound.delete(clientId);
    this.#inbound.delete(clientId);
    this.#touch();
  }

  /** Adds (or replaces) an outbound record. */
  addOutbound(record: OutboundRecord): void {
    if (!this.#open) return;
    let records = this.#outbound.get(record.clientId);
    if (records === undefined) {
      records = new Map();
      this.#outbound.set(record.clientId, records);
    }
    records.set(record.seq, copyOutbound(record));
    this.#touch();
  }

  /** Changes an outbound record's packet id and state. */
  updateOutbound(clientId: string, seq: number, packetId: number, state: OutboundState): void {
    if (!this.#open) return;
    const record = this.#outbound.get(clientId)?.get(seq);
    if (record !== undefined) {
      record.packetId = packetId;
      record.state = state;
    }
    this.#touch();
  }

  /** Deletes an outbound record. */
  deleteOutbound(clientId: string, seq: number): void {
    if (!this.#open) return;
    this.#outbound.get(clientId)?.delete(seq);
    this.#touch();
  }

  /** Records an unreleased inbound QoS 2 packet id. */
  addInboundQos2(clientId: string, packetId: number): void {
    if (!this.#open) return;
    let ids = this.#inbound.get(clientId);
    if (ids === undefined) {
      ids = new Set();
      this.#inbound.set(clientId, ids);
    }
    ids.add(packetId);
    this.#touch();
  }

  /** Forgets an inbound QoS 2 packet id. */
  deleteInboundQos2(clientId: string, packetId: number): void {
    if (!this.#open) return;
    this.#inbound.get(clientId)?.delete(packetId);
    this.#touch();
  }

  /** Resolves at once while open; rejects when closed. */
  commit(): Promise<void> {
    if (!this.#open) return Promise.reject(new Error("Cannot commit: the store is closed"));
    return Promise.resolve();
  }

  /** Closes; the state is kept for a later `open()`. */
  close(): Promise<void> {
    if (this.#immediate !== undefined) {
      clearImmediate(this.#immediate);
      this.#endBatch();
    }
    this.#open = false;
    return Promise.resolve();
  }

  #touch(): void {
    if (this.#pending) return;
    this.#pending = true;
    this.#immediate = setImmediate(() => this.#endBatch());
  }

  #endBatch(): void {
    this.#immediate = undefined;
    this.#pending = false;
    this.#commits++;
  }
}

function copySession(record: SessionRecord): SessionRecord {
  const copy: SessionRecord = {
    clientId: record.clientId,
    subscriptions: record.subscriptions.map(copySubscription),
    expiresAt: record.expiresAt,
  };
  if (record.expiryIntervalS !== undefined) copy.expiryIntervalS = record.expiryIntervalS;
  if (record.will !== undefined) copy.will = copyWill(record.will);
  return copy;
}

/** Only the options that are set, as the SQLite store reads them back. */
function copySubscription(s: StoredSubscription): StoredSubscription {
  const copy: StoredSubscription = { topicFilter: s.topicFilter, qos: s.qos };
  if (s.noLocal) copy.noLocal = true;
  if (s.retainAsPublished) copy.retainAsPublished = true;
  if (s.retainHandling) copy.retainHandling = s.retainHandling;
  if (s.subscriptionId !== undefined) copy.subscriptionId = s.subscriptionId;
  return copy;
}

function copyOutbound(record: OutboundRecord): OutboundRecord {
  const copy: OutboundRecord = {
    clientId: record.clientId,
    seq: record.seq,
    packetId: record.packetId,
    state: record.state,
    message: copyMessage(record.message, record.message.retain),
  };
  if (record.subscriptionIds !== undefined && record.subscriptionIds.length > 0) {
    copy.subscriptionIds = [...record.subscriptionIds];
  }
  return copy;
}

function copyMessage(m: StoredMessage, retain: boolean): StoredMessage {
  const copy: StoredMessage = { topic: m.topic, payload: m.payload, qos: m.qos, retain };
  if (m.expiresAt !== undefined && m.expiresAt !== 0) copy.expiresAt = m.expiresAt;
  const p = copyProperties(m.properties);
  if (p !== undefined) copy.properties = p;
  return copy;
}

function copyWill(w: StoredWill): StoredWill {
  const copy: StoredWill = {
    topic: w.topic,
    payload: w.payload,
    qos: w.qos,
    retain: w.retain,
    publishAt: w.publishAt,
  };
  const p = copyProperties(w.properties);
  if (p !== undefined) copy.properties = p;
  if (w.messageExpiryS !== undefined) copy.messageExpiryS = w.messageExpiryS;
  return copy;
}

/** A copy that reads back as the SQLite store's does: no empty object, no empty user list. */
function copyProperties(p: StoredProperties | undefined): StoredProperties | undefined {
  if (p === undefined) return undefined;
  const copy: StoredProperties = {};
  let any = false;
  if (p.payloadFormatIndicator !== undefined) {
    copy.payloadFormatIndicator = p.payloadFormatIndicator;
    any = true;
  }
  if (p.contentType !== undefined) {
    copy.contentType = p.contentType;
    any = true;
  }
  if (p.responseTopic !== undefined) {
    copy.responseTopic = p.responseTopic;
    any = true;
  }
  if (p.correlationData !== undefined) {
    copy.correlationData = p.correlationData.slice();
    any = true;
  }
  if (p.userProperties !== undefined && p.userProperties.length > 0) {
    copy.userProperties = p.userProperties.map(([k, v]) => [k, v]);
    any = true;
  }
  return any ? copy : undefined;
}
