import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import type { LoadLimits, OutboundState, Persistence } from "./persistence.ts";
import { persistenceSuite } from "./persistence_suite.ts";
import {
  DB_FILE_NAME,
  type PersistenceLogLevel,
  SCHEMA_VERSION,
  SqlitePersistence,
  type SyncMode,
} from "./sqlite.ts";
import { mulberry32 as prng } from "../_test_prng.ts";

const BIG: LoadLimits = {
  maxSessions: 1_000_000,
  maxRetained: 1_000_000,
  maxRetainedBytes: 2 ** 40,
  maxQueued: 10_000_000,
};

for (const sync of ["normal", "full", "off"] as const) {
  persistenceSuite(`sqlite, sync ${sync}`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "persistence_test_" });
    let current: Persistence = new SqlitePersistence({ dir, sync });
    await current.open();
    return {
      store: current,
      reopen: async () => {
        current = new SqlitePersistence({ dir, sync });
        await current.open();
        return current;
      },
      cleanup: async () => {
        await current.close();
        await Deno.remove(dir, { recursive: true });
      },
    };
  });
}

interface LogLine {
  level: PersistenceLogLevel;
  message: string;
}

/** A temporary data directory, removed at the end of the test. */
async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "persistence_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function openStore(dir: string, sync: SyncMode = "normal") {
  const lines: LogLine[] = [];
  const store = new SqlitePersistence({
    dir,
    sync,
    log: (level, message) => lines.push({ level, message }),
  });
  return { store, lines };
}

async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  return names.sort();
}

/** Fills a real store with enough rows to span many pages, and closes it. */
async function makeRealDatabase(dir: string): Promise<void> {
  const { store } = openStore(dir);
  await store.open();
  store.saveSession({ clientId: "c", subscriptions: [{ topicFilter: "#", qos: 1 }], expiresAt: 0 });
  for (let i = 0; i < 300; i++) {
    store.setRetained({
      topic: `r/${i}`,
      payload: new Uint8Array(1000).fill(i),
      qos: 1,
      retain: true,
    });
    store.addOutbound({
      clientId: "c",
      seq: i,
      packetId: 0,
      state: "queued",
      message: { topic: `t/${i}`, payload: new Uint8Array(500).fill(i), qos: 1, retain: false },
    });
  }
  await store.commit();
  await store.close();
}

/** Opens a store over an unreadable file and checks it was moved aside and the store is empty. */
async function assertMovedAside(dir: string, original: Uint8Array, reasonPattern: RegExp) {
  const { store, lines } = openStore(dir);
  const report = await store.open();
  try {
    assert.equal(report.created, true);
    assert.ok(report.movedAside, "the unreadable file is reported as moved aside");
    assert.match(report.movedAside.reason, reasonPattern);
    const moved = report.movedAside.path;
    assert.match(moved, /\/broker\.db\.corrupt-\d{8}T\d{6}(-\d+)?$/);
    assert.deepEqual(await Deno.readFile(moved), original, "the old bytes are kept, unchanged");
    const warning = lines.find((l) => l.level === "warn");
    assert.ok(warning, "a warning is logged");
    assert.ok(warning.message.includes(moved), warning.message);
    assert.match(warning.message, /moved it to .* starting with an empty store/);

    const loaded = store.load(BIG);
    assert.deepEqual(loaded.sessions, []);
    assert.deepEqual(loaded.retained, []);
    // And the new store works.
    store.setRetained({ topic: "new", payload: new Uint8Array([1]), qos: 0, retain: true });
    await store.commit();
  } finally {
    await store.close();
  }
  const { store: again } = openStore(dir);
  assert.deepEqual(await again.open(), { created: false });
  assert.deepEqual(again.load(BIG).retained.map((r) => r.topic), ["new"]);
  await again.close();
  return report.movedAside.path;
}

Deno.test("sqlite: a file that is not a database is moved aside and the store starts empty", async () => {
  await withDir(async (dir) => {
    const garbage = new TextEncoder().encode("this is not a database\n".repeat(300));
    await Deno.writeFile(join(dir, DB_FILE_NAME), garbage);
    await Deno.writeFile(join(dir, `${DB_FILE_NAME}-wal`), new Uint8Array([1, 2, 3]));
    const moved = await assertMovedAside(dir, garbage, /not an SQLite database/);
    // Its -wal went with it, named so that SQLite would pair the two.
    assert.deepEqual(await Deno.readFile(`${moved}-wal`), new Uint8Array([1, 2, 3]));

    // A second unreadable file in the same second gets its own name.
    await Deno.remove(join(dir, DB_FILE_NAME));
    await Deno.writeFile(join(dir, DB_FILE_NAME), garbage.subarray(0, 50));
    const second = await assertMovedAside(dir, garbage.subarray(0, 50), /truncated/);
    assert.notEqual(second, moved);
    assert.equal((await listDir(dir)).filter((n) => n.includes(".corrupt-")).length, 3);
  });
});

Deno.test("sqlite: a truncated real database is moved aside and the store starts empty", async () => {
  await withDir(async (dir) => {
    await makeRealDatabase(dir);
    const path = join(dir, DB_FILE_NAME);
    const full = await Deno.readFile(path);
    assert.ok(full.length > 100_000, `the database spans many pages (${full.length} bytes)`);
    const truncated = full.subarray(0, Math.floor(full.length / 2));
    await Deno.writeFile(path, truncated);
    await assertMovedAside(dir, truncated, /malformed/);
  });
});

Deno.test("sqlite: a database with unknown tables is moved aside", async () => {
  await withDir(async (dir) => {
    const path = join(dir, DB_FILE_NAME);
    const db = new DatabaseSync(path);
    db.exec("CREATE TABLE something_else (x)");
    db.close();
    await assertMovedAside(dir, await Deno.readFile(path), /unknown schema/);

    await Deno.remove(path);
    const ours = new DatabaseSync(path);
    ours.exec(`CREATE TABLE sessions (client_id TEXT); PRAGMA user_version = ${SCHEMA_VERSION}`);
    ours.close();
    await assertMovedAside(dir, await Deno.readFile(path), /unknown schema/);
  });
});

Deno.test("sqlite: a database with a newer schema version is refused and left untouched", async () => {
  await withDir(async (dir) => {
    const path = join(dir, DB_FILE_NAME);
    const db = new DatabaseSync(path);
    db.exec(`CREATE TABLE future (x); PRAGMA user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    const before = await Deno.readFile(path);
    const namesBefore = await listDir(dir);

    const { store, lines } = openStore(dir);
    await assert.rejects(
      store.open(),
      (error: Error) =>
        error.message.includes(`schema version ${SCHEMA_VERSION + 1} is newer`) &&
        error.message.includes(path),
    );
    assert.deepEqual(await Deno.readFile(path), before);
    assert.deepEqual(await listDir(dir), namesBefore);
    assert.deepEqual(lines.filter((l) => l.level !== "debug"), []);
    await assert.rejects(store.commit(), /closed/);
  });
});

Deno.test("sqlite: a second store on the same directory is refused while the first is open", async () => {
  await withDir(async (dir) => {
    const { store } = openStore(dir);
    await store.open();
    try {
      store.setRetained({ topic: "a", payload: new Uint8Array([1]), qos: 0, retain: true });
      await store.commit();
      const { store: second } = openStore(dir);
      await assert.rejects(second.open(), /locked by another process/);
      assert.deepEqual(await listDir(dir), ["broker.db", "broker.db-wal"]);
    } finally {
      await store.close();
    }
    const { store: again } = openStore(dir);
    await again.open();
    assert.equal(again.load(BIG).retained.length, 1);
    await again.close();
  });
});

Deno.test("sqlite: the data directory is created 0700 and its files 0600", async () => {
  await withDir(async (parent) => {
    const dir = join(parent, "data", "broker");
    const { store } = openStore(dir);
    const report = await store.open();
    try {
      assert.deepEqual(report, { created: true });
      store.setRetained({ topic: "a", payload: new Uint8Array([1]), qos: 0, retain: true });
      await store.commit();
      assert.equal((await Deno.stat(dir)).mode! & 0o777, 0o700);
      const names = await listDir(dir);
      assert.deepEqual(names, ["broker.db", "broker.db-wal"]);
      for (const name of names) {
        assert.equal((await Deno.stat(join(dir, name))).mode! & 0o777, 0o600, name);
      }
    } finally {
      await store.close();
    }
  });
});

Deno.test("sqlite: a failed transaction is rolled back and its commit() rejects", async () => {
  await withDir(async (dir) => {
    const { store, lines } = openStore(dir);
    await store.open();
    try {
      store.load(BIG);
      store.saveSession({ clientId: "c", subscriptions: [], expiresAt: 0 });
      await store.commit();
      const commitsBefore = store.commits;
      store.setRetained({
        topic: "in-the-failed-batch",
        payload: new Uint8Array([1]),
        qos: 0,
        retain: true,
      });
      // A value SQLite cannot bind makes the transaction fail half-way.
      store.addOutbound({
        clientId: "c",
        seq: 1,
        packetId: 0,
        state: "queued",
        message: { topic: {} as string, payload: new Uint8Array([1]), qos: 1, retain: false },
      });
      await assert.rejects(store.commit(), /Cannot commit 2 changes/);
      assert.equal(store.commits, commitsBefore);
      assert.ok(lines.some((l) => l.level === "error" && l.message.includes("Cannot commit")));
      // The store keeps working; nothing of the failed batch was written.
      store.setRetained({ topic: "next", payload: new Uint8Array([1]), qos: 0, retain: true });
      await store.commit();
      const loaded = store.load(BIG);
      assert.deepEqual(loaded.retained.map((r) => r.topic), ["next"]);
      assert.deepEqual(loaded.sessions[0].outbound, []);
    } finally {
      await store.close();
    }
  });
});

Deno.test("sqlite: bad options are a TypeError naming the option", () => {
  assert.throws(() => new SqlitePersistence({ dir: "" }), TypeError);
  assert.throws(
    () => new SqlitePersistence({ dir: "x", sync: "sometimes" as SyncMode }),
    /Option "sync" must be "full", "normal" or "off"/,
  );
});

const CRASH_CHILD = `
import { SqlitePersistence } from ${JSON.stringify(new URL("./sqlite.ts", import.meta.url).href)};
const [dir, sync] = Deno.args;
const store = new SqlitePersistence({ dir, sync });
await store.open();
store.load({ maxSessions: 10, maxRetained: 10, maxRetainedBytes: 1 << 20, maxQueued: 1e9 });
store.saveSession({ clientId: "c", subscriptions: [{ topicFilter: "#", qos: 1 }], expiresAt: 0 });
const payload = new Uint8Array(100).fill(7);
const encoder = new TextEncoder();
let seq = 0;
for (;;) {
  // A few records per turn, each with its own awaited commit, like acks from one read.
  const commits = [];
  for (let i = 0, n = 1 + (seq % 5); i < n; i++) {
    seq++;
    store.addOutbound({ clientId: "c", seq, packetId: 0, state: "queued",
      message: { topic: "t", payload, qos: 1, retain: false } });
    commits.push(store.commit());
  }
  await Promise.all(commits);
  const line = encoder.encode(seq + "\\n");
  for (let off = 0; off < line.length;) off += Deno.stdout.writeSync(line.subarray(off));
}
`;

/**
 * Runs a child process that commits outbound records and prints each committed seq, kills it with
 * SIGKILL after `count` seqs, and returns the printed seqs and the seqs found after reopening.
 */
async function crashChild(dir: string, sync: SyncMode, count: number) {
  const script = join(dir, "crash_child.ts");
  await Deno.writeTextFile(script, CRASH_CHILD);
  const dataDir = join(dir, "data");
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-config", "--allow-read", "--allow-write", script, dataDir, sync],
    cwd: dir,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // If the child never prints enough, kill it anyway so the test fails instead of hanging.
  const deadline = setTimeout(() => child.kill("SIGKILL"), 60_000);
  const printed: number[] = [];
  const stderr = new Response(child.stderr).text();
  try {
    let buffered = "";
    const decoder = new TextDecoder();
    for await (const chunk of child.stdout) {
      buffered += decoder.decode(chunk, { stream: true });
      const lines = buffered.split("\n");
      buffered = lines.pop()!; // an incomplete last line was not fully printed
      for (const line of lines) printed.push(Number(line));
      if (printed.length >= count) break; // cancels the stream
    }
    child.kill("SIGKILL");
  } finally {
    clearTimeout(deadline);
  }
  const status = await child.status;
  const errors = await stderr;
  assert.equal(status.signal, "SIGKILL", `the child was killed, not ended: ${errors}`);
  assert.ok(printed.length >= count, `the child printed ${printed.length} seqs: ${errors}`);

  const { store } = openStore(dataDir);
  await store.open();
  const loaded = store.load(BIG);
  await store.close();
  const found = loaded.sessions[0]?.outbound.map((r) => r.seq) ?? [];
  return { printed, found };
}

Deno.test("sqlite: after kill -9, every seq whose commit() resolved is there (sync normal)", async () => {
  await withDir(async (dir) => {
    const { printed, found } = await crashChild(dir, "normal", 400);
    const present = new Set(found);
    const missing = printed.filter((seq) => !present.has(seq));
    assert.deepEqual(missing, [], `committed seqs lost after kill -9`);
    // Transactions are atomic and in order: what is there is exactly 1..n.
    assert.deepEqual(found, Array.from({ length: found.length }, (_, i) => i + 1));
    assert.ok(found.length >= printed[printed.length - 1]);
  });
});

Deno.test("sqlite: random change sequences load exactly as the memory store's (coalesced writes keep their meaning)", async () => {
  const { MemoryPersistence } = await import("./memory.ts");
  const states: OutboundState[] = ["queued", "sent", "pubrel"];
  const clients = ["a", "b", "c"];
  let compared = 0;
  for (let seed = 1; seed <= 40; seed++) {
    await withDir(async (dir) => {
      const random = prng(seed);
      const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
      const memory = new MemoryPersistence();
      let sqlite = new SqlitePersistence({ dir, log: () => {} });
      await memory.open();
      await sqlite.open();
      memory.load(BIG);
      sqlite.load(BIG);
      const both = (fn: (store: Persistence) => void) => {
        fn(memory);
        fn(sqlite);
      };
      // Runs of consecutive seqs and packet ids, as the broker makes them, plus random ones.
      const nextSeq = new Map(clients.map((c) => [c, 1]));
      const log: string[] = [];
      for (let step = 0; step < 400; step++) {
        const clientId = pick(clients);
        const roll = random();
        const seq = random() < 0.7
          ? Math.max(1, nextSeq.get(clientId)! - 1 - Math.floor(random() * 6))
          : 1 + Math.floor(random() * 30);
        if (roll < 0.3) {
          const fresh = nextSeq.get(clientId)!;
          nextSeq.set(clientId, fresh + 1);
          const record = {
            clientId,
            seq: random() < 0.9 ? fresh : seq,
            packetId: random() < 0.5 ? 0 : 1 + Math.floor(random() * 40),
            state: pick(states),
            message: {
              topic: `t/${step}`,
              payload: Uint8Array.of(step & 0xff, seed),
              qos: pick([1, 2] as const),
              retain: random() < 0.2,
            },
          };
          log.push(`add ${clientId} ${record.seq} ${record.state}`);
          both((s) => s.addOutbound(record));
        } else if (roll < 0.55) {
          const packetId = random() < 0.8 ? seq + 7 : 1 + Math.floor(random() * 65535);
          const state = random() < 0.8 ? "sent" : pick(states);
          log.push(`update ${clientId} ${seq} ${packetId} ${state}`);
          both((s) => s.updateOutbound(clientId, seq, packetId, state));
        } else if (roll < 0.8) {
          log.push(`delete ${clientId} ${seq}`);
          both((s) => s.deleteOutbound(clientId, seq));
        } else if (roll < 0.86) {
          log.push(`save ${clientId}`);
          both((s) =>
            s.saveSession({
              clientId,
              subscriptions: [{ topicFilter: `f/${step}`, qos: 1 }],
              expiresAt: 0,
            })
          );
        } else if (roll < 0.88) {
          log.push(`deleteSession ${clientId}`);
          both((s) => s.deleteSession(clientId));
          nextSeq.set(clientId, 1); // a new session starts its seqs again
        } else if (roll < 0.93) {
          const packetId = 1 + Math.floor(random() * 5);
          const add = random() < 0.6;
          log.push(`${add ? "add" : "delete"} inbound ${clientId} ${packetId}`);
          both((s) =>
            add ? s.addInboundQos2(clientId, packetId) : s.deleteInboundQos2(clientId, packetId)
          );
        } else if (roll < 0.97) {
          log.push("commit");
          await Promise.all([memory.commit(), sqlite.commit()]);
        } else {
          // Restart: both reload within small limits, which deletes what is over them.
          log.push("restart");
          await sqlite.close();
          await memory.close();
          sqlite = new SqlitePersistence({ dir, log: () => {} });
          await sqlite.open();
          await memory.open();
          const limits = { ...BIG, maxQueued: 3 };
          const fromMemory = memory.load(limits);
          assert.deepEqual(sqlite.load(limits), fromMemory, `seed ${seed}: ${log}`);
          compared += fromMemory.sessions.reduce((n, s) => n + s.outbound.length, 0);
        }
      }
      await sqlite.commit();
      await sqlite.close();
      await memory.close();
      sqlite = new SqlitePersistence({ dir, log: () => {} });
      await sqlite.open();
      await memory.open();
      const fromSqlite = sqlite.load(BIG);
      const fromMemory = memory.load(BIG);
      await sqlite.close();
      assert.deepEqual(fromSqlite.sessions, fromMemory.sessions, `seed ${seed}: ${log.join("; ")}`);
      compared += fromMemory.sessions.reduce((n, s) => n + s.outbound.length, 0);
    });
  }
  assert.ok(
    compared > 200,
    `only ${compared} outbound records compared: the test exercises little`,
  );
});
