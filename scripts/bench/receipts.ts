/**
 * `npx tsx scripts/bench/receipts.ts [--count N]` — what a receipt costs, in-process:
 *
 * 1. signing alone (ES256, EdDSA), done against the remembered head with no lock held;
 * 2. one append at a time (the latency a lone decision pays), standalone and inside a caller's
 *    transaction (the token exchange's path, where it adds statements to an existing one);
 * 3. N appends for one agent at once: group commit (standalone path) against one transaction
 *    per receipt (the in-transaction path, each waiting for the lock);
 * 4. verification of the resulting export.
 *
 * Runs on PGlite, and on PostgreSQL too when `DATABASE_URL` is set (a fresh database).
 * Prints a table; figures are medians / rates on this machine, meant for comparison.
 */
import { parseArgs } from './options.js';
import { ReceiptService } from '../../src/audit/receipts.js';
import { genesisHash, receiptClaims, ReceiptSigner, type ReceiptInput } from '../../src/audit/receipt.js';
import { formatLine } from '../../src/audit/jsonl.js';
import { verifyReceipts } from '../../src/audit/verify.js';
import { generateSigningKey, toPublicJwk } from '../../src/keys/keystore.js';
import { createPGliteStore } from '../../src/store/pglite.js';
import { createPostgresStore } from '../../src/store/postgres.js';
import { migrate, type Store } from '../../src/store/index.js';
import { createTestDatabase } from '../../test/support/database.js';

const { values } = parseArgs(import.meta.url, { options: { count: { type: 'string', default: '400', value: 'positive integer' } } });
const COUNT = Number(values.count);

const input = (agent: string, n: number): ReceiptInput => ({
  agent,
  user: 'okta:acme.okta.com:00u1',
  chain: [agent],
  event: 'access_evaluation',
  action: 'read',
  resource: `doc:${n}`,
  decision: 'permit',
  policies: ['policy0'],
  requestId: `req-${n}`,
  requestDigest: 'sha-256:47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU',
});

const rows: Array<[string, string, string]> = [];
const ms = (ns: bigint) => Number(ns) / 1e6;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function timeEach(n: number, fn: (i: number) => Promise<unknown>): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    await fn(i);
    samples.push(ms(process.hrtime.bigint() - t));
  }
  return median(samples);
}

async function timeAll(fn: () => Promise<unknown>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return ms(process.hrtime.bigint() - t);
}

async function signing(): Promise<void> {
  for (const alg of ['ES256', 'EdDSA'] as const) {
    const signer = new ReceiptSigner(await generateSigningKey(alg));
    const claims = receiptClaims(input('a', 1), { iss: 'https://deputy.example.com', jti: 'x', iat: 1, seq: 1, prev: genesisHash('a') });
    await signer.sign(claims);
    const per = await timeEach(2000, () => signer.sign(claims));
    rows.push(['-', `sign ${alg}`, `${(per * 1000).toFixed(0)} µs (median)`]);
  }
}

async function scenarios(kind: string, store: Store): Promise<void> {
  await migrate(store);
  const key = await generateSigningKey('ES256');
  const service = new ReceiptService({ store, issuer: 'https://deputy.example.com', key });
  const lone = await timeEach(200, (i) => service.append(input('lone', i)));
  rows.push([kind, 'append, one at a time (standalone)', `${lone.toFixed(2)} ms (median)`]);
  const base = await timeEach(200, (i) => store.transaction((tx) => tx.query('SELECT $1::int AS i', [i])));
  const inTx = await timeEach(200, (i) => store.transaction(async (tx) => {
    await tx.query('SELECT $1::int AS i', [i]);
    await service.append(input('intx', i), tx);
  }));
  rows.push([kind, 'append inside a transaction: added to it', `${(inTx - base).toFixed(2)} ms (median; the transaction alone: ${base.toFixed(2)} ms)`]);

  const grouped = await timeAll(() => Promise.all(Array.from({ length: COUNT }, (_, i) => service.append(input('burst-group', i)))));
  rows.push([kind, `${COUNT} concurrent appends, one agent, group commit`, `${(COUNT / (grouped / 1000)).toFixed(0)} receipts/s`]);
  const perTx = await timeAll(() => Promise.all(Array.from({ length: COUNT }, (_, i) => store.transaction((tx) => service.append(input('burst-tx', i), tx)))));
  rows.push([kind, `${COUNT} concurrent appends, one agent, a transaction each`, `${(COUNT / (perTx / 1000)).toFixed(0)} receipts/s`]);
  const many = await timeAll(() => Promise.all(Array.from({ length: COUNT }, (_, i) => service.append(input(`agent-${i % 16}`, i)))));
  rows.push([kind, `${COUNT} concurrent appends over 16 agents, group commit`, `${(COUNT / (many / 1000)).toFixed(0)} receipts/s`]);

  let text = '';
  for await (const r of service.range('burst-group', 1, COUNT)) text += formatLine(r);
  const jwks = { keys: [toPublicJwk(key.jwk)] };
  let ok = false;
  const verified = await timeAll(async () => {
    ok = (await verifyReceipts(text, jwks)).ok;
  });
  rows.push([kind, `verify an export of ${COUNT}`, `${(COUNT / (verified / 1000)).toFixed(0)} receipts/s (${ok ? 'OK' : 'FAILED'})`]);
}

await signing();
const pglite = await createPGliteStore({ dataDir: 'memory://' });
try {
  await scenarios('pglite', pglite);
} finally {
  await pglite.close();
}
if (process.env.DATABASE_URL) {
  const db = await createTestDatabase();
  const pg = createPostgresStore({ connectionString: db.url!, poolSize: 10 });
  try {
    await scenarios('postgres', pg);
  } finally {
    await pg.close();
    await db.drop();
  }
}
const width = [8, 56];
process.stdout.write(`${['store'.padEnd(width[0]!), 'what'.padEnd(width[1]!), 'result'].join(' | ')}\n`);
for (const [a, b, c] of rows) process.stdout.write(`${a.padEnd(width[0]!)} | ${b.padEnd(width[1]!)} | ${c}\n`);
