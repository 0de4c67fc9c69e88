/**
 * `npx tsx scripts/bench/statement-micro.ts [--n 1500] [--rounds 3]` — the gateway's hot
 * statements in-process, unnamed against named (prepared, src/store/prepared.ts), back to back
 * on one store: CPU microseconds per statement (`process.cpuUsage` of this process — on PGlite
 * the whole database; on PostgreSQL the client's share, plus the backend's read from `/proc`
 * when the server runs on this machine) and wall microseconds. On embedded
 * PGlite (memory) by default; with `DATABASE_URL` on a fresh PostgreSQL database (dropped after).
 * Statements: the gateway call's lone receipt append with its proof `jti` (`appendIfHead`, one
 * receipt, one once-key), the `jti` insert alone (`recordOnce`, receipts off), and the token
 * record's liveness read. Issue 16, fifth round.
 *
 * @module
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { parseArgs } from './options.js';
import { appendIfHead, type ChainHead } from '../../src/audit/chain.js';
import { genesisHash } from '../../src/audit/receipt.js';
import { recordOnce } from '../../src/oauth/adapter.js';
import { TokenRecords } from '../../src/oauth/token-records.js';
import { migrate, type Queryable, type Store } from '../../src/store/index.js';
import { backendCpuUs, withMicroStore } from './micro-store.js';

const { values } = parseArgs(import.meta.url, { options: { n: { type: 'string', default: '1500', value: 'positive integer' }, rounds: { type: 'string', default: '3', value: 'positive integer' } } });
const N = Number(values.n);
const ROUNDS = Number(values.rounds);

/** `store` with every statement's `prepare` option dropped: what the store ran before. */
function unnamed(store: Store): Queryable {
  return { query: (sql, params) => store.query(sql, params), exec: (sql) => store.exec(sql) };
}

interface Probe {
  label: string;
  run(db: Queryable, i: number): Promise<unknown>;
}

function probes(tokens: TokenRecords): Probe[] {
  const heads = new Map<Queryable, { agent: string; head: ChainHead }>();
  return [
    {
      label: 'lone receipt + proof jti (appendIfHead)',
      async run(db) {
        let chain = heads.get(db);
        if (!chain) heads.set(db, (chain = { agent: `micro-${randomUUID()}`, head: { seq: 0, hash: '' } }));
        if (chain.head.seq === 0) chain.head.hash = genesisHash(chain.agent);
        const seq = chain.head.seq + 1;
        const hash = randomBytes(32).toString('base64url');
        const receipt = { id: randomUUID(), agent: chain.agent, seq, hash, prev: chain.head.hash, jws: `e30.${randomBytes(300).toString('base64url')}.sig` };
        const outcome = await appendIfHead(db, chain.agent, chain.head, [receipt], [{ namespace: 'DPoPProof', key: randomUUID(), ttlSeconds: 300 }]);
        if (outcome !== 'written') throw new Error(`append: ${outcome}`);
        chain.head = { seq, hash };
      },
    },
    { label: 'proof jti alone (recordOnce)', run: (db) => recordOnce(db, 'DPoPProof', randomUUID(), 300) },
    { label: 'token liveness read (findLive)', run: (db) => tokens.find(`absent-${randomUUID()}`, db) },
  ];
}

async function measure(db: Queryable, probe: Probe, backend: number | undefined): Promise<{ cpuUs: number; serverUs: number; wallUs: number }> {
  for (let i = 0; i < 50; i++) await probe.run(db, i);
  const cpu = process.cpuUsage();
  const server = backendCpuUs(backend);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) await probe.run(db, i);
  const wall = Number(process.hrtime.bigint() - t0) / 1e3;
  const used = process.cpuUsage(cpu);
  return { cpuUs: (used.user + used.system) / N, serverUs: (backendCpuUs(backend) - server) / N, wallUs: wall / N };
}

const show = (m: { cpuUs: number; serverUs: number; wallUs: number }, kind: Store['kind']) =>
  `${m.cpuUs.toFixed(0)} µs CPU${kind === 'postgres' ? ` + ${m.serverUs.toFixed(0)} backend` : ''} (${m.wallUs.toFixed(0)} wall)`;

async function main(): Promise<void> {
  await withMicroStore('deputy_micro', async (store, backend) => {
    await migrate(store);
    const before = unnamed(store);
    // One pooled connection: its backend process is every statement's server side (same machine).
    for (const probe of probes(new TokenRecords(store))) {
      const rows: string[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        const a = await measure(before, probe, backend);
        const b = await measure(store, probe, backend);
        rows.push(`unnamed ${show(a, store.kind)} → named ${show(b, store.kind)}`);
      }
      console.log(`${store.kind} · ${probe.label}:\n  ${rows.join('\n  ')}`);
    }
  });
}

await main();
