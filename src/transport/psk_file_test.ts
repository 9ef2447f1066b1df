import assert from "node:assert/strict";
import { formatPskFile, loadPskFile, parsePskFile } from "./psk_file.ts";

const KEY = "00112233445566778899aabbccddeeff";

Deno.test("parsePskFile reads entries, skipping empty lines, CRLF or LF", () => {
  const entries = parsePskFile(`\nsensor-1:${KEY}\r\n\r\nsensor-2:${KEY.toUpperCase()}ff\n`);
  assert.equal(entries.length, 2);
  assert.equal(entries[0].identity, "sensor-1");
  assert.deepEqual(entries[0].key, Uint8Array.from({ length: 16 }, (_, i) => i * 0x11));
  assert.equal(entries[1].identity, "sensor-2");
  assert.equal(entries[1].key.length, 17);
  assert.equal(entries[1].key[16], 0xff);
});

Deno.test("parsePskFile splits at the first colon only", () => {
  // The key part cannot hold a colon, so "a:b:KEY" is a bad key, not identity "a:b".
  assert.throws(() => parsePskFile(`a:b:${KEY}`, "f"), /f: line 1: key of "a" is not hex/);
});

Deno.test("parsePskFile refuses bad lines, naming the source and the line", () => {
  const cases: [string, RegExp][] = [
    [`ok:${KEY}\nno-colon-here`, /^SyntaxError: Cannot read psk\.txt: line 2: missing ":"/],
    [`:${KEY}`, /line 1: empty identity/],
    [`id :${KEY}`, /line 1: identity has leading or trailing whitespace/],
    // What stunnel reads differently from how it looks: refused, not silently another key.
    [`# sensors\nid:${KEY}`, /line 1: comments are not allowed \(stunnel reads this file/],
    [`id:${KEY}\n  # indented`, /line 2: comments are not allowed/],
    [`id:${KEY} `, /line 1: leading or trailing whitespace \(stunnel would keep it\)/],
    [` id:${KEY}`, /line 1: leading or trailing whitespace/],
    [`id: ${KEY}`, /line 1: key of "id" has leading or trailing whitespace/],
    [`id:${KEY}\n \n`, /line 2: leading or trailing whitespace/],
    [`id:${KEY}0`, /line 1: key of "id" has an odd number of hex digits/],
    [`id:${KEY.slice(2)}zz`, /line 1: key of "id" is not hex/],
    [`id:${KEY.slice(2)}`, /line 1: key of "id" is 15 bytes; at least 16 bytes \(32 hex digits\)/],
    [`id:${"ab".repeat(513)}`, /line 1: key of "id" is 513 bytes; at most 512/],
    [`${"i".repeat(256)}:${KEY}`, /line 1: identity longer than 255 bytes/],
    [`\nid:${KEY}\n\nid:${KEY}`, /line 4: duplicate identity "id" \(first on line 2\)/],
  ];
  for (const [text, pattern] of cases) {
    assert.throws(() => parsePskFile(text, "psk.txt"), (e: Error) => {
      assert.ok(e instanceof SyntaxError);
      assert.match(String(e), pattern);
      return true;
    }, text);
  }
});

Deno.test("parsePskFile accepts the longest key and identity stunnel reads", () => {
  const [entry] = parsePskFile(`${"i".repeat(255)}:${"ab".repeat(512)}`);
  assert.equal(entry.identity.length, 255);
  assert.equal(entry.key.length, 512);
});

Deno.test("formatPskFile writes what parsePskFile reads", () => {
  const entries = parsePskFile(`a:${KEY}\nb:${"0f".repeat(32)}\n`);
  assert.equal(formatPskFile(entries), `a:${KEY}\nb:${"0f".repeat(32)}\n`);
  assert.deepEqual(parsePskFile(formatPskFile(entries)), entries);
});

Deno.test("loadPskFile names the path on a bad line, a missing file and an empty file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const bad = `${dir}/bad.txt`;
    await Deno.writeTextFile(bad, `good:${KEY}\nbad:123\n`);
    await assert.rejects(loadPskFile(bad), (e: Error) => {
      assert.equal(
        e.message,
        `Cannot read ${bad}: line 2: key of "bad" has an odd number of hex digits`,
      );
      return true;
    });
    await assert.rejects(loadPskFile(`${dir}/missing.txt`), /Cannot read PSK file .*missing\.txt/);
    const empty = `${dir}/empty.txt`;
    await Deno.writeTextFile(empty, "\n\n");
    await assert.rejects(loadPskFile(empty), /no "identity:hexkey" entry/);
    const good = `${dir}/good.txt`;
    await Deno.writeTextFile(good, `good:${KEY}\n`);
    assert.deepEqual((await loadPskFile(good)).map((e) => e.identity), ["good"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
