/**
 * Checkpoints for embedded PGlite, which has none of its own while it runs.
 *
 * PGlite runs PostgreSQL in single-user mode: there is no checkpointer process, and PostgreSQL
 * requests a checkpoint by WAL volume only under a postmaster (`xlog.c` `XLogWrite`:
 * `IsUnderPostmaster && XLogCheckpointNeeded(…)`), so without this a running store keeps every WAL
 * segment it writes until it closes (~1.9 KB per receipt: on disk in a data folder, replayed in
 * full after a crash; in the JS heap on `memory://`). This module does what PostgreSQL's
 * checkpointer would with `max_wal_size` / `checkpoint_timeout`: it looks at the WAL position on a
 * timer and issues `CHECKPOINT` when enough WAL has been written since the last checkpoint's redo
 * point, or when WAL written since the last checkpoint is older than the time bound. After a
 * checkpoint PostgreSQL removes or recycles the segments before its redo point (`pg_wal` stays
 * within the volume bound plus at most PGlite's `max_wal_size`, 64 MB, of recycled segments;
 * PGlite's `min_wal_size` is 5 MB, not PostgreSQL's 80).
 *
 * A checkpoint is a pause of the thread PGlite runs in — Deputy's main thread, or its worker with
 * `store.pglite.thread: worker` (./pglite-thread.ts; the checkpointer then runs in the worker and
 * its events cross to the main thread): ~0.8 ms of CPU per MB of WAL written since the previous one
 * (BENCHMARKS.md, issue 16 eighth round), so the volume bound is what bounds the pause.
 *
 * @module
 */

/** When to checkpoint: PostgreSQL's `max_wal_size` / `checkpoint_timeout`, in this module's units. */
export interface CheckpointPolicy {
  /** Checkpoint once this many bytes of WAL were written since the last checkpoint's redo point. */
  readonly maxWalBytes: number;
  /** Checkpoint once WAL written since the last checkpoint is this old (milliseconds). */
  readonly timeoutMs: number;
  /** How often the WAL position is looked at (milliseconds). */
  readonly intervalMs: number;
}

/** The defaults: 16 MB of WAL (a ~15 ms pause), 5 minutes (PostgreSQL's `checkpoint_timeout`), a look every second. */
export const DEFAULT_CHECKPOINT_POLICY: CheckpointPolicy = { maxWalBytes: 16 * 1024 * 1024, timeoutMs: 300_000, intervalMs: 1_000 };

/** Why a checkpoint ran: the volume bound or the time bound. */
export type CheckpointReason = 'wal' | 'time';

/** The database as the checkpointer sees it (PGlite in ./pglite.ts; a fake in unit tests). */
export interface CheckpointTarget {
  /** The WAL insert position (an opaque, ordered string such as `0/1A2B3C`) and the bytes written since the last checkpoint's redo point. */
  walPosition(): Promise<{ lsn: string; sinceRedo: number }>;
  /** Runs `CHECKPOINT`; must not interleave with a transaction (PGlite: its transaction mutex). */
  checkpoint(): Promise<void>;
}

/** What the checkpointer reports (metrics, the log); both optional. */
export interface CheckpointEvents {
  /** A checkpoint ran: why, and its pause in seconds. */
  checkpointed?(reason: CheckpointReason, seconds: number): void;
  /** A look or a checkpoint failed; reported once per run of failures (retried at the next look). */
  failed?(err: unknown): void;
}

/** Injected in tests: the clock (ms) and the timer that calls `tick`. */
export interface CheckpointClock {
  now(): number;
  /** Calls `tick` every `intervalMs` without keeping the process alive; returns how to stop. */
  every(intervalMs: number, tick: () => Promise<void>): () => void;
}

/** An unref'd `setInterval` on the wall clock. */
export const systemClock: CheckpointClock = {
  now: () => performance.now(),
  every(intervalMs, tick) {
    const timer = setInterval(() => void tick(), intervalMs);
    timer.unref();
    return () => clearInterval(timer);
  },
};

/** What the checkpointer remembers between looks. */
export interface CheckpointState {
  /** The WAL position right after the last checkpoint (or at start): WAL beyond it is unflushed work. */
  cleanLsn: string;
  /** When WAL beyond `cleanLsn` was first seen (the clock's ms), or undefined while there is none. */
  dirtySince: number | undefined;
}

/**
 * Whether to checkpoint now, and why, given one look at the WAL position; updates `state.dirtySince`.
 * Pure: the unit tests drive it with numbers.
 */
export function checkpointDue(state: CheckpointState, look: { lsn: string; sinceRedo: number }, now: number, policy: CheckpointPolicy): CheckpointReason | undefined {
  if (look.sinceRedo >= policy.maxWalBytes) return 'wal';
  if (look.lsn === state.cleanLsn) return undefined;
  state.dirtySince ??= now;
  return now - state.dirtySince >= policy.timeoutMs ? 'time' : undefined;
}

/** A running checkpointer: `tick` is one look (what the timer calls), `stop` ends it. */
export interface Checkpointer {
  /** One look at the WAL position, and a checkpoint if one is due. Never rejects; a no-op after `stop` or while a look is running. */
  tick(): Promise<void>;
  /** Stops the timer and waits for a look or checkpoint in progress; afterwards nothing runs. */
  stop(): Promise<void>;
}

/**
 * Starts checkpointing `target` by `policy`: the WAL position is read now (the clean point), then
 * looked at every `policy.intervalMs`.
 *
 * @throws whatever the first `walPosition()` throws (the store is not usable then)
 */
export async function startCheckpointer(target: CheckpointTarget, policy: CheckpointPolicy, events: CheckpointEvents = {}, clock: CheckpointClock = systemClock): Promise<Checkpointer> {
  const state: CheckpointState = { cleanLsn: (await target.walPosition()).lsn, dirtySince: undefined };
  let stopped = false;
  let failing = false;
  let running: Promise<void> | undefined;

  const look = async (): Promise<void> => {
    const reason = checkpointDue(state, await target.walPosition(), clock.now(), policy);
    if (reason === undefined || stopped) return;
    const started = clock.now();
    await target.checkpoint();
    // Clean from here on even if the report or the read below fails: the time bound then restarts
    // at the next look (WAL beyond the stale clean point is no older than that), not at the first
    // WAL seen before this checkpoint, which would run a second checkpoint at once.
    state.dirtySince = undefined;
    events.checkpointed?.(reason, (clock.now() - started) / 1000);
    state.cleanLsn = (await target.walPosition()).lsn;
  };
  const tick = (): Promise<void> => {
    if (stopped || running) return running ?? Promise.resolve();
    running = look()
      .then(() => {
        failing = false;
      })
      .catch((err: unknown) => {
        // Once per run of failures: a store that stays broken would otherwise log every second.
        if (!failing && !stopped) events.failed?.(err);
        failing = true;
      })
      .finally(() => {
        running = undefined;
      });
    return running;
  };
  const cancel = clock.every(policy.intervalMs, tick);
  return {
    tick,
    async stop() {
      stopped = true;
      cancel();
      await running;
    },
  };
}
