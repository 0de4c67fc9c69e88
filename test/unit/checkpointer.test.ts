/**
 * The checkpointer's decisions and its failure handling (src/store/checkpointer.ts), on a fake
 * database: a failure is reported once per run of failures and retried at the next look, never
 * thrown; looks never overlap; nothing runs after `stop`; what the metrics and the log receive.
 */
import { describe, expect, it } from 'vitest';
import { checkpointObserver } from '../../src/observability/instrument.js';
import { metrics } from '../../src/observability/metrics.js';
import { checkpointDue, startCheckpointer, type CheckpointTarget } from '../../src/store/checkpointer.js';
import { manualCheckpointClock } from '../support/manual-checkpoint-clock.js';

const POLICY = { maxWalBytes: 1000, timeoutMs: 100, intervalMs: 10 };

/** A database whose WAL grows by hand and whose CHECKPOINT can be made to fail. */
function fakeTarget() {
  const db = { lsn: 0, redo: 0, fail: false, checkpoints: 0 };
  const target: CheckpointTarget = {
    walPosition: async () => ({ lsn: `0/${db.lsn.toString(16)}`, sinceRedo: db.lsn - db.redo }),
    checkpoint: async () => {
      if (db.fail) throw new Error('could not write to file "pg_wal/xlogtemp": No space left on device');
      db.checkpoints++;
      db.lsn += 100;
      db.redo = db.lsn - 100;
    },
  };
  return { db, target };
}

describe('checkpointDue', () => {
  it('is due by volume at the bound, by time once WAL written since the clean point is old enough', () => {
    const state = { cleanLsn: '0/10', dirtySince: undefined };
    expect(checkpointDue(state, { lsn: '0/10', sinceRedo: 999 }, 0, POLICY)).toBeUndefined();
    expect(checkpointDue(state, { lsn: '0/10', sinceRedo: 1000 }, 0, POLICY)).toBe('wal');
    expect(checkpointDue(state, { lsn: '0/20', sinceRedo: 500 }, 5, POLICY)).toBeUndefined();
    expect(state.dirtySince).toBe(5);
    expect(checkpointDue(state, { lsn: '0/30', sinceRedo: 600 }, 104, POLICY)).toBeUndefined();
    expect(checkpointDue(state, { lsn: '0/30', sinceRedo: 600 }, 105, POLICY)).toBe('time');
  });
});

describe('startCheckpointer', () => {
  it('reports a failure once per run of failures, retries at the next look, and recovers', async () => {
    const { db, target } = fakeTarget();
    const clock = manualCheckpointClock();
    const failed: unknown[] = [];
    const done: string[] = [];
    await startCheckpointer(target, POLICY, { failed: (err) => failed.push(err), checkpointed: (reason) => done.push(reason) }, clock);
    db.lsn = 5000;
    db.fail = true;
    await clock.tick();
    await clock.tick();
    await clock.tick();
    expect(failed).toHaveLength(1);
    expect(done).toEqual([]);
    db.fail = false;
    await clock.tick();
    expect(done).toEqual(['wal']);
    db.lsn += 5000;
    db.fail = true;
    await clock.tick();
    expect(failed).toHaveLength(2);
  });

  it('after a checkpoint whose following position read fails, counts the time bound from the checkpoint (no second checkpoint at once)', async () => {
    const { db, target } = fakeTarget();
    const clock = manualCheckpointClock();
    const done: string[] = [];
    const failed: unknown[] = [];
    let failReads = 0;
    // The database answers the look, runs CHECKPOINT, then fails the read that follows it once (a transient error).
    const flaky: CheckpointTarget = {
      walPosition: () => (failReads-- > 0 ? Promise.reject(new Error('terminating connection')) : target.walPosition()),
      checkpoint: async () => {
        await target.checkpoint();
        failReads = 1;
      },
    };
    await startCheckpointer(flaky, POLICY, { checkpointed: (reason) => done.push(reason), failed: (err) => failed.push(err) }, clock);
    db.lsn = 50;
    await clock.tick(); // dirty since 0
    clock.ms = 60;
    db.lsn = 5000;
    await clock.tick(); // the volume bound: a checkpoint, then the read after it fails
    expect(done).toEqual(['wal']);
    expect(failed).toHaveLength(1);
    // 60 ms after the checkpoint (the time bound is 100): WAL from before it is flushed, so nothing is due.
    clock.ms = 120;
    await clock.tick();
    expect(done).toEqual(['wal']);
    expect(db.checkpoints).toBe(1);
  });

  it('after a checkpoint whose report throws, counts the time bound from the checkpoint (no second checkpoint at once)', async () => {
    const { db, target } = fakeTarget();
    const clock = manualCheckpointClock();
    const done: string[] = [];
    const failed: unknown[] = [];
    // A metrics observer that throws once (a registry error): the checkpoint itself has run.
    const checkpointed = (reason: string) => {
      done.push(reason);
      if (done.length === 1) throw new Error('metric registry error');
    };
    await startCheckpointer(target, POLICY, { checkpointed, failed: (err) => failed.push(err) }, clock);
    db.lsn = 50;
    await clock.tick();
    clock.ms = 60;
    db.lsn = 5000;
    await clock.tick();
    expect(failed).toHaveLength(1);
    clock.ms = 120;
    await clock.tick();
    expect(done).toEqual(['wal']);
    expect(db.checkpoints).toBe(1);
  });

  it('never overlaps two looks, and runs nothing after stop', async () => {
    const { db, target } = fakeTarget();
    const clock = manualCheckpointClock();
    let looks = 0;
    const counted: CheckpointTarget = { walPosition: () => (looks++, target.walPosition()), checkpoint: target.checkpoint };
    const c = await startCheckpointer(counted, POLICY, {}, clock);
    db.lsn = 5000;
    await Promise.all([clock.tick(), c.tick(), c.tick()]);
    expect(db.checkpoints).toBe(1);
    const before = looks;
    await c.stop();
    db.lsn += 5000;
    await c.tick();
    await clock.tick();
    expect(looks).toBe(before);
    expect(db.checkpoints).toBe(1);
  });
});

describe('checkpointObserver', () => {
  it('counts each checkpoint by reason, times its pause, and logs a failure as every failure line is (err: { cause }): name, SQLSTATE and the database\'s message', async () => {
    const count = async (reason: string) => (await metrics.storeCheckpoints.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;
    const pauses = async () => (await metrics.storeCheckpointDuration.get()).values.find((v) => v.metricName === 'deputy_store_checkpoint_duration_seconds_count')?.value ?? 0;
    const before = { wal: await count('wal'), time: await count('time'), pauses: await pauses() };
    const logged: Array<[Record<string, unknown>, string]> = [];
    const observer = checkpointObserver({ warn: (fields, message) => logged.push([fields, message]) });
    observer.checkpointed('wal', 0.012);
    observer.checkpointed('time', 0.003);
    observer.checkpointed('wal', 0.02);
    expect(await count('wal')).toBe(before.wal + 2);
    expect(await count('time')).toBe(before.time + 1);
    expect(await pauses()).toBe(before.pauses + 3);
    // As PGlite throws it (pg-protocol's DatabaseError: name "error", the SQLSTATE in `code`).
    const full = Object.assign(new Error('could not write to file "pg_wal/xlogtemp": No space left on device'), { name: 'error', code: '53100' });
    observer.failed(full);
    // Before: { error: '<message>' } — another field than every other line's `err`, and no code.
    expect(logged).toEqual([[{ err: { cause: 'error (53100): could not write to file "pg_wal/xlogtemp": No space left on device' } }, expect.stringContaining('checkpoint failed')]]);
    expect(JSON.stringify(logged)).not.toMatch(/at .*\.ts:\d+/);
  });
});
