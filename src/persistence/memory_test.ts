import assert from "node:assert/strict";
import { MemoryPersistence } from "./memory.ts";
import { persistenceSuite } from "./persistence_suite.ts";

persistenceSuite("memory", async () => {
  const store = new MemoryPersistence();
  await store.open();
  return {
    store,
    reopen: async () => {
      await store.open();
      return store;
    },
    cleanup: () => store.close(),
  };
});

Deno.test("persistence (memory): open reports created only the first time", async () => {
  const store = new MemoryPersistence();
  assert.deepEqual(await store.open(), { created: true });
  await store.close();
  assert.deepEqual(await store.open(), { created: false });
  await store.close();
});

Deno.test("persistence (memory): load before open throws", () => {
  assert.throws(
    () =>
      new MemoryPersistence().load({
        maxSessions: 1,
        maxRetained: 1,
        maxRetainedBytes: 1,
        maxQueued: 1,
      }),
    /not open/,
  );
});
