import assert from "node:assert/strict";
import { isSharedFilter, parseSharedFilter, subscriptionFilterError } from "./shared.ts";

const ON = { sharedSubscriptions: true };
const OFF = { sharedSubscriptions: false };

Deno.test("shared: $share/{group}/{filter} is split into group and filter; other filters are not shared", () => {
  const cases: [string, { group: string; filter: string } | undefined][] = [
    ["$share/g/a/b", { group: "g", filter: "a/b" }],
    ["$share/g/#", { group: "g", filter: "#" }],
    ["$share/workers/+/x/#", { group: "workers", filter: "+/x/#" }],
    ["$share/g/$SYS/#", { group: "g", filter: "$SYS/#" }],
    ["$share/g", { group: "g", filter: "" }],
    ["$share/", { group: "", filter: "" }],
    ["$share//a", { group: "", filter: "a" }],
    ["$share", undefined],
    ["$sharex/g/a", undefined],
    ["$SHARE/g/a", undefined],
    ["a/$share/g/b", undefined],
    ["#", undefined],
  ];
  for (const [filter, parts] of cases) {
    assert.deepEqual(parseSharedFilter(filter), parts, filter);
    assert.equal(isSharedFilter(filter), parts !== undefined, filter);
  }
});

Deno.test("shared: subscription filters are checked with their reason code (0x8F invalid, 0x9E switched off) [MQTT-4.8.2-1] [MQTT-4.8.2-2]", () => {
  const cases: [string, number | undefined, number | undefined][] = [
    // filter, code with shared on, code with shared off
    ["a/b", undefined, undefined],
    ["a/#", undefined, undefined],
    ["$share/g/a/+", undefined, 0x9e],
    ["$share/g/#", undefined, 0x9e],
    ["$share/g", 0x8f, 0x9e], // no filter after the ShareName
    ["$share/g/", 0x8f, 0x9e], // an empty filter
    ["$share//a", 0x8f, 0x9e], // empty ShareName [MQTT-4.8.2-1]
    ["$share/g+/a", 0x8f, 0x9e], // wildcard in the ShareName [MQTT-4.8.2-2]
    ["$share/#/a", 0x8f, 0x9e],
    ["$share/+/a", 0x8f, 0x9e],
    ["$share/g/a#", 0x8f, 0x9e], // invalid inner filter
    ["$share/g/a/#/b", 0x8f, 0x9e],
    ["a#", 0x8f, 0x8f],
    ["", 0x8f, 0x8f],
    ["$share", undefined, undefined], // an ordinary filter
  ];
  for (const [filter, on, off] of cases) {
    assert.equal(subscriptionFilterError(filter, 65_535, 128, ON)?.reasonCode, on, `${filter} on`);
    assert.equal(
      subscriptionFilterError(filter, 65_535, 128, OFF)?.reasonCode,
      off,
      `${filter} off`,
    );
  }
  const error = subscriptionFilterError("$share//a", 65_535, 128, ON);
  assert.match(error!.reason, /ShareName.*\[MQTT-4\.8\.2-1\]/);
});

Deno.test("shared: the length and level limits count the whole $share string", () => {
  // "$share/g/" is 9 bytes and 2 levels.
  assert.equal(subscriptionFilterError("$share/g/abc", 12, 128, ON), undefined);
  assert.equal(subscriptionFilterError("$share/g/abcd", 12, 128, ON)?.reasonCode, 0x8f);
  assert.equal(subscriptionFilterError("$share/g/a/b", 65_535, 4, ON), undefined);
  assert.equal(subscriptionFilterError("$share/g/a/b/c", 65_535, 4, ON)?.reasonCode, 0x8f);
});
