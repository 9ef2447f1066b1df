/**
 * One path for replies that wait for the store: `afterCommit()`. A failed commit closes the
 * connection the same way from every handler — no ack, no will (ARCHITECTURE.md, errors table).
 *
 * @module
 */
import type { ClientLink } from "../context.ts";
import { StoreError } from "../errors.ts";

/**
 * Runs `then` once every change made so far is durable (at once without a store). With
 * `hold`, the returned promise holds this client's next packet until then (CONNACK, SUBACK);
 * without it, later packets keep flowing and only the reply waits (PUBACK, PUBREC, PUBCOMP).
 */
export function afterCommit(
  link: ClientLink,
  then: () => void,
  hold: boolean,
): void | Promise<void> {
  const durable = link.ctx.mirror?.durable();
  if (durable === undefined) return then();
  const done = durable.then(
    () => {
      if (!link.isClosed) then();
    },
    (error) => link.fail(new StoreError(`persistence failed: ${error}`)),
  );
  if (hold) return done;
}
