import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

// Loading Deputy's Cedar binding must switch off the V8 optimisation whose deoptimisation aborts
// Node 20 / 22 (src/pdp/cedar.ts). The repro aborts with exit 133 (SIGTRAP) without the workaround.
describe('V8 JS-to-Wasm deoptimisation abort (Node < 24)', () => {
  it('a process that loaded the Cedar binding survives the minimal repro', () => {
    const script = "await import('./src/pdp/cedar.ts'); await import('./scripts/bench/v8-wasm-deopt-repro.mjs');";
    const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(run.signal).toBeNull();
    expect(run.status).toBe(0);
    expect(run.stdout).toContain('survived');
  });
});
