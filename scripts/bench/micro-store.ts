/**
 * What the in-process statement micro-benchmarks (`statement-micro.ts`, `exchange-statement-micro.ts`)
 * share: a throw-away database on the PostgreSQL of `DATABASE_URL` (or PGlite in memory without it),
 * the CPU time of the PostgreSQL backend serving the one pooled connection, and the WAL written.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { openStore, type Store } from '../../src/store/index.js';

/** CPU time of a PostgreSQL backend on this machine (`/proc/<pid>/stat` utime + stime), in µs; 0 when unreadable or `pid` undefined. */
export function backendCpuUs(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1e6) / 100;
  } catch {
    return 0;
  }
}

/** Bytes of WAL written so far (`pg_current_wal_lsn()`); 0 on PGlite. */
export async function walBytes(store: Store): Promise<bigint> {
  if (store.kind !== 'postgres') return 0n;
  const rows = await store.query<{ b: string }>(`SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::text AS b`);
  return BigInt(rows[0]!.b.split('.')[0]!);
}

async function adminQuery(admin: string, sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: admin });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

/**
 * Runs `body` with a store of one connection on a new database named `<prefix>_<random>` (dropped
 * afterwards) when `DATABASE_URL` is set, else on PGlite in memory; `backend` is that
 * connection's backend pid on PostgreSQL.
 */
export async function withMicroStore(prefix: string, body: (store: Store, backend: number | undefined) => Promise<void>): Promise<void> {
  const admin = process.env.DATABASE_URL;
  const dbName = `${prefix}_${randomBytes(4).toString('hex')}`;
  let url: string | undefined;
  if (admin) {
    await adminQuery(admin, `CREATE DATABASE ${dbName}`);
    const u = new URL(admin);
    u.pathname = `/${dbName}`;
    url = u.toString();
  }
  const store = await openStore({ databaseUrl: url, dataDir: 'memory://', poolSize: 1 });
  try {
    const backend = store.kind === 'postgres' ? (await store.query<{ pid: number }>('SELECT pg_backend_pid() AS pid'))[0]?.pid : undefined;
    await body(store, backend);
  } finally {
    await store.close();
    if (admin) await adminQuery(admin, `DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
  }
}
