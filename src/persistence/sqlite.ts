/**
 * A durable store: one SQLite file, `broker.db`, in a data directory, through `node:sqlite`.
 *
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { join } from "node:path";
import { clearImmediate, setImmediate } from "node:timers";
import type { QoS } from "../codec/packet.ts";
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

/**
 * The schema this code writes, kept in `PRAGMA user_version`. A file with an older one is migrated
 * in place (see {@linkcode MIGRATIONS}); a file with a newer one is refused.
 *
 * - 1: retained messages, sessions (subscriptions as JSON `[filter, qos]`), outbound messages,
 *   inbound QoS 2 ids.
 * - 2 (MQTT 5.0): message expiry deadlines and properties on retained and outbound messages; the
 *   Session Expiry Interval and a delayed will on sessions; subscription options and identifiers
 *   in the subscriptions JSON (`[filter, qos, flags, id]`, flags = No Local | Retain As
 *   Published << 1 | Retain Handling << 2; a schema 1 `[filter, qos]` reads as flags 0).
 */
export const SCHEMA_VERSION = 2;

/** Name of the database file inside the data directory. */
export const DB_FILE_NAME = "broker.db";

/**
 * How far `commit()` goes before it resolves:
 *
 * - `"normal"` (default): WAL with `synchronous=NORMAL`, and `commit()` resolves after the
 *   transaction is committed, i.e. written to the WAL file (the operating system has it; no
 *   fsync). Once the broker has sent PUBACK, PUBREC or SUBACK, a kill -9 of the broker loses
 *   nothing; a power cut or kernel crash may lose the last commits (never corrupts the file).
 * - `"full"`: WAL with `synchronous=FULL`: every commit is fsynced before `commit()` resolves, so
 *   acknowledged data also survives a power cut. Slower: one fsync per batch.
 * - `"off"`: `commit()` resolves at once and the batch is written (as with `"normal"`) at the end
 *   of the turn, so acknowledgements do not wait for the disk. Fastest; a kill -9 can lose the
 *   changes of the last turn, acknowledged or not.
 */
export type SyncMode = "full" | "normal" | "off";

/** Severity of a store log line. */
export type PersistenceLogLevel = "debug" | "info" | "warn" | "error";

/** Options of {@linkcode SqlitePersistence}. */
export interface SqlitePersistenceOptions {
  /** Data directory; created with mode 0700 when missing. `broker.db` is created with mode 0600. */
  dir: string;
  /** Durability of `commit()`; see {@linkcode SyncMode}. Default `"normal"`. */
  sync?: SyncMode;
  /** Receives log lines. Default: warnings and errors go to `console.error`. */
  log?: (level: PersistenceLogLevel, message: string) => void;
}

/** The columns of each table at each schema version (what `checkSchema` expects). */
const TABLES: Readonly<Record<number, Readonly<Record<string, readonly string[]>>>> = {
  1: {
    retained: ["topic", "payload", "qos"],
    sessions: ["client_id", "subscriptions", "expires_at"],
    outbound: ["client_id", "seq", "packet_id", "state", "topic", "payload", "qos", "retain"],
    inbound_qos2: ["client_id", "packet_id"],
  },
  2: {
    retained: ["topic", "payload", "qos", "expires_at", "properties"],
    sessions: [
      "client_id",
      "subscriptions",
      "expires_at",
      "expiry_interval",
      "will_topic",
      "will_payload",
      "will_qos",
      "will_retain",
      "will_properties",
      "will_expiry",
      "will_at",
    ],
    outbound: [
      "client_id",
      "seq",
      "packet_id",
      "state",
      "topic",
      "payload",
      "qos",
      "retain",
      "expires_at",
      "properties",
      "subscription_ids",
    ],
    inbound_qos2: ["client_id", "packet_id"],
  },
};

// WITHOUT ROWID: every table is looked up by its primary key and nothing else. The columns are in
// the order that schema 1 + MIGRATIONS[1] leaves them, so a new and a migrated file are the same.
// `properties` and `will_properties` are JSON (NULL: none), `subscription_ids` a JSON array; `expires_at` 0 is "never"; the will_*
// columns are NULL when the session has no delayed will; `expiry_interval` NULL is "the broker's".
const SCHEMA = `
CREATE TABLE retained (
  topic TEXT PRIMARY KEY,
  payload BLOB NOT NULL,
  qos INTEGER NOT NULL,
  expires_at INTEGER NOT NULL DEFAULT 0,
  properties TEXT
) WITHOUT ROWID;
CREATE TABLE sessions (
  client_id TEXT PRIMARY KEY,
  subscriptions TEXT NOT NULL,
  expires_at INTEGER NOT NULL,
  expiry_interval INTEGER,
  will_topic TEXT,
  will_payload BLOB,
  will_qos INTEGER,
  will_retain INTEGER,
  will_properties TEXT,
  will_expiry INTEGER,
  will_at INTEGER
) WITHOUT ROWID;
CREATE TABLE outbound (
  client_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  packet_id INTEGER NOT NULL,
  state INTEGER NOT NULL,
  topic TEXT NOT NULL,
  payload BLOB NOT NULL,
  qos INTEGER NOT NULL,
  retain INTEGER NOT NULL,
  expires_at INTEGER NOT NULL DEFAULT 0,
  properties TEXT,
  subscription_ids TEXT,
  PRIMARY KEY (client_id, seq)
) WITHOUT ROWID;
CREATE TABLE inbound_qos2 (
  client_id TEXT NOT NULL,
  packet_id INTEGER NOT NULL,
  PRIMARY KEY (client_id, packet_id)
) WITHOUT ROWID;
PRAGMA user_version = ${SCHEMA_VERSION};
`;

/**
 * `MIGRATIONS[v]` turns a schema `v` file into schema `v + 1`. `open()` runs every step from the
 * file's version up to {@linkcode SCHEMA_VERSION} in ONE transaction, so a crash mid-way leaves
 * the old file as it was. Each step only adds: columns with a default that means what the old
 * schema meant (no expiry, no properties, the broker's session expiry, no will).
 */
const MIGRATIONS: Readonly<Record<number, string>> = {
  1: `
ALTER TABLE retained ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE retained ADD COLUMN properties TEXT;
ALTER TABLE sessions ADD COLUMN expiry_interval INTEGER;
ALTER TABLE sessions ADD COLUMN will_topic TEXT;
ALTER TABLE sessions ADD COLUMN will_payload BLOB;
ALTER TABLE sessions ADD COLUMN will_qos INTEGER;
ALTER TABLE sessions ADD COLUMN will_retain INTEGER;
ALTER TABLE sessions ADD COLUMN will_properties TEXT;
ALTER TABLE sessions ADD COLUMN will_expiry INTEGER;
ALTER TABLE sessions ADD COLUMN will_at INTEGER;
ALTER TABLE outbound ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbound ADD COLUMN properties TEXT;
ALTER TABLE outbound ADD COLUMN subscription_ids TEXT;
PRAGMA user_version = 2;
`,
};

const STATE_CODES: Readonly<Record<OutboundState, number>> = { queued: 0, sent: 1, pubrel: 2 };
const STATES: readonly OutboundState[] = ["queued", "sent", "pubrel"];

// SQLite primary result codes (the low byte of an extended code).
const SQLITE_BUSY = 5;
const SQLITE_LOCKED = 6;
const SQLITE_CORRUPT = 11;
const SQLITE_NOTADB = 26;

const SQLITE_MAGIC = "SQLite format 3\0";

const encoder = new TextEncoder();

type Op =
  | {
    k: "retain";
    topic: string;
    payload: Uint8Array;
    qos: QoS;
    expiresAt: number;
    properties: string | null;
  }
  | { k: "unretain"; topic: string }
  | SaveSession
  | { k: "deleteSession"; clientId: string }
  | AddOut
  | { k: "updateOut"; clientId: string; seq: number; packetId: number; state: number }
  | { k: "deleteOut"; clientId: string; seq: number }
  | { k: "addIn"; clientId: string; packetId: number }
  | { k: "deleteIn"; clientId: string; packetId: number }
  | { k: "purgeOrphans" };

interface SaveSession {
  k: "saveSession";
  clientId: string;
  subscriptions: string;
  expiresAt: number;
  expiryInterval: number | null;
  will: StoredWill | undefined;
}

interface AddOut {
  k: "addOut";
  cancelled: boolean;
  clientId: string;
  seq: number;
  packetId: number;
  state: number;
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: number;
  expiresAt: number;
  properties: string | null;
  subscriptionIds: string | null;
}

interface Statements {
  db: DatabaseSync;
  /** Multi-row INSERTs into `outbound`, by row count, prepared when first needed. */
  addOutMany: Map<number, StatementSync>;
  retain: StatementSync;
  unretain: StatementSync;
  saveSession: StatementSync;
  deleteSession: StatementSync;
  deleteSessionOut: StatementSync;
  deleteSessionIn: StatementSync;
  addOut: StatementSync;
  updateOut: StatementSync;
  updateOutRange: StatementSync;
  deleteOut: StatementSync;
  deleteOutRange: StatementSync;
  addIn: StatementSync;
  deleteIn: StatementSync;
  purgeOrphansOut: StatementSync;
  purgeOrphansIn: StatementSync;
}

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (error: Error) => void;
}

/**
 * A {@linkcode Persistence} in one SQLite file, `<dir>/broker.db`, in WAL mode.
 *
 * - Group commit: mutations are queued; everything queued in one event-loop turn is written in
 *   one transaction, scheduled with `setImmediate`. A microtask would close the batch as soon as
 *   the first handler's promise chain settles; `setImmediate` runs after all I/O callbacks of the
 *   turn and their microtasks, so every connection whose data arrived in that turn (and any async
 *   hook it awaited meanwhile) shares the transaction. The write itself is synchronous
 *   (`DatabaseSync`) and blocks the event loop while it runs; that is what keeps it one batch.
 *   An outbound record added and then updated or deleted in the same batch is written once or not
 *   at all; the outbound changes of a batch are written as few statements as possible.
 * - Durability: see {@linkcode SyncMode}. A failed transaction is rolled back, logged, and the
 *   `commit()` promises of that batch reject; the broker must then not acknowledge.
 * - Layout: tables `retained`, `sessions` (subscriptions as JSON), `outbound` and `inbound_qos2`;
 *   5.0 message properties as JSON, message expiry as an absolute deadline (epoch ms), a delayed
 *   will in the session's row.
 *   A message queued for several sessions is stored once per session: simple, at the price of
 *   disk space for fan-out to many persistent subscribers.
 * - The file is held with an exclusive lock (`locking_mode=EXCLUSIVE`, no `-shm` file) while
 *   open, so a second broker on the same directory fails to open instead of sharing it.
 * - Schema versions: a file written by an older schema is migrated in place, in one
 *   transaction, before anything is read ({@linkcode SCHEMA_VERSION} lists the versions); it is
 *   never moved aside for its age. `open()` reports it as `migratedFrom` and logs it.
 * - Start-up: a file SQLite cannot read (not a database, truncated, corrupt, failing
 *   `PRAGMA quick_check`, or with tables this code does not know) is renamed to
 *   `broker.db.corrupt-YYYYMMDDTHHMMSS` (UTC; its `-wal` and `-shm` files alongside, renamed the
 *   same way so SQLite would pair them), a warning says so, and the store starts empty. A file
 *   whose schema version is newer than {@linkcode SCHEMA_VERSION} is refused: `open()` throws and
 *   leaves the file alone. (The version is read from the file header before SQLite opens it; only
 *   if the newer version exists solely in an un-checkpointed `-wal` will SQLite fold the `-wal`
 *   into the file on close, which keeps its content.)
 * - Payloads are handed to SQLite at the end of the turn: do not mutate them after the call.
 *
 * @example Open, load, mirror, acknowledge
 * ```ts
 * import { SqlitePersistence } from "./sqlite.ts";
 *
 * const store = new SqlitePersistence({ dir: await Deno.makeTempDir(), sync: "normal" });
 * const report = await store.open();
 * if (report.movedAside) console.warn(`old store moved to ${report.movedAside.path}`);
 * const state = store.load({
 *   maxSessions: 100_000,
 *   maxRetained: 100_000,
 *   maxRetainedBytes: 64 << 20,
 *   maxQueued: 1_000,
 * });
 * console.log(state.sessions.length, state.skipped);
 * store.setRetained({ topic: "a/b", payload: new Uint8Array([1]), qos: 1, retain: true });
 * await store.commit(); // durable per the sync mode: now PUBACK may go out
 * await store.close();
 * ```
 */
export class SqlitePersistence implements Persistence {
  readonly #dir: string;
  readonly #path: string;
  readonly #sync: SyncMode;
  readonly #log: (level: PersistenceLogLevel, message: string) => void;
  #db: DatabaseSync | undefined;
  #st: Statements | undefined;
  #ops: Op[] = [];
  // Outbound records added in the pending batch: clientId → seq → record (no string keys to build).
  #adds = new Map<string, Map<number, AddOut>>();
  #deferred: Deferred | undefined;
  #immediate: ReturnType<typeof setImmediate> | undefined;
  #commits = 0;
  #droppedWhileClosed = 0;

  /**
   * Creates the store; nothing touches the disk before `open()`.
   *
   * @throws {TypeError} when `dir` is not a non-empty string or `sync` is not a known mode.
   */
  constructor(options: SqlitePersistenceOptions) {
    if (typeof options?.dir !== "string" || options.dir === "") {
      throw new TypeError('Option "dir" must be a non-empty directory path');
    }
    const sync = options.sync ?? "normal";
    if (sync !== "full" && sync !== "normal" && sync !== "off") {
      throw new TypeError(`Option "sync" must be "full", "normal" or "off", got ${String(sync)}`);
    }
    this.#dir = options.dir;
    this.#path = join(options.dir, DB_FILE_NAME);
    this.#sync = sync;
    this.#log = options.log ?? defaultLog;
  }

  /** Path of the database file. */
  get path(): string {
    return this.#path;
  }

  /** True while changes are queued and not yet written. */
  get pending(): boolean {
    return this.#ops.length > 0;
  }

  /** Transactions committed since the store was created. */
  get commits(): number {
    return this.#commits;
  }

  /**
   * Opens `<dir>/broker.db`, creating the directory (0700) and the file (0600) when missing.
   *
   * @throws {Error} when the file has a newer schema version, is locked by another process, or
   * cannot be opened for another reason than its content (permissions, I/O).
   */
  async open(): Promise<OpenReport> {
    if (this.#db !== undefined) throw new Error(`Cannot open ${this.#path}: it is already open`);
    await Deno.mkdir(this.#dir, { recursive: true, mode: 0o700 });
    let movedAside: OpenReport["movedAside"];
    if (await exists(this.#path)) {
      const reason = await this.#inspect();
      if (reason !== undefined) {
        const path = await moveAside(this.#path);
        movedAside = { path, reason };
        this.#log(
          "warn",
          `${this.#path} could not be read (${reason}); moved it to ${path} and starting with an empty store`,
        );
      }
    }
    if (!(await exists(this.#path))) {
      // SQLite would create it with 0644; its -wal file copies the mode of the database file.
      (await Deno.open(this.#path, { createNew: true, write: true, mode: 0o600 })).close();
    }
    const db = new DatabaseSync(this.#path);
    let created = false;
    let migratedFrom: number | undefined;
    try {
      db.exec("PRAGMA locking_mode = EXCLUSIVE");
      const mode = db.prepare("PRAGMA journal_mode = WAL").get()?.journal_mode;
      if (mode !== "wal") throw new Error(`journal_mode is ${String(mode)}, not wal`);
      db.exec(`PRAGMA synchronous = ${this.#sync === "full" ? "FULL" : "NORMAL"}`);
      db.exec("PRAGMA journal_size_limit = 16777216");
      // Takes the write lock now, and keeps it (exclusive locking mode) until close.
      db.exec("BEGIN EXCLUSIVE");
      const version = userVersion(db);
      if (version === 0) {
        db.exec(SCHEMA);
        created = true;
      } else if (version < SCHEMA_VERSION) {
        // Every step in this one transaction: a crash (or a failing step) leaves the file at its
        // old version, as it was.
        for (let v = version; v < SCHEMA_VERSION; v++) db.exec(MIGRATIONS[v]);
        const reason = checkSchema(db, userVersion(db));
        if (reason !== undefined) throw new Error(`migration from schema ${version}: ${reason}`);
        migratedFrom = version;
      }
      db.exec("COMMIT");
      this.#st = prepare(db);
    } catch (error) {
      try {
        if (db.isTransaction) db.exec("ROLLBACK");
      } catch {
        // Closing below discards it in any case.
      }
      db.close();
      throw openError(this.#path, error);
    }
    this.#db = db;
    if (migratedFrom !== undefined) {
      this.#log(
        "info",
        `migrated ${this.#path} in place from schema version ${migratedFrom} to ${SCHEMA_VERSION}`,
      );
    }
    this.#log("debug", `opened ${this.#path} (sync ${this.#sync})`);
    if (movedAside) return { created: true, movedAside };
    return migratedFrom === undefined ? { created } : { created, migratedFrom };
  }

  /** Returns the stored state within `limits`; queues the deletion of what is left out. */
  load(limits: LoadLimits): LoadResult {
    const db = this.#db;
    if (db === undefined) throw new Error("Cannot load: the store is not open");
    this.#flush();
    const now = limits.now ?? Date.now();
    const skipped = {
      sessions: 0,
      expiredSessions: 0,
      retained: 0,
      messages: 0,
      expiredMessages: 0,
    };
    const expiredWills: LoadResult["expiredWills"] = [];

    const retained: StoredMessage[] = [];
    let retainedBytes = 0;
    const retainedRows = db.prepare(
      "SELECT topic, payload, qos, expires_at, properties FROM retained ORDER BY topic",
    );
    for (const row of retainedRows.iterate()) {
      const topic = row.topic as string;
      const payload = row.payload as Uint8Array;
      const qos = toQos(row.qos);
      const expiresAt = row.expires_at as number;
      const size = encoder.encode(topic).length + payload.length;
      if (expiresAt !== 0 && expiresAt <= now) {
        skipped.expiredMessages++;
        this.#push({ k: "unretain", topic });
      } else if (
        qos !== undefined && retained.length < limits.maxRetained &&
        retainedBytes + size <= limits.maxRetainedBytes
      ) {
        retained.push(storedMessage(topic, payload, qos, true, expiresAt, row.properties));
        retainedBytes += size;
      } else {
        skipped.retained++;
        this.#push({ k: "unretain", topic });
      }
    }

    const sessions: LoadResult["sessions"] = [];
    // clientId → loaded session, or null when it exists but is not loaded.
    const byId = new Map<string, LoadResult["sessions"][number] | null>();
    const sessionRows = db.prepare(
      "SELECT client_id, subscriptions, expires_at, expiry_interval, will_topic, will_payload, " +
        "will_qos, will_retain, will_properties, will_expiry, will_at FROM sessions ORDER BY client_id",
    );
    for (const row of sessionRows.iterate()) {
      const clientId = row.client_id as string;
      const expiresAt = row.expires_at as number;
      const subscriptions = parseSubscriptions(row.subscriptions);
      if (subscriptions === undefined) {
        this.#log("warn", `session ${JSON.stringify(clientId)} has unreadable subscriptions`);
      }
      const will = readWill(row);
      const expired = expiresAt !== 0 && expiresAt <= now;
      if (subscriptions === undefined || expired || sessions.length >= limits.maxSessions) {
        if (expired) {
          skipped.expiredSessions++;
          if (will !== undefined) expiredWills.push({ clientId, will });
        } else skipped.sessions++;
        byId.set(clientId, null);
        this.deleteSession(clientId);
        continue;
      }
      const session: LoadResult["sessions"][number] = {
        clientId,
        subscriptions,
        expiresAt,
        outbound: [],
        inboundQos2: [],
      };
      if (row.expiry_interval !== null) session.expiryIntervalS = row.expiry_interval as number;
      if (will !== undefined) session.will = will;
      sessions.push(session);
      byId.set(clientId, session);
    }

    let orphans = false;
    let current = "";
    let queued = 0;
    const outboundRows = db.prepare(
      "SELECT client_id, seq, packet_id, state, topic, payload, qos, retain, expires_at, properties, " +
        "subscription_ids FROM outbound ORDER BY client_id, seq",
    );
    for (const row of outboundRows.iterate()) {
      const clientId = row.client_id as string;
      const session = byId.get(clientId);
      if (!session) {
        // null: deleted with its session; undefined: no session at all.
        if (session === undefined) orphans = true;
        skipped.messages++;
        continue;
      }
      if (clientId !== current) {
        current = clientId;
        queued = 0;
      }
      const seq = row.seq as number;
      const state = STATES[row.state as number];
      const qos = toQos(row.qos);
      const expiresAt = row.expires_at as number;
      // Only a message whose delivery has not started may be dropped for its age [MQTT-3.3.2-5].
      if (state === "queued" && expiresAt !== 0 && expiresAt <= now) {
        skipped.expiredMessages++;
        this.#push({ k: "deleteOut", clientId, seq });
        continue;
      }
      if (
        state === undefined || qos === undefined ||
        (state === "queued" && ++queued > limits.maxQueued)
      ) {
        skipped.messages++;
        this.#push({ k: "deleteOut", clientId, seq });
        continue;
      }
      const record: OutboundRecord = {
        clientId,
        seq,
        packetId: row.packet_id as number,
        state,
        message: storedMessage(
          row.topic as string,
          row.payload as Uint8Array,
          qos,
          row.retain !== 0,
          expiresAt,
          row.properties,
        ),
      };
      const ids = parseIds(row.subscription_ids);
      if (ids !== undefined) record.subscriptionIds = ids;
      session.outbound.push(record);
    }
    const inboundRows = db.prepare(
      "SELECT client_id, packet_id FROM inbound_qos2 ORDER BY client_id, packet_id",
    );
    for (const row of inboundRows.iterate()) {
      const session = byId.get(row.client_id as string);
      if (session) session.inboundQos2.push(row.packet_id as number);
      else if (session === undefined) orphans = true;
    }
    if (orphans) this.#push({ k: "purgeOrphans" });
    return { retained, sessions, skipped, expiredWills };
  }

  /** Queues storing or (empty payload) deleting a retained message. */
  setRetained(message: StoredMessage): void {
    if (message.payload.length === 0) this.#push({ k: "unretain", topic: message.topic });
    else {
      this.#push({
        k: "retain",
        topic: message.topic,
        payload: message.payload,
        qos: message.qos,
        expiresAt: message.expiresAt ?? 0,
        properties: encodeProperties(message.properties),
      });
    }
  }

  /** Queues inserting or replacing a session record. */
  saveSession(record: SessionRecord): void {
    this.#push({
      k: "saveSession",
      clientId: record.clientId,
      subscriptions: encodeSubscriptions(record.subscriptions),
      expiresAt: record.expiresAt,
      expiryInterval: record.expiryIntervalS ?? null,
      will: record.will,
    });
  }

  /** Queues deleting a session with its outbound and inbound records. */
  deleteSession(clientId: string): void {
    this.#push({ k: "deleteSession", clientId });
  }

  /** Queues adding (or replacing) an outbound record. */
  addOutbound(record: OutboundRecord): void {
    const m = record.message;
    const r: AddOut = {
      k: "addOut",
      cancelled: false,
      clientId: record.clientId,
      seq: record.seq,
      packetId: record.packetId,
      state: STATE_CODES[record.state],
      topic: m.topic,
      payload: m.payload,
      qos: m.qos,
      retain: m.retain ? 1 : 0,
      expiresAt: m.expiresAt ?? 0,
      properties: encodeProperties(m.properties),
      subscriptionIds: record.subscriptionIds !== undefined && record.subscriptionIds.length > 0
        ? JSON.stringify(record.subscriptionIds)
        : null,
    };
    if (!this.#push(r)) return;
    let bySeq = this.#adds.get(r.clientId);
    if (bySeq === undefined) this.#adds.set(r.clientId, bySeq = new Map());
    bySeq.set(r.seq, r);
  }

  /** Queues changing an outbound record's packet id and state. */
  updateOutbound(clientId: string, seq: number, packetId: number, state: OutboundState): void {
    const added = this.#adds.get(clientId)?.get(seq);
    if (added !== undefined) {
      // Not written yet: write it once, in its final state.
      added.packetId = packetId;
      added.state = STATE_CODES[state];
      return;
    }
    this.#push({ k: "updateOut", clientId, seq, packetId, state: STATE_CODES[state] });
  }

  /** Queues deleting an outbound record. */
  deleteOutbound(clientId: string, seq: number): void {
    const bySeq = this.#adds.get(clientId);
    const added = bySeq?.get(seq);
    if (added !== undefined) {
      // Added and removed within one batch: never write it. The DELETE below still runs, for a
      // row with the same key from an earlier batch, which the add would have replaced.
      added.cancelled = true;
      bySeq!.delete(seq);
    }
    this.#push({ k: "deleteOut", clientId, seq });
  }

  /** Queues recording an unreleased inbound QoS 2 packet id. */
  addInboundQos2(clientId: string, packetId: number): void {
    this.#push({ k: "addIn", clientId, packetId });
  }

  /** Queues forgetting an inbound QoS 2 packet id. */
  deleteInboundQos2(clientId: string, packetId: number): void {
    this.#push({ k: "deleteIn", clientId, packetId });
  }

  /**
   * Resolves when everything queued so far is committed (with `sync: "off"`: at once). Rejects
   * when that transaction failed, or when the store is not open.
   */
  commit(): Promise<void> {
    if (this.#db === undefined) {
      return Promise.reject(new Error(`Cannot commit: ${this.#path} is closed`));
    }
    if (this.#sync === "off" || this.#ops.length === 0) return Promise.resolve();
    if (this.#deferred === undefined) this.#deferred = deferred();
    return this.#deferred.promise;
  }

  /**
   * Commits what is pending and closes the file. Rejects (after closing) when that last commit
   * failed. Idempotent.
   */
  close(): Promise<void> {
    const db = this.#db;
    if (db === undefined) return Promise.resolve();
    const error = this.#flush();
    this.#db = undefined;
    this.#st = undefined;
    db.close();
    if (this.#droppedWhileClosed > 0) {
      this.#log("debug", `${this.#droppedWhileClosed} changes made while closed were ignored`);
      this.#droppedWhileClosed = 0;
    }
    return error === undefined ? Promise.resolve() : Promise.reject(error);
  }

  /** Queues an op and schedules the batch; false when the store is closed (the op is dropped). */
  #push(op: Op): boolean {
    if (this.#db === undefined) {
      this.#droppedWhileClosed++;
      return false;
    }
    this.#ops.push(op);
    if (this.#immediate === undefined) this.#immediate = setImmediate(() => this.#flush());
    return true;
  }

  /** Writes the queued ops in one transaction; returns the error when it failed. */
  #flush(): Error | undefined {
    if (this.#immediate !== undefined) {
      clearImmediate(this.#immediate);
      this.#immediate = undefined;
    }
    const ops = this.#ops;
    const waiting = this.#deferred;
    this.#ops = [];
    this.#adds.clear();
    this.#deferred = undefined;
    if (ops.length === 0) {
      waiting?.resolve();
      return undefined;
    }
    const db = this.#db!;
    const st = this.#st!;
    try {
      db.exec("BEGIN");
      writeOps(st, ops);
      db.exec("COMMIT");
    } catch (cause) {
      try {
        if (db.isTransaction) db.exec("ROLLBACK");
      } catch {
        // The transaction is gone either way; the original error is the one to report.
      }
      const error = new Error(
        `Cannot commit ${ops.length} changes to ${this.#path}: ${errorMessage(cause)}`,
        { cause },
      );
      this.#log("error", error.message);
      waiting?.reject(error);
      return error;
    }
    this.#commits++;
    waiting?.resolve();
    return undefined;
  }

  /**
   * Checks an existing file before it is used. Returns why it cannot be read, or undefined when it
   * can; throws when it must not be touched (newer schema, locked, not accessible).
   */
  async #inspect(): Promise<string | undefined> {
    const header = await readHeader(this.#path);
    if (header.length > 0) {
      if (header.length < 100) return "truncated: shorter than an SQLite header";
      if (new TextDecoder().decode(header.subarray(0, 16)) !== SQLITE_MAGIC) {
        return "not an SQLite database";
      }
      const version = new DataView(header.buffer, header.byteOffset).getInt32(60);
      if (version > SCHEMA_VERSION) throw newerError(this.#path, version);
    }
    let db: DatabaseSync | undefined;
    try {
      db = new DatabaseSync(this.#path);
      db.exec("PRAGMA locking_mode = EXCLUSIVE");
      const version = userVersion(db);
      if (version > SCHEMA_VERSION) throw newerError(this.#path, version);
      const check = db.prepare("PRAGMA quick_check").all().map((r) => String(r.quick_check));
      if (check.length !== 1 || check[0] !== "ok") {
        return `quick_check: ${check.slice(0, 3).join("; ")}`;
      }
      return checkSchema(db, version);
    } catch (error) {
      const code = sqliteCode(error);
      if (code === SQLITE_CORRUPT || code === SQLITE_NOTADB) return errorMessage(error);
      if (code !== undefined) throw openError(this.#path, error);
      throw error;
    } finally {
      db?.close();
    }
  }
}

/** Rows per multi-row INSERT into `outbound` at most. */
const INSERT_CHUNK = 32;

const INSERT_OUTBOUND = "INSERT OR REPLACE INTO outbound " +
  "(client_id, seq, packet_id, state, topic, payload, qos, retain, expires_at, properties, " +
  "subscription_ids)";

/**
 * Writes one batch. Ops on other tables are applied in order. Outbound inserts, updates and
 * deletes are gathered and written as few statements: inserts in multi-row INSERTs, and updates
 * and deletes of consecutive seqs as one range statement each (acknowledgements mostly come in
 * order, and packet ids are mostly allocated in step with seqs). That is about half the SQLite
 * work per message of one statement per change.
 *
 * Reordering is safe because changes to different rows commute, and the same row is touched in
 * one batch only as insert → (updates merged into it at queue time) → delete (which cancels the
 * insert), or, for a row from an earlier batch, as updates → delete. Inserts are written first,
 * then updates (the last one per row), then deletes. Two cases could see a row touched in another
 * order, and flush what is gathered before they apply: `deleteSession`/`purgeOrphans` (they
 * delete rows of a client wholesale), and an insert whose seq is not above every seq with a
 * gathered update or delete for its client (a seq used again, e.g. after `load` dropped records
 * over `maxQueued`).
 */
function writeOps(st: Statements, ops: Op[]): void {
  const pending = new PendingOutbound(st);
  for (const op of ops) {
    switch (op.k) {
      case "addOut":
        if (op.cancelled) break;
        if (op.seq <= pending.highestSeq(op.clientId)) pending.write();
        pending.inserts.push(op);
        break;
      case "updateOut":
        pending.update(op.clientId, op.seq, op.packetId, op.state);
        break;
      case "deleteOut":
        pending.delete(op.clientId, op.seq);
        break;
      case "deleteSession":
      case "purgeOrphans":
        pending.write();
        apply(st, op);
        break;
      default:
        apply(st, op);
    }
  }
  pending.write();
}

/** Outbound changes gathered from a batch, written by {@linkcode PendingOutbound.write}. */
class PendingOutbound {
  readonly #st: Statements;
  inserts: AddOut[] = [];
  // clientId → seq → packetId * 4 + state; the last update of a row wins.
  #updates = new Map<string, Map<number, number>>();
  #deletes = new Map<string, number[]>();
  // clientId → highest seq with a gathered update or delete.
  #highest = new Map<string, number>();

  constructor(st: Statements) {
    this.#st = st;
  }

  highestSeq(clientId: string): number {
    return this.#highest.get(clientId) ?? -Infinity;
  }

  #touch(clientId: string, seq: number): void {
    if (seq > this.highestSeq(clientId)) this.#highest.set(clientId, seq);
  }

  update(clientId: string, seq: number, packetId: number, state: number): void {
    let rows = this.#updates.get(clientId);
    if (rows === undefined) this.#updates.set(clientId, rows = new Map());
    rows.set(seq, packetId * 4 + state);
    this.#touch(clientId, seq);
  }

  delete(clientId: string, seq: number): void {
    this.#updates.get(clientId)?.delete(seq); // the row goes: no point updating it first
    let seqs = this.#deletes.get(clientId);
    if (seqs === undefined) this.#deletes.set(clientId, seqs = []);
    seqs.push(seq);
    this.#touch(clientId, seq);
  }

  write(): void {
    const st = this.#st;
    const inserts = this.inserts;
    for (let i = 0; i < inserts.length; i += INSERT_CHUNK) {
      const n = Math.min(INSERT_CHUNK, inserts.length - i);
      if (n === 1) {
        const r = inserts[i];
        st.addOut.run(
          r.clientId,
          r.seq,
          r.packetId,
          r.state,
          r.topic,
          r.payload,
          r.qos,
          r.retain,
          r.expiresAt,
          r.properties,
          r.subscriptionIds,
        );
        continue;
      }
      const args: (string | number | Uint8Array | null)[] = [];
      for (let j = i; j < i + n; j++) {
        const r = inserts[j];
        args.push(
          r.clientId,
          r.seq,
          r.packetId,
          r.state,
          r.topic,
          r.payload,
          r.qos,
          r.retain,
          r.expiresAt,
          r.properties,
          r.subscriptionIds,
        );
      }
      insertMany(st, n).run(...args);
    }
    for (const [clientId, rows] of this.#updates) {
      const seqs = [...rows.keys()].sort((a, b) => a - b);
      let start = 0;
      for (let i = 1; i <= seqs.length; i++) {
        // A run: consecutive seqs, one state, packet ids in step with the seqs.
        // (As packetId * 4 + state: the same state and the next packet id is 4 more.)
        if (
          i < seqs.length && seqs[i] === seqs[i - 1] + 1 &&
          rows.get(seqs[i]) === rows.get(seqs[i - 1])! + 4
        ) continue;
        const packed = rows.get(seqs[start])!;
        const id = Math.floor(packed / 4);
        const state = packed % 4;
        if (i - start === 1) st.updateOut.run(id, state, clientId, seqs[start]);
        else st.updateOutRange.run(id - seqs[start], state, clientId, seqs[start], seqs[i - 1]);
        start = i;
      }
    }
    for (const [clientId, seqs] of this.#deletes) {
      seqs.sort((a, b) => a - b);
      let start = 0;
      for (let i = 1; i <= seqs.length; i++) {
        if (i < seqs.length && seqs[i] <= seqs[i - 1] + 1) continue; // consecutive (or repeated)
        if (i - start === 1) st.deleteOut.run(clientId, seqs[start]);
        else st.deleteOutRange.run(clientId, seqs[start], seqs[i - 1]);
        start = i;
      }
    }
    this.inserts = [];
    this.#updates.clear();
    this.#deletes.clear();
    this.#highest.clear();
  }
}

function insertMany(st: Statements, rows: number): StatementSync {
  let statement = st.addOutMany.get(rows);
  if (statement === undefined) {
    const values = Array.from({ length: rows }, () => "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)").join(
      ", ",
    );
    statement = st.db.prepare(`${INSERT_OUTBOUND} VALUES ${values}`);
    st.addOutMany.set(rows, statement);
  }
  return statement;
}

function apply(st: Statements, op: Op): void {
  switch (op.k) {
    case "retain":
      st.retain.run(op.topic, op.payload, op.qos, op.expiresAt, op.properties);
      break;
    case "unretain":
      st.unretain.run(op.topic);
      break;
    case "saveSession": {
      const w = op.will;
      st.saveSession.run(
        op.clientId,
        op.subscriptions,
        op.expiresAt,
        op.expiryInterval,
        w?.topic ?? null,
        w?.payload ?? null,
        w?.qos ?? null,
        w === undefined ? null : w.retain ? 1 : 0,
        w === undefined ? null : encodeProperties(w.properties),
        w?.messageExpiryS ?? null,
        w?.publishAt ?? null,
      );
      break;
    }
    case "deleteSession":
      st.deleteSession.run(op.clientId);
      st.deleteSessionOut.run(op.clientId);
      st.deleteSessionIn.run(op.clientId);
      break;
    case "addOut":
      if (!op.cancelled) {
        st.addOut.run(
          op.clientId,
          op.seq,
          op.packetId,
          op.state,
          op.topic,
          op.payload,
          op.qos,
          op.retain,
          op.expiresAt,
          op.properties,
          op.subscriptionIds,
        );
      }
      break;
    case "updateOut":
      st.updateOut.run(op.packetId, op.state, op.clientId, op.seq);
      break;
    case "deleteOut":
      st.deleteOut.run(op.clientId, op.seq);
      break;
    case "addIn":
      st.addIn.run(op.clientId, op.packetId);
      break;
    case "deleteIn":
      st.deleteIn.run(op.clientId, op.packetId);
      break;
    case "purgeOrphans":
      st.purgeOrphansOut.run();
      st.purgeOrphansIn.run();
      break;
  }
}

function prepare(db: DatabaseSync): Statements {
  return {
    db,
    addOutMany: new Map(),
    retain: db.prepare(
      "INSERT OR REPLACE INTO retained (topic, payload, qos, expires_at, properties) VALUES (?, ?, ?, ?, ?)",
    ),
    unretain: db.prepare("DELETE FROM retained WHERE topic = ?"),
    saveSession: db.prepare(
      "INSERT OR REPLACE INTO sessions (client_id, subscriptions, expires_at, expiry_interval, " +
        "will_topic, will_payload, will_qos, will_retain, will_properties, will_expiry, will_at) " +
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    ),
    deleteSession: db.prepare("DELETE FROM sessions WHERE client_id = ?"),
    deleteSessionOut: db.prepare("DELETE FROM outbound WHERE client_id = ?"),
    deleteSessionIn: db.prepare("DELETE FROM inbound_qos2 WHERE client_id = ?"),
    addOut: db.prepare(`${INSERT_OUTBOUND} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
    updateOut: db.prepare(
      "UPDATE outbound SET packet_id = ?, state = ? WHERE client_id = ? AND seq = ?",
    ),
    updateOutRange: db.prepare(
      "UPDATE outbound SET packet_id = seq + ?, state = ? WHERE client_id = ? AND seq BETWEEN ? AND ?",
    ),
    deleteOut: db.prepare("DELETE FROM outbound WHERE client_id = ? AND seq = ?"),
    deleteOutRange: db.prepare("DELETE FROM outbound WHERE client_id = ? AND seq BETWEEN ? AND ?"),
    addIn: db.prepare("INSERT OR IGNORE INTO inbound_qos2 (client_id, packet_id) VALUES (?, ?)"),
    deleteIn: db.prepare("DELETE FROM inbound_qos2 WHERE client_id = ? AND packet_id = ?"),
    purgeOrphansOut: db.prepare(
      "DELETE FROM outbound WHERE client_id NOT IN (SELECT client_id FROM sessions)",
    ),
    purgeOrphansIn: db.prepare(
      "DELETE FROM inbound_qos2 WHERE client_id NOT IN (SELECT client_id FROM sessions)",
    ),
  };
}

/** Returns why the tables are not ours, or undefined when they are. */
function checkSchema(db: DatabaseSync, version: number): string | undefined {
  const tables = db.prepare(
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
  ).all().map((r) => String(r.name));
  if (version === 0) {
    return tables.length === 0
      ? undefined
      : `unknown schema: tables ${tables.join(", ")} without a schema version`;
  }
  const known = TABLES[version];
  if (known === undefined) return `unknown schema version ${version}`;
  const expected = Object.keys(known).sort();
  if (tables.join() !== expected.join()) {
    return `unknown schema: tables ${tables.join(", ")}, expected ${expected.join(", ")}`;
  }
  for (const [table, columns] of Object.entries(known)) {
    const actual = db.prepare(`PRAGMA table_info(${table})`).all().map((r) => String(r.name));
    if (actual.join() !== columns.join()) {
      return `unknown schema: table ${table} has columns ${actual.join(", ")}`;
    }
  }
  return undefined;
}

function userVersion(db: DatabaseSync): number {
  return Number(db.prepare("PRAGMA user_version").get()?.user_version ?? 0);
}

/**
 * Subscriptions as JSON: `[filter, qos]` for a plain one (all that schema 1 wrote), and
 * `[filter, qos, flags]` or `[filter, qos, flags, subscriptionId]` with 5.0 options, where flags
 * = No Local | Retain As Published << 1 | Retain Handling << 2.
 */
function encodeSubscriptions(subscriptions: readonly StoredSubscription[]): string {
  const items: (string | number)[][] = [];
  for (const s of subscriptions) {
    const flags = (s.noLocal ? 1 : 0) | (s.retainAsPublished ? 2 : 0) |
      ((s.retainHandling ?? 0) << 2);
    if (s.subscriptionId !== undefined) {
      items.push([s.topicFilter, s.qos, flags, s.subscriptionId]);
    } else if (flags !== 0) items.push([s.topicFilter, s.qos, flags]);
    else items.push([s.topicFilter, s.qos]);
  }
  return JSON.stringify(items);
}

function parseSubscriptions(value: unknown): StoredSubscription[] | undefined {
  try {
    const parsed: unknown = JSON.parse(String(value));
    if (!Array.isArray(parsed)) return undefined;
    const out: StoredSubscription[] = [];
    for (const item of parsed) {
      if (!Array.isArray(item) || item.length < 2 || item.length > 4) return undefined;
      const [topicFilter, q, flags = 0, id] = item;
      const qos = toQos(q);
      if (qos === undefined || typeof topicFilter !== "string") return undefined;
      if (!Number.isInteger(flags) || flags < 0 || flags > 11 || (flags >> 2) === 3) {
        return undefined;
      }
      const s: StoredSubscription = { topicFilter, qos };
      if (flags & 1) s.noLocal = true;
      if (flags & 2) s.retainAsPublished = true;
      if (flags >> 2) s.retainHandling = (flags >> 2) as 1 | 2;
      if (id !== undefined) {
        if (!Number.isInteger(id) || id < 1 || id > 268_435_455) return undefined;
        s.subscriptionId = id;
      }
      out.push(s);
    }
    return out;
  } catch {
    return undefined;
  }
}

/**
 * Properties as JSON, NULL when there are none: the standard's names, Correlation Data in hex,
 * User Properties as an array of pairs (order kept).
 */
function encodeProperties(p: StoredProperties | undefined): string | null {
  if (p === undefined) return null;
  const out: Record<string, unknown> = {};
  let any = false;
  if (p.payloadFormatIndicator !== undefined) {
    out.payloadFormatIndicator = p.payloadFormatIndicator;
    any = true;
  }
  if (p.contentType !== undefined) {
    out.contentType = p.contentType;
    any = true;
  }
  if (p.responseTopic !== undefined) {
    out.responseTopic = p.responseTopic;
    any = true;
  }
  if (p.correlationData !== undefined) {
    out.correlationData = toHex(p.correlationData);
    any = true;
  }
  if (p.userProperties !== undefined && p.userProperties.length > 0) {
    out.userProperties = p.userProperties;
    any = true;
  }
  return any ? JSON.stringify(out) : null;
}

/** The inverse of {@linkcode encodeProperties}; undefined for NULL or anything unreadable. */
function decodeProperties(value: unknown): StoredProperties | undefined {
  if (typeof value !== "string") return undefined;
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(value);
  } catch {
    return undefined;
  }
  if (parsed === null || typeof parsed !== "object") return undefined;
  const p: StoredProperties = {};
  if (typeof parsed.payloadFormatIndicator === "boolean") {
    p.payloadFormatIndicator = parsed.payloadFormatIndicator;
  }
  if (typeof parsed.contentType === "string") p.contentType = parsed.contentType;
  if (typeof parsed.responseTopic === "string") p.responseTopic = parsed.responseTopic;
  if (typeof parsed.correlationData === "string") {
    p.correlationData = fromHex(parsed.correlationData);
  }
  if (Array.isArray(parsed.userProperties)) {
    p.userProperties = parsed.userProperties.filter((pair): pair is [string, string] =>
      Array.isArray(pair) && pair.length === 2 && typeof pair[0] === "string" &&
      typeof pair[1] === "string"
    );
  }
  return p;
}

function storedMessage(
  topic: string,
  payload: Uint8Array,
  qos: QoS,
  retain: boolean,
  expiresAt: number,
  properties: unknown,
): StoredMessage {
  const m: StoredMessage = { topic, payload, qos, retain };
  if (expiresAt !== 0) m.expiresAt = expiresAt;
  const p = decodeProperties(properties);
  if (p !== undefined) m.properties = p;
  return m;
}

function readWill(row: Record<string, unknown>): StoredWill | undefined {
  const qos = toQos(row.will_qos);
  if (typeof row.will_topic !== "string" || qos === undefined) return undefined;
  const will: StoredWill = {
    topic: row.will_topic,
    payload: (row.will_payload as Uint8Array | null) ?? new Uint8Array(0),
    qos,
    retain: row.will_retain === 1,
    publishAt: Number(row.will_at ?? 0),
  };
  const p = decodeProperties(row.will_properties);
  if (p !== undefined) will.properties = p;
  if (typeof row.will_expiry === "number") will.messageExpiryS = row.will_expiry;
  return will;
}

function parseIds(value: unknown): number[] | undefined {
  if (typeof value !== "string") return undefined;
  try {
    const ids: unknown = JSON.parse(value);
    return Array.isArray(ids) && ids.every(Number.isInteger) ? ids as number[] : undefined;
  } catch {
    return undefined;
  }
}

function toHex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

function fromHex(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length >> 1);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
  return out;
}

function toQos(value: unknown): QoS | undefined {
  return value === 0 || value === 1 || value === 2 ? value : undefined;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

async function readHeader(path: string): Promise<Uint8Array> {
  using file = await Deno.open(path, { read: true });
  const header = new Uint8Array(100);
  let length = 0;
  while (length < header.length) {
    const n = await file.read(header.subarray(length));
    if (n === null) break;
    length += n;
  }
  return header.subarray(0, length);
}

/** Renames `path` (and its -wal/-shm) to `path.corrupt-YYYYMMDDTHHMMSS[-n]`; returns the new path. */
async function moveAside(path: string): Promise<string> {
  const stamp = new Date().toISOString().replace(/[-:]/g, "").slice(0, 15);
  let target = `${path}.corrupt-${stamp}`;
  for (let n = 2; await exists(target); n++) target = `${path}.corrupt-${stamp}-${n}`;
  await Deno.rename(path, target);
  for (const suffix of ["-wal", "-shm"]) {
    if (await exists(path + suffix)) await Deno.rename(path + suffix, target + suffix);
  }
  return target;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Nobody may be waiting for this batch; the failure is logged in any case.
  promise.catch(() => {});
  return { promise, resolve, reject };
}

function sqliteCode(error: unknown): number | undefined {
  const code = (error as { errcode?: unknown } | null)?.errcode;
  return typeof code === "number" ? code & 0xff : undefined;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function newerError(path: string, version: number): Error {
  return new Error(
    `Cannot open ${path}: its schema version ${version} is newer than this broker's (${SCHEMA_VERSION}); ` +
      "use a newer broker or another data directory (the file was not changed)",
  );
}

function openError(path: string, error: unknown): Error {
  const code = sqliteCode(error);
  if (code === SQLITE_BUSY || code === SQLITE_LOCKED) {
    return new Error(
      `Cannot open ${path}: it is locked by another process (is another broker using this data directory?)`,
      { cause: error },
    );
  }
  if (code === undefined && error instanceof Error) return error;
  return new Error(`Cannot open ${path}: ${errorMessage(error)}`, { cause: error });
}

function defaultLog(level: PersistenceLogLevel, message: string): void {
  if (level === "warn" || level === "error") console.error(`persistence ${level}: ${message}`);
}
