/**
 * `npx tsx scripts/bench/entity-check-micro.ts [--sizes 1000,100000] [--rounds 3]` — the policy
 * load's `entities.json` check (src/pdp/entity-check.ts) in-process: CPU milliseconds
 * (`process.cpuUsage`, user + system) per check of the scale curves' file (users in groups of
 * 100, as `scripts/bench/scale-curves.ts` writes it), against the same closed chunks each given
 * to `checkParseEntities` with the schema text (the fifth round's check, which parsed the schema
 * once per chunk). Rounds alternate the two, back to back. Issue 16, seventh round.
 *
 * @module
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from './options.js';
import { cedar, type EntityJson } from '../../src/pdp/cedar.js';
import { checkEntities, closedChunks } from '../../src/pdp/entity-check.js';

const { values } = parseArgs(import.meta.url, { options: { sizes: { type: 'string', default: '1000,100000', value: 'positive integers' }, rounds: { type: 'string', default: '3', value: 'positive integer' } } });
const SIZES = values.sizes.split(',').map(Number);
const ROUNDS = Number(values.rounds);
const SCHEMA = readFileSync(join(import.meta.dirname, '../../config/policies/schema.cedarschema'), 'utf8');

/** The scale curves' `entities.json` with `n` entities: one group per 100 users. */
function scaleFile(n: number): EntityJson[] {
  const groups = Math.max(1, Math.floor(n / 100));
  const json: EntityJson[] = Array.from({ length: groups }, (_, g) => ({ uid: { type: 'Group', id: `g-${g}` }, attrs: {}, parents: [] }));
  for (let i = 0; i < n - groups; i++) json.push({ uid: { type: 'User', id: `u-${i}` }, attrs: { id: `u-${i}` }, parents: [{ type: 'Group', id: `g-${i % groups}` }] });
  return json;
}

/** The fifth round's check: the same chunks, the schema text parsed by Cedar at every call. */
function perChunkSchema(entities: readonly unknown[], schema: string): string {
  for (const chunk of closedChunks(entities)) {
    const answer = cedar.checkParseEntities({ entities: chunk as EntityJson[], schema });
    if (answer.type === 'failure') return 'failure';
  }
  return 'success';
}

function cpuMs(run: () => string): number {
  const before = process.cpuUsage();
  const verdict = run();
  const used = process.cpuUsage(before);
  if (verdict !== 'success') throw new Error('the scale file was refused');
  return (used.user + used.system) / 1000;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

for (const n of SIZES) {
  const file = scaleFile(n);
  const once = { before: [] as number[], after: [] as number[] };
  perChunkSchema(file, SCHEMA); // warm-up: Cedar's Wasm compiled, both paths run once
  checkEntities(file, SCHEMA);
  for (let r = 0; r < ROUNDS; r++) {
    once.before.push(cpuMs(() => perChunkSchema(file, SCHEMA)));
    once.after.push(cpuMs(() => checkEntities(file, SCHEMA).type));
  }
  const [b, a] = [median(once.before), median(once.after)];
  console.log(`${n} entities, ${closedChunks(file).length} chunks: schema per chunk ${b.toFixed(1)} ms CPU, parsed once ${a.toFixed(1)} ms (${((1 - a / b) * 100).toFixed(0)} % less); rounds ${once.before.map((x) => x.toFixed(0)).join('/')} vs ${once.after.map((x) => x.toFixed(0)).join('/')}`);
}
