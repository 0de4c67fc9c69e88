/**
 * `npx tsx scripts/bench/receipt-row-micro.ts [--n 1500] [--rounds 7]` — what the receipt row costs
 * to insert, by the shape of the `receipts` table: the table as migrated, and variants of it
 * (column types, columns, indexes), each in its own table, in alternating rounds on one store.
 * CPU µs per insert (`process.cpuUsage`: on PGlite the whole database; on PostgreSQL the client's
 * share plus the backend's from `/proc`) and WAL bytes per insert (PGlite: WAL inserted; PostgreSQL:
 * `pg_current_wal_lsn()`). PGlite in memory by default, a throw-away database with `DATABASE_URL`.
 * Issue 16, eleventh round.
 *
 * @module
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { parseArgs } from './options.js';
import { migrate, type Store } from '../../src/store/index.js';
import { backendCpuUs, withMicroStore } from './micro-store.js';

const { values } = parseArgs(import.meta.url, { options: { n: { type: 'string', default: '1500', value: 'positive integer' }, rounds: { type: 'string', default: '7', value: 'positive integer' } } });
const N = Number(values.n);
const ROUNDS = Number(values.rounds);

interface Variant {
  label: string;
  ddl: string;
  insert: string;
  params: (seq: number) => unknown[];
}

const b64 = (bytes: number): string => randomBytes(bytes).toString('base64url');
/** A gateway receipt's JWS-sized text (~930 characters). */
const jws = (): string => `eyJhbGciOiJFUzI1NiJ9.${b64(600)}.${b64(64)}`;
const AGENT = 'agent-micro';

const full = (seq: number) => [AGENT, seq, randomUUID(), b64(32), b64(32), jws()];
const VARIANTS: Variant[] = [
  {
    label: 'as migrated (003: id text UNIQUE)',
    ddl: '',
    insert: 'INSERT INTO receipts (agent_id, seq, id, hash, prev, jws) VALUES ($1, $2, $3, $4, $5, $6)',
    params: full,
  },
  {
    label: 'id uuid UNIQUE',
    ddl: `CREATE TABLE r_uuid (agent_id text NOT NULL, seq bigint NOT NULL CHECK (seq >= 1), id uuid NOT NULL UNIQUE, hash text NOT NULL, prev text NOT NULL, jws text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (agent_id, seq))`,
    insert: 'INSERT INTO r_uuid (agent_id, seq, id, hash, prev, jws) VALUES ($1, $2, $3::uuid, $4, $5, $6)',
    params: full,
  },
  {
    label: 'id text, UNIQUE ((id::uuid)) instead of UNIQUE (id)',
    ddl: `CREATE TABLE r_expr (agent_id text NOT NULL, seq bigint NOT NULL CHECK (seq >= 1), id text NOT NULL, hash text NOT NULL, prev text NOT NULL, jws text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (agent_id, seq));
      CREATE UNIQUE INDEX r_expr_id ON r_expr ((id::uuid))`,
    insert: 'INSERT INTO r_expr (agent_id, seq, id, hash, prev, jws) VALUES ($1, $2, $3, $4, $5, $6)',
    params: full,
  },
  {
    label: 'id text, no id index (floor)',
    ddl: `CREATE TABLE r_noid (agent_id text NOT NULL, seq bigint NOT NULL CHECK (seq >= 1), id text NOT NULL, hash text NOT NULL, prev text NOT NULL, jws text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (agent_id, seq))`,
    insert: 'INSERT INTO r_noid (agent_id, seq, id, hash, prev, jws) VALUES ($1, $2, $3, $4, $5, $6)',
    params: full,
  },
  {
    label: 'id uuid UNIQUE, without prev',
    ddl: `CREATE TABLE r_noprev (agent_id text NOT NULL, seq bigint NOT NULL CHECK (seq >= 1), id uuid NOT NULL UNIQUE, hash text NOT NULL, jws text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (agent_id, seq))`,
    insert: 'INSERT INTO r_noprev (agent_id, seq, id, hash, jws) VALUES ($1, $2, $3::uuid, $4, $5)',
    params: (seq) => [AGENT, seq, randomUUID(), b64(32), jws()],
  },
];

async function wal(store: Store): Promise<number> {
  const fn = store.kind === 'postgres' ? 'pg_current_wal_lsn()' : 'pg_current_wal_insert_lsn()';
  const rows = await store.query<{ b: string }>(`SELECT pg_wal_lsn_diff(${fn}, '0/0')::text AS b`);
  return Number(rows[0]!.b.split('.')[0]);
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

await withMicroStore('deputy_rowmicro', async (store, backend) => {
  await migrate(store);
  for (const v of VARIANTS) if (v.ddl) await store.exec(v.ddl);
  const seqs = VARIANTS.map(() => 0);
  const run = (i: number) => store.query(VARIANTS[i]!.insert, VARIANTS[i]!.params(++seqs[i]!), { prepare: true });
  for (let i = 0; i < VARIANTS.length; i++) for (let k = 0; k < 200; k++) await run(i);
  const cpu: number[][] = VARIANTS.map(() => []);
  const walPer: number[][] = VARIANTS.map(() => []);
  for (let r = 0; r < ROUNDS; r++) {
    for (let i = 0; i < VARIANTS.length; i++) {
      const w0 = await wal(store);
      const b0 = backendCpuUs(backend);
      const c0 = process.cpuUsage();
      for (let k = 0; k < N; k++) await run(i);
      const used = process.cpuUsage(c0);
      cpu[i]!.push((used.user + used.system + backendCpuUs(backend) - b0) / N);
      walPer[i]!.push(((await wal(store)) - w0) / N);
    }
  }
  console.log(`${store.kind}, ${N} inserts × ${ROUNDS} alternating rounds (CPU: this process${backend ? ' + backend' : ''}):`);
  VARIANTS.forEach((v, i) => {
    const diffs = cpu[i]!.map((x, r) => x - cpu[0]![r]!);
    console.log(`  ${v.label}: ${median(cpu[i]!).toFixed(1)} µs [${cpu[i]!.map((x) => x.toFixed(0)).join(' ')}], paired vs migrated ${median(diffs).toFixed(1)} µs, WAL ${median(walPer[i]!).toFixed(0)} B`);
  });
});
