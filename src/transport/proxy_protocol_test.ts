import assert from "node:assert/strict";
import {
  acceptProxied,
  parseProxyHeader,
  PROXY_V1_MAX_HEADER_BYTES,
  ProxyProtocolError,
} from "./proxy_protocol.ts";
import type { BrokerConn } from "./types.ts";

const enc = new TextEncoder();
const CONNECT = Uint8Array.of(0x10, 0x0c, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 2, 0, 60, 0, 0);

/** A scripted connection: each read returns (part of) the next chunk; then EOF or a hang until close. */
class FakeConn implements BrokerConn {
  readonly remoteAddr = { hostname: "10.1.2.3", port: 4567, transport: "tcp" };
  closed = false;
  reads = 0;
  #chunks: Uint8Array[];
  #hang: boolean;
  #wake?: () => void;

  constructor(chunks: (string | Uint8Array)[], options: { hang?: boolean } = {}) {
    this.#chunks = chunks.map((c) => typeof c === "string" ? enc.encode(c) : c);
    this.#hang = options.hang ?? false;
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    this.reads++;
    if (this.closed) return null;
    const chunk = this.#chunks.shift();
    if (chunk === undefined) {
      if (!this.#hang) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
      return null;
    }
    const n = Math.min(buffer.length, chunk.length);
    buffer.set(chunk.subarray(0, n));
    if (n < chunk.length) this.#chunks.unshift(chunk.subarray(n));
    return n;
  }

  write(data: Uint8Array): Promise<number> {
    return Promise.resolve(data.length);
  }

  close(): void {
    this.closed = true;
    this.#wake?.();
  }
}

async function readAll(conn: BrokerConn, size = 4): Promise<Uint8Array> {
  const out: number[] = [];
  const buffer = new Uint8Array(size);
  for (;;) {
    const n = await conn.read(buffer);
    if (n === null) return Uint8Array.from(out);
    out.push(...buffer.subarray(0, n));
  }
}

Deno.test("acceptProxied reads a TCP4 header and hands back the bytes after it", async () => {
  const header = enc.encode("PROXY TCP4 192.0.2.7 127.0.0.1 51234 8883\r\n");
  const conn = new FakeConn([
    Uint8Array.of(...header, ...CONNECT.subarray(0, 5)),
    CONNECT.subarray(5),
  ]);
  const proxied = await acceptProxied(conn, "psk");
  assert.deepEqual(proxied.remoteAddr, { hostname: "192.0.2.7", port: 51234, transport: "psk" });
  assert.deepEqual(proxied.proxyHeader, {
    protocol: "TCP4",
    sourceAddress: "192.0.2.7",
    destinationAddress: "127.0.0.1",
    sourcePort: 51234,
    destinationPort: 8883,
  });
  assert.deepEqual(await readAll(proxied), CONNECT);
  proxied.close();
  assert.ok(conn.closed);
});

Deno.test("acceptProxied finds the header when it arrives one byte at a time", async () => {
  const bytes = [...enc.encode("PROXY TCP6 2001:db8::1 ::1 65535 0\r\n"), ...CONNECT];
  const conn = new FakeConn(bytes.map((b) => Uint8Array.of(b)));
  const proxied = await acceptProxied(conn, "psk");
  assert.deepEqual(proxied.remoteAddr, { hostname: "2001:db8::1", port: 65535, transport: "psk" });
  // Byte-exact: nothing past the CRLF was consumed while reading one byte at a time.
  assert.deepEqual(await readAll(proxied, 100), CONNECT);
});

Deno.test("acceptProxied uses the connection's own address for PROXY UNKNOWN", async () => {
  const conn = new FakeConn(["PROXY UNKNOWN whatever follows\r\n"]);
  const proxied = await acceptProxied(conn, "psk");
  assert.deepEqual(proxied.remoteAddr, { hostname: "10.1.2.3", port: 4567, transport: "psk" });
  assert.deepEqual(proxied.proxyHeader, { protocol: "UNKNOWN" });
  assert.equal(await proxied.read(new Uint8Array(8)), null);
});

Deno.test("acceptProxied accepts a header of exactly 107 bytes", async () => {
  const address = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
  const line = `PROXY TCP6 ${address} ${address} 65535 65535\r\n`;
  assert.equal(line.length, PROXY_V1_MAX_HEADER_BYTES - 3);
  // UNKNOWN may carry the same fields: 3 bytes longer, the v1 maximum.
  const longest = `PROXY UNKNOWN ${address} ${address} 65535 65535\r\n`;
  assert.equal(longest.length, PROXY_V1_MAX_HEADER_BYTES);
  const proxied = await acceptProxied(new FakeConn([longest, "x"]), "psk");
  assert.deepEqual(await readAll(proxied), enc.encode("x"));
});

Deno.test("acceptProxied refuses malformed headers and closes the connection", async () => {
  const cases: [(string | Uint8Array)[], RegExp][] = [
    [[CONNECT], /does not start with it/],
    [["PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n"], /unknown protocol "TCP5"/],
    [["PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n"], /expected 6 fields, got 5/],
    [["PROXY TCP4 1.2.3.4  1.2.3.4 1 2\r\n"], /expected 6 fields, got 7/],
    [["PROXY TCP4 1.2.3.256 1.2.3.4 1 2\r\n"], /bad TCP4 address "1\.2\.3\.256"/],
    [["PROXY TCP4 ::1 1.2.3.4 1 2\r\n"], /bad TCP4 address "::1"/],
    [["PROXY TCP6 1.2.3.4 ::1 1 2\r\n"], /bad TCP6 address "1\.2\.3\.4"/],
    [["PROXY TCP6 ::1 ::g 1 2\r\n"], /bad TCP6 address "::g"/],
    [["PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n"], /bad port "65536"/],
    [["PROXY TCP4 1.2.3.4 1.2.3.4 -1 2\r\n"], /bad port "-1"/],
    [["PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n"], /unexpected byte 0x0a/],
    [["PROXY TCP4 1.2.3.4 1.2.3.4 1 2\rX"], /CR not followed by LF/],
    [["PROXY TCP4 1.2.3.4"], /connection closed before the header/],
    [["PROXY UNKNOWN " + "x".repeat(PROXY_V1_MAX_HEADER_BYTES)], /no CRLF within 107 bytes/],
    // A PROXY v2 header starts with its binary signature.
    [[Uint8Array.of(0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51)], /does not start with it/],
  ];
  for (const [chunks, pattern] of cases) {
    const conn = new FakeConn(chunks);
    await assert.rejects(acceptProxied(conn, "psk"), (e: Error) => {
      assert.ok(e instanceof ProxyProtocolError, String(e));
      assert.match(e.message, pattern);
      return true;
    }, String(chunks));
    assert.ok(conn.closed, `closed after ${String(chunks)}`);
  }
});

Deno.test("acceptProxied refuses a non-PROXY stream without waiting for more bytes", async () => {
  // The peer sends 2 bytes and then waits: the reader must not wait for the timeout.
  const conn = new FakeConn([CONNECT.subarray(0, 2)], { hang: true });
  await assert.rejects(acceptProxied(conn, "psk", 60_000), /does not start with it/);
  assert.equal(conn.reads, 1);
  assert.ok(conn.closed);
});

Deno.test("acceptProxied gives up after the timeout and closes a real TCP connection", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const server = await listener.accept();
  try {
    await client.write(enc.encode("PROXY TCP4 "));
    await assert.rejects(acceptProxied(server, "psk", 50), /none within 50 ms/);
    // The server side is closed: the client reads end of stream.
    assert.equal(await client.read(new Uint8Array(8)), null);
  } finally {
    client.close();
  }
});

Deno.test("acceptProxied over real TCP: header and MQTT bytes in one write", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const server = await listener.accept();
  await client.write(
    Uint8Array.of(...enc.encode("PROXY TCP4 203.0.113.9 127.0.0.1 40000 8883\r\n"), ...CONNECT),
  );
  client.close();
  const proxied = await acceptProxied(server, "psk");
  assert.deepEqual(proxied.remoteAddr, { hostname: "203.0.113.9", port: 40000, transport: "psk" });
  assert.deepEqual(await readAll(proxied, 3), CONNECT);
  proxied.close();
});

Deno.test("parseProxyHeader reads the fields", () => {
  assert.deepEqual(parseProxyHeader("PROXY TCP6 ::1 ::ffff:127.0.0.1 1 2"), {
    protocol: "TCP6",
    sourceAddress: "::1",
    destinationAddress: "::ffff:127.0.0.1",
    sourcePort: 1,
    destinationPort: 2,
  });
  assert.throws(() => parseProxyHeader("proxy TCP4 1.2.3.4 1.2.3.4 1 2"), /no PROXY prefix/);
  assert.throws(() => parseProxyHeader("PROXY TCP4 01.2.3.4 1.2.3.4 1 2"), /bad TCP4 address/);
  assert.throws(() => parseProxyHeader("PROXY TCP4 1.2.3.4 1.2.3.4 01 2"), /bad port "01"/);
});
