/**
 * Holds the layering of ARCHITECTURE.md over the real module graph (`deno info --json cli.ts`, type-only
 * imports included): no import cycles; `codec/` imports only itself; `topic/` only itself and the
 * codec; no handler, and nothing the handlers import, reaches `connection.ts` or `broker.ts`.
 */
import assert from "node:assert/strict";

const ROOT = new URL("..", import.meta.url);

interface InfoModule {
  specifier: string;
  dependencies?: { code?: { specifier?: string }; type?: { specifier?: string } }[];
}

async function moduleGraph(): Promise<Map<string, string[]>> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "cli.ts"], // cli.ts imports mod.ts: one graph covers both
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as { modules: InfoModule[] };
  const root = ROOT.href;
  const graph = new Map<string, string[]>();
  for (const m of info.modules) {
    if (!m.specifier.startsWith(root)) continue;
    const deps = new Set<string>();
    for (const d of m.dependencies ?? []) {
      for (const s of [d.code?.specifier, d.type?.specifier]) {
        if (s !== undefined && s.startsWith(root)) deps.add(s.slice(root.length));
      }
    }
    graph.set(m.specifier.slice(root.length), [...deps]);
  }
  return graph;
}

// Strongly connected components with more than one module (or a self-import): the cycles.
function cycles(graph: Map<string, string[]>): string[][] {
  let index = 0;
  const indices = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string) => {
    indices.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!indices.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) {
        low.set(v, Math.min(low.get(v)!, indices.get(w)!));
      }
    }
    if (low.get(v) === indices.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(component.sort());
    }
  };
  for (const v of graph.keys()) if (!indices.has(v)) visit(v);
  return found;
}

function reachable(graph: Map<string, string[]>, from: string): Set<string> {
  const seen = new Set<string>();
  const todo = [from];
  while (todo.length > 0) {
    const v = todo.pop()!;
    for (const w of graph.get(v) ?? []) {
      if (!seen.has(w)) {
        seen.add(w);
        todo.push(w);
      }
    }
  }
  return seen;
}

Deno.test("the module graph of mod.ts and cli.ts has no import cycle", async () => {
  const graph = await moduleGraph();
  assert.ok(graph.has("src/connection.ts"), "the graph covers src/");
  assert.deepEqual(cycles(graph), []);
});

Deno.test("codec/ imports only itself; topic/ only itself and codec/", async () => {
  const graph = await moduleGraph();
  for (const [module, deps] of graph) {
    if (module.startsWith("src/codec/")) {
      assert.deepEqual(deps.filter((d) => !d.startsWith("src/codec/")), [], module);
    }
    if (module.startsWith("src/topic/")) {
      assert.deepEqual(
        deps.filter((d) => !d.startsWith("src/topic/") && !d.startsWith("src/codec/")),
        [],
        module,
      );
    }
  }
});

Deno.test("handlers reach neither connection.ts nor broker.ts", async () => {
  const graph = await moduleGraph();
  const handlers = [...graph.keys()].filter((m) => m.startsWith("src/handlers/"));
  assert.ok(handlers.length >= 5, "the handlers are in the graph");
  for (const handler of handlers) {
    const reach = reachable(graph, handler);
    assert.ok(!reach.has("src/connection.ts"), `${handler} reaches connection.ts`);
    assert.ok(!reach.has("src/broker.ts"), `${handler} reaches broker.ts`);
  }
});
