/**
 * 5.0 enhanced authentication: the AUTH exchange of a CONNECT (before CONNACK) and
 * re-authentication during a session, decided step by step by `authenticateEnhanced`.
 *
 * @module
 */
import { type AuthPacket, REASON } from "../codec/packet.ts";
import { ProtocolError } from "../errors.ts";
import type { AuthenticationResult } from "../hooks.ts";
import type { ClientLink } from "../context.ts";
/** What the CONNECT handler does with each verdict of its exchange. */
export type ConnectAuthStep = (result: AuthenticationResult) => void | Promise<void>;

// The CONNECT waiting for its exchange to finish, per connection (rare: kept off the connection).
const pendingConnects = new WeakMap<ClientLink, ConnectAuthStep>();

function ask(
  link: ClientLink,
  data: Uint8Array | undefined,
  step: number,
  reauthenticate: boolean,
  then: (result: AuthenticationResult) => void | Promise<void>,
): void | Promise<void> {
  const hook = link.ctx.hooks.authenticateEnhanced!;
  const request = {
    client: link.client,
    method: link.v5!.authMethod!,
    reauthenticate,
    step,
  } as Parameters<typeof hook>[0];
  if (data !== undefined) request.data = data;
  const verdict = hook(request);
  if (verdict instanceof Promise) {
    return verdict.then((result) => {
      if (!link.isClosed) return then(result);
    });
  }
  return then(verdict);
}

/**
 * Runs the first step of a CONNECT's exchange (its Authentication Data); `onStep` applies each
 * verdict (AUTH 0x18, CONNACK or refusal).
 */
export function startEnhancedAuth(
  link: ClientLink,
  data: Uint8Array | undefined,
  onStep: ConnectAuthStep,
): void | Promise<void> {
  pendingConnects.set(link, onStep);
  return ask(link, data, 0, false, (result) => {
    if (result.result !== "continue") pendingConnects.delete(link);
    return onStep(result);
  });
}

/** An AUTH packet from the client [MQTT-4.12.0-1..7]. */
export function handleAuth(link: ClientLink, packet: AuthPacket): void | Promise<void> {
  const v5 = link.v5!;
  const reasonCode = packet.reasonCode ?? REASON.success;
  const method = packet.properties?.authenticationMethod;
  const data = packet.properties?.authenticationData;
  if (v5.authMethod === undefined) {
    throw new ProtocolError("AUTH without an Authentication Method in CONNECT [MQTT-4.12.0-7]");
  }
  if (method !== v5.authMethod) {
    throw new ProtocolError("AUTH with another Authentication Method [MQTT-4.12.0-5]");
  }
  if (!link.connected) {
    const pending = pendingConnects.get(link);
    if (pending === undefined || reasonCode !== REASON.continueAuthentication) {
      throw new ProtocolError("unexpected AUTH before CONNACK");
    }
    return ask(link, data, v5.authStep, false, (result) => {
      if (result.result !== "continue") pendingConnects.delete(link);
      return pending(result);
    });
  }
  if (reasonCode === REASON.reAuthenticate && !v5.reauthenticating) {
    v5.reauthenticating = true;
    v5.authStep = 0;
  } else if (reasonCode !== REASON.continueAuthentication || !v5.reauthenticating) {
    throw new ProtocolError(`unexpected AUTH reason code 0x${reasonCode.toString(16)}`);
  }
  return ask(link, data, v5.authStep, true, (result) => {
    if (result.result === "continue") {
      v5.authStep++;
      link.send({
        type: "auth",
        reasonCode: REASON.continueAuthentication,
        properties: {
          authenticationMethod: method,
          ...(result.data !== undefined ? { authenticationData: result.data } : {}),
        },
      });
      return;
    }
    v5.reauthenticating = false;
    v5.authStep = 0;
    if (result.result === "success") {
      link.send({
        type: "auth",
        reasonCode: REASON.success,
        properties: {
          authenticationMethod: method,
          ...(result.data !== undefined ? { authenticationData: result.data } : {}),
        },
      });
      return;
    }
    // Re-authentication failed: DISCONNECT and close [MQTT-4.12.1-2].
    link.disconnect(
      result.reasonCode ?? REASON.notAuthorized,
      "re-authentication failed",
      true,
    );
  });
}
