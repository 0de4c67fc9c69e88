/**
 * Embedded PGlite in a worker thread (src/store/pglite-thread.ts, `store.pglite.thread: worker`)
 * where the thread boundary could change what callers see: errors keep their SQLSTATE and
 * classification, transactions roll back and serialise as on the main thread, closing or losing
 * the worker fails every call closed (StoreUnavailableError, 503) and hangs none, checkpoints are
 * reported on the main thread, and the data folder stays locked to this process.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Worker } from 'node:worker_threads';
import Koa from 'koa';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { healthRoutes } from '../../src/http/health.js';
import type { KeyStore } from '../../src/keys/index.js';
import type { CheckpointReason } from '../../src/store/checkpointer.js';
import { DataDirLocked, StoreUnavailableError } from '../../src/store/index.js';
import { LOCK_FILE } from '../../src/store/lock.js';
import { createPGliteStore } from '../../src/store/pglite.js';
import { createPGliteWorkerStore } from '../../src/store/pglite-thread.js';
import { wireParams } from '../../src/store/pglite-wire.js';
import type { Store } from '../../src/store/store.js';
import { TEST_NODE_FLAGS } from '../support/process.js';

const folders: string[] = [];
afterAll(() => {
  for (const f of folders) rmSync(f, { recursive: true, force: true });
});
function folder(): string {
  const dir = mkdtempSync(join(tmpdir(), 'deputy-pglite-thread-'));
  folders.push(dir);
  return dir;
}

/** A worker store on `memory://` with a table `t (x int primary key)`, and its worker. */
async function open(): Promise<{ store: Store; worker: Worker }> {
  let worker: Worker | undefined;
  const store = await createPGliteWorkerStore({ dataDir: 'memory://', onWorker: (w) => (worker = w) });
  await store.exec('CREATE TABLE t (x int PRIMARY KEY, v int NOT NULL DEFAULT 0)');
  return { store, worker: worker! };
}

/** A transaction that writes a row, then waits for `release` before its second: in flight until then. */
function heldTransaction(store: Store): { tx: Promise<void>; release: () => void } {
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  const tx = store.transaction(async (q) => {
    await q.query('INSERT INTO t (x) VALUES (1)');
    await held;
    await q.query('INSERT INTO t (x) VALUES (2)');
  });
  return { tx, release };
}

describe('PGlite in a worker thread', () => {
  // One store for the tests that leave it open (a worker costs a PGlite start): each empties `t` first.
  let shared: Store | undefined;
  const sharedStore = async (): Promise<Store> => {
    shared ??= (await open()).store;
    await shared.query('DELETE FROM t');
    return shared;
  };
  afterAll(async () => {
    await shared?.close();
  });

  it('a statement error keeps its SQLSTATE and fields, no worker stack; resource and conflict SQLSTATEs are StoreUnavailableError with the code as cause', async () => {
    const store = await sharedStore();
    try {
      await store.query('INSERT INTO t (x) VALUES (1)');
      const dup = (await store.query('INSERT INTO t (x) VALUES (1)').catch((e: unknown) => e)) as Error & Record<string, unknown>;
      expect(dup).not.toBeInstanceOf(StoreUnavailableError);
      expect(dup).toMatchObject({ code: '23505', constraint: 't_pkey', table: 't' });
      expect(dup.stack ?? '').not.toContain('pglite-worker');
      const named = (await store.query('SELECT 1 / $1::int AS q', [0], { prepare: true }).catch((e: unknown) => e)) as Error & { code?: string };
      expect(named.code).toBe('22012');
      for (const code of ['53100', '53200', '40001']) {
        const err = (await store.query(`DO $$ BEGIN RAISE EXCEPTION 'raised' USING ERRCODE = '${code}'; END $$`).catch((e: unknown) => e)) as Error;
        expect(err).toBeInstanceOf(StoreUnavailableError);
        expect((err.cause as { code?: string }).code).toBe(code);
      }
      // A transaction aborted for a conflict is run again with retryConflicts (3 runs in all), then fails as the store's.
      let runs = 0;
      const conflict = await store
        .transaction(
          async (tx) => {
            runs += 1;
            await tx.query(`DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$`);
          },
          { retryConflicts: true },
        )
        .catch((e: unknown) => e);
      expect(conflict).toBeInstanceOf(StoreUnavailableError);
      expect(runs).toBe(3);
    } finally {
      // shared: closed after all
    }
  });

  it('a throw in the transaction callback rolls it back and rethrows that error; a statement after the end is refused', async () => {
    const store = await sharedStore();
    try {
      const boom = new Error('boom');
      let leaked: { query: Store['query'] } | undefined;
      const err = await store
        .transaction(async (tx) => {
          leaked = tx;
          await tx.query('INSERT INTO t (x) VALUES (1)');
          await tx.exec('INSERT INTO t (x) VALUES (2)');
          throw boom;
        })
        .catch((e: unknown) => e);
      expect(err).toBe(boom);
      expect(await store.query('SELECT x FROM t')).toEqual([]);
      await expect(leaked!.query('INSERT INTO t (x) VALUES (3)')).rejects.toThrow('Transaction is closed');
      expect(await store.transaction(async (tx) => tx.query<{ x: number }>('INSERT INTO t (x) VALUES (4) RETURNING x'))).toEqual([{ x: 4 }]);
      expect(await store.query('SELECT x FROM t')).toEqual([{ x: 4 }]);
    } finally {
      // shared: closed after all
    }
  });

  it('parameters reach the worker as the same values as on the main-thread store: a Buffer stays a Buffer; one that would arrive as another value is refused, nothing sent', async () => {
    const store = await sharedStore();
    const main = await createPGliteStore({ dataDir: 'memory://' });
    class Amount {
      constructor(readonly units: number) {}
      toString(): string {
        return String(this.units);
      }
      toJSON(): unknown {
        return { units: this.units };
      }
    }
    try {
      const same: Array<[string, unknown[]]> = [
        ['SELECT $1::text AS v', [Buffer.from('abc')]],
        ['SELECT $1::jsonb AS v', [{ key: Buffer.from([1, 2]), at: new Date(0) }]],
        ['SELECT $1::bytea AS v, $2::bytea AS w', [Buffer.from('hello'), new Uint8Array([9, 8, 7]).subarray(1)]],
        ['SELECT $1::text[] AS v', [[Buffer.from('x'), 'y']]],
        ['SELECT $1::int8 AS v, $2::numeric AS w, $3::timestamptz AS z', [2n ** 62n, '12345678901234567890.000000001', new Date(1_700_000_000_123)]],
      ];
      for (const prepare of [undefined, 'shape'] as const) {
        for (const [sql, params] of same) {
          const expected = await main.query(sql, params, prepare && { prepare });
          expect(await store.query(sql, params, prepare && { prepare })).toEqual(expected);
          expect(await store.transaction((tx) => tx.query(sql, params, prepare && { prepare }))).toEqual(expected);
        }
      }
      expect(await store.query<{ v: string }>('SELECT $1::text AS v', [Buffer.from('abc')])).toEqual([{ v: 'abc' }]);
      const refused = [[new Amount(5)], [{ nested: [new Amount(5)] }], [new URL('https://deputy.example/')], [() => 1]];
      for (const params of refused) {
        await expect(store.query('INSERT INTO t (x) SELECT 1 WHERE $1::text IS NOT NULL', params)).rejects.toMatchObject({ name: 'ParameterNotTransferable' });
        await expect(store.transaction((tx) => tx.query('INSERT INTO t (x) VALUES (2)').then(() => tx.query('SELECT $1::text AS v', params)))).rejects.toMatchObject({ name: 'ParameterNotTransferable' });
      }
      await expect(store.query('SELECT $1::jsonb AS v', [{ nested: [new Amount(5)] }])).rejects.toThrow('$1.nested[0]');
      const cyclic: Record<string, unknown> = { a: 1 };
      cyclic.self = { back: cyclic };
      await expect(store.query('SELECT $1::jsonb AS v', [cyclic])).rejects.toThrow('$1.self.back');
      const shared = { k: 1 };
      expect(await store.query('SELECT $1::jsonb AS v', [{ a: shared, b: shared }])).toEqual([{ v: { a: { k: 1 }, b: { k: 1 } } }]);
      expect(await store.query('SELECT x FROM t')).toEqual([]);
    } finally {
      await main.close();
    }
  });

  it('a byte view crosses as its own bytes, not its whole backing store (a pooled Buffer\'s slab, a large body\'s subarray); the caller\'s values are untouched', async () => {
    const body = Buffer.alloc(8 * 1024 * 1024, 7);
    body.write('key', 100);
    const key = body.subarray(100, 103);
    const floats = new Float64Array(1024).subarray(2, 4);
    const params = [key, { nested: [key] }, floats, Buffer.from('abc')];
    const { params: crossing, buffers } = wireParams(params);
    expect(buffers).toEqual([[0], [1, 'nested', 0], [3]]);
    const sent = crossing as [Uint8Array, { nested: Uint8Array[] }, Float64Array, Uint8Array];
    for (const view of [sent[0], sent[1].nested[0]!, sent[2], sent[3]]) expect(view.buffer.byteLength).toBe(view.byteLength);
    expect(Buffer.from(sent[0]).toString()).toBe('key');
    expect(params[0]).toBe(key);
    expect((params[1] as { nested: Buffer[] }).nested[0]).toBe(key);
    const plain = [1, 'a', { b: [2] }];
    expect(wireParams(plain).params).toBe(plain);

    const store = await sharedStore();
    expect(await store.query('SELECT $1::bytea AS v, $2::text AS w, $3::jsonb AS j', [key, key, { k: key.toString() }])).toEqual([{ v: new Uint8Array(Buffer.from('key')), w: 'key', j: { k: 'key' } }]);
  });

  it('concurrent transactions and statements run one at a time: no read-modify-write is lost, none interleaves', async () => {
    const store = await sharedStore();
    try {
      await store.query('INSERT INTO t (x, v) VALUES (1, 0)');
      const trace: string[] = [];
      const bump = (n: number) =>
        store.transaction(async (tx) => {
          trace.push(`begin ${n}`);
          const [row] = await tx.query<{ v: number }>('SELECT v FROM t WHERE x = 1');
          await new Promise((resolve) => setTimeout(resolve, 5));
          await tx.query('UPDATE t SET v = $1 WHERE x = 1', [row!.v + 1], { prepare: true });
          trace.push(`end ${n}`);
        });
      await Promise.all([bump(1), bump(2), bump(3), store.query('UPDATE t SET v = v + 100 WHERE x = 1'), bump(4)]);
      expect(await store.query('SELECT v FROM t WHERE x = 1')).toEqual([{ v: 104 }]);
      for (let i = 0; i < trace.length; i += 2) expect(trace[i + 1]).toBe(trace[i]!.replace('begin', 'end'));
    } finally {
      // shared: closed after all
    }
  });

  it('close while statements and a transaction are in flight: each settles (rows or StoreUnavailableError), later calls fail the same, nothing hangs', async () => {
    const { store } = await open();
    const { tx, release } = heldTransaction(store);
    const statements = Array.from({ length: 20 }, (_, i) => store.query('SELECT $1::int AS i', [i]));
    const closing = store.close();
    release();
    const settled = await Promise.allSettled([tx, ...statements, closing]);
    for (const s of settled.slice(0, -1)) if (s.status === 'rejected') expect(s.reason).toBeInstanceOf(StoreUnavailableError);
    expect(settled[0]!.status).toBe('rejected');
    expect(settled.at(-1)!.status).toBe('fulfilled');
    await expect(store.query('SELECT 1')).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(store.transaction(async () => 1)).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(store.ping()).rejects.toBeInstanceOf(StoreUnavailableError);
    await store.close();
  });

  it('the worker dying fails every pending and later call with StoreUnavailableError; none hangs', async () => {
    const { store, worker } = await open();
    const { tx, release } = heldTransaction(store);
    const waiting = store.query('SELECT pg_sleep(0.05)');
    await vi.waitFor(async () => expect(await Promise.race([tx.then(() => 'settled', () => 'settled'), Promise.resolve('open')])).toBe('open'));
    await worker.terminate();
    release();
    await expect(tx).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(waiting).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(store.query('SELECT 1')).rejects.toThrow('the embedded database worker stopped');
    await expect(store.ping()).rejects.toBeInstanceOf(StoreUnavailableError);
    await store.close();
  });

  it('a worker that dies loses the store for good: reported once (its exit code, no message), /healthz and /readyz answer 503 over HTTP, close releases the folder; a closed store is not lost', async () => {
    const dir = folder();
    let worker: Worker | undefined;
    const lost: StoreUnavailableError[] = [];
    const store = await createPGliteWorkerStore({ dataDir: dir, onWorker: (w) => (worker = w), onLost: (err) => lost.push(err) });
    const app = new Koa();
    app.use(healthRoutes({ store, keys: { activeSigningKey: {} } as unknown as KeyStore }).routes());
    const server = app.listen(0);
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
      expect(store.lost?.()).toBeUndefined();
      await worker!.terminate();
      await vi.waitFor(() => expect(lost).toHaveLength(1));
      expect(lost[0]).toBeInstanceOf(StoreUnavailableError);
      expect(lost[0]!.cause).toEqual({ exitCode: 1 });
      expect(store.lost?.()).toBe(lost[0]);
      const healthz = await fetch(`${base}/healthz`);
      expect([healthz.status, await healthz.json()]).toEqual([503, { status: 'store_lost' }]);
      expect((await fetch(`${base}/readyz`)).status).toBe(503);
      await store.close();
      expect(lost).toHaveLength(1);
      const again = await createPGliteWorkerStore({ dataDir: dir, onLost: (err) => lost.push(err) });
      expect(await again.query('SELECT 1 AS one')).toEqual([{ one: 1 }]);
      await again.close();
      expect(again.lost?.()).toBeUndefined();
      expect(lost).toHaveLength(1);
    } finally {
      server.close();
      await store.close();
    }
  });

  it('takes the data folder lock on this thread (another store or process on the folder is refused until close), reports its checkpoints here; data survives a reopen', async () => {
    const dir = folder();
    const checkpoints: CheckpointReason[] = [];
    const store = await createPGliteWorkerStore({
      dataDir: dir,
      checkpoint: { maxWalBytes: 1024 * 1024, timeoutMs: 60_000, intervalMs: 20 },
      checkpointEvents: { checkpointed: (reason) => checkpoints.push(reason) },
    });
    try {
      expect(JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8'))).toMatchObject({ pid: process.pid });
      await expect(createPGliteStore({ dataDir: dir })).rejects.toBeInstanceOf(DataDirLocked);
      await expect(createPGliteWorkerStore({ dataDir: dir })).rejects.toBeInstanceOf(DataDirLocked);
      // Another process (the lock alone: opening PGlite there would only come after it).
      const code = `import { lockDataDir } from './src/store/lock.ts';
try { lockDataDir(${JSON.stringify(dir)}); console.log('taken'); } catch (err) { console.log(err.name); }`;
      const { stdout } = await promisify(execFile)(process.execPath, [...TEST_NODE_FLAGS, '--import', 'tsx', '--input-type=module', '-e', code]);
      expect(stdout.trim()).toBe('DataDirLocked');
      await store.exec('CREATE TABLE kept (x int)');
      await store.query('INSERT INTO kept VALUES (7)');
      // The worker's checkpointer reports on this thread (metrics, the log).
      await store.exec('CREATE TABLE filler (id bigint PRIMARY KEY, body text NOT NULL)');
      await store.query("INSERT INTO filler SELECT g, repeat('x', 1000) FROM generate_series(1, 2000) g");
      await vi.waitFor(() => expect(checkpoints).toContain('wal'), { timeout: 10_000 });
    } finally {
      await store.close();
    }
    const again = await createPGliteStore({ dataDir: dir });
    try {
      expect(await again.query('SELECT x FROM kept')).toEqual([{ x: 7 }]);
    } finally {
      await again.close();
    }
  });
});
