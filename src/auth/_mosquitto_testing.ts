/**
 * A real mosquitto for the tests that compare our file formats and rules with it.
 *
 * @module
 */

/** A port that was free a moment ago (mosquitto cannot listen on port 0). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Starts a real mosquitto with the given config lines; stops it when `fn` settles. */
export async function withMosquitto(
  dir: string,
  config: string[],
  fn: (port: number) => Promise<void>,
): Promise<void> {
  const port = freePort();
  const log = `${dir}/mosquitto.log`;
  await Deno.writeTextFile(
    `${dir}/mosquitto.conf`,
    [`listener ${port} 127.0.0.1`, "user root", `log_dest file ${log}`, ...config].join("\n") +
      "\n",
  );
  const child = new Deno.Command("mosquitto", {
    args: ["-c", `${dir}/mosquitto.conf`],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port })).close();
        break;
      } catch {
        if (Date.now() > deadline) throw new Error("mosquitto did not start listening");
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
    await fn(port);
  } catch (error) {
    const text = await Deno.readTextFile(log).catch(() => "(no log)");
    throw new Error(`${error instanceof Error ? error.message : error}\nmosquitto log:\n${text}`, {
      cause: error,
    });
  } finally {
    child.kill("SIGTERM");
    await child.status;
  }
}

/** Runs a command to completion; stdout and stderr come back together as text. */
export async function runTool(
  command: string,
  args: string[],
): Promise<{ code: number; output: string }> {
  const { code, stdout, stderr } = await new Deno.Command(command, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const output = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  return { code, output };
}
