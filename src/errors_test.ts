/**
 * The one error → wire action table.
 *
 * @module
 */
import assert from "node:assert/strict";
import { DecodeError, REASON } from "./codec/packet.ts";
import { ConnectRefusal, ProtocolError, StoreError, wireAction } from "./errors.ts";

Deno.test("wireAction: a DecodeError blames the client with its own code (0x81 by default), will published", () => {
  assert.deepEqual(wireAction(new DecodeError("bad")), {
    reasonCode: REASON.malformedPacket,
    publishWill: true,
    blame: "client",
  });
  assert.deepEqual(wireAction(new DecodeError("big", "", REASON.packetTooLarge)), {
    reasonCode: REASON.packetTooLarge,
    publishWill: true,
    blame: "client",
  });
});

Deno.test("wireAction: a ProtocolError carries its reason code (0x82 by default)", () => {
  assert.equal(wireAction(new ProtocolError("x")).reasonCode, REASON.protocolError);
  assert.deepEqual(wireAction(new ProtocolError("alias", REASON.topicAliasInvalid)), {
    reasonCode: REASON.topicAliasInvalid,
    publishWill: true,
    blame: "client",
  });
});

Deno.test("wireAction: a StoreError closes without will; anything else is ours and publishes the will", () => {
  assert.deepEqual(wireAction(new StoreError("disk")), {
    reasonCode: REASON.unspecifiedError,
    publishWill: false,
    blame: "store",
  });
  assert.deepEqual(wireAction(new TypeError("bug")), {
    reasonCode: REASON.implementationSpecificError,
    publishWill: true,
    blame: "internal",
  });
});

Deno.test("wireAction: a ConnectRefusal is answered with its CONNACK code, never a will", () => {
  assert.deepEqual(wireAction(new ConnectRefusal(REASON.badAuthenticationMethod, "method")), {
    reasonCode: REASON.badAuthenticationMethod,
    publishWill: false,
    blame: "refusal",
  });
});
