/**
 * The benchmark is not part of the suite, but its quick mode must keep working: run it with
 * tiny durations and check the results file is complete and well-formed.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'deputy-bench-smoke-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('npm run bench -- --quick', { timeout: 600_000 }, () => {
  it('runs every scenario and writes a well-formed results file and summary', async () => {
    const out = join(dir, 'results.json');
    const md = join(dir, 'summary.md');
    await run('node_modules/.bin/tsx', ['scripts/bench/index.ts', '--quick', '--duration-ms', '150', '--out', out, '--markdown', md], {
      env: process.env,
      timeout: 580_000,
    });
    const results = JSON.parse(readFileSync(out, 'utf8')) as {
      machine: { cpus: number; node: string };
      crypto: Record<string, number>;
      figures: Array<{ name: string; store?: string; result: { rps: number; errors: number; latencyMs: { p50: number; p99: number } }; perRequest?: { statements: number; crypto: Record<string, number> }; rssMiB?: { idle: number; underLoad: number } }>;
      ratios: Record<string, number>;
      ratioSlices: Record<string, { median: number; min: number; max: number; pairs: number }>;
      targets: Array<{ figure: string; kind: string; status: string; values: Array<{ at: string; value: number; met: boolean }> }>;
      pdp: {
        yardstick: { cedarStatefulIsAuthorizedPerSecond: number };
        rows: Array<{ scenario: string; decisionCache: boolean; concurrency: number; decisionsPerSecond: number; errors: number; speed?: { speed: number; calibrationMs: number[] }; pair?: { floor: string; floorPerSecond: number; ratio: { median: number; min: number; max: number; pairs: number } } }>;
      };
    };
    expect(results.machine.cpus).toBeGreaterThan(0);
    expect(Object.values(results.crypto).every((v) => v > 0)).toBe(true);
    const names = new Set(results.figures.map((f) => f.name));
    for (const name of ['HTTP floor (bare Koa)', 'client_credentials (yardstick)', 'client_credentials on bare oidc-provider (yardstick)', 'token exchange', 'gateway call (receipts on)', 'gateway call (receipts off)', 'upstream called directly (yardstick)', 'llm stream (budgets on)', 'llm stream called directly (yardstick)', 'MCP tools/call through Deputy', 'MCP tools/call directly (yardstick)']) {
      expect(names).toContain(name);
    }
    for (const f of results.figures) {
      expect(f.result.errors).toBe(0);
      expect(f.result.rps).toBeGreaterThan(0);
      expect(f.result.latencyMs.p99).toBeGreaterThanOrEqual(f.result.latencyMs.p50);
    }
    expect(Object.keys(results.ratios)).toEqual(expect.arrayContaining([expect.stringMatching(/^exchange_vs_client_credentials\.pglite/), expect.stringMatching(/^client_credentials_vs_bare_oidc_provider\.pglite/), expect.stringMatching(/^gateway_vs_direct\.pglite/), expect.stringMatching(/^mcp_vs_direct\.pglite/)]));
    // The server-side counters: every Deputy and bare-provider figure says what a request cost.
    const exchange = results.figures.find((f) => f.name === 'token exchange')!;
    expect(exchange.perRequest!.statements).toBeGreaterThan(0);
    expect(exchange.perRequest!.crypto['sign ECDSA']).toBeGreaterThan(0);
    expect(exchange.rssMiB!.underLoad).toBeGreaterThan(0);
    expect(results.pdp.yardstick.cedarStatefulIsAuthorizedPerSecond).toBeGreaterThan(0);
    expect(results.pdp.rows.length).toBeGreaterThan(0);
    expect(results.pdp.rows.every((r) => r.errors === 0 && r.decisionsPerSecond > 0)).toBe(true);
    // Every ratio's sides interleaved in slices of one point (issue 16, fourteenth round): quick
    // runs take two slices a side; each ratio is the median of its slice pairs, min ≤ median ≤ max.
    const figures = results.figures as Array<{ name: string; point?: string; slices?: { rps: number[] }; speed?: { speed: number; calibrationMs: number[] } }>;
    const exchangePoint = figures.find((f) => f.name === 'token exchange')!;
    const yardstick = figures.find((f) => f.name === 'client_credentials (yardstick)')!;
    expect(exchangePoint.point).toBe(yardstick.point);
    expect(exchangePoint.slices!.rps).toHaveLength(2);
    for (const [key, st] of Object.entries(results.ratioSlices)) {
      expect(results.ratios[key]).toBe(st.median);
      expect(st.min).toBeLessThanOrEqual(st.median);
      expect(st.max).toBeGreaterThanOrEqual(st.median);
    }
    expect(figures.every((f) => f.speed && f.speed.speed > 0 && f.speed.calibrationMs.every((ms) => ms > 0))).toBe(true);
    // Issue 16's targets, generated: every row of the issue's table, the PGlite values present.
    expect(results.targets).toHaveLength(10);
    expect(results.targets.find((t) => t.figure.startsWith('token exchange ÷'))!.values.map((v) => v.at)).toContain('pglite c8');
    expect(results.targets.find((t) => t.figure.startsWith('PDP single, one-link, cache off'))!.values.length).toBeGreaterThan(0);
    // The PDP's ratios to its floors interleaved (fourteenth round): the cached one-link c8 beside the
    // GET HTTP floor, the uncached one-link c8 beside the Cedar floor, two slice pairs each (quick),
    // and the target rows read from those pairs (with their min–max); every PDP point has its speed.
    const pdpRow = (cache: boolean) => results.pdp.rows.find((r) => r.scenario === 'single, one-link subject' && r.decisionCache === cache && r.concurrency === 8)!;
    expect(pdpRow(true).pair).toMatchObject({ floor: 'GET HTTP floor', ratio: { pairs: 2 } });
    expect(pdpRow(false).pair).toMatchObject({ floor: 'Cedar floor ÷ 2 principals', ratio: { pairs: 2 } });
    for (const r of [pdpRow(true), pdpRow(false)]) {
      expect(r.pair!.floorPerSecond).toBeGreaterThan(0);
      expect(r.pair!.ratio.min).toBeLessThanOrEqual(r.pair!.ratio.median);
      expect(r.pair!.ratio.max).toBeGreaterThanOrEqual(r.pair!.ratio.median);
    }
    expect(results.pdp.rows.filter((r) => r.pair)).toHaveLength(2);
    expect(results.pdp.rows.every((r) => r.speed && r.speed.speed > 0 && r.speed.calibrationMs.every((ms) => ms > 0))).toBe(true);
    const cachedTarget = results.targets.find((t) => t.figure.startsWith('PDP single, one-link, cache on, c8'))!.values as Array<{ value: number; spread?: number[] }>;
    expect(cachedTarget[0]).toMatchObject({ value: pdpRow(true).pair!.ratio.median, spread: [pdpRow(true).pair!.ratio.min, pdpRow(true).pair!.ratio.max] });
    const summary = readFileSync(md, 'utf8');
    expect(summary).toMatch(/\| PDP single, one-link subject, cache off c8 \|/);
    expect(summary).toMatch(/\| token exchange \| pglite \|/);
    expect(summary).toMatch(/\| figure \(issue 16\) \| kind \|/);
    expect(summary).toMatch(/\| point \| calibration CPU ms before → after \| its wall ms \| speed \| steal \| disturbed \|/);
  });
});
