/**
 * Coalescing of an upstream's `notifications/tools/list_changed` (MCP 2025-06-18 "Tools: List
 * Changed Notification"): each one means "list again", and a burst of them means the same.
 *
 * A session re-lists and re-checks the pins once per burst, not once per notification: the first
 * notification starts a refresh; any that arrive while it runs ask for exactly one more refresh
 * after it, so a burst of N costs one refresh in flight plus at most one after it, and the last
 * one sees the upstream's latest state. Every notification also moves a generation counter: a
 * listing started before the latest notification may predate the change it announces, so its
 * result is never installed as current ({@link ListChangedCoalescer.isCurrent}); the refresh
 * after it is.
 *
 * @module
 */

/** One refresh: lists the upstream's tools and checks them, given the generation it started in. */
export type Refresh = (generation: number) => Promise<void>;

/** Runs one refresh at a time for a stream of list-changed notifications, coalescing bursts. */
export class ListChangedCoalescer {
  readonly #refresh: Refresh;
  /** The refreshes running now (the one in flight and the one queued after it), until they settle. */
  #running: Promise<void> | undefined;
  /** Whether a notification arrived since the refresh in flight started. */
  #again = false;
  #generation = 0;

  /** `refresh` must not throw (a failure is its own to log and recover from). */
  constructor(refresh: Refresh) {
    this.#refresh = refresh;
  }

  /** Moves with every notification: a listing whose generation is no longer current may be stale. */
  get generation(): number {
    return this.#generation;
  }

  /** Whether no notification arrived since `generation` was read. */
  isCurrent(generation: number): boolean {
    return generation === this.#generation;
  }

  /**
   * A notification arrived: starts a refresh, or (one in flight) asks for one more after it.
   * Resolves when the refreshes settle.
   */
  notify(): Promise<void> {
    this.#generation += 1;
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    this.#running = this.#loop();
    return this.#running;
  }

  /** Resolves when no refresh is in flight or queued (at once when none is). */
  settled(): Promise<void> {
    return this.#running ?? Promise.resolve();
  }

  async #loop(): Promise<void> {
    try {
      do {
        this.#again = false;
        await this.#refresh(this.#generation);
      } while (this.#again);
    } finally {
      this.#running = undefined;
    }
  }
}
