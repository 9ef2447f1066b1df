import assert from "node:assert/strict";
import { type ConfReader, MosquittoConfError, parseMosquittoConf } from "./mosquitto_conf.ts";
import { parseListeners } from "./listeners.ts";
import { parseCliArgs } from "../cli_args.ts";
import { mapIncoming, mapOutgoing, parseBridges } from "../bridge/bridge_config.ts";

/** A reader over an in-memory tree of files. */
function memoryReader(files: Record<string, string>): ConfReader {
  return {
    readTextFile: (path) => {
      if (!(path in files)) throw new Deno.errors.NotFound(`no ${path}`);
      return files[path];
    },
    readDir: (dir) => {
      const names = Object.keys(files).filter((p) => p.startsWith(dir + "/"));
      if (names.length === 0) throw new Deno.errors.NotFound(`no ${dir}`);
      return names.map((p) => p.slice(dir.length + 1));
    },
    hostname: () => "gw",
  };
}

function parse(text: string, files: Record<string, string> = {}) {
  return parseMosquittoConf(text, "m.conf", memoryReader(files));
}

function refused(text: string, line: number, directive: string, why: RegExp): void {
  assert.throws(() => parse(text), (error: unknown) => {
    assert.ok(error instanceof MosquittoConfError, String(error));
    assert.equal(error.line, line);
    assert.equal(error.directive, directive);
    assert.match(error.message, new RegExp(`^m\\.conf:${line}: ${directive}: `));
    assert.match(error.message, why);
    assert.ok(!error.message.includes("\n"), "one line");
    return true;
  });
}

for (
  const path of [
    "/usr/share/doc/mosquitto/examples/mosquitto.conf",
    "/etc/mosquitto/mosquitto.conf",
  ]
) {
  let text: string | undefined;
  try {
    text = Deno.readTextFileSync(path);
  } catch {
    text = undefined;
  }
  Deno.test({
    name: `mosquitto.conf: Debian's ${path} parses (local only, anonymous allowed)`,
    ignore: text === undefined,
    fn() {
      // include_dir of the real file is read from disk: conf.d holds only a README.
      const conf = parseMosquittoConf(text!, path);
      assert.deepEqual(conf.listeners, [{ host: "127.0.0.1", port: 1883 }]);
      assert.equal(conf.auth.allowAnonymous, true);
      assert.equal(conf.bridges.length, 0);
      if (path.startsWith("/etc")) {
        assert.equal(conf.settings.dataDir, "/var/lib/mosquitto");
        assert.ok(conf.notes.some((n) => /pid_file: ignored/.test(n)), conf.notes.join("\n"));
        assert.ok(conf.notes.some((n) => /log_dest file: ignored/.test(n)), conf.notes.join("\n"));
      }
    },
  });
}

Deno.test("mosquitto.conf: comments only at column 1, no continuations, trailing spaces trimmed", () => {
  const conf = parse(
    "# a comment\n\n   \nlistener 1883 127.0.0.1\r\npassword_file /etc/pw   \nallow_anonymous true # as mosquitto reads it\n",
  );
  assert.equal(conf.auth.passwordFile, "/etc/pw");
  assert.equal(conf.auth.allowAnonymous, true);
  // An indented "#" is a directive "#", as in mosquitto 2.0.
  refused("listener 1883\n  # indented\n", 2, "#", /unknown directive/);
  // A tab is not a separator: the directive is "\tallow_anonymous".
  refused("listener 1883\n\tallow_anonymous true\n", 2, "\tallow_anonymous", /unknown directive/);
  // No line continuations: the next line is a directive of its own.
  refused("listener 1883\npassword_file /a \\\n/b\n", 3, "/b", /unknown directive/);
});

Deno.test("mosquitto.conf: bad values and repeated strings name file:line and the directive", () => {
  refused("allow_anonymous yes\n", 1, "allow_anonymous", /expected true or false/);
  refused("max_queued_messages abc\n", 1, "max_queued_messages", /expected an integer/);
  refused("max_inflight_messages 70000\n", 1, "max_inflight_messages", /between 0 and 65535/);
  refused("sys_interval -1\n", 1, "sys_interval", /between 0 and 65535/);
  refused("password_file /a\npassword_file /b\n", 2, "password_file", /given twice/);
  refused("allow_anonymous true extra\n", 1, "allow_anonymous", /unexpected "extra"/);
  refused("no_such_thing 1\n", 1, "no_such_thing", /unknown directive/);
  refused("persistent_client_expiration 3x\n", 1, "persistent_client_expiration", /h, d, w/);
  // Repeated bool/int directives: the last one wins, as in mosquitto.
  assert.equal(
    parse("listener 1\nallow_anonymous true\nallow_anonymous false\n").auth.allowAnonymous,
    false,
  );
});

Deno.test("mosquitto.conf: what cannot be honoured refuses to start", () => {
  const l = "listener 8883\ncertfile c.pem\nkeyfile k.pem\n";
  refused(l + "require_certificate true\n", 4, "require_certificate", /needs cafile/);
  refused(
    "listener 8883\nprotocol websockets\ncertfile c\nkeyfile k\ncafile ca\nrequire_certificate true\n",
    6,
    "require_certificate",
    /Deno\.serve/,
  );
  assert.deepEqual(parse(l + "cafile /ca.pem\nrequire_certificate true\n").listeners[0].tls, {
    certFile: "c.pem",
    keyFile: "k.pem",
    caFile: "/ca.pem",
    requireCertificate: true,
  });
  refused(l + "use_identity_as_username true\n", 4, "use_identity_as_username", /cannot be/);
  refused("listener 1883\nmount_point a/\n", 2, "mount_point", /outside the mount point/);
  refused("plugin /usr/lib/x.so\n", 1, "plugin", /plugins/);
  refused("auth_opt_x 1\n", 1, "auth_opt_x", /plugins/);
  refused("clientid_prefixes gw-\n", 1, "clientid_prefixes", /any client id/);
  refused(
    "connection a\naddress h\ntopic #\nbridge_insecure true\n",
    4,
    "bridge_insecure",
    /always/,
  );
  refused(
    "listener 1\nlistener 2\nallow_anonymous true\nper_listener_settings true\n",
    4,
    "per_listener_settings",
    /before/,
  );
  // false is harmless and accepted.
  assert.equal(parse(l + "require_certificate false\n").listeners.length, 1);
});

Deno.test("mosquitto.conf: listeners with address, protocol, TLS, PSK and max_connections", () => {
  const conf = parse(
    [
      "per_listener_settings true",
      "listener 1883 127.0.0.1",
      "allow_anonymous true",
      "listener 8883",
      "socket_domain ipv6",
      "certfile /c.pem",
      "keyfile /k.pem",
      "cafile /ca.pem",
      "password_file /pw",
      "acl_file /acl",
      "max_connections 10",
      "listener 8080 0.0.0.0",
      "protocol websockets",
      "max_connections -1",
      "listener 8884",
      "psk_hint hint",
      "psk_file /psk",
    ].join("\n"),
  );
  assert.equal(conf.perListenerSettings, true);
  assert.deepEqual(conf.listeners, [
    { port: 1883, host: "127.0.0.1", auth: { allowAnonymous: true } },
    {
      port: 8883,
      socketDomain: "ipv6",
      tls: { certFile: "/c.pem", keyFile: "/k.pem" },
      auth: { passwordFile: "/pw", aclFile: "/acl", allowAnonymous: false },
      maxConnections: 10,
    },
    { port: 8080, host: "0.0.0.0", protocol: "websockets", auth: { allowAnonymous: false } },
    { port: 8884, pskFile: "/psk", auth: { allowAnonymous: false } },
  ]);
  assert.ok(conf.notes.some((n) => n.startsWith("m.conf:8: cafile: ignored")));
  refused("listener 1\ncertfile /c\n", 1, "listener", /go together/);
  refused("listener 1\npsk_hint h\n", 1, "psk_hint", /needs psk_file/);
});

Deno.test("mosquitto.conf: without per_listener_settings, security is broker-wide wherever it appears", () => {
  const conf = parse("listener 1883\nlistener 1884\npassword_file /pw\nacl_file /acl\n");
  assert.deepEqual(conf.auth, { passwordFile: "/pw", aclFile: "/acl", allowAnonymous: false });
  assert.deepEqual(conf.listeners, [{ port: 1883 }, { port: 1884 }]);
});

Deno.test("mosquitto.conf: port and bind_address make the default listener; limits map", () => {
  const conf = parse(
    [
      "port 1999",
      "bind_address 127.0.0.1",
      "persistence true",
      "persistence_location /var/lib/m/",
      "autosave_interval 1800",
      "max_inflight_messages 0",
      "max_queued_messages 50",
      "max_queued_bytes 1000",
      "message_size_limit 1000",
      "persistent_client_expiration 2d",
      "sys_interval 0",
      "retain_available false",
      "log_type error",
      "log_type notice",
      "log_dest stderr",
      "connection_messages false",
    ].join("\n"),
  );
  assert.deepEqual(conf.listeners, [{ port: 1999, host: "127.0.0.1" }]);
  assert.equal(conf.settings.dataDir, "/var/lib/m");
  assert.equal(conf.settings.sysIntervalS, 0);
  assert.equal(conf.settings.logLevel, "info");
  assert.equal(conf.settings.logConnections, false);
  assert.deepEqual(conf.settings.limits, {
    maxInflight: 65535,
    maxQueued: 50,
    maxQueuedBytes: 1000,
    maxPacketSize: 1000 + 65_544,
    sessionExpiryMs: 2 * 86_400_000,
    maxRetained: 0,
  });
  assert.ok(conf.notes.some((n) => /autosave_interval: ignored/.test(n)));
  assert.equal(
    parse("max_packet_size 2000\nmessage_size_limit 10\n").settings.limits.maxPacketSize,
    2000,
  );
});

Deno.test("mosquitto.conf: include_dir reads *.conf in sorted order, each file from the default listener", () => {
  const conf = parse("listener 1883\ninclude_dir /d\nallow_anonymous true\n", {
    "/d/b.conf": "listener 1885\n",
    "/d/A.conf": "listener 1884\n",
    "/d/c.txt": "garbage\n",
  });
  assert.deepEqual(conf.listeners.map((l) => l.port), [1883, 1884, 1885]);
  assert.throws(
    () => parse("include_dir /d\n", { "/d/x.conf": "listener 1\nbogus 2\n" }),
    /^MosquittoConfError: \/d\/x\.conf:2: bogus: unknown directive$/,
  );
  assert.throws(() => parse("include_dir /nowhere\n", {}), /m\.conf:1: include_dir: cannot read/);
});

Deno.test("mosquitto.conf: connection sections with mosquitto's topic syntax and defaults", () => {
  const conf = parse(
    [
      "listener 1883",
      "connection central",
      "address 10.0.0.1:1884 10.0.0.2",
      "round_robin true",
      "bridge_protocol_version mqttv50",
      "remote_username gw",
      "remote_password secret",
      "cleansession true",
      "keepalive_interval 30",
      "restart_timeout 2 20",
      "try_private false",
      "notifications false",
      "topic sensors/# out 1",
      "topic cmd/# in 2 gw/ site/",
      'topic "" both 0 local/state remote/state',
      "topic # both",
      "bridge_cafile /ca.pem",
      "connection second",
      "addresses [::1]:1883",
      "topic a",
    ].join("\n"),
  );
  assert.equal(conf.bridges.length, 2);
  const [b, second] = conf.bridges;
  assert.deepEqual(b, {
    name: "central",
    topics: [
      { pattern: "sensors/#", direction: "out", qos: 1, localPrefix: "", remotePrefix: "" },
      { pattern: "cmd/#", direction: "in", qos: 2, localPrefix: "gw/", remotePrefix: "site/" },
      {
        pattern: "",
        direction: "both",
        qos: 0,
        localPrefix: "local/state",
        remotePrefix: "remote/state",
      },
      { pattern: "#", direction: "both", qos: 0, localPrefix: "", remotePrefix: "" },
    ],
    addresses: [{ host: "10.0.0.1", port: 1884 }, { host: "10.0.0.2", port: 1883 }],
    roundRobin: true,
    protocolVersion: "mqttv50",
    remoteUsername: "gw",
    remotePassword: "secret",
    cleanSession: true,
    keepAliveS: 30,
    restartTimeoutS: [2, 20],
    tryPrivate: false,
    notifications: false,
    tls: { caFile: "/ca.pem" },
    clientId: "gw.central",
  });
  assert.deepEqual(second.addresses, [{ host: "::1", port: 1883 }]);
  assert.equal(second.clientId, "gw.second");
  refused("topic #\n", 1, "topic", /only allowed in a connection/);
  refused("connection a\naddress h\ntopic # sideways\n", 3, "topic", /in, out or both/);
  refused("connection a\naddress h\ntopic # out 3\n", 3, "topic", /QoS/);
  refused("connection a\naddress h\ntopic # out 0 a/+/ b/\n", 3, "topic", /local prefix/);
  refused("connection a\naddress h\ntopic # out 0 a/\n", 3, "topic", /remote prefix/);
  refused('connection a\naddress h\ntopic "" out 0 "" ""\n', 3, "topic", /prefix/);
  refused("connection a\naddress h:0\n", 2, "address", /invalid address/);
  refused("connection a\ntopic #\n", 1, "connection", /no address/);
  refused(
    "connection a\naddress h\nbridge_protocol_version mqttv31\n",
    3,
    "bridge_protocol_version",
    /not supported/,
  );
  refused("connection a\naddress h\ntopic #\nstart_type lazy\n", 4, "start_type", /not supported/);
  refused(
    "connection a\naddress h\ntopic #\nbridge_cafile /ca\nbridge_identity id\n",
    5,
    "bridge_identity",
    /both certificate and PSK/,
  );
});

Deno.test("bridge topics: mosquitto's prefix rules both ways", () => {
  const topics = parseBridges([{
    name: "b",
    addresses: [{ host: "h", port: 1883 }],
    topics: [
      { pattern: "#", direction: "out", qos: 1, localPrefix: "gw/", remotePrefix: "site1/gw/" },
      { pattern: "cmd/+", direction: "in", qos: 2, localPrefix: "", remotePrefix: "site1/" },
      { pattern: "", direction: "both", qos: 0, localPrefix: "l/state", remotePrefix: "r/state" },
    ],
  }])[0].topics;
  assert.deepEqual(mapOutgoing(topics, "gw/temp/1"), { topic: "site1/gw/temp/1", qos: 1 });
  assert.equal(mapOutgoing(topics, "other/temp"), undefined);
  assert.deepEqual(mapIncoming(topics, "site1/cmd/reboot"), { topic: "cmd/reboot", qos: 2 });
  assert.equal(mapIncoming(topics, "site1/gw/temp/1"), undefined, "an out topic does not come in");
  assert.deepEqual(mapOutgoing(topics, "l/state"), { topic: "r/state", qos: 0 });
  assert.deepEqual(mapIncoming(topics, "r/state"), { topic: "l/state", qos: 0 });
  assert.throws(() => parseBridges([{ name: "b", addresses: [], topics: [] }]), /address/);
  assert.throws(() => parseBridges([{ name: "b", nope: 1 }]), /unknown key "nope"/);
});

Deno.test("listeners array: checked with the entry and key named", () => {
  const ok = parseListeners([
    { port: 0, host: "127.0.0.1" },
    { port: 0, protocol: "websockets", wsPath: "/ws", auth: { allowAnonymous: true } },
  ]);
  assert.equal(ok.length, 2);
  assert.throws(() => parseListeners([]), /non-empty array/);
  assert.throws(() => parseListeners([{ port: 70000 }]), /listeners\[0\]\.port/);
  assert.throws(
    () => parseListeners([{ port: 1, bogus: 1 }]),
    /listeners\[0\]: unknown key "bogus"/,
  );
  assert.throws(
    () =>
      parseListeners([{ port: 1, tls: { certFile: "c", keyFile: "k", requireCertificate: true } }]),
    /requireCertificate: needs caFile/,
  );
  assert.throws(() => parseListeners([{ port: 1, name: "a" }, { port: 2, name: "a" }]), /twice/);
});

Deno.test("mosquitto.conf: the default listener opens with listener settings, not security ones (as mosquitto 2.0.11)", () => {
  // Checked with mosquitto 2.0.11: no listener on 1883, and the listener refuses anonymous clients.
  const conf = parse("per_listener_settings true\nallow_anonymous true\nlistener 1999 127.0.0.1\n");
  assert.deepEqual(conf.listeners, [
    { port: 1999, host: "127.0.0.1", auth: { allowAnonymous: false } },
  ]);
  assert.ok(
    conf.notes.some((n) => n.startsWith("m.conf:2: allow_anonymous: ignored, as by mosquitto")),
  );
  refused(
    "listener 1\nper_listener_settings true\n",
    2,
    "per_listener_settings",
    /before any listener/,
  );
  // A listener setting before the first listener opens the default one on 1883 (as mosquitto).
  assert.deepEqual(parse("max_connections 5\nlistener 1999\n").listeners, [
    { port: 1883, maxConnections: 5 },
    { port: 1999 },
  ]);
  const opened = parse("port 1884\ncertfile c.pem\nkeyfile k.pem\nlistener 1999\n");
  assert.deepEqual(opened.listeners, [
    { port: 1884, tls: { certFile: "c.pem", keyFile: "k.pem" } },
    { port: 1999 },
  ]);
});

Deno.test("mosquitto.conf: max_keepalive and memory_limit map onto maxKeepAlive and memoryLimit", () => {
  const conf = parse("max_keepalive 60\nmemory_limit 1048576\n");
  assert.deepEqual(conf.settings.limits, { maxKeepAlive: 60, memoryLimit: 1_048_576 });
  assert.equal(conf.notes.length, 0, "no 'ignored' note any more");
  assert.equal(parse("memory_limit 0\n").settings.limits.memoryLimit, 0);
  // mosquitto 2.0.11: "Error: Invalid max_keepalive value (5)."
  refused("max_keepalive 5\n", 1, "max_keepalive", /between 10 and 65535/);
  refused("max_keepalive 65536\n", 1, "max_keepalive", /between 10 and 65535/);
});

Deno.test("mosquitto.conf through the CLI: max_keepalive and memory_limit reach the limits", () => {
  const file = Deno.makeTempFileSync({ suffix: ".conf" });
  try {
    Deno.writeTextFileSync(file, "listener 0 127.0.0.1\nmax_keepalive 30\nmemory_limit 4096\n");
    const config = parseCliArgs(["--mosquitto-conf", file]);
    assert.equal(config.limits.maxKeepAlive, 30);
    assert.equal(config.limits.memoryLimit, 4096);
    // A flag still wins over the file.
    assert.equal(
      parseCliArgs(["--mosquitto-conf", file, "--max-keepalive", "40"]).limits.maxKeepAlive,
      40,
    );
  } finally {
    Deno.removeSync(file);
  }
});

Deno.test("JSON listeners and bridges: relative file names mean the config file's folder", () => {
  const [listener] = parseListeners(
    [{
      port: 1883,
      tls: { certFile: "tls/cert.pem", keyFile: "/abs/key.pem", caFile: "ca.pem" },
      auth: { passwordFile: "users", aclFile: "../acl" },
    }, { port: 1884, pskFile: "psk" }],
    "listeners",
    "/etc/denomq",
  );
  assert.deepEqual(listener.tls, {
    certFile: "/etc/denomq/tls/cert.pem",
    keyFile: "/abs/key.pem",
    caFile: "/etc/denomq/ca.pem",
  });
  assert.equal(listener.auth?.passwordFile, "/etc/denomq/users");
  assert.equal(listener.auth?.aclFile, "/etc/acl");
  assert.equal(
    parseListeners([{ port: 1884, pskFile: "psk" }], "l", "/etc/denomq")[0].pskFile,
    "/etc/denomq/psk",
  );
  // The API's own arrays: kept as given.
  assert.equal(parseListeners([{ port: 1884, pskFile: "psk" }])[0].pskFile, "psk");
  const [bridge] = parseBridges(
    [{
      name: "b",
      addresses: [{ host: "h", port: 8883 }],
      topics: [{ pattern: "#" }],
      tls: { caFile: "ca.pem", certFile: "/abs/c.pem", keyFile: "k.pem", alpn: "mqtt" },
    }],
    "bridges",
    "/etc/denomq",
  );
  assert.deepEqual(bridge.tls, {
    caFile: "/etc/denomq/ca.pem",
    certFile: "/abs/c.pem",
    keyFile: "/etc/denomq/k.pem",
    alpn: "mqtt",
  });
});
