/**
 * Event-loop delay, measured the simple way: a timer asks to run every `intervalMs`, and how
 * late it runs is the delay everything else queued behind the loop saw.
 *
 * @module
 */

/** Latest and worst recent event-loop delay. */
export class EventLoopMonitor {
  readonly #intervalMs: number;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #expected = 0;
  #latestMs = 0;
  // The worst delay of each of the last few windows of `intervalMs * 20`.
  #window: number[] = [0];
  #ticks = 0;

  constructor(intervalMs = 500) {
    this.#intervalMs = intervalMs;
  }

  /** Starts measuring (an unref'd timer: it never keeps the process alive). Idempotent. */
  start(): void {
    if (this.#timer !== undefined) return;
    this.#schedule();
  }

  #schedule(): void {
    this.#expected = performance.now() + this.#intervalMs;
    this.#timer = setTimeout(this.#tick, this.#intervalMs);
    Deno.unrefTimer(this.#timer);
  }

  #tick = (): void => {
    const late = Math.max(0, performance.now() - this.#expected);
    this.#latestMs = late;
    const last = this.#window.length - 1;
    if (late > this.#window[last]) this.#window[last] = late;
    if (++this.#ticks % 20 === 0) {
      this.#window.push(0);
      if (this.#window.length > 3) this.#window.shift();
    }
    this.#schedule();
  };

  /** Stops measuring. Idempotent. */
  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** The delay of the latest tick, in seconds. */
  get latestSeconds(): number {
    return this.#latestMs / 1000;
  }

  /** The worst delay over roughly the last 20 to 30 s, in seconds. */
  get maxSeconds(): number {
    return Math.max(...this.#window) / 1000;
  }
}
