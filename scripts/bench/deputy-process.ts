/**
 * The server under test, in its own process: starts Deputy from the JSON configuration in
 * `BENCH_DEPUTY_CONFIG` and prints `READY <url> <issuer>` once it accepts requests.
 *
 * A third word on the READY line is the URL of the bench's counters (counters.ts): store
 * statements, WebCrypto operations and RSS, installed before Deputy starts.
 *
 * `BENCH_SETUP_SQL` (a JSON array of `{ text, params }`): statements run on Deputy's store after
 * it started and before READY, for state too big to build through its APIs (scale.ts: 10⁵ agents).
 *
 * `BENCH_HEAP_PROF=<dir>`: sampling heap profiles of this process, one per counters window
 * (counters.ts `HeapSampler`; summarise with heap-summary.ts).
 *
 * `BENCH_NO_RECEIPTS=1` replaces receipt appends with a no-op, for the "receipts off" figures
 * only: Deputy itself has no switch to stop writing receipts. The gateway's `appendOnce` still
 * records its once-key (the DPoP proof's `jti`), which a call must spend with or without receipts;
 * the token exchange's `appendWith` still writes what the receipt attests (replay keys, vault row,
 * token record), in one statement as with receipts, without the receipt (`writeAttested`).
 */
import { validateConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/log.js';
import { AlreadyRecorded } from '../../src/audit/index.js';
import { recordOnce, type OnceKey } from '../../src/oauth/adapter.js';
import type { AttestedWrites } from '../../src/audit/receipts.js';
import type { Store } from '../../src/store/index.js';
import { startDeputy } from '../../src/main.js';
import { installCounters, serveCounters, writeHeapProfile } from './counters.js';

installCounters();

const raw = JSON.parse(process.env.BENCH_DEPUTY_CONFIG ?? '{}') as { store?: Record<string, unknown> };
// `DEPUTY_PGLITE_THREAD=worker`: the embedded store in a worker thread (issue 16, twelfth round; the bench's config ignores the environment otherwise).
if (process.env.DEPUTY_PGLITE_THREAD) raw.store = { ...raw.store, pglite: { thread: process.env.DEPUTY_PGLITE_THREAD } };
const config = validateConfig(raw, 'bench', {});
const deputy = await startDeputy({ config, logger: createLogger('warn'), env: process.env });
if (process.env.BENCH_NO_RECEIPTS === '1') {
  Object.defineProperty(deputy.receipts, 'append', { value: async () => undefined });
  Object.defineProperty(deputy.receipts, 'appendOnce', {
    value: async (_input: unknown, once: OnceKey, ready?: Promise<unknown>) => {
      await ready; // the gateway's DPoP proof signature, verifying meanwhile: as the receipt service
      if (!(await recordOnce(deputy.store, once.namespace, once.key, once.ttlSeconds))) throw new AlreadyRecorded(once);
      return undefined;
    },
  });
  Object.defineProperty(deputy.receipts, 'appendWith', { value: async (_input: unknown, writes: AttestedWrites) => writeAttested(deputy.store, writes) });
}

/** The writes a receipt attests, without it: the parts and the once-keys in one statement (no undo needed in the bench). */
async function writeAttested(store: Store, writes: AttestedWrites): Promise<undefined> {
  const params: unknown[] = [writes.once.map((k) => k.namespace), writes.once.map((k) => k.key), writes.once.map((k) => Math.max(1, Math.ceil(k.ttlSeconds)))];
  const parts = writes.parts.map((part, i) => {
    const sql = `w${i} AS (${part.sql(params.length + 1)} RETURNING 1)`;
    params.push(...part.params);
    return sql;
  });
  await store.query(
    `WITH ${parts.join(', ')}${parts.length ? ',' : ''} spent AS (INSERT INTO oidc_models (model, id, payload, expires_at)
       SELECT m, i, '{}'::jsonb, now() + make_interval(secs => t) FROM unnest($1::text[], $2::text[], $3::int[]) AS k(m, i, t) RETURNING 1)
     SELECT (SELECT count(*) FROM spent)::int AS n`,
    params,
  );
  return undefined;
}

for (const { text, params } of JSON.parse(process.env.BENCH_SETUP_SQL ?? '[]') as Array<{ text: string; params: unknown[] }>) {
  await deputy.store.query(text, params);
}
process.stdout.write(`READY ${deputy.url} ${deputy.issuer} ${await serveCounters()}\n`);
process.on('SIGTERM', () => {
  void deputy.close(500).then(writeHeapProfile).finally(() => process.exit(0));
});
