/**
 * The session registry without sockets: attach (new, resumed, Clean Start), detach, expiry and
 * wills waiting for their Will Delay Interval.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { Will } from "../codec/packet.ts";
import type { ClientInfo } from "../hooks.ts";
import type { Message } from "../message.ts";
import { type Limits, resolveLimits } from "../options.ts";
import { Counters } from "../stats.ts";
import { NEVER_EXPIRES, SessionRegistry } from "./registry.ts";
import type { QoS } from "../codec/packet.ts";
import type { Session, SessionLink } from "./session.ts";

class NullLink implements SessionLink {
  writable = true;
  receiveMaximum = 65_535;
  sendPublish(_m: Message, _q: QoS, _r: boolean, _id: number): boolean {
    return true;
  }
  sendPubrel(): void {}
}

function setup(limits: Partial<Limits> = {}) {
  const published: { clientId: string; topic: string }[] = [];
  const saved: string[] = [];
  const deleted: string[] = [];
  const resolved = resolveLimits(limits);
  const registry = new SessionRegistry({
    limits: resolved,
    sessionContext: { limits: resolved, counters: new Counters() },
    unsubscribeAll: (session: Session) => session.clearSubscriptions(),
    sessionSaved: (session) => saved.push(session.clientId),
    sessionDeleted: (session) => deleted.push(session.clientId),
    publishWill: (client: ClientInfo, will: Will) =>
      published.push({ clientId: client.clientId, topic: will.topic }),
    debug: () => {},
  });
  return { registry, published, saved, deleted };
}

function will(topic: string, delayS?: number): Will {
  return {
    topic,
    payload: new Uint8Array(0),
    qos: 0,
    retain: false,
    properties: delayS === undefined ? undefined : { willDelayInterval: delayS },
  };
}

function attach(
  registry: SessionRegistry,
  clientId: string,
  cleanStart: boolean,
  expiryIntervalS: number | undefined,
) {
  const client: ClientInfo = { clientId };
  const attached = registry.attach(new NullLink(), {
    clientId,
    client,
    cleanStart,
    expiryIntervalS,
  });
  assert.ok(attached !== undefined, "attached");
  return { ...attached, client };
}

Deno.test("registry: a 5.0 session with expiry 0 ends at detach and its will goes at once", () => {
  const { registry, published } = setup();
  const { session, client } = attach(registry, "a", false, 0);
  assert.equal(session.clean, true);
  registry.detach(session, will("w/a", 60), client);
  assert.deepEqual(published, [{ clientId: "a", topic: "w/a" }]);
  assert.equal(registry.get("a"), undefined);
});

Deno.test("registry: a delayed will is not published when the session resumes within the delay [MQTT-3.1.3-9]", () => {
  const { registry, published } = setup();
  const first = attach(registry, "b", false, 3600);
  registry.detach(first.session, will("w/b", 60), first.client);
  assert.deepEqual(published, []);
  assert.ok(first.session.delayedWill !== undefined);
  const again = attach(registry, "b", false, 3600);
  assert.equal(again.sessionPresent, true);
  assert.equal(again.session.delayedWill, undefined);
  registry.sweep(Date.now() + 120_000);
  assert.deepEqual(published, []);
});

Deno.test("registry: a delayed will is published by the sweep once its delay has passed", () => {
  const { registry, published, saved } = setup();
  const { session, client } = attach(registry, "c", false, 3600);
  registry.detach(session, will("w/c", 5), client);
  registry.sweep(Date.now() + 1_000);
  assert.deepEqual(published, []);
  const savedBefore = saved.length;
  registry.sweep(Date.now() + 6_000);
  assert.deepEqual(published, [{ clientId: "c", topic: "w/c" }]);
  assert.equal(session.delayedWill, undefined);
  assert.ok(saved.length > savedBefore, "the store forgets the will");
  registry.sweep(Date.now() + 7_000);
  assert.equal(published.length, 1, "once");
});

Deno.test("registry: a session that expires before the will delay publishes the will when it ends", () => {
  const { registry, published } = setup();
  const { session, client } = attach(registry, "d", false, 2);
  registry.detach(session, will("w/d", 3600), client);
  assert.ok(session.delayedWill!.publishAt <= Date.now() + 2_000);
  registry.sweep(Date.now() + 3_000);
  assert.deepEqual(published, [{ clientId: "d", topic: "w/d" }]);
  assert.equal(registry.get("d"), undefined, "the session is gone too");
});

Deno.test("registry: Clean Start discards the session, and its waiting will is published then", () => {
  const { registry, published } = setup();
  const first = attach(registry, "e", false, NEVER_EXPIRES);
  registry.detach(first.session, will("w/e", 3600), first.client);
  const fresh = attach(registry, "e", true, NEVER_EXPIRES);
  assert.equal(fresh.sessionPresent, false);
  assert.notEqual(fresh.session, first.session);
  assert.deepEqual(published, [{ clientId: "e", topic: "w/e" }]);
});

Deno.test("registry: a 3.1.1 persistent session follows sessionExpiryMs; maxSessions bounds new ones", () => {
  const { registry } = setup({ sessionExpiryMs: 1_000, maxSessions: 1 });
  const { session, client } = attach(registry, "f", false, undefined);
  assert.equal(session.clean, false);
  assert.equal(
    registry.attach(new NullLink(), {
      clientId: "g",
      client: { clientId: "g" },
      cleanStart: true,
      expiryIntervalS: undefined,
    }),
    undefined,
  );
  registry.detach(session, undefined, client);
  assert.ok(session.expiresAt > Date.now() && session.expiresAt <= Date.now() + 1_000);
  registry.sweep(Date.now() + 2_000);
  assert.equal(registry.size, 0);
});

Deno.test("registry: a 5.0 client resuming a persistent session with expiry 0 makes it end at disconnect", () => {
  const { registry, deleted } = setup();
  const first = attach(registry, "h", false, 3600);
  registry.detach(first.session, undefined, first.client);
  const again = attach(registry, "h", false, 0);
  assert.equal(again.sessionPresent, true);
  assert.equal(again.session.clean, true);
  assert.ok(deleted.includes("h"), "the store forgets it");
  registry.detach(again.session, undefined, again.client);
  assert.equal(registry.size, 0);
});
