/**
 * `npx tsx scripts/bench/pglite-statement-parts.ts [--n 800] [--rounds 7] [--dir memory://|folder]`
 * — what one named statement costs the main thread on embedded PGlite, part by part: the floor of
 * a round trip into the WASM (`SELECT $1`), then each write the gateway's receipt append folds into
 * its one statement (`src/audit/chain.ts` `appendIfHead`) run alone — the chain-head `UPDATE`, the
 * receipt `INSERT`, the DPoP `jti` upsert (and a plain insert of the same row, for the price of
 * `ON CONFLICT … DO UPDATE … WHERE`) — and the folded statement itself. CPU µs per statement
 * (`process.cpuUsage`: with PGlite, the database runs in this thread) and WAL bytes per statement
 * (`pg_current_wal_insert_lsn()`: WAL inserted, written or not), medians of alternating rounds.
 * `--dir folder` runs on a new data folder (as `npm start`), `memory://` (the bench's) by default;
 * for the file system's share, run it under `strace -c -f` with two values of `--n` and divide the
 * difference. Issue 16, eighth round.
 *
 * @module
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from './options.js';
import { appendIfHead, type ChainHead } from '../../src/audit/chain.js';
import { genesisHash } from '../../src/audit/receipt.js';
import { createPGliteStore } from '../../src/store/pglite.js';
import { migrate, type Store } from '../../src/store/index.js';

const { values } = parseArgs(import.meta.url, { options: { n: { type: 'string', default: '800', value: 'positive integer' }, rounds: { type: 'string', default: '7', value: 'positive integer' }, dir: { type: 'string', default: 'memory://' } } });
const N = Number(values.n);
const ROUNDS = Number(values.rounds);
const PREPARE = { prepare: true } as const;

const b64 = (bytes: number): string => randomBytes(bytes).toString('base64url');
/** A receipt's JWS-sized text (a gateway receipt is ~600–700 characters). */
const jws = (): string => `e30.${b64(450)}.sig`;

/** The probes, each one statement per call, on `store`. */
async function probes(store: Store): Promise<Record<string, () => Promise<unknown>>> {
  const headAgent = `parts-head-${randomUUID()}`;
  await store.query('INSERT INTO receipt_chains (agent_id, seq, head) VALUES ($1, 0, $2)', [headAgent, 'h0']);
  let head = { seq: 0, hash: 'h0' };
  const insertAgent = `parts-insert-${randomUUID()}`;
  let insertSeq = 0;
  const chainAgent = `parts-chain-${randomUUID()}`;
  let chain: ChainHead = { seq: 0, hash: genesisHash(chainAgent) };
  const upsert = `INSERT INTO oidc_models (model, id, payload, expires_at) VALUES ($1, $2, '{}'::jsonb, now() + make_interval(secs => $3::int))`;
  return {
    'SELECT $1 (one round trip)': () => store.query('SELECT $1::int AS x', [1], PREPARE),
    'chain-head UPDATE alone': async () => {
      const hash = b64(32);
      const sql = 'UPDATE receipt_chains SET seq = $2::bigint, head = $3::text, updated_at = now() WHERE agent_id = $1::text AND seq = $4::bigint AND head = $5::text';
      await store.query(sql, [headAgent, head.seq + 1, hash, head.seq, head.hash], PREPARE);
      head = { seq: head.seq + 1, hash };
    },
    'receipt INSERT alone': () => store.query('INSERT INTO receipts (agent_id, seq, id, hash, prev, jws) VALUES ($1, $2, $3, $4, $5, $6)', [insertAgent, ++insertSeq, randomUUID(), b64(32), b64(32), jws()], PREPARE),
    'jti upsert alone (ON CONFLICT … DO UPDATE … WHERE expired)': () =>
      store.query(`${upsert} ON CONFLICT (model, id) DO UPDATE SET expires_at = EXCLUDED.expires_at, payload = EXCLUDED.payload WHERE oidc_models.expires_at <= now() RETURNING 1`, ['DPoPProof', randomUUID(), 300], PREPARE),
    'jti plain INSERT': () => store.query(upsert, ['DPoPProof', randomUUID(), 300], PREPARE),
    'receipt append + jti (appendIfHead, one statement)': async () => {
      const receipt = { id: randomUUID(), agent: chainAgent, seq: chain.seq + 1, hash: b64(32), prev: chain.hash, jws: jws() };
      const outcome = await appendIfHead(store, chainAgent, chain, [receipt], [{ namespace: 'DPoPProof', key: randomUUID(), ttlSeconds: 300 }]);
      if (outcome !== 'written') throw new Error(`append: ${outcome}`);
      chain = { seq: receipt.seq, hash: receipt.hash };
    },
  };
}

async function walBytes(store: Store): Promise<number> {
  const rows = await store.query<{ b: string }>(`SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::text AS b`);
  return Number(rows[0]!.b.split('.')[0]);
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const folder = values.dir === 'folder' ? mkdtempSync(join(tmpdir(), 'deputy-pglite-parts-')) : undefined;
  const store = await createPGliteStore({ dataDir: folder ?? 'memory://' });
  try {
    await migrate(store);
    const runs = await probes(store);
    for (const run of Object.values(runs)) for (let i = 0; i < 200; i++) await run();
    const cpu: Record<string, number[]> = {};
    const wal: Record<string, number[]> = {};
    for (let r = 0; r < ROUNDS; r++) {
      for (const [label, run] of Object.entries(runs)) {
        const w0 = await walBytes(store);
        const c0 = process.cpuUsage();
        for (let i = 0; i < N; i++) await run();
        const used = process.cpuUsage(c0);
        (cpu[label] ??= []).push((used.user + used.system) / N);
        (wal[label] ??= []).push(((await walBytes(store)) - w0) / N);
      }
    }
    console.log(`PGlite (${folder ? 'data folder' : 'memory://'}), ${N} statements × ${ROUNDS} alternating rounds:`);
    for (const label of Object.keys(runs)) {
      console.log(`  ${label}: ${median(cpu[label]!).toFixed(0)} µs CPU [${cpu[label]!.map((x) => x.toFixed(0)).join(' ')}], WAL ${median(wal[label]!).toFixed(0)} B`);
    }
  } finally {
    await store.close();
    if (folder) rmSync(folder, { recursive: true, force: true });
  }
}

await main();
