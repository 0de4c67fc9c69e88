/**
 * The test tiers (vitest.config.ts `SLOW_TIER`, vitest.slow.config.ts, vitest.bench.config.ts)
 * and what CI runs of them (.ci/run): every slow-tier file exists (a renamed one would silently
 * fall back into the default tier), and wherever CI runs `npm test` it runs `npm run test:slow`
 * in the same environment (store, Node on PATH) — the slow tier left `npm test` to keep it
 * quick, not to leave a supported runtime untested.
 */
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SLOW_TIER } from '../../vitest.config.js';

/** `.ci/run`'s commands, one per line, with the `npm test` / `npm run test:slow` at their end. */
function ciCommands(): string[] {
  return readFileSync('.ci/run', 'utf8').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#') && !l.startsWith('echo'));
}

describe('test tiers', () => {
  it('every SLOW_TIER file exists', () => {
    for (const file of SLOW_TIER) expect(existsSync(file), file).toBe(true);
  });

  it('.ci/run follows every npm test with npm run test:slow in the same environment (Node 22 included)', () => {
    const commands = ciCommands();
    const prefixes = (suffix: string) => commands.filter((c) => c.endsWith(suffix)).map((c) => c.slice(0, -suffix.length).trim());
    const defaults = prefixes('npm test');
    expect(defaults.length).toBeGreaterThanOrEqual(3);
    expect(prefixes('npm run test:slow')).toEqual(defaults);
  });
});
