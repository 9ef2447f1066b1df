/**
 * Reusable buffers for the write that carries one flush's packets: a connection takes one when
 * it concatenates what it queued, and gives it back when the write has completed, so a busy
 * socket does not allocate (and the collector free) a fresh ArrayBuffer per flush.
 *
 * @module
 */

/** Size of one slab: one flush of a flooding connection (a 64 KiB read's packets) fits. */
export const SLAB_BYTES = 128 * 1024;
// Idle slabs kept: more in flight at once are allocated and, on return, left to the collector.
const MAX_IDLE = 16;

const idle: Uint8Array[] = [];

/** A slab of {@linkcode SLAB_BYTES} for a flush of at most that many bytes. */
export function takeSlab(): Uint8Array {
  return idle.pop() ?? new Uint8Array(SLAB_BYTES);
}

/** Returns a slab taken with {@linkcode takeSlab} once nothing reads it any more. */
export function giveSlab(slab: Uint8Array): void {
  if (idle.length < MAX_IDLE) idle.push(slab);
}
