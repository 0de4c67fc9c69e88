/**
 * How many cases a fast-check property runs. Each property names its own default, which keeps the
 * default `npm test` quick; `FC_NUM_RUNS` (or the older `FUZZ_RUNS`) sets the count for every
 * property at once, for a deeper run (`FC_NUM_RUNS=1000 npm test`, README "Development").
 *
 * With a fixed seed, fast-check draws the same cases in the same order whatever the count, so a
 * default of `n` runs exactly the first `n` cases of a deeper run.
 */
export function propertyRuns(defaultRuns: number): number {
  const set = process.env.FC_NUM_RUNS ?? process.env.FUZZ_RUNS;
  if (set === undefined || set === '') return defaultRuns;
  const runs = Number(set);
  if (!Number.isInteger(runs) || runs < 1) throw new TypeError(`FC_NUM_RUNS must be a positive integer, got ${JSON.stringify(set)}`);
  return runs;
}

/**
 * A time limit for a property of `runs` cases that takes up to `perRunMs` each on a loaded machine:
 * never under `floorMs`. A limit with room, not a speed assertion.
 */
export function propertyTimeout(runs: number, perRunMs: number, floorMs: number): number {
  return Math.max(floorMs, runs * perRunMs);
}
