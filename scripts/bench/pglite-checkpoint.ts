/**
 * `npx tsx scripts/bench/pglite-checkpoint.ts [--n 60000] [--dir memory://|<folder>] [--checkpoint on|off] [--max-wal-mb 16]`
 * — embedded PGlite's WAL and memory after N gateway receipt appends (`appendIfHead`, one receipt
 * and its proof `jti`), with the store's checkpointer (src/store/checkpointer.ts) looking every
 * second, or never. Prints WAL on disk (`pg_ls_waldir()`, on MEMFS too), WAL since the last
 * checkpoint's redo point, RSS and heap, and each checkpoint's main-thread pause as CPU ms of this
 * process (`process.cpuUsage`: the checkpointer's clock is the process's CPU time here, so the
 * time bound is effectively off and the reported pause is CPU, not wall). Issue 16, eighth round.
 *
 * @module
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { parseArgs } from './options.js';
import { appendIfHead, type ChainHead } from '../../src/audit/chain.js';
import { genesisHash } from '../../src/audit/receipt.js';
import type { CheckpointClock } from '../../src/store/checkpointer.js';
import { migrate, type Store } from '../../src/store/index.js';
import { createPGliteStore } from '../../src/store/pglite.js';

const { values } = parseArgs(import.meta.url, {
  options: { n: { type: 'string', default: '60000', value: 'positive integer' }, dir: { type: 'string', default: 'memory://' }, checkpoint: { type: 'string', default: 'on', value: ['on', 'off'] }, 'max-wal-mb': { type: 'string', default: '16', value: 'positive integer' } },
});
const N = Number(values.n);
const ON = values.checkpoint === 'on';

const cpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
/** CPU time as the clock; a real unref'd 1 s timer when on, none when off. */
const clock: CheckpointClock = {
  now: cpuMs,
  every(intervalMs, tick) {
    if (!ON) return () => {};
    const t = setInterval(() => void tick(), intervalMs);
    t.unref();
    return () => clearInterval(t);
  },
};

async function wal(store: Store): Promise<{ onDiskMB: number; sinceRedoMB: number }> {
  const [row] = await store.query<{ disk: string; since: string }>(
    'SELECT (SELECT sum(size) FROM pg_ls_waldir())::text AS disk, (pg_current_wal_insert_lsn() - (pg_control_checkpoint()).redo_lsn)::text AS since',
  );
  return { onDiskMB: Number(row!.disk) / 2 ** 20, sinceRedoMB: Number(row!.since) / 2 ** 20 };
}

async function main(): Promise<void> {
  if (values.dir !== 'memory://') rmSync(values.dir, { recursive: true, force: true });
  const pauses: number[] = [];
  const store = await createPGliteStore({
    dataDir: values.dir,
    checkpoint: { maxWalBytes: Number(values['max-wal-mb']) * 2 ** 20, timeoutMs: 1e12, intervalMs: 1_000 },
    checkpointEvents: { checkpointed: (_r, seconds) => pauses.push(seconds * 1000), failed: (err) => console.error('checkpoint failed', err) },
    checkpointClock: clock,
  });
  await migrate(store);
  const agent = `ckpt-${randomUUID()}`;
  let head: ChainHead = { seq: 0, hash: genesisHash(agent) };
  const start = { cpu: cpuMs(), rss: process.memoryUsage().rss };
  for (let seq = 1; seq <= N; seq++) {
    const hash = randomBytes(32).toString('base64url');
    const receipt = { id: randomUUID(), agent, seq, hash, prev: head.hash, jws: `e30.${randomBytes(300).toString('base64url')}.sig` };
    const outcome = await appendIfHead(store, agent, head, [receipt], [{ namespace: 'DPoPProof', key: randomUUID(), ttlSeconds: 300 }]);
    if (outcome !== 'written') throw new Error(`append: ${outcome}`);
    head = { seq, hash };
    // Yield now and then so the 1 s timer can fire (a server yields between requests).
    if (seq % 200 === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  const m = process.memoryUsage();
  const sorted = [...pauses].sort((a, b) => a - b);
  console.log(
    JSON.stringify({
      dir: values.dir === 'memory://' ? 'memory://' : 'folder',
      checkpoint: values.checkpoint,
      n: N,
      ...(await wal(store)),
      rssMB: Math.round(m.rss / 2 ** 20),
      rssGrowthMB: Math.round((m.rss - start.rss) / 2 ** 20),
      heapUsedMB: Math.round(m.heapUsed / 2 ** 20),
      arrayBuffersMB: Math.round(m.arrayBuffers / 2 ** 20),
      cpuMsPerAppend: Number(((cpuMs() - start.cpu) / N).toFixed(3)),
      checkpoints: pauses.length,
      pauseCpuMsMedian: sorted.length ? Number(sorted[sorted.length >> 1]!.toFixed(1)) : null,
      pauseCpuMsMax: sorted.length ? Number(sorted[sorted.length - 1]!.toFixed(1)) : null,
    }),
  );
  await store.close();
}

await main();
