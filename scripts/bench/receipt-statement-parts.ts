/**
 * `npx tsx scripts/bench/receipt-statement-parts.ts [--n 2000] [--rounds 7] [--only a,b]` — what the
 * gateway's receipt statement (`src/audit/chain.ts` `appendIfHead`, one receipt from a head with its
 * DPoP `jti`: the head's conditional `UPDATE`, the `jti` insert, the receipt insert, one CTE) costs
 * the database, part by part: the statement as it is against variants that each take one part away
 * or change one (an index dropped, the `jti` member without `ON CONFLICT`, a member left out), each
 * variant on its own store (PGlite in memory, or a throw-away database on `DATABASE_URL`'s
 * PostgreSQL), in alternating rounds. Per statement: CPU µs (PGlite: this process, where the
 * database runs; PostgreSQL: client + backend, the backend from `/proc`), WAL bytes (PGlite: WAL
 * inserted; PostgreSQL: one execution's own records by `pg_walinspect`, since the server's WAL
 * position is shared with whatever else runs on it), and the head row's updates that were HOT
 * (`pg_stat_user_tables`). Differences to the statement as migrated are paired by round.
 * Issue 16, thirteenth round.
 *
 * @module
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { migrate, type Store } from '../../src/store/index.js';
import { backendCpuUs, withMicroStore } from './micro-store.js';
import { parseArgs } from './options.js';

const { values } = parseArgs(import.meta.url, {
  options: {
    n: { type: 'string', default: '2000', value: 'positive integer', description: 'statements per variant and round' },
    rounds: { type: 'string', default: '7', value: 'positive integer', description: 'rounds (odd rounds in reverse order)' },
    only: { type: 'string', value: 'non-negative integers', description: 'the variants to run by index (0, the statement as it was, always runs)' },
  },
});
const N = Number(values.n);
const ROUNDS = Number(values.rounds);

const b64 = (bytes: number): string => randomBytes(bytes).toString('base64url');
/** A gateway receipt's JWS-sized text (~930 characters). */
const jws = (): string => `eyJhbGciOiJFUzI1NiJ9.${b64(600)}.${b64(64)}`;

const MOVE_HEAD = 'UPDATE receipt_chains SET seq = $2::bigint, head = $3::text, updated_at = now() WHERE agent_id = $1::text AND seq = $4::bigint AND head = $5::text';
const SPENT_UPSERT = `spent AS (
         INSERT INTO oidc_models (model, id, payload, expires_at)
         SELECT $9::text, $10::text, '{}'::jsonb, now() + make_interval(secs => $11::int)
         WHERE EXISTS (SELECT 1 FROM moved)
         ON CONFLICT (model, id) DO UPDATE SET expires_at = EXCLUDED.expires_at, payload = EXCLUDED.payload
           WHERE oidc_models.expires_at <= now()
         RETURNING 1),`;
const SPENT_PLAIN = `spent AS (
         INSERT INTO oidc_models (model, id, payload, expires_at)
         SELECT $9::text, $10::text, '{}'::jsonb, now() + make_interval(secs => $11::int)
         WHERE EXISTS (SELECT 1 FROM moved)),`;
const INSERTED = (seq: string) => `inserted AS (
         INSERT INTO receipts (agent_id, seq, id, hash, prev, jws)
         SELECT $1, ${seq}, $6::text, $3, $7::text, $8::text
         WHERE EXISTS (SELECT 1 FROM moved))`;
const KEYED_SEQ = 'CASE WHEN EXISTS (SELECT 1 FROM spent) THEN $2::bigint ELSE 0 END';
/** The text of `SINGLE_APPEND.head.once` in src/audit/chain.ts before issue 16, thirteenth round (variant 7 is its text after). */
const AS_IS = `WITH moved AS (${MOVE_HEAD} RETURNING 1),
       ${SPENT_UPSERT}
       ${INSERTED(KEYED_SEQ)}
     SELECT (SELECT count(*) FROM moved)::int AS moved`;

interface Variant {
  label: string;
  /** DDL run after the migrations, on this variant's own store. */
  ddl?: string;
  sql?: string;
  /** Parameters beyond the first eight: false when the statement has no `jti` member. */
  jti?: boolean;
}

const VARIANTS: Variant[] = [
  { label: 'as migrated, the statement before the thirteenth round' },
  { label: 'no UNIQUE (id) on receipts', ddl: 'ALTER TABLE receipts DROP CONSTRAINT receipts_id_key' },
  { label: 'hash index on receipts.id instead of UNIQUE', ddl: 'ALTER TABLE receipts DROP CONSTRAINT receipts_id_key; CREATE INDEX receipts_id_hash ON receipts USING hash (id)' },
  { label: 'receipts without created_at', ddl: 'ALTER TABLE receipts DROP COLUMN created_at' },
  { label: 'receipt_chains fillfactor 50', ddl: 'ALTER TABLE receipt_chains SET (fillfactor = 50)' },
  { label: 'oidc_models without its expires_at index', ddl: 'DROP INDEX oidc_models_expires_at' },
  { label: 'oidc_models without its client_id index', ddl: 'DROP INDEX oidc_models_client_id' },
  {
    label: 'jti plain INSERT (no ON CONFLICT; a conflict fails the statement): the thirteenth round\'s statement',
    sql: `WITH moved AS (${MOVE_HEAD} RETURNING 1),
       ${SPENT_PLAIN}
       ${INSERTED('$2::bigint')}
     SELECT (SELECT count(*) FROM moved)::int AS moved`,
  },
  { label: 'no jti member (head + receipt)', sql: `WITH moved AS (${MOVE_HEAD} RETURNING 1), ${INSERTED('$2::bigint')} SELECT (SELECT count(*) FROM moved)::int AS moved`, jti: false },
  {
    label: 'no receipt member (head + jti)',
    sql: `WITH moved AS (${MOVE_HEAD} RETURNING 1),
       ${SPENT_UPSERT.replace(/,$/, '')}
     SELECT (SELECT count(*) FROM moved)::int + 0 * length($6::text || $7::text || $8::text) AS moved`,
  },
  { label: 'head UPDATE alone', sql: `${MOVE_HEAD.replace('$5::text', '$5::text AND $6::text IS NOT NULL AND $7::text IS NOT NULL AND $8::text IS NOT NULL')}`, jti: false },
];

const selected = values.only ? VARIANTS.filter((_, i) => i === 0 || values.only!.split(',').includes(String(i))) : VARIANTS;

interface Lane {
  variant: Variant;
  store: Store;
  backend: number | undefined;
  agent: string;
  head: { seq: number; hash: string };
}

/** One statement of `lane`'s variant, moving its head. */
async function step(lane: Lane): Promise<void> {
  const hash = b64(32);
  const { seq, hash: prev } = lane.head;
  const params: unknown[] = [lane.agent, seq + 1, hash, seq, prev, randomUUID(), prev, jws()];
  if (lane.variant.jti !== false) params.push('DPoPProof', randomUUID(), 300);
  await lane.store.query(lane.variant.sql ?? AS_IS, params, { prepare: true });
  lane.head = { seq: seq + 1, hash };
}

async function walInserted(store: Store): Promise<number> {
  const rows = await store.query<{ b: string }>(`SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::text AS b`);
  return Number(rows[0]!.b.split('.')[0]);
}

/**
 * The WAL records of one execution (PostgreSQL: `pg_walinspect`, the records of its transaction
 * only, since other sessions write WAL too), as `relation kind bytes` with the commit record.
 */
async function walByMember(lane: Lane): Promise<string> {
  await lane.store.exec('CREATE EXTENSION IF NOT EXISTS pg_walinspect');
  const hash = b64(32);
  const { seq, hash: prev } = lane.head;
  const params: unknown[] = [lane.agent, seq + 1, hash, seq, prev, randomUUID(), prev, jws()];
  if (lane.variant.jti !== false) params.push('DPoPProof', randomUUID(), 300);
  const [{ lsn }] = (await lane.store.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn')) as [{ lsn: string }];
  const xid = await lane.store.transaction(async (tx) => {
    await tx.query(lane.variant.sql ?? AS_IS, params);
    return (await tx.query<{ xid: string }>('SELECT pg_current_xact_id()::text AS xid'))[0]!.xid;
  });
  lane.head = { seq: seq + 1, hash };
  const rows = await lane.store.query<{ rel: string | null; kind: string; len: number }>(
    `SELECT (SELECT relname FROM pg_class WHERE relfilenode = substring(block_ref from 'rel \\d+/\\d+/(\\d+)')::oid) AS rel,
            resource_manager || '/' || record_type AS kind, record_length AS len
     FROM pg_get_wal_records_info($1::pg_lsn, pg_current_wal_flush_lsn()) WHERE xid::text = $2 ORDER BY start_lsn`,
    [lsn, xid],
  );
  const total = rows.reduce((sum, r) => sum + Number(r.len), 0);
  return `WAL ${total} B in ${rows.length} records (${rows.map((r) => `${r.rel ?? '-'} ${r.kind} ${r.len}`).join(', ')})`;
}


async function hot(store: Store): Promise<string> {
  if (store.kind === 'postgres') {
    await store.query('SELECT pg_stat_force_next_flush()');
    await store.query('SELECT 1');
  }
  const rows = await store.query<{ n_tup_upd: string; n_tup_hot_upd: string }>(`SELECT n_tup_upd::text, n_tup_hot_upd::text FROM pg_stat_user_tables WHERE relname = 'receipt_chains'`);
  const r = rows[0];
  return r ? `${r.n_tup_hot_upd}/${r.n_tup_upd} HOT` : 'no stats';
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Opens one store per variant (nested throw-away databases on PostgreSQL), then `body`. */
async function withLanes(variants: readonly Variant[], body: (lanes: Lane[]) => Promise<void>, lanes: Lane[] = []): Promise<void> {
  const variant = variants[lanes.length];
  if (!variant) return body(lanes);
  await withMicroStore('deputy_stmtparts', async (store, backend) => {
    await migrate(store);
    if (variant.ddl) await store.exec(variant.ddl);
    const agent = `agent-${randomUUID()}`;
    await store.query('INSERT INTO receipt_chains (agent_id, seq, head) VALUES ($1, 0, $2)', [agent, 'genesis']);
    await withLanes(variants, body, [...lanes, { variant, store, backend, agent, head: { seq: 0, hash: 'genesis' } }]);
  });
}

await withLanes(selected, async (lanes) => {
  const kind = lanes[0]!.store.kind;
  for (const lane of lanes) for (let k = 0; k < 300; k++) await step(lane);
  const cpu: number[][] = lanes.map(() => []);
  const backendCpu: number[][] = lanes.map(() => []);
  const wal: number[][] = lanes.map(() => []);
  for (let r = 0; r < ROUNDS; r++) {
    // Odd rounds run the lanes in reverse, so that no variant always runs first.
    for (let j = 0; j < lanes.length; j++) {
      const i = r % 2 ? lanes.length - 1 - j : j;
      const lane = lanes[i]!;
      // The pool may have reconnected while the other lanes ran: the backend's pid, afresh.
      if (kind === 'postgres') lane.backend = (await lane.store.query<{ pid: number }>('SELECT pg_backend_pid() AS pid'))[0]!.pid;
      const w0 = kind === 'postgres' ? 0 : await walInserted(lane.store);
      const b0 = backendCpuUs(lane.backend);
      const c0 = process.cpuUsage();
      for (let k = 0; k < N; k++) await step(lane);
      const used = process.cpuUsage(c0);
      const backend = backendCpuUs(lane.backend) - b0;
      cpu[i]!.push((used.user + used.system + backend) / N);
      backendCpu[i]!.push(backend / N);
      if (kind !== 'postgres') wal[i]!.push(((await walInserted(lane.store)) - w0) / N);
    }
  }
  console.log(`${kind}, ${N} statements × ${ROUNDS} alternating rounds, one store per variant (CPU: this process${kind === 'postgres' ? ' + backend' : ''}):`);
  for (let i = 0; i < lanes.length; i++) {
    const lane = lanes[i]!;
    const diffs = cpu[i]!.map((x, r) => x - cpu[0]![r]!);
    const lower = diffs.filter((d) => d < 0).length;
    const walText = kind === 'postgres' ? await walByMember(lane) : `WAL ${median(wal[i]!).toFixed(0)} B`;
    const backendText = kind === 'postgres' ? `, backend ${median(backendCpu[i]!).toFixed(1)} µs` : '';
    console.log(`  [${i}] ${lane.variant.label}: ${median(cpu[i]!).toFixed(1)} µs${backendText} [${cpu[i]!.map((x) => x.toFixed(0)).join(' ')}]` +
      `${i ? `, paired ${median(diffs).toFixed(1)} µs (lower in ${lower}/${diffs.length})` : ''}; ${walText}; head ${await hot(lane.store)}`);
  }
});
