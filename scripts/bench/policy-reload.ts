/**
 * CPU per policy reload (issue 16, tenth round): the policy store of this tree against another
 * tree's (`--before DIR`, e.g. /work/main), in alternating rounds in one process, on Deputy's
 * default folder and on the scale folder (1,000 policies, 1,000 entities; scale-curves.ts's
 * shape). Each reload changes a comment so the set is loaded, not found unchanged.
 *
 * `tsx scripts/bench/policy-reload.ts --before /work/main [--rounds 15]`
 *
 * @module
 */
import { appendFileSync, copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from './options.js';
import { createLogger } from '../../src/log.js';
import { PolicyStore } from '../../src/pdp/policy-store.js';

const ROOT = resolve(import.meta.dirname, '../..');
const { values } = parseArgs(import.meta.url, { options: { before: { type: 'string' }, rounds: { type: 'string', default: '15', value: 'positive integer' } } });

interface Reloadable {
  load(): Promise<unknown>;
  reload(trigger: 'admin'): Promise<unknown>;
}

function folder(policies: number, entities: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'deputy-bench-reload-'));
  copyFileSync(join(ROOT, 'config/policies/schema.cedarschema'), join(dir, 'schema.cedarschema'));
  copyFileSync(join(ROOT, 'config/policies/default.cedar'), join(dir, 'default.cedar'));
  if (policies > 7) {
    const extra = Array.from({ length: policies - 7 }, (_, i) =>
      `@id("scale-${i}")\npermit (principal == User::"user-${i}", action == Action::"read", resource is Resource) when { resource has owner && resource.owner == "owner-${i}" };`);
    writeFileSync(join(dir, 'scale.cedar'), `${extra.join('\n')}\n`);
  }
  if (entities > 0) {
    const groups = Math.max(1, Math.floor(entities / 100));
    const json: unknown[] = Array.from({ length: groups }, (_, g) => ({ uid: { type: 'Group', id: `g-${g}` }, attrs: {}, parents: [] }));
    for (let i = 0; i < entities - groups; i++) json.push({ uid: { type: 'User', id: `u-${i}` }, attrs: { id: `u-${i}` }, parents: [{ type: 'Group', id: `g-${i % groups}` }] });
    writeFileSync(join(dir, 'entities.json'), JSON.stringify(json));
  }
  return dir;
}

/** CPU ms (user + system) of `fn`. */
async function cpuMs(fn: () => Promise<unknown>): Promise<number> {
  const start = process.cpuUsage();
  await fn();
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const before = values.before ? ((await import(join(resolve(values.before), 'src/pdp/policy-store.ts'))) as { PolicyStore: typeof PolicyStore }).PolicyStore : undefined;
  const logger = createLogger('silent');
  for (const [name, policies, entities] of [['default', 7, 0], ['scale 1,000 policies + 1,000 entities', 1000, 1000]] as const) {
    const dirs = { after: folder(policies, entities), before: folder(policies, entities) };
    const stores: Record<string, Reloadable> = { after: new PolicyStore({ dir: dirs.after, logger }) };
    if (before) stores.before = new before({ dir: dirs.before, logger }) as Reloadable;
    const first: Record<string, number> = {};
    for (const [k, s] of Object.entries(stores)) first[k] = await cpuMs(() => s.load());
    const samples: Record<string, number[]> = { after: [], before: [] };
    const diffs: number[] = [];
    for (let r = 0; r < Number(values.rounds); r++) {
      for (const k of Object.keys(stores)) {
        appendFileSync(join(dirs[k as 'after' | 'before'], 'default.cedar'), `// ${r}\n`);
        samples[k]!.push(await cpuMs(() => stores[k]!.reload('admin')));
      }
      if (before) diffs.push(samples.after!.at(-1)! - samples.before!.at(-1)!);
    }
    console.log(JSON.stringify({ folder: name, firstLoadCpuMs: first, reloadCpuMsMedian: { after: median(samples.after!), before: before ? median(samples.before!) : undefined }, pairedDiffMedian: before ? median(diffs) : undefined }));
    for (const d of Object.values(dirs)) rmSync(d, { recursive: true, force: true });
  }
}

await main();
