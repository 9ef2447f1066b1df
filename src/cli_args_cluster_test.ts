import assert from "node:assert/strict";
import { parseCliArgs, UsageError } from "./cli_args.ts";

Deno.test("cli args: --cluster and its flags become the cluster options", () => {
  const config = parseCliArgs([
    "--cluster",
    "nats://10.0.0.1:4222, nats://10.0.0.2:4222",
    "--node-name",
    "edge-1",
    "--cluster-replicas",
    "3",
    "--cluster-user",
    "mq",
    "--cluster-password",
    "pw",
    "--cluster-tls-ca",
    "/etc/ca.pem",
    "--reuse-port",
  ]);
  assert.deepEqual(config.cluster, {
    servers: ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"],
    nodeName: "edge-1",
    credsFile: undefined,
    user: "mq",
    password: "pw",
    token: undefined,
    tlsCaFile: "/etc/ca.pem",
    replicas: 3,
  });
  assert.equal(config.reusePort, true);
  assert.equal(parseCliArgs([]).cluster, undefined);
  assert.equal(parseCliArgs([]).reusePort, false);
});

Deno.test("cli args: the config file takes the cluster keys in camelCase", () => {
  const config = parseCliArgs(
    ["--config", "c.json"],
    () => JSON.stringify({ cluster: "nats://h:4222", nodeName: "n", clusterReplicas: 2 }),
  );
  assert.equal(config.cluster?.nodeName, "n");
  assert.equal(config.cluster?.replicas, 2);
});

Deno.test("cli args: bad cluster flags are one usage error naming the flag", () => {
  const cases: [string[], RegExp][] = [
    [["--cluster", "nats://h:4222"], /--cluster needs --node-name/],
    [["--node-name", "a"], /--node-name needs --cluster/],
    [["--cluster", "nats://h:4222", "--node-name", "a.b"], /--node-name: letters/],
    [["--cluster", "http://h", "--node-name", "a"], /--cluster: expected nats:\/\/HOST:PORT/],
    [["--cluster", "nats://h:1", "--node-name", "a", "--cluster-user", "u"], /go together/],
    [["--cluster", "nats://h:1", "--node-name", "a", "--cluster-replicas", "9"], /between 1 and 5/],
  ];
  for (const [args, message] of cases) {
    assert.throws(() => parseCliArgs(args), (e: unknown) => {
      assert.ok(e instanceof UsageError, String(e));
      assert.match(e.message, message);
      return true;
    });
  }
});
