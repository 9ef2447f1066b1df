import assert from "node:assert/strict";
import { Acl } from "./acl.ts";
import { runTool, withMosquitto } from "./_mosquitto_testing.ts";

const ACL = `
# General section: anonymous clients only.
topic read $SYS/broker/#
topic readwrite open/#
topic deny open/closed
topic deny dev/anon-blocked/#
topic read ctl/#

user alice
topic readwrite alice/#
topic deny alice/secret/#
topic read feed/#
topic write drop/+
topic read a/%u
topic read ctl/#

user bob
topic deny shared/bob-blocked
topic shared/#
topic read   spaced topic/x

user reader
topic read #

user sysadmin
topic read $SYS/#
topic readwrite $app/#
topic read ctl/#

user +
topic readwrite shared/#

user admin
topic readwrite #
topic readwrite $app/#

# Patterns apply to every client, wherever they stand.
pattern readwrite dev/%c/#
pattern deny dev/%c/locked
pattern read home/%u/#
pattern write out/%u/%c
pattern deny shared/%u/private

# A repeated section adds to the first.
user alice
topic read extra/#
`;

type Op = "pub" | "sub" | "read";

interface Row {
  /** undefined: anonymous. */
  user?: string;
  clientId: string;
  op: Op;
  /** Topic (pub, read) or filter (sub). */
  arg: string;
  expected: boolean;
  why: string;
  /** Cross-check against mosquitto 2.0.11; a string is the filter to subscribe with for "read". */
  mosquitto?: true | string;
  /** A deliberate difference: mosquitto 2.0.11 answers the opposite (checked too). */
  mosquittoDiffers?: true;
}

const alice = { user: "alice", clientId: "alice-phone" };
const bob = { user: "bob", clientId: "bob-1" };
const anon = { clientId: "anon1" };
const reader = { user: "reader", clientId: "reader-1" };
const sysadmin = { user: "sysadmin", clientId: "sys-1" };

const ROWS: Row[] = [
  // User sections, read vs write.
  {
    ...alice,
    op: "pub",
    arg: "alice/x",
    expected: true,
    why: "own readwrite rule",
    mosquitto: true,
  },
  { ...alice, op: "pub", arg: "alice", expected: true, why: '"alice/#" matches its parent' },
  { ...alice, op: "read", arg: "alice/x/y", expected: true, why: "own readwrite rule" },
  { ...alice, op: "pub", arg: "feed/a", expected: false, why: "read-only rule", mosquitto: true },
  { ...alice, op: "read", arg: "feed/a", expected: true, why: "read rule", mosquitto: true },
  { ...alice, op: "pub", arg: "drop/a", expected: true, why: "write rule", mosquitto: true },
  { ...alice, op: "pub", arg: "drop/a/b", expected: false, why: "+ is one level", mosquitto: true },
  { ...alice, op: "read", arg: "drop/a", expected: false, why: "write-only rule" },
  { ...alice, op: "pub", arg: "nothing/x", expected: false, why: "not granted is denied" },
  { ...alice, op: "read", arg: "extra/1", expected: true, why: "repeated user section adds up" },
  { ...alice, op: "read", arg: "a/%u", expected: true, why: "%u in a topic line is literal" },
  { ...alice, op: "read", arg: "a/alice", expected: false, why: "no substitution in topic lines" },
  // The general section is for anonymous clients only.
  {
    ...alice,
    op: "pub",
    arg: "open/x",
    expected: false,
    why: "general section does not apply to users",
    mosquitto: true,
  },
  { ...anon, op: "pub", arg: "open/x", expected: true, why: "general section", mosquitto: true },
  { ...anon, op: "pub", arg: "alice/x", expected: false, why: "user section not for anonymous" },
  { ...anon, op: "read", arg: "$SYS/broker/uptime", expected: true, why: "general $SYS rule" },
  { ...anon, op: "read", arg: "$SYS/other", expected: false, why: "outside the $SYS rule" },
  // Deny wins.
  {
    ...alice,
    op: "pub",
    arg: "alice/secret/x",
    expected: false,
    why: "deny after a broader grant still wins",
    mosquitto: true,
  },
  {
    ...alice,
    op: "read",
    arg: "alice/secret/x",
    expected: false,
    why: "deny also stops delivery through a wider subscription",
    mosquitto: "alice/#",
  },
  {
    ...alice,
    op: "pub",
    arg: "alice/secretive",
    expected: true,
    why: "alice/secret/# is per level",
  },
  { ...anon, op: "pub", arg: "open/closed", expected: false, why: "deny in the general section" },
  { ...bob, op: "pub", arg: "shared/x", expected: true, why: "no access word means readwrite" },
  { ...bob, op: "read", arg: "shared/x", expected: true, why: "no access word means readwrite" },
  { ...bob, op: "pub", arg: "shared/bob-blocked", expected: false, why: "deny before a grant" },
  {
    ...bob,
    op: "pub",
    arg: "shared/bob/private",
    expected: false,
    why:
      "a pattern deny beats a topic grant (mosquitto 2.0 lets the grant win; we follow its man page)",
    mosquitto: true,
    mosquittoDiffers: true,
  },
  { ...bob, op: "read", arg: "spaced topic/x", expected: true, why: "topics may contain spaces" },
  // Patterns with %c and %u.
  { ...alice, op: "pub", arg: "dev/alice-phone/x", expected: true, why: "%c pattern" },
  { ...anon, op: "pub", arg: "dev/anon1/x", expected: true, why: "%c applies to anonymous too" },
  {
    clientId: "dev1",
    op: "pub",
    arg: "dev/dev1/x",
    expected: true,
    why: "%c pattern",
    mosquitto: true,
  },
  {
    clientId: "dev1",
    op: "pub",
    arg: "dev/dev2/x",
    expected: false,
    why: "%c of another client",
    mosquitto: true,
  },
  {
    clientId: "dev1",
    op: "pub",
    arg: "dev/dev1/locked",
    expected: false,
    why: "pattern deny wins over pattern grant",
    mosquitto: true,
  },
  {
    clientId: "anon-blocked",
    op: "pub",
    arg: "dev/anon-blocked/x",
    expected: false,
    why: "own-section deny wins over a pattern grant",
    mosquitto: true,
  },
  {
    ...alice,
    op: "read",
    arg: "home/alice/x",
    expected: true,
    why: "%u pattern",
    mosquitto: true,
  },
  { ...alice, op: "pub", arg: "home/alice/x", expected: false, why: "%u pattern is read-only" },
  { ...alice, op: "read", arg: "home/bob/x", expected: false, why: "%u of another user" },
  {
    ...anon,
    op: "read",
    arg: "home/anon1/x",
    expected: false,
    why: "%u never applies to anonymous",
  },
  { ...alice, op: "pub", arg: "out/alice/alice-phone", expected: true, why: "%u and %c" },
  { ...alice, op: "pub", arg: "out/alice/other", expected: false, why: "%c mismatch" },
  {
    user: "mallory",
    clientId: "m1",
    op: "pub",
    arg: "dev/m1/x",
    expected: true,
    why: "patterns apply to users without a section",
  },
  {
    user: "mallory",
    clientId: "m1",
    op: "pub",
    arg: "open/x",
    expected: false,
    why: "no section: only patterns",
  },
  // Names that must not widen access.
  {
    user: "ev+il",
    clientId: "c1",
    op: "pub",
    arg: "dev/c1/x",
    expected: false,
    why: "a user name with + gets no pattern access",
    mosquitto: true,
  },
  {
    user: "ok",
    clientId: "c#1",
    op: "read",
    arg: "home/ok/x",
    expected: false,
    why: "a client id with # gets no pattern access",
  },
  {
    user: "sl/ash",
    clientId: "c2",
    op: "read",
    arg: "home/sl/ash/x",
    expected: false,
    why: "a / in %u skips that pattern",
  },
  {
    user: "sl/ash",
    clientId: "c2",
    op: "pub",
    arg: "dev/c2/x",
    expected: true,
    why: "other patterns still apply",
  },
  {
    user: "sl/ash",
    clientId: "c2",
    op: "pub",
    arg: "out/sl/ash/c2",
    expected: false,
    why: "a / in %u would reach into user sl's levels (mosquitto 2.0 substitutes it)",
    mosquitto: true,
    mosquittoDiffers: true,
  },
  {
    user: "alice",
    clientId: "a/b",
    op: "pub",
    arg: "dev/a/b/x",
    expected: false,
    why: "a / in %c skips that pattern",
  },
  {
    user: "alice",
    clientId: "a/b",
    op: "pub",
    arg: "alice/x",
    expected: true,
    why: "own section still applies",
  },
  {
    user: "",
    clientId: "c3",
    op: "read",
    arg: "home//x",
    expected: false,
    why: "an empty %u skips the pattern",
  },
  { user: "+", clientId: "c4", op: "pub", arg: "shared/x", expected: true, why: "own section" },
  {
    user: "+",
    clientId: "c4",
    op: "pub",
    arg: "shared/anything/private",
    expected: false,
    why: "deny patterns substitute plainly: + only widens the deny",
  },
  // The $ rule [MQTT-4.7.2-1].
  { ...reader, op: "read", arg: "anything/x", expected: true, why: "read #" },
  { ...reader, op: "pub", arg: "anything/x", expected: false, why: "read # is read-only" },
  {
    ...reader,
    op: "read",
    arg: "$SYS/broker/uptime",
    expected: false,
    why: "# does not grant $SYS",
  },
  {
    ...reader,
    op: "read",
    arg: "$app/x",
    expected: false,
    why: "# does not grant $-topics",
    mosquitto: "#",
  },
  { ...sysadmin, op: "read", arg: "$SYS/broker/load", expected: true, why: "explicit $SYS rule" },
  {
    ...sysadmin,
    op: "read",
    arg: "$app/x",
    expected: true,
    why: "explicit $ rule",
    mosquitto: "$app/#",
  },
  { ...sysadmin, op: "pub", arg: "$app/x", expected: true, why: "explicit $ rule" },
  // Subscribe: the ACL rule must cover the filter.
  { ...alice, op: "sub", arg: "alice/#", expected: true, why: "same filter" },
  { ...alice, op: "sub", arg: "alice/+/c", expected: true, why: "alice/# covers alice/+/c" },
  { ...alice, op: "sub", arg: "alice", expected: true, why: "alice/# covers alice" },
  {
    ...alice,
    op: "sub",
    arg: "alice/+",
    expected: true,
    why: "overlaps a deny without being covered: filtered at delivery",
  },
  { ...alice, op: "sub", arg: "alice/secret/#", expected: false, why: "covered by a deny" },
  { ...alice, op: "sub", arg: "alice/secret/x", expected: false, why: "covered by a deny" },
  { ...alice, op: "sub", arg: "feed/#", expected: true, why: "read rule" },
  { ...alice, op: "sub", arg: "drop/a", expected: false, why: "write-only rule" },
  { ...alice, op: "sub", arg: "#", expected: false, why: "no rule covers #" },
  { ...alice, op: "sub", arg: "+/x", expected: false, why: "no rule covers +/x" },
  { ...alice, op: "sub", arg: "home/alice/#", expected: true, why: "%u pattern covers it" },
  {
    ...alice,
    op: "sub",
    arg: "home/+/#",
    expected: false,
    why: "pattern is narrower than the filter",
  },
  { ...anon, op: "sub", arg: "open/+", expected: true, why: "open/# covers open/+" },
  { ...anon, op: "sub", arg: "open/closed", expected: false, why: "covered by a deny" },
  { ...anon, op: "sub", arg: "$SYS/broker/+", expected: true, why: "$SYS/broker/# covers it" },
  { ...anon, op: "sub", arg: "$SYS/#", expected: false, why: "wider than $SYS/broker/#" },
  { ...reader, op: "sub", arg: "#", expected: true, why: "read #" },
  { ...reader, op: "sub", arg: "+/x/#", expected: true, why: "# covers everything without $" },
  {
    ...reader,
    op: "sub",
    arg: "$SYS/#",
    expected: false,
    why: "# does not cover $SYS [MQTT-4.7.2-1]",
  },
  { ...sysadmin, op: "sub", arg: "$SYS/+/load", expected: true, why: "$SYS/# covers it" },
  { ...sysadmin, op: "sub", arg: "#", expected: false, why: "$SYS/# does not cover #" },
  { ...bob, op: "sub", arg: "shared/#", expected: true, why: "readwrite rule" },
  {
    ...bob,
    op: "sub",
    arg: "shared/bob/private",
    expected: false,
    why: "covered by a pattern deny",
  },
];

function check(acl: Acl, row: Row): boolean {
  const client = acl.forClient(row.user, row.clientId);
  if (row.op === "pub") return client.canPublish(row.arg);
  if (row.op === "sub") return client.canSubscribe(row.arg);
  return client.canRead(row.arg);
}

function describe(row: Row): string {
  const who = row.user === undefined ? "anonymous" : JSON.stringify(row.user);
  const differs = row.mosquittoDiffers ? ", mosquitto 2.0.11 differs" : "";
  return `${who} (${row.clientId}) ${row.op} ${row.arg}: expected ${row.expected} (${row.why}${differs})`;
}

Deno.test("Acl follows mosquitto's acl_file semantics (table) [MQTT-4.7.2-1]", () => {
  const acl = Acl.parse(ACL, "acl");
  for (const row of ROWS) assert.equal(check(acl, row), row.expected, describe(row));
});

Deno.test("Acl with no rules denies everything; without patterns users without a section get nothing", () => {
  const empty = Acl.parse("# nothing\n\n").forClient("alice", "c");
  assert.equal(empty.canPublish("a"), false);
  assert.equal(empty.canRead("a"), false);
  assert.equal(empty.canSubscribe("#"), false);
  const acl = Acl.parse("user alice\ntopic #\n");
  assert.equal(acl.forClient("alice", "c").canPublish("x/y"), true);
  assert.equal(acl.forClient("bob", "c").canPublish("x/y"), false);
  assert.equal(acl.forClient(undefined, "c").canRead("x/y"), false);
});

Deno.test("Acl.parse refuses bad lines and names the file and line", () => {
  const rows: [string, RegExp][] = [
    ["topik a/b", /^acl\.txt:1: unknown keyword "topik" \(expected user, topic or pattern\)$/],
    ["# c\n\nuser\n", /^acl\.txt:3: "user" needs a user name$/],
    ["topic", /^acl\.txt:1: "topic" needs a topic filter$/],
    ["pattern   ", /^acl\.txt:1: "pattern" needs a topic filter$/],
    ["topic read", /^acl\.txt:1: "topic read" needs a topic filter$/],
    ["topic deny", /^acl\.txt:1: "topic deny" needs a topic filter$/],
    ["topic rw a/b", /^acl\.txt:1: bad access "rw" \(expected read, write, readwrite or deny\)$/],
    ["topic toString a/b", /^acl\.txt:1: bad access "toString"/],
    ["topic read a/#/b", /^acl\.txt:1: invalid topic filter "a\/#\/b": .*MQTT-4\.7\.1-2/],
    ["topic read a+/b", /^acl\.txt:1: invalid topic filter "a\+\/b": .*MQTT-4\.7\.1-3/],
    ["topic read a#", /^acl\.txt:1: invalid topic filter "a#"/],
    [
      "pattern read a/x%u",
      /^acl\.txt:1: "x%u" in "a\/x%u": %u and %c must be a whole topic level$/,
    ],
    ["pattern read a/%u%c/b", /^acl\.txt:1: "%u%c" in "a\/%u%c\/b"/],
    [
      "user a\ntopic a/b\n  topic   read b/+\ntopic write c/#/d",
      /^acl\.txt:4: invalid topic filter/,
    ],
  ];
  for (const [text, expected] of rows) {
    assert.throws(() => Acl.parse(text, "acl.txt"), (error: unknown) => {
      assert.ok(error instanceof SyntaxError, `${text}: ${error}`);
      assert.match(error.message, expected, text);
      return true;
    });
  }
});

Deno.test("Acl.parse accepts CRLF, indentation, tabs and trailing spaces", () => {
  const acl = Acl.parse("\tuser alice  \r\n  topic\tread\t a/b \r\n# x\r\n");
  assert.equal(acl.forClient("alice", "c").canRead("a/b"), true);
  assert.equal(acl.forClient("alice", "c").canPublish("a/b"), false);
});

Deno.test("Acl.load names the missing file", async () => {
  await assert.rejects(Acl.load("/nonexistent/acl"), (error: unknown) => {
    assert.ok(error instanceof Deno.errors.NotFound);
    assert.match(error.message, /\/nonexistent\/acl/);
    return true;
  });
});

// --- Cross-check against the real mosquitto ---------------------------------------------------

/** Runs a mosquitto client; a non-zero exit is an error here. */
async function run(command: string, args: string[]): Promise<string> {
  const { code, output } = await runTool(command, args);
  if (code !== 0) throw new Error(`${command} ${args.join(" ")} exited ${code}: ${output}`);
  return output;
}

function clientArgs(port: number, user: string | undefined, clientId: string): string[] {
  const args = ["-h", "127.0.0.1", "-p", String(port), "-V", "mqttv311", "-i", clientId];
  return user === undefined ? args : [...args, "-u", user];
}

/**
 * Whether mosquitto lets the row through. A subscriber (the row's client for "read", an admin
 * for "pub") subscribes to the probe's filter and to ctl/done; the probe is published, then a
 * marker on ctl/done. The subscriber exits after one message: the probe if it was let through,
 * otherwise the marker. No timeouts decide the answer.
 */
async function mosquittoAllows(port: number, row: Row, n: number): Promise<boolean> {
  const reading = row.op === "read";
  const filter = reading && typeof row.mosquitto === "string" ? row.mosquitto : row.arg;
  // stdbuf: mosquitto_sub block-buffers a piped stdout, which would hide "Subscribed" until exit.
  const subscriber = new Deno.Command("stdbuf", {
    args: [
      ...["-oL", "mosquitto_sub"],
      ...(reading ? clientArgs(port, row.user, row.clientId) : clientArgs(port, "admin", "watch")),
      ...["-t", filter, "-t", "ctl/done", "-C", "1", "-W", "20", "-F", "%t|%p", "-d"],
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const decoder = new TextDecoder();
  let output = "";
  const reader = subscriber.stdout.getReader();
  try {
    while (!output.includes("Subscribed (mid")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`mosquitto_sub ended before subscribing: ${output}`);
      output += decoder.decode(value, { stream: true });
    }
    const probe = `probe-${n}`;
    const publisher = reading
      ? clientArgs(port, "admin", "admin-pub")
      : clientArgs(port, row.user, row.clientId);
    await run("mosquitto_pub", [...publisher, "-q", "1", "-t", row.arg, "-m", probe]);
    await run("mosquitto_pub", [
      ...clientArgs(port, "admin", "admin-pub"),
      ...["-q", "1", "-t", "ctl/done", "-m", "done"],
    ]);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      output += decoder.decode(value, { stream: true });
    }
  } finally {
    reader.releaseLock();
    await subscriber.stdout.cancel().catch(() => {});
    await subscriber.status;
  }
  const got = output.split("\n").filter((line) => line.includes("|"));
  assert.equal(got.length, 1, `one message expected: ${output}`);
  return got[0] === `${row.arg}|probe-${n}`;
}

Deno.test("Acl agrees with mosquitto 2.0.11 on the trickiest rows (and differs where meant to)", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "acl_test_" });
  await Deno.writeTextFile(`${dir}/acl`, ACL);
  try {
    // No password file: user names are taken as given.
    await withMosquitto(dir, ["allow_anonymous true", `acl_file ${dir}/acl`], async (port) => {
      const acl = Acl.parse(ACL, "acl");
      const rows = ROWS.filter((row) => row.mosquitto !== undefined);
      assert.ok(rows.length >= 12);
      let n = 0;
      for (const row of rows) {
        await t.step(describe(row), async () => {
          const ours = check(acl, row);
          const mosquitto = await mosquittoAllows(port, row, n++);
          const theirs = row.mosquittoDiffers ? !row.expected : row.expected;
          assert.deepEqual({ ours, mosquitto }, { ours: row.expected, mosquitto: theirs });
        });
      }
      await t.step(
        "SUBSCRIBE: mosquitto 2.0.11 grants any filter, we refuse uncovered ones",
        async () => {
          const suback = async (user: string, filter: string) => {
            const output = await run("mosquitto_sub", [
              ...clientArgs(port, user, `${user}-sub`),
              ...["-t", filter, "-E", "-d"],
            ]);
            return /Subscribed \(mid: \d+\): (\d+)/.exec(output)?.[1];
          };
          assert.equal(await suback("alice", "#"), "0");
          assert.equal(await suback("alice", "alice/secret/#"), "0");
          assert.equal(acl.forClient("alice", "alice-sub").canSubscribe("#"), false);
          assert.equal(acl.forClient("alice", "alice-sub").canSubscribe("alice/secret/#"), false);
        },
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
