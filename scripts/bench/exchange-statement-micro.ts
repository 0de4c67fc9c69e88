/**
 * `npx tsx scripts/bench/exchange-statement-micro.ts [--n 1000] [--rounds 2]` — the token
 * exchange's one statement against client_credentials' one statement, in-process, back to back on
 * one store: CPU microseconds per statement (`process.cpuUsage` of this process — on PGlite the
 * whole database; on PostgreSQL the client's share, plus the backend's read from `/proc` when the
 * server runs on this machine), WAL bytes per statement (PostgreSQL: `pg_current_wal_lsn()`
 * deltas — cluster-wide, so run it on a quiet server) and wall microseconds.
 *
 * Statements: client_credentials' two `jti`s (`recordEachOnce`); the exchange's group statement
 * for one exchange (`appendIfHead`: two `jti`s, the vault row, the token record, the receipt, the
 * head move), the same without the vault row, the same referencing a remembered vault row (its
 * existence checked in the statement: the seventh round's reuse) and without the token record too (what the receipt, the `jti`s and the head cost). On PGlite (memory) by default; with `DATABASE_URL` on a fresh PostgreSQL
 * database (dropped after). Issue 16, sixth round.
 *
 * `--pairs P` (issue 16, twelfth round): instead, P alternating pairs of the lone exchange's
 * statement (remembered vault row, two `jti`s, token record, receipt, head) in its general form
 * (`generalAppend`: `unnest` over arrays; A) and as `appendIfHead` writes it now
 * (`loneAppendWith`: scalar parameters; B), N statements each half, the order within a pair
 * alternating; prints each pair and the medians of A, B and of the paired differences.
 *
 * @module
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { parseArgs } from './options.js';
import { appendIfHead, generalAppend, type ChainHead } from '../../src/audit/chain.js';
import { genesisHash } from '../../src/audit/receipt.js';
import { recordEachOnce } from '../../src/oauth/adapter.js';
import { TokenRecords, type NewTokenRecord } from '../../src/oauth/token-records.js';
import { migrate, type Queryable, type Store } from '../../src/store/index.js';
import { backendCpuUs, walBytes, withMicroStore } from './micro-store.js';
import { EnvelopeVault, newHandle } from '../../src/vault/envelope.js';

const { values } = parseArgs(import.meta.url, { options: { n: { type: 'string', default: '1000', value: 'positive integer' }, rounds: { type: 'string', default: '2', value: 'positive integer' }, pairs: { type: 'string', value: 'positive integer' } } });
const N = Number(values.n);
const ROUNDS = Number(values.rounds);
const AGENT = 'micro-agent';
/** An Okta access token is ~900 characters; a receipt JWS of an exchange ~1,100. */
const SUBJECT_TOKEN = `eyJ.${randomBytes(640).toString('base64url')}.sig`;
const jws = () => `eyJ.${randomBytes(780).toString('base64url')}.${randomBytes(64).toString('base64url')}`;

interface Probe {
  label: string;
  run(db: Queryable): Promise<unknown>;
}

const onceKeys = () => [
  { namespace: 'DPoPProof', key: randomUUID(), ttlSeconds: 300 },
  { namespace: 'ClientAssertion', key: randomUUID(), ttlSeconds: 300 },
];

function record(jti: string, upstream: string | undefined): NewTokenRecord {
  const now = Math.floor(Date.now() / 1000);
  return {
    jti, parentJti: undefined, rootJti: jti, agentId: AGENT, userId: 'okta#00u1alice', userAttrs: { groups: ['engineering'], roles: ['developer'], email: 'alice@example.com' },
    issuerId: 'okta', audience: 'https://api.example.com', scope: 'read write', chain: [AGENT], cnfJkt: randomBytes(32).toString('base64url'),
    mayAct: undefined, upstream, issuedAt: now, expiresAt: now + 300,
  };
}

function probes(store: Store, tokens: TokenRecords, vault: EnvelopeVault): Probe[] {
  const chain: { head: ChainHead } = { head: { seq: 0, hash: genesisHash(AGENT) } };
  // The row a remembered capture references (src/oauth/upstream-capture.ts): written once, checked by each statement.
  let shared: Promise<string> | undefined;
  const sharedRow = () => (shared ??= (async () => {
    const handle = newHandle('upt');
    await vault.put(store, { handle, kind: 'upstream_subject_token', plaintext: SUBJECT_TOKEN, expiresAt: Math.floor(Date.now() / 1000) + 3600 });
    return handle;
  })());
  const exchange = (withVault: boolean | 'remembered', withRecord = true) => async (db: Queryable) => {
    const jti = randomUUID();
    const handle = withVault === true ? newHandle('upt') : withVault === 'remembered' ? await sharedRow() : undefined;
    const vaultPart = handle && withVault === true ? [await vault.putPart({ handle, kind: 'upstream_subject_token', plaintext: SUBJECT_TOKEN, expiresAt: Math.floor(Date.now() / 1000) + 3600 })] : [];
    const requires = withVault === 'remembered' ? vault.exists(handle!) : undefined;
    const seq = chain.head.seq + 1;
    const hash = randomBytes(32).toString('base64url');
    const receipt = { id: randomUUID(), agent: AGENT, seq, hash, prev: chain.head.hash, jws: jws() };
    const outcome = await appendIfHead(db, AGENT, chain.head, [receipt], onceKeys(), [...vaultPart, ...(withRecord ? [tokens.insertPart(record(jti, handle ?? 'upt_shared'), requires)] : [])]);
    if (outcome !== 'written') throw new Error(`append: ${outcome}`);
    chain.head = { seq, hash };
  };
  /** The remembered-row exchange's statement, in its general form (`general`) or as `appendIfHead` picks it. */
  const lone = (general: boolean) => async (db: Queryable) => {
    const jti = randomUUID();
    const handle = await sharedRow();
    const seq = chain.head.seq + 1;
    const hash = randomBytes(32).toString('base64url');
    const receipt = { id: randomUUID(), agent: AGENT, seq, hash, prev: chain.head.hash, jws: jws() };
    const parts = [tokens.insertPart(record(jti, handle), vault.exists(handle))];
    if (general) {
      const { sql, params, prepare } = generalAppend(AGENT, chain.head, [receipt], onceKeys(), parts);
      const rows = await db.query<{ moved: number }>(sql, params, { prepare });
      if (rows[0]?.moved !== 1) throw new Error('general append: not written');
    } else if ((await appendIfHead(db, AGENT, chain.head, [receipt], onceKeys(), parts)) !== 'written') throw new Error('append: not written');
    chain.head = { seq, hash };
  };
  return [
    { label: 'lone exchange statement, general form (unnest)', run: lone(true) },
    { label: 'lone exchange statement, scalar form (loneAppendWith)', run: lone(false) },
    { label: 'client_credentials: two jtis (recordEachOnce)', run: (db) => recordEachOnce(db, onceKeys()) },
    { label: 'exchange: jtis + vault row + token record + receipt + head', run: exchange(true) },
    { label: 'exchange without the vault row (row reused)', run: exchange(false) },
    { label: 'exchange referencing a remembered vault row (its EXISTS checked; seventh round)', run: exchange('remembered') },
    { label: 'receipt + jtis + head only (no token record, no vault row)', run: exchange(false, false) },
  ];
}

interface Measured { cpuUs: number; serverUs: number; wallUs: number; wal: number }

async function measure(store: Store, probe: Probe, backend: number | undefined): Promise<Measured> {
  for (let i = 0; i < 50; i++) await probe.run(store);
  const wal0 = await walBytes(store);
  const cpu = process.cpuUsage();
  const server = backendCpuUs(backend);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) await probe.run(store);
  const wall = Number(process.hrtime.bigint() - t0) / 1e3;
  const used = process.cpuUsage(cpu);
  const serverUs = (backendCpuUs(backend) - server) / N;
  const wal = Number((await walBytes(store)) - wal0) / N;
  return { cpuUs: (used.user + used.system) / N, serverUs, wallUs: wall / N, wal };
}

const show = (m: Measured, kind: Store['kind']) =>
  kind === 'postgres'
    ? `${m.cpuUs.toFixed(0)} µs client CPU + ${m.serverUs.toFixed(0)} µs backend, ${m.wal.toFixed(0)} WAL bytes (${m.wallUs.toFixed(0)} µs wall)`
    : `${m.cpuUs.toFixed(0)} µs CPU (${m.wallUs.toFixed(0)} µs wall)`;

async function main(): Promise<void> {
  await withMicroStore('deputy_xmicro', async (store, backend) => {
    await migrate(store);
    await store.query(`INSERT INTO agents (id, name, owner, jwks, source) VALUES ($1, 'micro', 'bench', '{"keys":[]}', 'config')`, [AGENT]);
    const vault = new EnvelopeVault({ active: { kid: 'k1', key: randomBytes(32) }, all: new Map() });
    const [general, scalar, ...list] = probes(store, new TokenRecords(store), vault);
    if (values.pairs !== undefined) return pairs(store, general!, scalar!, backend, Number(values.pairs));
    for (let r = 0; r < ROUNDS; r++) {
      for (const probe of list) console.log(`${store.kind} · round ${r + 1} · ${probe.label}: ${show(await measure(store, probe, backend), store.kind)}`);
    }
    // The index migration 017 dropped (no query reads it), put back: what it cost each exchange.
    await store.exec('CREATE INDEX token_records_root ON token_records (root_jti)');
    for (let r = 0; r < ROUNDS; r++) {
      console.log(`${store.kind} · round ${r + 1} · ${list[1]!.label}, with the root_jti index: ${show(await measure(store, list[1]!, backend), store.kind)}`);
    }
  });
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** `--pairs`: A (general form) and B (scalar form) alternating, order flipped every pair. */
async function pairs(store: Store, a: Probe, b: Probe, backend: number | undefined, count: number): Promise<void> {
  const got: { a: Measured; b: Measured }[] = [];
  for (let i = 0; i < count; i++) {
    const first = i % 2 === 0 ? a : b;
    const m1 = await measure(store, first, backend);
    const m2 = await measure(store, first === a ? b : a, backend);
    const pair = first === a ? { a: m1, b: m2 } : { a: m2, b: m1 };
    got.push(pair);
    console.log(`${store.kind} · pair ${i + 1} · A ${show(pair.a, store.kind)} · B ${show(pair.b, store.kind)}`);
  }
  for (const [name, f] of [['client CPU µs', (m: Measured) => m.cpuUs], ['backend CPU µs', (m: Measured) => m.serverUs], ['wall µs', (m: Measured) => m.wallUs], ['WAL bytes', (m: Measured) => m.wal]] as const) {
    const diffs = got.map((p) => f(p.b) - f(p.a));
    console.log(`${store.kind} · ${name}: median A ${median(got.map((p) => f(p.a))).toFixed(1)}, B ${median(got.map((p) => f(p.b))).toFixed(1)}, B − A paired median ${median(diffs).toFixed(1)} (${diffs.filter((d) => d < 0).length} of ${diffs.length} pairs B lower)`);
  }
}

await main();
