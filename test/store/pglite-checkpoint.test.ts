/**
 * Embedded PGlite checkpoints by itself (src/store/checkpointer.ts): without it a running store
 * never checkpoints and its WAL only grows. Driven through the store with an injected clock and
 * trigger (no timers, nothing timed): WAL since the last checkpoint's redo point stays within the
 * volume bound plus one batch of writes, old WAL goes, every row survives a reopen, a transaction
 * holding the session finishes before a checkpoint runs, and close during a checkpoint is clean.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { CheckpointReason } from '../../src/store/checkpointer.js';
import { createPGliteStore } from '../../src/store/pglite.js';
import type { Store } from '../../src/store/store.js';
import { manualCheckpointClock, type ManualCheckpointClock } from '../support/manual-checkpoint-clock.js';

const MB = 1024 * 1024;
const POLICY = { maxWalBytes: 1 * MB, timeoutMs: 60_000, intervalMs: 1_000 };

interface Opened {
  store: Store;
  clock: ManualCheckpointClock;
  checkpoints: CheckpointReason[];
  failures: unknown[];
}

async function open(dataDir: string): Promise<Opened> {
  const clock = manualCheckpointClock();
  const checkpoints: CheckpointReason[] = [];
  const failures: unknown[] = [];
  const events = { checkpointed: (reason: CheckpointReason) => checkpoints.push(reason), failed: (err: unknown) => failures.push(err) };
  const store = await createPGliteStore({ dataDir, checkpoint: POLICY, checkpointEvents: events, checkpointClock: clock });
  await store.exec('CREATE TABLE IF NOT EXISTS filler (id bigint PRIMARY KEY, body text NOT NULL)');
  return { store, clock, checkpoints, failures };
}

/** Bytes of WAL since the last checkpoint's redo point. */
async function walSinceRedo(store: Store): Promise<number> {
  const [row] = await store.query<{ since: string }>('SELECT (pg_current_wal_insert_lsn() - (pg_control_checkpoint()).redo_lsn)::text AS since');
  return Number(row!.since);
}

/** ~`bytes` of WAL: rows of 1 KB from id `from`; returns the next id. */
async function write(store: Store, from: number, bytes: number): Promise<number> {
  const rows = Math.ceil(bytes / 1200);
  await store.query("INSERT INTO filler SELECT g, repeat('x', 1000) FROM generate_series($1::bigint, $2::bigint) g", [from, from + rows - 1]);
  return from + rows;
}

const opened: Opened[] = [];
const folders: string[] = [];
afterEach(async () => {
  for (const o of opened.splice(0)) await o.store.close();
  for (const f of folders.splice(0)) rmSync(f, { recursive: true, force: true });
});

function folder(): string {
  const dir = mkdtempSync(join(tmpdir(), 'deputy-checkpoint-'));
  folders.push(dir);
  return dir;
}

describe.each([
  ['a data folder', () => folder()],
  ['memory://', () => 'memory://'],
])('embedded PGlite on %s checkpoints by itself', (_name, where) => {
  it('keeps WAL since the last checkpoint within the volume bound, well past it, and loses nothing', async () => {
    const dataDir = where();
    const o = await open(dataDir);
    opened.push(o);
    let next = 1;
    let peak = 0;
    // 12 MB of WAL in batches of ~256 KB against a 1 MB bound, the checkpointer looking after each batch.
    for (let i = 0; i < 48; i++) {
      next = await write(o.store, next, MB / 4);
      await o.clock.tick();
      peak = Math.max(peak, await walSinceRedo(o.store));
    }
    expect(o.checkpoints.length).toBeGreaterThanOrEqual(8);
    expect(o.checkpoints.every((r) => r === 'wal')).toBe(true);
    expect(peak).toBeLessThan(POLICY.maxWalBytes + MB / 2);
    expect(o.failures).toEqual([]);
    if (dataDir === 'memory://') return;
    await o.store.close();
    opened.splice(opened.indexOf(o), 1);
    const again = await open(dataDir);
    opened.push(again);
    expect(await again.store.query('SELECT count(*)::int AS n FROM filler')).toEqual([{ n: next - 1 }]);
  });

  it('without a look, the WAL grows past the bound (what the checkpointer prevents)', async () => {
    const o = await open(where());
    opened.push(o);
    let next = 1;
    for (let i = 0; i < 12; i++) next = await write(o.store, next, MB / 4);
    expect(await walSinceRedo(o.store)).toBeGreaterThan(2 * POLICY.maxWalBytes);
    await o.clock.tick();
    expect(o.checkpoints).toEqual(['wal']);
    expect(await walSinceRedo(o.store)).toBeLessThan(64 * 1024);
  });

  it('checkpoints WAL older than the time bound, and not a store with nothing new', async () => {
    const o = await open(where());
    opened.push(o);
    await o.clock.tick();
    expect(o.checkpoints).toEqual([]);
    await write(o.store, 1, 10_000);
    await o.clock.tick(); // first seen dirty now
    o.clock.ms += POLICY.timeoutMs - 1;
    await o.clock.tick();
    expect(o.checkpoints).toEqual([]);
    o.clock.ms += 1;
    await o.clock.tick();
    expect(o.checkpoints).toEqual(['time']);
    o.clock.ms += 10 * POLICY.timeoutMs;
    await o.clock.tick();
    expect(o.checkpoints).toEqual(['time']);
  });

  it('waits for a transaction holding the session; the transaction completes unharmed', async () => {
    const o = await open(where());
    opened.push(o);
    await write(o.store, 1, 10_000);
    await o.clock.tick();
    o.clock.ms += POLICY.timeoutMs;
    const order: string[] = [];
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let inside!: () => void;
    const entered = new Promise<void>((resolve) => (inside = resolve));
    const tx = o.store.transaction(async (q) => {
      await q.query('INSERT INTO filler VALUES (1000001, $1)', ['in the transaction']);
      inside();
      await held;
      await q.query('INSERT INTO filler VALUES (1000002, $1)', ['after the timer fired']);
      order.push('committed');
    });
    await entered;
    const look = o.clock.tick().then(() => order.push(`looked: ${o.checkpoints.join()}`));
    // Let the look run as far as it can while the transaction holds the session.
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(order).toEqual([]);
    release();
    await Promise.all([tx, look]);
    expect(order).toEqual(['committed', 'looked: time']);
    expect(await o.store.query('SELECT id FROM filler WHERE id > 1000000 ORDER BY id')).toEqual([{ id: 1000001 }, { id: 1000002 }]);
  });

  it('closes cleanly during a checkpoint, and nothing runs after close', async () => {
    const dataDir = where();
    const o = await open(dataDir);
    let next = 1;
    for (let i = 0; i < 8; i++) next = await write(o.store, next, MB / 4);
    const look = o.clock.tick();
    await o.store.close();
    await look;
    expect(o.clock.armed()).toBe(false);
    await o.clock.tick();
    expect(o.failures).toEqual([]);
    await expect(o.store.query('SELECT 1')).rejects.toThrow(/closed/);
    if (dataDir === 'memory://') return;
    const again = await open(dataDir);
    opened.push(again);
    expect(await again.store.query('SELECT count(*)::int AS n FROM filler')).toEqual([{ n: next - 1 }]);
  });
});
