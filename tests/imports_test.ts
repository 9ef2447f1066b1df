/**
 * Keeps the module importable from a URL: mod.ts, cli.ts and every file under src/ may import
 * only relative paths, `node:` builtins and exactly versioned `npm:` packages. A bare or `jsr:`
 * specifier would be resolved through an import map, and an importer's map wins over ours.
 */
import assert from "node:assert/strict";

const ROOT = new URL("..", import.meta.url);

/** One specifier the scanner found, with where. */
interface Found {
  line: number;
  specifier: string;
}

// Exactly versioned: npm:name@1.2.3 or npm:@scope/name@1.2.3, optionally a prerelease and a subpath.
const VERSIONED_NPM =
  /^npm:(?:@[a-z0-9][\w.-]*\/)?[a-z0-9][\w.-]*@\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\/[^\s]*)?$/;

/** Whether an import specifier keeps the module importable from a URL. */
function isAllowedSpecifier(specifier: string): boolean {
  return specifier.startsWith("./") || specifier.startsWith("../") ||
    /^node:[a-z_/]+$/.test(specifier) || VERSIONED_NPM.test(specifier);
}

function lineOf(source: string, index: number): number {
  let line = 1;
  for (let i = 0; i < index; i++) if (source.charCodeAt(i) === 10) line++;
  return line;
}

/**
 * Every module specifier in TypeScript source: static imports and re-exports (also spanning
 * lines), side-effect imports, dynamic `import("…")`, `@deno-types` and triple-slash references.
 * Comments are blanked first (keeping line numbers), so examples in JSDoc do not count.
 */
function findSpecifiers(source: string): Found[] {
  const found: Found[] = [];
  // Directives live in comments: take them before the comments go.
  const directives = [
    /@deno-types\s*=\s*["']([^"']+)["']/g,
    /^\s*\/\/\/\s*<reference\s+(?:types|path|lib)\s*=\s*["']([^"']+)["']/gm,
  ];
  for (const pattern of directives) {
    for (const m of source.matchAll(pattern)) {
      found.push({ line: lineOf(source, m.index!), specifier: m[1] });
    }
  }
  const blank = (s: string) => s.replace(/[^\n]/g, " ");
  const code = source
    .replace(/\/\*[\s\S]*?\*\//g, blank)
    // A line comment: "//" not preceded by ":" (URLs in strings) or a quote character.
    .replace(
      /(^|[^:"'`\\])\/\/[^\n]*/g,
      (m, before: string) => before + blank(m.slice(before.length)),
    );
  const patterns = [
    // import x from "…", import { a, b } from "…", import type …, export { … } from "…", export * from "…"
    /(?:^|[;\s}])(?:import|export)\s+(?!\()(?:type\s+)?[^;"'`]*?\sfrom\s*["']([^"']+)["']/g,
    // import "…"
    /(?:^|[;\s}])import\s*["']([^"']+)["']/g,
    // import("…"), await import(`…`)
    /\bimport\s*\(\s*["'`]([^"'`]+)["'`]/g,
  ];
  for (const pattern of patterns) {
    for (const m of code.matchAll(pattern)) {
      found.push({ line: lineOf(code, m.index! + m[0].indexOf(m[1])), specifier: m[1] });
    }
  }
  return found.sort((a, b) => a.line - b.line);
}

/** The offending specifiers of one source text, as "line: specifier". */
function badImports(source: string): string[] {
  return findSpecifiers(source)
    .filter((f) => !isAllowedSpecifier(f.specifier))
    .map((f) => `${f.line}: ${f.specifier}`);
}

async function* sourceFiles(dir: URL): AsyncGenerator<URL> {
  for await (const entry of Deno.readDir(dir)) {
    const url = new URL(entry.name + (entry.isDirectory ? "/" : ""), dir);
    if (entry.isDirectory) yield* sourceFiles(url);
    else if (/\.(ts|tsx|js|mjs|mts|jsx)$/.test(entry.name)) yield url;
  }
}

Deno.test("mod.ts, cli.ts and src/ import only relative, node: or versioned npm: specifiers", async () => {
  const files = [new URL("mod.ts", ROOT), new URL("cli.ts", ROOT)];
  for await (const file of sourceFiles(new URL("src/", ROOT))) files.push(file);
  assert.ok(files.length > 10, `expected the source tree, found ${files.length} files`);
  const problems: string[] = [];
  let specifiers = 0;
  for (const file of files) {
    const source = await Deno.readTextFile(file);
    specifiers += findSpecifiers(source).length;
    const relative = file.pathname.slice(ROOT.pathname.length);
    for (const bad of badImports(source)) problems.push(`${relative}:${bad}`);
  }
  assert.ok(specifiers > files.length, `the scanner found only ${specifiers} specifiers`);
  assert.deepEqual(
    problems,
    [],
    `imports that break importing from a URL:\n${problems.join("\n")}`,
  );
});

Deno.test("the import scanner flags what it must and accepts what it may (self-check)", () => {
  const bad = [
    `import { assertEquals } from "jsr:@std/assert";`,
    `import { assertEquals } from "@std/assert";`,
    `import mqtt from "npm:mqtt";`,
    `import mqtt from "npm:mqtt@5";`,
    `import mqtt from "npm:mqtt@^5.16.0";`,
    `import x from "npm:@scope/pkg@latest";`,
    `export * from "https://deno.land/std/path/mod.ts";`,
    `export { a } from "lodash";`,
    `import "side-effect";`,
    `const m = await import("jsr:@std/path");`,
    `import {\n  a,\n  b,\n} from "mqtt-packet";`,
    `import type { T } from "#internal";`,
    `// @deno-types="npm:@types/foo"\nimport foo from "./foo.js";`,
  ];
  for (const source of bad) {
    assert.equal(badImports(source).length, 1, `should be flagged: ${source}`);
  }
  assert.deepEqual(badImports(`import a from "./a.ts";\nimport b from "jsr:@std/b";`), [
    "2: jsr:@std/b",
  ]);
  const good = [
    `import { Broker } from "./src/broker.ts";`,
    `import type { Limits } from "../options.ts";`,
    `export { Decoder } from "./codec/decoder.ts";`,
    `export * from "./x.ts";`,
    `import { parseArgs } from "node:util";`,
    `import assert from "node:assert/strict";`,
    `import mqtt from "npm:mqtt@5.16.0";`,
    `import x from "npm:@scope/pkg@1.2.3-beta.1/sub/path";`,
    `const m = await import("./lazy.ts");`,
    `/** @example\n * import { x } from "jsr:@std/assert";\n */`,
    `// import { x } from "jsr:@std/assert";`,
    `const url = "https://example.com/a"; // "import x from 'y'"`,
    `const s = "import(not a specifier)";`,
  ];
  for (const source of good) {
    assert.deepEqual(badImports(source), [], `should pass: ${source}`);
  }
  // And it does find the good ones (so an empty result above is not a scanner that sees nothing).
  assert.equal(findSpecifiers(good.slice(0, 9).join("\n")).length, 9);
});
