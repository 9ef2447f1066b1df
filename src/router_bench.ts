/**
 * The router's per-PUBLISH path: `deno bench --allow-all src/router_bench.ts`. Fan-out to 16
 * sessions on one topic, and one topic among 10 000 filters, with deliveries counted only (no
 * I/O), plain subscriptions and a shared group.
 *
 * @module
 */
import { Message } from "./message.ts";
import { resolveLimits } from "./options.ts";
import { Router } from "./router.ts";
import { Session, type SessionContext } from "./session/session.ts";
import { Counters } from "./stats.ts";

const ctx: SessionContext = { limits: resolveLimits(), counters: new Counters() };
let delivered = 0;

function session(id: string): Session {
  const s = new Session(id, true, { clientId: id }, ctx);
  s.deliver = () => {
    delivered++;
  };
  return s;
}

const fanout = new Router();
for (let i = 0; i < 16; i++) fanout.subscribe(session(`f${i}`), "bench/out", 1);
const wide = new Router();
for (let i = 0; i < 10_000; i++) {
  const s = session(`w${i}`);
  wide.subscribe(s, i % 2 === 0 ? `bench/w/${i}/x` : `bench/w/${i}/+`, 1);
}
const shared = new Router();
for (let i = 0; i < 16; i++) shared.subscribe(session(`s${i}`), "$share/g/bench/out", 1);

const out = new Message("bench/out", new Uint8Array(16), 1, false);
const w = new Message("bench/w/5000/x", new Uint8Array(16), 1, false);

Deno.bench("route: fan-out to 16 sessions", { group: "fanout", baseline: true }, () => {
  fanout.route(out);
});
Deno.bench("route: one match among 10 000 filters", { group: "wide" }, () => {
  wide.route(w);
});
Deno.bench("route: a shared group of 16 (one delivery)", { group: "shared" }, () => {
  shared.route(out);
});
