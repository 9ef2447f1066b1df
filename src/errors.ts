/**
 * The errors a connection can end with, and the one table that turns each into a wire action.
 * Handlers throw; only the connection acts (see ARCHITECTURE.md, "Errors → wire actions").
 *
 * @module
 */
import { DecodeError, REASON } from "./codec/packet.ts";

/**
 * A protocol violation by the client: the connection is closed (5.0: after a DISCONNECT with
 * `reasonCode`) and the will published.
 */
export class ProtocolError extends Error {
  /** The 5.0 reason code of the DISCONNECT sent before closing. */
  readonly reasonCode: number;
  /** `reasonCode` defaults to 0x82 protocol error. */
  constructor(message: string, reasonCode: number = REASON.protocolError) {
    super(message);
    this.name = "ProtocolError";
    this.reasonCode = reasonCode;
  }
}

/** A refused CONNECT: CONNACK with `reasonCode` (3.1.1: its return code), then close. */
export class ConnectRefusal extends Error {
  /** The 5.0 CONNACK reason code; the 3.1.1 encoder writes its return code. */
  readonly reasonCode: number;
  constructor(reasonCode: number, message: string) {
    super(message);
    this.name = "ConnectRefusal";
    this.reasonCode = reasonCode;
  }
}

/** The store could not commit a change a reply depends on: close, no ack, no will. */
export class StoreError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StoreError";
  }
}

/** What the connection does for one error. */
export interface WireAction {
  /**
   * 5.0 reason code: of the CONNACK for a refusal (both versions, 3.1.1 as its return code), else
   * of the DISCONNECT sent before closing (5.0 connections past CONNACK only).
   */
  reasonCode: number;
  /** Whether the will is published. */
  publishWill: boolean;
  /**
   * "client": counted in `protocolErrors`, logged at info and dispatched as `clientError`;
   * "internal": logged as an error and dispatched as `clientError`; "store": logged, nothing else;
   * "refusal": a refused CONNECT, logged at info (0x89/0x97 counted in `connectionsRefused`).
   */
  blame: "client" | "internal" | "store" | "refusal";
}

const MALFORMED: WireAction = {
  reasonCode: REASON.malformedPacket,
  publishWill: true,
  blame: "client",
};
const STORE: WireAction = {
  reasonCode: REASON.unspecifiedError,
  publishWill: false,
  blame: "store",
};
const INTERNAL: WireAction = {
  reasonCode: REASON.implementationSpecificError,
  publishWill: true,
  blame: "internal",
};

/**
 * The one error → wire action table. A `ConnectRefusal` is answered with its CONNACK; a
 * `DecodeError` (malformed, or over `maxPacketSize`: 0x95) and a `ProtocolError` blame the client;
 * a `StoreError` closes without ack or will; anything else is a bug of ours, and the client's will
 * is published as for any abnormal close.
 */
export function wireAction(error: unknown): WireAction {
  if (error instanceof ConnectRefusal) {
    return { reasonCode: error.reasonCode, publishWill: false, blame: "refusal" };
  }
  if (error instanceof ProtocolError) {
    return { reasonCode: error.reasonCode, publishWill: true, blame: "client" };
  }
  if (error instanceof DecodeError) {
    const code = (error as { reasonCode?: number }).reasonCode;
    return code === undefined || code === REASON.malformedPacket
      ? MALFORMED
      : { reasonCode: code, publishWill: true, blame: "client" };
  }
  if (error instanceof StoreError) return STORE;
  return INTERNAL;
}
