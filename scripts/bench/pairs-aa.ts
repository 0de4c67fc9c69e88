/**
 * `npx tsx scripts/bench/pairs-aa.ts [--rounds 6] [--ms 2000] [--slices 4] [--concurrency 1]`
 *
 * An A/A check of the bench's pair method (issue 16, fourteenth round): the same scenario (the
 * HTTP floor's GET, floor-process.ts) measured against itself, so every ratio should read 1.
 * Each round measures it twice, alternately: as two windows one after the other (the bench's
 * method until the fourteenth round) and as interleaved slices (pairs.ts `slicePlan`, the median
 * of the slice-pair ratios). On a shared machine the first drifts from 1 with the machine; the
 * question is how much closer to 1 the second stays. Prints each round's two ratios and the
 * median and largest |ratio − 1| of each method.
 *
 * @module
 */
import { parseArgs } from './options.js';
import { runLoad, type RequestSpec } from './load.js';
import { median, pairStatistic, slicePlan } from './pairs.js';
import { startProcess } from './process.js';

const { values } = parseArgs(import.meta.url, {
  options: {
    rounds: { type: 'string', default: '6', value: 'positive integer', description: 'rounds (each: one sequential pair, one interleaved pair)' },
    ms: { type: 'string', default: '2000', value: 'positive integer', description: 'measured ms per side per pair' },
    slices: { type: 'string', default: '4', value: 'positive even integer', description: 'slices per side in the interleaved pair, even (whole A B B A rounds)' },
    concurrency: { type: 'string', default: '1', value: 'positive integer', description: 'connections' },
  },
  usage: 'The pair method against itself: sequential windows vs interleaved slices of the same scenario (see BENCHMARKS.md).',
});
const rounds = Number(values.rounds);
const ms = Number(values.ms);
const slices = Math.max(1, Number(values.slices));
const concurrency = Math.max(1, Number(values.concurrency));

const { child, ready } = await startProcess('floor-process.ts', {});
const next = (): RequestSpec => ({ method: 'GET', path: '/' });
const window = async (durationMs: number, warmupMs: number) => (await runLoad({ origin: ready[0]!, concurrency, durationMs, warmupMs, next })).rps;

try {
  await window(1000, 0);
  const sequential: number[] = [];
  const interleavedRatios: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const a = await window(ms, 250);
    const b = await window(ms, 250);
    sequential.push(a / b);
    const rates: number[][] = [[], []];
    for (const side of slicePlan(2, slices)) rates[side]!.push(await window(Math.round(ms / slices), rates[side]!.length === 0 ? 250 : 50));
    interleavedRatios.push(pairStatistic(rates[0]!, rates[1]!, (x, y) => x / y, 3)!.median);
    process.stdout.write(`round ${r + 1}: sequential ${(a / b).toFixed(3)}, interleaved ${interleavedRatios.at(-1)}\n`);
  }
  const off = (xs: number[]) => xs.map((x) => Math.abs(x - 1));
  const fmt = (xs: number[]) => `median |ratio − 1| ${median(off(xs)).toFixed(3)}, largest ${Math.max(...off(xs)).toFixed(3)}`;
  process.stdout.write(`sequential windows: ${fmt(sequential)}\ninterleaved slices: ${fmt(interleavedRatios)}\n`);
} finally {
  child.kill('SIGTERM');
}
