/**
 * The SQLite store's migration path: a store written by schema version 1 (the fixture
 * tests/fixtures/store-v1/broker.db, made by the broker of bfa01d4, see its README) is migrated in
 * place, once, in one transaction, and everything in it is found again, by the store and by a
 * broker (resumed sessions, resent in-flight messages, retained messages); a newer version is
 * refused (the CLI exits 2 and leaves the file alone).
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { SqlitePersistence } from "../mod.ts";
import type { LoadResult } from "../src/persistence/persistence.ts";
import { type PersistenceLogLevel, SCHEMA_VERSION } from "../src/persistence/sqlite.ts";
import { DurableBroker, spawnCli, startCli, withTempDir } from "./_durable.ts";
import { puback, pubcomp, pubrel, RawClient, TYPE } from "./_raw.ts";

const FIXTURE = fileURLToPath(new URL("./fixtures/store-v1/broker.db", import.meta.url));
const BINARY = Uint8Array.from({ length: 256 }, (_, i) => i);
const text = (s: string) => new TextEncoder().encode(s);
const BIG = {
  maxSessions: 1_000_000,
  maxRetained: 1_000_000,
  maxRetainedBytes: 2 ** 40,
  maxQueued: 1_000_000,
};

/** A copy of the fixture in a fresh directory (the fixture itself is never opened). */
async function withFixture(fn: (dir: string) => Promise<void>): Promise<void> {
  await withTempDir(async (dir) => {
    await Deno.copyFile(FIXTURE, join(dir, "broker.db"));
    await fn(dir);
  });
}

/**
 * `PRAGMA user_version` read from the file header (offset 60), not through SQLite: opening a WAL
 * database, even read-only, would leave `-wal`/`-shm` files behind. Only valid for a closed store
 * (everything checkpointed).
 */
function userVersion(path: string): number {
  const header = Deno.readFileSync(path).subarray(0, 100);
  return new DataView(header.buffer, header.byteOffset).getInt32(60);
}

async function names(dir: string): Promise<string[]> {
  const out = [];
  for await (const entry of Deno.readDir(dir)) out.push(entry.name);
  return out.sort();
}

/** Everything the fixture's README lists, as the current code loads it. */
function assertFixtureContent(loaded: LoadResult): void {
  assert.deepEqual(loaded.retained, [
    { topic: "fx/retained/binary", payload: BINARY, qos: 2, retain: true },
    { topic: "fx/retained/qos0", payload: text("zero"), qos: 0, retain: true },
    { topic: "fx/retained/text", payload: text("hello retained"), qos: 1, retain: true },
    { topic: "fx/retained/ünïcødé/€", payload: text("€uro"), qos: 1, retain: true },
  ]);
  assert.deepEqual(loaded.sessions.map((s) => s.clientId), ["fx-empty", "fx-live", "fx-offline"]);
  const [empty, live, offline] = loaded.sessions;
  for (const s of loaded.sessions) {
    // Written with --session-expiry-ms 2^40 on 2026-12-03.
    assert.ok(s.expiresAt > Date.parse("2061-01-01"), `${s.clientId} expiresAt ${s.expiresAt}`);
    assert.equal(s.expiryIntervalS, undefined, "schema 1 sessions use the broker's expiry");
    assert.equal(s.will, undefined);
  }
  assert.deepEqual(empty.subscriptions, []);
  assert.deepEqual(empty.outbound, []);
  assert.deepEqual(empty.inboundQos2, []);

  assert.deepEqual(live.subscriptions, [{ topicFilter: "fx/live/#", qos: 2 }]);
  assert.deepEqual(live.outbound, [
    {
      clientId: "fx-live",
      seq: 1,
      packetId: 1,
      state: "pubrel",
      message: { topic: "fx/live/pubrec", payload: text("pubrec'd"), qos: 2, retain: false },
    },
    {
      clientId: "fx-live",
      seq: 2,
      packetId: 2,
      state: "sent",
      message: { topic: "fx/live/inflight", payload: text("in flight"), qos: 1, retain: false },
    },
    {
      clientId: "fx-live",
      seq: 3,
      packetId: 0,
      state: "queued",
      message: { topic: "fx/live/queued", payload: text("queued behind"), qos: 1, retain: false },
    },
  ]);
  assert.deepEqual(live.inboundQos2, [77]);

  assert.deepEqual(offline.subscriptions, [
    { topicFilter: "fx/q0/#", qos: 0 },
    { topicFilter: "fx/q1/+", qos: 1 },
    { topicFilter: "fx/q2/#", qos: 2 },
  ]);
  const queued = (seq: number, topic: string, payload: Uint8Array, qos: 1 | 2) => ({
    clientId: "fx-offline",
    seq,
    packetId: 0,
    state: "queued" as const,
    message: { topic, payload, qos, retain: false },
  });
  assert.deepEqual(offline.outbound, [
    queued(1, "fx/q1/a", text("q1 at qos1"), 1),
    queued(2, "fx/q2/b/c", text("q2 at qos2"), 2),
    queued(3, "fx/q2/d", text("qos1 on a qos2 grant"), 1),
    queued(4, "fx/q1/bin", BINARY, 1),
    queued(5, "fx/q2/retain", text("not retained"), 2),
  ]);
  assert.deepEqual(offline.inboundQos2, []);
  assert.deepEqual(loaded.skipped, {
    sessions: 0,
    expiredSessions: 0,
    retained: 0,
    messages: 0,
    expiredMessages: 0,
  });
  assert.deepEqual(loaded.expiredWills, []);
}

Deno.test("migration: the schema 1 fixture is migrated in place to the current schema, and everything in it is loaded", async () => {
  await withFixture(async (dir) => {
    const path = join(dir, "broker.db");
    assert.equal(userVersion(path), 1, "the fixture is schema 1");
    assert.equal(SCHEMA_VERSION, 2);
    const lines: string[] = [];
    const log = (level: PersistenceLogLevel, message: string) => lines.push(`${level} ${message}`);
    const store = new SqlitePersistence({ dir, log });
    const report = await store.open();
    assert.deepEqual(report, { created: false, migratedFrom: 1 });
    assert.deepEqual(lines.filter((l) => !l.startsWith("debug")), [
      `info migrated ${path} in place from schema version 1 to 2`,
    ]);
    assertFixtureContent(store.load(BIG));
    await store.close();
    assert.equal(userVersion(path), SCHEMA_VERSION);
    assert.deepEqual(await names(dir), ["broker.db"], "nothing moved aside, no leftovers");

    // Columns as a freshly created store has them: the migrated file is not a variant.
    const fresh = await Deno.makeTempDir({ prefix: "migration_fresh_" });
    try {
      const created = new SqlitePersistence({ dir: fresh });
      await created.open();
      await created.close();
      const columns = (file: string) => {
        const db = new DatabaseSync(file, { readOnly: true });
        try {
          return db.prepare(
            'SELECT m.name AS t, p.name AS c, p.type AS y, p.dflt_value AS d, p."notnull" AS n, ' +
              "p.pk AS k FROM sqlite_master m, pragma_table_info(m.name) p " +
              "WHERE m.type = 'table' ORDER BY m.name, p.cid",
          ).all().map((r) => JSON.stringify(r));
        } finally {
          db.close();
        }
      };
      assert.deepEqual(columns(path), columns(join(fresh, "broker.db")));
    } finally {
      await Deno.remove(fresh, { recursive: true });
    }
  });
});

Deno.test("migration: reopening a migrated store does not migrate again and loads the same state; new state is kept", async () => {
  await withFixture(async (dir) => {
    const first = new SqlitePersistence({ dir, log: () => {} });
    assert.equal((await first.open()).migratedFrom, 1);
    first.load(BIG);
    // 5.0 state written into the migrated file.
    first.saveSession({
      clientId: "fx-v5",
      subscriptions: [{ topicFilter: "$share/g/fx/#", qos: 1, noLocal: true, subscriptionId: 9 }],
      expiresAt: 0,
      expiryIntervalS: 120,
    });
    await first.commit();
    await first.close();
    for (let i = 0; i < 2; i++) {
      const lines: string[] = [];
      const again = new SqlitePersistence({ dir, log: (l, m) => lines.push(`${l} ${m}`) });
      assert.deepEqual(await again.open(), { created: false });
      assert.deepEqual(lines.filter((l) => !l.startsWith("debug")), []);
      const loaded = again.load(BIG);
      const v5 = loaded.sessions.find((s) => s.clientId === "fx-v5");
      assert.deepEqual(v5?.subscriptions, [
        { topicFilter: "$share/g/fx/#", qos: 1, noLocal: true, subscriptionId: 9 },
      ]);
      assert.equal(v5?.expiryIntervalS, 120);
      assertFixtureContent({
        ...loaded,
        sessions: loaded.sessions.filter((s) => s.clientId !== "fx-v5"),
      });
      await again.close();
    }
    assert.equal(userVersion(join(dir, "broker.db")), SCHEMA_VERSION);
  });
});

Deno.test("migration: a broker on the migrated fixture resumes its sessions: in-flight resent, PUBREL resent, queued delivered in order, retained intact [MQTT-4.4.0-1]", async () => {
  await withFixture(async (dir) => {
    const b = await DurableBroker.start(dir);
    try {
      assert.ok(
        b.lines.includes("info persistence: restored 3 sessions, 8 messages, 4 retained messages"),
        b.lines.join("\n"),
      );
      // fx-live: what was in flight is resent in order (PUBREL for the PUBREC'd one, the PUBLISH
      // with DUP for the unacknowledged one), then the queued one follows.
      const live = await RawClient.connect(b.port, "fx-live");
      const ack = await live.handshake({ clientId: "fx-live", cleanSession: false });
      assert.equal(ack.sessionPresent, true);
      assert.equal(await live.expectAck(TYPE.PUBREL), 1);
      const resent = await live.expectPublish();
      assert.deepEqual(
        [resent.topic, resent.text, resent.qos, resent.dup, resent.packetId],
        ["fx/live/inflight", "in flight", 1, true, 2],
      );
      await live.send(pubcomp(1));
      await live.send(puback(2));
      const queued = await live.expectPublish();
      assert.deepEqual([queued.topic, queued.text, queued.qos, queued.dup], [
        "fx/live/queued",
        "queued behind",
        1,
        false,
      ]);
      await live.send(puback(queued.packetId!));
      // The inbound QoS 2 id 77 is still unreleased: a resent PUBLISH is not routed again, and
      // PUBREL completes it.
      await live.send(pubrel(77));
      assert.equal(await live.expectAck(TYPE.PUBCOMP), 77);
      await live.close();

      // fx-offline: the five queued messages, in order, at their stored QoS.
      const offline = await RawClient.connect(b.port, "fx-offline");
      assert.equal(
        (await offline.handshake({ clientId: "fx-offline", cleanSession: false }))
          .sessionPresent,
        true,
      );
      const got = await offline.receiveMany(5);
      assert.deepEqual(got.map((m) => [m.topic, m.qos, m.retain]), [
        ["fx/q1/a", 1, false],
        ["fx/q2/b/c", 2, false],
        ["fx/q2/d", 1, false],
        ["fx/q1/bin", 1, false],
        ["fx/q2/retain", 2, false],
      ]);
      assert.deepEqual(got[3].payload, BINARY);
      // Its subscriptions work: a new message at each granted QoS.
      const pub = await RawClient.connect(b.port, "pub");
      await pub.handshake({ clientId: "fx-pub-2" });
      await pub.publish({ topic: "fx/q2/new", payload: "new", qos: 2, packetId: 5 });
      const fresh = await offline.receive();
      assert.deepEqual([fresh.topic, fresh.qos], ["fx/q2/new", 2]);

      // The retained messages, binary payload and non-ASCII topic included.
      const sub = await RawClient.connect(b.port, "retained");
      await sub.handshake({ clientId: "fx-retained-reader" });
      assert.deepEqual(await sub.subscribe(1, [["fx/retained/#", 2]]), [2]);
      const retained = (await sub.receiveMany(4)).sort((x, y) => x.topic < y.topic ? -1 : 1);
      assert.deepEqual(retained.map((m) => [m.topic, m.qos, m.retain]), [
        ["fx/retained/binary", 2, true],
        ["fx/retained/qos0", 0, true],
        ["fx/retained/text", 1, true],
        ["fx/retained/ünïcødé/€", 1, true],
      ]);
      assert.deepEqual(retained[0].payload, BINARY);
      assert.equal(retained[3].text, "€uro");
      await sub.close();
      await pub.close();
      await offline.close();
    } finally {
      await b.close();
    }
  });
});

Deno.test("migration cli: the CLI on the schema 1 fixture migrates it, logs one line, serves and stops with exit 0", async () => {
  await withFixture(async (dir) => {
    const cli = await startCli(dir);
    cli.process.kill("SIGTERM");
    const result = await cli.process.finished;
    assert.equal(result.code, 0, result.stderr);
    const lines = result.stderr.split("\n").filter((l) => /migrat/.test(l));
    assert.equal(lines.length, 1, result.stderr);
    assert.match(
      lines[0],
      / info persistence: migrated .*broker\.db in place from schema version 1 to 2/,
    );
    assert.match(result.stderr, /restored 3 sessions, 8 messages, 4 retained messages/);
    assert.equal(userVersion(join(dir, "broker.db")), SCHEMA_VERSION);
    assert.deepEqual(await names(dir), ["broker.db"]);
  });
});

Deno.test("migration cli: a store one schema version newer than the code is refused: exit 2, one line, file untouched", async () => {
  await withFixture(async (dir) => {
    const path = join(dir, "broker.db");
    const db = new DatabaseSync(path);
    db.exec(`PRAGMA user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    const before = await Deno.readFile(path);
    const namesBefore = await names(dir);
    const result = await spawnCli(dir).finished;
    assert.equal(result.code, 2, result.stderr);
    const lines = result.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 1, result.stderr);
    assert.match(
      lines[0],
      new RegExp(
        `^error: --data-dir .*schema version ${
          SCHEMA_VERSION + 1
        } is newer than this broker's \\(${SCHEMA_VERSION}\\)`,
      ),
    );
    assert.deepEqual(await Deno.readFile(path), before);
    assert.deepEqual(await names(dir), namesBefore);
  });
});

Deno.test("migration: a schema 1 file whose tables are not schema 1's is still moved aside as unreadable, not migrated", async () => {
  await withFixture(async (dir) => {
    const path = join(dir, "broker.db");
    const db = new DatabaseSync(path);
    db.exec("ALTER TABLE retained ADD COLUMN surprise INTEGER");
    db.close();
    const lines: string[] = [];
    const store = new SqlitePersistence({ dir, log: (l, m) => lines.push(`${l} ${m}`) });
    const report = await store.open();
    assert.equal(report.created, true);
    assert.match(report.movedAside?.reason ?? "", /unknown schema: table retained has columns/);
    assert.equal(report.migratedFrom, undefined);
    assert.deepEqual(store.load(BIG).sessions, []);
    await store.close();
    assert.equal(userVersion(report.movedAside!.path), 1, "the moved file is as it was");
  });
});

Deno.test("migration: a schema 1 store left by a SIGKILLed broker (everything still in broker.db-wal) is migrated and loaded", async () => {
  await withTempDir(async (dir) => {
    const fixture = fileURLToPath(new URL("./fixtures/store-v1-wal/", import.meta.url));
    for (const name of ["broker.db", "broker.db-wal"]) {
      await Deno.copyFile(join(fixture, name), join(dir, name));
    }
    assert.equal(userVersion(join(dir, "broker.db")), 0, "the file header has not seen the WAL");
    const store = new SqlitePersistence({ dir, log: () => {} });
    assert.deepEqual(await store.open(), { created: false, migratedFrom: 1 });
    const loaded = store.load(BIG);
    assert.deepEqual(loaded.retained, [
      { topic: "wal/r", payload: text("retained"), qos: 1, retain: true },
    ]);
    assert.deepEqual(loaded.sessions.map((s) => [s.clientId, s.subscriptions]), [
      ["wal-sub", [{ topicFilter: "wal/#", qos: 2 }]],
    ]);
    assert.deepEqual(
      loaded.sessions[0].outbound.map((o) => [o.state, o.message.topic, o.message.qos]),
      [["queued", "wal/r", 1], ["queued", "wal/1", 1], ["queued", "wal/2", 2], [
        "queued",
        "wal/3",
        1,
      ]],
    );
    await store.close();
    assert.equal(userVersion(join(dir, "broker.db")), SCHEMA_VERSION, "checkpointed at close");
    assert.deepEqual(await names(dir), ["broker.db"]);
  });
});
