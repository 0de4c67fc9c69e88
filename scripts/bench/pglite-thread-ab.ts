/**
 * `npx tsx scripts/bench/pglite-thread-ab.ts [--n 600] [--pairs 6] [--memory]` — embedded PGlite
 * on the main thread (src/store/pglite.ts) against PGlite in a worker thread
 * (src/store/pglite-thread.ts), in-process, in alternating A/B pairs (AB, BA, AB, …) on two
 * stores opened side by side (data folders in the temp directory unless `--memory`).
 *
 * Per statement: the **main thread's** CPU (`process.threadCpuUsage()` where Node has it, as 22.23 does; else
 * `/proc/thread-self/stat`), the whole process's CPU (`process.cpuUsage()`: main + worker +
 * libuv), and wall time. The statements are the gateway call's: the lone receipt append with its
 * proof `jti` (`appendIfHead`), run one at a time (c1) and 8 at once on 8 agents (c8); a group of
 * 8 receipts in one append; and the `jti` insert alone (`recordOnce`, receipts off). On a loaded
 * machine the main thread's CPU per statement is the figure to read: what the worker takes off the
 * thread that serves HTTP. Issue 16, twelfth round.
 *
 * @module
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from './options.js';
import { appendIfHead, type ChainHead } from '../../src/audit/chain.js';
import { genesisHash } from '../../src/audit/receipt.js';
import { recordOnce } from '../../src/oauth/adapter.js';
import { migrate, type Queryable, type Store } from '../../src/store/index.js';
import { createPGliteStore } from '../../src/store/pglite.js';
import { createPGliteWorkerStore } from '../../src/store/pglite-thread.js';

const { values } = parseArgs(import.meta.url, { options: { n: { type: 'string', default: '600', value: 'positive integer' }, pairs: { type: 'string', default: '6', value: 'positive integer' }, memory: { type: 'boolean', default: false } } });
const N = Number(values.n);
const PAIRS = Number(values.pairs);

/** This thread's CPU time in µs. */
function threadCpuUs(): number {
  const p = process as unknown as { threadCpuUsage?: () => { user: number; system: number } };
  if (p.threadCpuUsage) {
    const u = p.threadCpuUsage();
    return u.user + u.system;
  }
  // utime + stime (fields 14, 15) in clock ticks (100 Hz): coarse, fine over hundreds of statements.
  const fields = readFileSync('/proc/thread-self/stat', 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

interface Probe {
  label: string;
  /** Statements run at once. */
  width: number;
  run(db: Queryable, lane: number): Promise<unknown>;
}

function probes(): Probe[] {
  const heads = new Map<string, { agent: string; head: ChainHead }>();
  const append = (receipts: number) => async (db: Queryable, lane: number, key: string) => {
    let chain = heads.get(key);
    if (!chain) heads.set(key, (chain = { agent: `ab-${randomUUID()}`, head: { seq: 0, hash: '' } }));
    if (chain.head.seq === 0) chain.head.hash = genesisHash(chain.agent);
    const rows = [];
    let { seq, hash: prev } = chain.head;
    for (let i = 0; i < receipts; i++) {
      seq += 1;
      const hash = randomBytes(32).toString('base64url');
      rows.push({ id: randomUUID(), agent: chain.agent, seq, hash, prev, jws: `e30.${randomBytes(300).toString('base64url')}.sig` });
      prev = hash;
    }
    const outcome = await appendIfHead(db, chain.agent, chain.head, rows, [{ namespace: 'DPoPProof', key: randomUUID(), ttlSeconds: 300 }]);
    if (outcome !== 'written') throw new Error(`append: ${outcome} (lane ${lane})`);
    chain.head = { seq, hash: prev };
  };
  const lone = append(1);
  const group = append(8);
  const ids = new WeakMap<Queryable, string>();
  const idOf = (db: Queryable): string => {
    let id = ids.get(db);
    if (!id) ids.set(db, (id = randomUUID()));
    return id;
  };
  return [
    { label: 'lone receipt + proof jti, c1', width: 1, run: (db, lane) => lone(db, lane, `${idOf(db)}:c1`) },
    { label: 'lone receipt + proof jti, c8 (8 agents)', width: 8, run: (db, lane) => lone(db, lane, `${idOf(db)}:c8:${lane}`) },
    { label: 'group of 8 receipts + jti, c1', width: 1, run: (db, lane) => group(db, lane, `${idOf(db)}:g`) },
    { label: 'proof jti alone (recordOnce), c8', width: 8, run: (db) => recordOnce(db, 'DPoPProof', randomUUID(), 300) },
  ];
}

interface Sample {
  mainUs: number;
  processUs: number;
  wallUs: number;
}

async function measure(db: Store, probe: Probe): Promise<Sample> {
  const lanes = (count: number) => Promise.all(Array.from({ length: probe.width }, async (_, lane) => {
    for (let i = 0; i < count / probe.width; i++) await probe.run(db, lane);
  }));
  await lanes(40);
  const main0 = threadCpuUs();
  const proc0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await lanes(N);
  const wall = Number(process.hrtime.bigint() - t0) / 1e3;
  const proc = process.cpuUsage(proc0);
  return { mainUs: (threadCpuUs() - main0) / N, processUs: (proc.user + proc.system) / N, wallUs: wall / N };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  const dirs: string[] = [];
  const dir = (): string => {
    if (values.memory) return 'memory://';
    const d = mkdtempSync(join(tmpdir(), 'deputy-thread-ab-'));
    dirs.push(d);
    return d;
  };
  const onMain = await createPGliteStore({ dataDir: dir() });
  const inWorker = await createPGliteWorkerStore({ dataDir: dir() });
  try {
    await migrate(onMain);
    await migrate(inWorker);
    console.log(`${N} statements per sample, ${PAIRS} pairs, ${values.memory ? 'memory://' : 'data folders'}, Node ${process.version}, load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
    for (const probe of probes()) {
      const a: Sample[] = [];
      const b: Sample[] = [];
      for (let p = 0; p < PAIRS; p++) {
        if (p % 2 === 0) {
          a.push(await measure(onMain, probe));
          b.push(await measure(inWorker, probe));
        } else {
          b.push(await measure(inWorker, probe));
          a.push(await measure(onMain, probe));
        }
      }
      const line = (k: keyof Sample) => {
        const diffs = a.map((s, i) => b[i]![k] - s[k]);
        const worse = diffs.filter((d) => d > 0).length;
        return `${k} main ${median(a.map((s) => s[k])).toFixed(0)} µs → worker ${median(b.map((s) => s[k])).toFixed(0)} µs (paired Δ median ${median(diffs).toFixed(0)}, ${worse}/${diffs.length} pairs worse)`;
      };
      console.log(`${probe.label}:\n  ${line('mainUs')}\n  ${line('processUs')}\n  ${line('wallUs')}`);
    }
  } finally {
    await onMain.close();
    await inWorker.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
}

await main();
