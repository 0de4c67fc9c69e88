/**
 * A clock for src/store/checkpointer.ts moved by hand, whose timer is the test calling `tick()`:
 * no real timer, nothing timed.
 */
import type { CheckpointClock } from '../../src/store/checkpointer.js';

/** The clock (`ms`, set by the test), the checkpointer's tick, and whether its timer is still set. */
export interface ManualCheckpointClock extends CheckpointClock {
  ms: number;
  /** One look, as the timer would run it (resolves when it is done); a no-op once stopped. */
  tick(): Promise<void>;
  armed(): boolean;
}

export function manualCheckpointClock(): ManualCheckpointClock {
  let tick: (() => Promise<void>) | undefined;
  return {
    ms: 0,
    now() {
      return this.ms;
    },
    every(_intervalMs, fn) {
      tick = fn;
      return () => {
        tick = undefined;
      };
    },
    tick: () => (tick ? tick() : Promise.resolve()),
    armed: () => tick !== undefined,
  };
}
