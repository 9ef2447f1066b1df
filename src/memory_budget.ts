/**
 * The broker-wide memory budget (`memoryLimit`, mosquitto's `memory_limit`): the bytes of queued
 * and in-flight messages of all sessions, the retained store and the connections' write buffers.
 *
 * @module
 */

/**
 * What one queued or in-flight message costs beyond its topic and payload: the queue entry, the
 * message object and its share of the encoded packet's header (measured: ~200-300 bytes of heap per
 * message in the allocation map of bench/results/flood-before.md; entries share messages, so this
 * is the per-entry part).
 */
export const ENTRY_OVERHEAD = 96;

/** A session a publisher can wait for. */
export interface Backlogged {
  /**
   * Resolves once the queue is down to its low-water mark, or when the session made no progress
   * for `stallMs` (it is then marked stuck and stops pacing publishers until it moves again), or
   * on `cancel`.
   */
  drained(stallMs: number): { promise: Promise<void>; cancel: () => void };
}

/**
 * Counts the bytes the budget covers and keeps the publishers that wait for room. Every holder
 * charges and releases its own bytes; nothing is recomputed.
 */
export class MemoryBudget {
  /** Bytes over which the broker sheds load; 0 = no limit (accounting still runs). */
  limit = 0;
  /**
   * The last online session whose queue passed its high-water mark while a read's packets
   * were dispatched: that read's publisher waits for it to drain (or to be found stuck).
   */
  backlogged: Backlogged | undefined = undefined;
  /** Bytes held now. */
  used = 0;
  #waiters: (() => void)[] = [];

  /** Whether the budget is used up: QoS 0 to a backlogged session is dropped, publishers pause. */
  get over(): boolean {
    return this.limit > 0 && this.used >= this.limit;
  }

  /** Returns and clears {@linkcode MemoryBudget.backlogged}. */
  takeBacklogged(): Backlogged | undefined {
    const backlogged = this.backlogged;
    this.backlogged = undefined;
    return backlogged;
  }

  /**
   * Whether usage is at half the limit or more: from there QoS 0 for sessions with a backlog, and
   * anything for a session found stuck, is dropped, so that what a stuck subscriber holds cannot
   * by itself reach the limit and pause every publisher.
   */
  get shedding(): boolean {
    return this.limit > 0 && this.used * 2 >= this.limit;
  }

  /** Adds held bytes. */
  charge(bytes: number): void {
    this.used += bytes;
  }

  /** Removes held bytes; wakes the paused publishers once usage is back under the low-water mark. */
  release(bytes: number): void {
    this.used -= bytes;
    if (this.#waiters.length > 0 && this.used <= this.limit - this.limit / 8) this.#wake();
  }

  /**
   * Resolves once usage is at or below 7/8 of the limit (a low-water mark, so a paused publisher
   * is not woken for one message at a time), or when `cancel` is called (its connection closes).
   */
  room(): { promise: Promise<void>; cancel: () => void } {
    let resolve!: () => void;
    const promise = new Promise<void>((r) => resolve = r);
    this.#waiters.push(resolve);
    return {
      promise,
      cancel: () => {
        const i = this.#waiters.indexOf(resolve);
        if (i >= 0) this.#waiters.splice(i, 1);
        resolve();
      },
    };
  }

  /** Publishers waiting for room. */
  get waiting(): number {
    return this.#waiters.length;
  }

  /** Wakes every waiter, e.g. when the limit is raised or the broker closes. */
  wakeAll(): void {
    this.#wake();
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const resolve of waiters) resolve();
  }
}
