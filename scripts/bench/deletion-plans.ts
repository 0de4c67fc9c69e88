/**
 * `npx tsx scripts/bench/deletion-plans.ts [--rows N] [--agents N]` (PostgreSQL too with
 * `DATABASE_URL`: a scratch database is created and dropped): the plans of the statements an
 * agent deletion runs against the tables that grow with traffic — `token_records` (every issued
 * token) and `oidc_models` (every DPoP proof `jti` of every call, until purged) — at a size that
 * a deployment reaches, built by bulk SQL (`generate_series`), as scale-curves.ts does.
 *
 * Prints, per statement, `EXPLAIN (ANALYZE, BUFFERS)`'s counters rather than times (the machine is
 * shared): the sequential scans that ran and the rows they passed on, the rows filters read and
 * threw away, and the pages (buffers) of the costliest node.
 * Each statement runs in a transaction that is rolled back, so every one sees the same rows.
 * `BEFORE` holds the statements as they were before issue 16's seventh round, for comparison.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from './options.js';
import pg from 'pg';
import { deleteClientGrants } from '../../src/oauth/oidc-provider/adapter.js';
import { TokenRecords } from '../../src/oauth/token-records.js';
import { createPGliteStore } from '../../src/store/pglite.js';
import { createPostgresStore } from '../../src/store/postgres.js';
import { migrate, type Queryable, type Store } from '../../src/store/index.js';

/** The two statements as they were before the seventh round (one full scan each at scale). */
const BEFORE = {
  detachUpstream: `WITH captured AS (SELECT DISTINCT upstream FROM token_records WHERE agent_id = $1 AND parent_jti IS NULL AND upstream IS NOT NULL),
            cleared AS (UPDATE token_records SET upstream = NULL WHERE upstream IN (SELECT upstream FROM captured) RETURNING 1)
       SELECT upstream FROM captured`,
  deleteClientGrants: `WITH d AS (
       DELETE FROM oidc_models WHERE payload->>'clientId' = $1
          OR grant_id IN (SELECT id FROM oidc_models WHERE model = 'Grant' AND payload->>'clientId' = $1)
       RETURNING 1)
     SELECT count(*)::int AS n FROM d`,
};

/**
 * `rows` token records over `agents` agents: odd rows are first-link (federated) tokens with an
 * upstream handle of their own, each even row a token exchanged from the row before it by the
 * next agent (it carries its parent's handle). `rows` once-records (DPoP `jti`s, payload `{}`)
 * and, per agent, one grant and one refresh token of that grant in `oidc_models`.
 */
async function fill(store: Store, rows: number, agents: number): Promise<void> {
  await store.query(
    `INSERT INTO token_records (jti, parent_jti, root_jti, agent_id, user_id, issuer_id, audience, scope, chain, depth, upstream, expires_at)
     SELECT 'j' || g,
            CASE WHEN g % 2 = 0 THEN 'j' || (g - 1) END,
            'j' || (g - (1 - g % 2)),
            'agent-' || ((g / 2 + 1 - g % 2) % $2::int),
            'user', 'idp', 'https://api.example.com', 'docs.read', '[]'::jsonb, 1 + (1 - g % 2),
            'upt-' || (g - (1 - g % 2)),
            now() + interval '1 hour'
     FROM generate_series(1, $1::int) g`,
    [rows, agents],
  );
  await store.query(
    `INSERT INTO oidc_models (model, id, payload, expires_at)
     SELECT 'dpop-jti', 'p' || g, '{}'::jsonb, now() + interval '5 minutes' FROM generate_series(1, $1::int) g`,
    [rows],
  );
  await store.query(
    `INSERT INTO oidc_models (model, id, payload, grant_id, expires_at)
     SELECT m, m || '-' || g, jsonb_build_object('clientId', 'agent-' || g), CASE WHEN m = 'Grant' THEN NULL ELSE 'Grant-' || g END, now() + interval '1 day'
     FROM generate_series(0, $1::int - 1) g, unnest(ARRAY['Grant', 'RefreshToken']) m`,
    [agents],
  );
  await store.exec('ANALYZE token_records; ANALYZE oidc_models;');
}

/** EXPLAIN ANALYZE of `sql` in a transaction that is rolled back: seq scans and rows filtered out. */
async function plan(store: Store, sql: string, params: unknown[]): Promise<{ seqScans: string[]; seqRows: number; removedByFilter: number; buffers: number; plan: string }> {
  let lines: string[] = [];
  await store
    .transaction(async (tx: Queryable) => {
      const out = await tx.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) ${sql}`, params);
      lines = out.map((r) => r['QUERY PLAN']);
      throw new RollBack();
    })
    .catch((err: unknown) => {
      if (!(err instanceof RollBack)) throw err;
    });
  const removedByFilter = lines.reduce((n, l) => n + Number(/Rows Removed by (?:Filter|Join Filter): (\d+)/.exec(l)?.[1] ?? 0), 0);
  // Pages: the largest node's count (a node's buffers include its children's, not its CTEs').
  const buffers = Math.max(0, ...lines.map((l) => Number(/hit=(\d+)/.exec(l)?.[1] ?? 0) + Number(/read=(\d+)/.exec(l)?.[1] ?? 0)));
  const seqRows = lines.filter((l) => l.includes('Seq Scan')).reduce((n, l) => n + Number(/actual rows=([\d.]+)/.exec(l)?.[1] ?? 0), 0);
  return { seqScans: lines.filter((l) => l.includes('Seq Scan')).map((l) => l.trim()), seqRows, removedByFilter, buffers, plan: lines.join('\n') };
}

class RollBack extends Error {}

/** The statement `fn` sends (captured from a recording Queryable), for EXPLAIN. */
async function statementOf(fn: (db: Queryable) => Promise<unknown>): Promise<{ sql: string; params: unknown[] }> {
  let seen: { sql: string; params: unknown[] } | undefined;
  const recorder: Queryable = {
    query: async (sql, params) => {
      seen = { sql, params: [...(params ?? [])] };
      return [];
    },
    exec: async () => {},
  };
  await fn(recorder);
  if (!seen) throw new Error('no statement sent');
  return seen;
}

async function openScratch(): Promise<{ store: Store; kind: string; drop: () => Promise<void> }> {
  const admin = process.env.DATABASE_URL;
  if (!admin) return { store: await createPGliteStore({ dataDir: 'memory://' }), kind: 'pglite', drop: async () => {} };
  const name = `deputy_plans_${randomBytes(4).toString('hex')}`;
  const run = async (q: string) => {
    const c = new pg.Client({ connectionString: admin });
    await c.connect();
    await c.query(q).finally(() => c.end());
  };
  await run(`CREATE DATABASE ${name}`);
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return { store: createPostgresStore({ connectionString: url.toString() }), kind: 'postgres', drop: () => run(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}

async function main(): Promise<void> {
  const { values } = parseArgs(import.meta.url, { options: { rows: { type: 'string', default: '200000', value: 'positive integer' }, agents: { type: 'string', default: '1000', value: 'positive integer' }, verbose: { type: 'boolean', default: false } } });
  const rows = Number(values.rows);
  const agents = Number(values.agents);
  const { store, kind, drop } = await openScratch();
  try {
    await migrate(store);
    await fill(store, rows, agents);
    const agent = 'agent-7';
    const now = {
      detachUpstream: await statementOf((db) => new TokenRecords(store).detachUpstream(agent, db)),
      deleteClientGrants: await statementOf((db) => deleteClientGrants(db, agent)),
    };
    for (const [name, stmt] of Object.entries(now) as [keyof typeof BEFORE, { sql: string; params: unknown[] }][]) {
      for (const [when, sql] of [['before', BEFORE[name]], ['now', stmt.sql]] as const) {
        const p = await plan(store, sql, stmt.params);
        console.log(JSON.stringify({ store: kind, rows, statement: name, when, seqScans: p.seqScans.length, seqScanRowsOut: p.seqRows, removedByFilter: p.removedByFilter, buffers: p.buffers }));
        if (values.verbose) console.log(p.plan);
      }
    }
  } finally {
    await store.close();
    await drop();
  }
}

await main();
