/**
 * `npx tsx scripts/bench/receipt-sets-ab.ts [--pairs 400] [--max 8] [--kinds 3]` — the exchange's
 * group statement with the parts of one kind written as one set (src/audit/chain.ts `asWrites`,
 * issue 16 twelfth round) against the parts written one by one (arm A: the parts without their
 * `row` form, which is the statement of before), on embedded PGlite, in-process: CPU µs per
 * group (`process.cpuUsage`, the database's work included: PGlite runs in this thread) and WAL
 * bytes per group, in alternating A/B pairs on the same group composition (random kinds as
 * receipt-shapes.ts: a new IdP token, a remembered one, a sub-delegation), each arm on its own
 * store (so each has its own bound on named shapes). Prints medians, the median of the paired
 * differences (B − A) and each arm's distinct texts.
 *
 * With `DATABASE_URL` set, on PostgreSQL instead (a fresh database, one connection per arm):
 * rounds of `--round` groups (the same compositions on both arms, alternating which goes first),
 * and per group the backend's CPU (`/proc/<pid>/stat` utime + stime of the arm's backend, at 10 ms
 * ticks: hence rounds) and this process's (the client's) CPU; WAL bytes are not read there.
 *
 * @module
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { parseArgs } from './options.js';
import { appendIfHead, type ChainHead } from '../../src/audit/chain.js';
import { genesisHash, type SignedReceipt } from '../../src/audit/receipt.js';
import { TokenRecords, type NewTokenRecord } from '../../src/oauth/token-records.js';
import { migrate, type StatementPart, type Store } from '../../src/store/index.js';
import { createPGliteStore } from '../../src/store/pglite.js';
import { createPostgresStore } from '../../src/store/postgres.js';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { EnvelopeVault } from '../../src/vault/envelope.js';

const { values } = parseArgs(import.meta.url, { options: { pairs: { type: 'string', default: '400', value: 'positive integer' }, max: { type: 'string', default: '8', value: 'positive integer' }, kinds: { type: 'string', default: '3', value: 'positive integer' }, round: { type: 'string', default: '40', value: 'positive integer' } } });
const PG = process.env.DATABASE_URL;
const ROUND = Number(values.round);
const PAIRS = Number(values.pairs);
const MAX = Number(values.max);
const KINDS = Number(values.kinds);

const KIND = 'upstream_subject_token';
const key = randomBytes(32);
const vault = new EnvelopeVault({ active: { kid: 'k1', key }, all: new Map([['k1', key]]) });
const now = () => Math.floor(Date.now() / 1000);
const hex = () => randomBytes(6).toString('hex');

interface Arm {
  store: Store;
  records: TokenRecords;
  agent: string;
  root: NewTokenRecord;
  remembered: string;
  head: ChainHead;
  texts: Set<string>;
  sets: boolean;
}

function record(agent: string, extra: Partial<NewTokenRecord> = {}): NewTokenRecord {
  const jti = `jti-${hex()}`;
  return {
    jti, parentJti: undefined, rootJti: jti, agentId: agent, userId: 'okta:acme:00u1', userAttrs: { groups: ['g'], roles: [] }, issuerId: 'okta',
    audience: 'https://api.example.com', scope: 'read', chain: [agent], cnfJkt: 'jkt', mayAct: undefined, upstream: undefined, issuedAt: now(), expiresAt: now() + 3600, ...extra,
  };
}

async function arm(sets: boolean, url?: string): Promise<Arm> {
  const store = url ? createPostgresStore({ connectionString: url, poolSize: 1 }) : await createPGliteStore({ dataDir: 'memory://' });
  if (!url) await migrate(store);
  const agent = `ab-${hex()}`;
  await store.query("INSERT INTO agents (id, name, owner, source, jwks) VALUES ($1, $1, 'bench', 'api', '{\"keys\":[]}'::jsonb)", [agent]);
  const records = new TokenRecords(store);
  const root = record(agent);
  await records.insert(store, root);
  const remembered = `upt-${hex()}`;
  await vault.put(store, { handle: remembered, kind: KIND, plaintext: 'idp-token', expiresAt: now() + 3600 });
  const texts = new Set<string>();
  const query = store.query.bind(store);
  store.query = (async (sql: string, params?: readonly unknown[], opts?: never) => {
    if (sql.includes('inserted AS')) texts.add(sql);
    return query(sql, params, opts);
  }) as Store['query'];
  return { store, records, agent, root, remembered, head: { seq: 0, hash: genesisHash(agent) }, texts, sets };
}

async function parts(a: Arm, kind: number): Promise<StatementPart[]> {
  let out: StatementPart[];
  if (kind === 0) out = [a.records.insertPart(record(a.agent, { upstream: a.remembered }), vault.exists(a.remembered))];
  else if (kind === 1) {
    const handle = `upt-${hex()}`;
    out = [await vault.putPart({ handle, kind: KIND, plaintext: 'idp-token', expiresAt: now() + 3600 }), a.records.insertPart(record(a.agent, { upstream: handle }))];
  } else out = [a.records.insertPart(record(a.agent, { parentJti: a.root.jti, rootJti: a.root.rootJti, chain: [a.agent, a.agent] }))];
  // Arm A: the parts as they were before their row form (each written alone).
  return a.sets ? out : out.map(({ sql, params }) => ({ sql, params }));
}

function receipts(a: Arm, n: number): SignedReceipt[] {
  const out: SignedReceipt[] = [];
  let prev = a.head;
  for (let i = 0; i < n; i++) {
    const r = { id: randomUUID(), agent: a.agent, seq: prev.seq + 1, hash: `h-${randomUUID()}`, prev: prev.hash, jws: `eyJhbGciOiJFUzI1NiJ9.${'x'.repeat(600)}.${'s'.repeat(86)}` };
    out.push(r);
    prev = { seq: r.seq, hash: r.hash };
  }
  return out;
}

async function walBytes(store: Store): Promise<number> {
  const rows = await store.query<{ b: string }>(`SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::text AS b`);
  return Number(rows[0]!.b.split('.')[0]);
}

/** One group of `kinds` on `a`: CPU µs and WAL bytes. */
async function group(a: Arm, kinds: readonly number[]): Promise<{ cpu: number; wal: number }> {
  const built = (await Promise.all(kinds.map((k) => parts(a, k)))).flat();
  const rows = receipts(a, kinds.length);
  const w0 = await walBytes(a.store);
  const c0 = process.cpuUsage();
  const outcome = await appendIfHead(a.store, a.agent, a.head, rows, [], built);
  const c = process.cpuUsage(c0);
  const wal = (await walBytes(a.store)) - w0;
  if (outcome !== 'written') throw new Error(`append: ${outcome}`);
  a.head = { seq: rows.at(-1)!.seq, hash: rows.at(-1)!.hash };
  return { cpu: c.user + c.system, wal };
}

const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
let seed = 7;
const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
const composition = () => Array.from({ length: 1 + Math.floor(rnd() * MAX) }, () => Math.floor(rnd() * KINDS));

/** A fresh database on `PG`, migrated; its URL. */
async function pgDatabase(): Promise<string> {
  const name = `deputy_ab_${hex()}`;
  const admin = new pg.Client({ connectionString: PG });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(PG!);
  url.pathname = `/${name}`;
  const store = createPostgresStore({ connectionString: url.toString(), poolSize: 1 });
  await migrate(store);
  await store.close();
  return url.toString();
}

/** The arm's backend CPU so far, µs (utime + stime at 10 ms ticks). */
async function backendCpu(a: Arm): Promise<number> {
  const pid = (await a.store.query<{ pid: number }>('SELECT pg_backend_pid() AS pid'))[0]!.pid;
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

const url = PG ? await pgDatabase() : undefined;
const A = await arm(false, url);
const B = await arm(true, url);
if (url) {
  for (let i = 0; i < 200; i++) {
    const kinds = composition();
    await group(A, kinds);
    await group(B, kinds);
  }
  const rounds = Math.max(1, Math.floor(PAIRS / ROUND));
  const backend = { A: [] as number[], B: [] as number[], diff: [] as number[] };
  const client = { A: [] as number[], B: [] as number[], diff: [] as number[] };
  for (let r = 0; r < rounds; r++) {
    const comps = Array.from({ length: ROUND }, composition);
    const run = async (a: Arm) => {
      const b0 = await backendCpu(a);
      const c0 = process.cpuUsage();
      for (const kinds of comps) await group(a, kinds);
      const c = process.cpuUsage(c0);
      return { backend: ((await backendCpu(a)) - b0) / ROUND, client: (c.user + c.system) / ROUND };
    };
    const first = r % 2 === 0 ? A : B;
    const x = await run(first);
    const y = await run(first === A ? B : A);
    const [a, b] = first === A ? [x, y] : [y, x];
    backend.A.push(a.backend), backend.B.push(b.backend), backend.diff.push(b.backend - a.backend);
    client.A.push(a.client), client.B.push(b.client), client.diff.push(b.client - a.client);
  }
  const out = (m: { A: number[]; B: number[]; diff: number[] }) => ({ A: Math.round(median(m.A)), B: Math.round(median(m.B)), medianDiff: Math.round(median(m.diff)), bLower: m.diff.filter((d) => d < 0).length });
  console.log(JSON.stringify({ store: 'postgres', rounds, groupsPerRound: ROUND, maxGroup: MAX, kinds: KINDS, backendUsPerGroup: out(backend), clientUsPerGroup: out(client), texts: { A: A.texts.size, B: B.texts.size } }));
  await A.store.close();
  await B.store.close();
  const admin = new pg.Client({ connectionString: PG });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${new URL(url).pathname.slice(1)} WITH (FORCE)`);
  await admin.end();
  process.exit(0);
}
for (let i = 0; i < 200; i++) {
  const kinds = composition();
  await group(A, kinds);
  await group(B, kinds);
}
const cpu = { A: [] as number[], B: [] as number[], diff: [] as number[] };
const wal = { A: [] as number[], B: [] as number[], diff: [] as number[] };
for (let p = 0; p < PAIRS; p++) {
  const kinds = composition();
  const first = p % 2 === 0 ? A : B;
  const second = first === A ? B : A;
  const x = await group(first, kinds);
  const y = await group(second, kinds);
  const [a, b] = first === A ? [x, y] : [y, x];
  cpu.A.push(a.cpu), cpu.B.push(b.cpu), cpu.diff.push(b.cpu - a.cpu);
  wal.A.push(a.wal), wal.B.push(b.wal), wal.diff.push(b.wal - a.wal);
}
const out = (m: { A: number[]; B: number[]; diff: number[] }) => ({ A: median(m.A), B: median(m.B), medianDiff: median(m.diff), bLower: m.diff.filter((d) => d < 0).length });
console.log(JSON.stringify({ pairs: PAIRS, maxGroup: MAX, kinds: KINDS, cpuUs: out(cpu), walBytes: out(wal), texts: { A: A.texts.size, B: B.texts.size } }));
await A.store.close();
await B.store.close();
