/**
 * The scale curves' machinery at tiny sizes (scripts/bench/scale.ts): each curve in its own
 * process, a process that dies by a signal run once more, a curve that keeps dying reported
 * without losing the others, the V8 flags recorded. Three curves cover the three kinds of
 * work: Cedar in-process, a store in-process (bulk SQL), and a Deputy process (bulk SQL through
 * BENCH_SETUP_SQL, end-to-end exchanges over HTTP).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import type { ScaleReport } from '../../scripts/bench/scale.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'deputy-scale-smoke-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('scripts/bench/scale.ts --sizes tiny', { timeout: 600_000 }, () => {
  it('runs each curve in its own process, retries a crashed one once and reports one that keeps crashing', async () => {
    const out = join(dir, 'scale.json');
    const { stdout } = await run('node_modules/.bin/tsx', ['scripts/bench/scale.ts', '--sizes', 'tiny', '--only', 'cedar-policies,receipt-append,exchange-agents,receipt-verify', '--out', out], {
      env: { ...process.env, BENCH_SCALE_FAULT: 'cedar-policies,receipt-verify!' },
      timeout: 580_000,
    });
    const report = JSON.parse(readFileSync(out, 'utf8')) as ScaleReport;
    expect(report.v8Flags).toEqual(['--no-turbo-inline-js-wasm-calls']);
    expect(report.sizes).toBe('tiny');
    const stores = process.env.DATABASE_URL ? 2 : 1;
    expect(report.curves.map((c) => c.id).sort()).toEqual(['cedar-policies', ...Array(stores).fill('exchange-agents'), ...Array(stores).fill('receipt-append')].sort());
    for (const c of report.curves) {
      expect(c.points.length).toBeGreaterThanOrEqual(2);
      expect(c.points.every((p) => p.ms > 0 && p.rssMiB! > 0)).toBe(true);
      expect(['flat', 'logarithmic', 'linear']).toContain(c.shape);
    }
    // Curves timed against a Deputy process say what the server did per operation.
    const exchange = report.curves.find((c) => c.id === 'exchange-agents')!;
    expect(exchange.points.every((p) => p.serverCpuMs! > 0 && p.statements! > 0)).toBe(true);
    expect(['flat', 'logarithmic', 'linear']).toContain(exchange.cpu!.shape);
    // The injected SIGTRAP killed the first process; the second measured the curve.
    expect(report.curves.find((c) => c.id === 'cedar-policies')!.attempts).toBe(2);
    expect(report.curves.find((c) => c.id === 'receipt-append')!.attempts).toBe(1);
    expect(report.failures).toEqual([expect.objectContaining({ id: 'receipt-verify', attempts: 2, error: expect.stringMatching(/SIGTRAP/) })]);
    expect(stdout).toMatch(/\| token exchange end to end vs registered agents .*\| pglite \|/);
    expect(stdout).toMatch(/Scale curve failed: receipts: verify an export vs its size, 2 attempt\(s\)/);
  });
});
