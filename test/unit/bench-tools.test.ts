/**
 * The bench's pure helpers: the scale curves' shape labels (scripts/bench/scale.ts) and the CPU
 * profile's grouping by origin (scripts/bench/profile-summary.ts), the heap profile's grouping
 * by nearest Deputy frame (scripts/bench/heap-summary.ts), and the Node flags the bench starts
 * Deputy with (scripts/bench/process.ts: the product's, from package.json, read by the parser
 * scripts/ci/start-check.mjs shares: scripts/ci/node-flags.mjs), and the bench's GC helpers
 * (scripts/bench/gc.ts: what a GC entry is named, the load generator's heap settled before a window).
 */
import { readFileSync } from 'node:fs';
import { PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import { getHeapSpaceStatistics } from 'node:v8';
import { describe, expect, it } from 'vitest';
import { cedarFloorCall, checkedFloorCall } from '../../scripts/bench/cedar-floor.js';
import { gcKindOf, scavengeNow, settleHeap } from '../../scripts/bench/gc.js';
import { summarizeHeap } from '../../scripts/bench/heap-summary.js';
import { productNodeFlags } from '../../scripts/bench/process.js';
import { nodeFlagsOf } from '../../scripts/ci/node-flags.mjs';
import { fit } from '../../scripts/bench/scale.js';
import { group, summarize } from '../../scripts/bench/profile-summary.js';
import { createLogger } from '../../src/log.js';
import { cedar } from '../../src/pdp/cedar.js';
import { PolicyStore } from '../../src/pdp/policy-store.js';

const curve = (f: (n: number) => number) => [10, 1000, 100_000].map((n) => ({ n, ms: f(n) }));

describe('scale curve fit', () => {
  it('labels a constant cost flat, even with a little noise', () => {
    expect(fit(curve(() => 2)).shape).toBe('flat');
    expect(fit([{ n: 10, ms: 2.1 }, { n: 1000, ms: 1.9 }, { n: 100_000, ms: 2.2 }]).shape).toBe('flat');
  });
  it('labels a cost proportional to n linear, with a slope near 1', () => {
    const f = fit(curve((n) => n * 0.01));
    expect(f.shape).toBe('linear');
    expect(f.slope).toBeCloseTo(1, 1);
  });
  it('labels a cost growing with log n logarithmic', () => {
    expect(fit(curve((n) => Math.log(n))).shape).toBe('logarithmic');
  });
  it('calls a cost that falls with n flat (a cold first point), never logarithmic', () => {
    expect(fit(curve((n) => 10 / Math.log10(n))).shape).toBe('flat');
  });
});

describe('profile summary', () => {
  it('books frames to Deputy folders, packages, WebAssembly and V8 pseudo-frames', () => {
    expect(group({ functionName: 'f', url: 'file:///work/main/src/oauth/dpop.ts', lineNumber: 1 })).toBe('src/oauth');
    expect(group({ functionName: 'f', url: 'file:///x/node_modules/@electric-sql/pglite/dist/a.js', lineNumber: 1 })).toBe('@electric-sql/pglite');
    expect(group({ functionName: 'f', url: 'file:///x/node_modules/jose/dist/a.js', lineNumber: 1 })).toBe('jose');
    expect(group({ functionName: 'wasm-function[1]', url: 'wasm://wasm/0a', lineNumber: 1 })).toBe('WebAssembly (PGlite, Cedar)');
    expect(group({ functionName: '(garbage collector)', url: '', lineNumber: -1 })).toBe('(garbage collector)');
  });
  it('sums self time from samples and time deltas (µs) into ms', () => {
    const s = summarize({
      nodes: [
        { id: 1, callFrame: { functionName: '(idle)', url: '', lineNumber: -1 } },
        { id: 2, callFrame: { functionName: 'verify', url: 'file:///x/node_modules/jose/a.js', lineNumber: 0 } },
      ],
      samples: [1, 2, 2],
      timeDeltas: [1000, 2000, 3000],
    });
    expect(s.totalMs).toBe(6);
    expect(s.groups).toEqual([['jose', 5], ['(idle)', 1]]);
  });
});

describe('heap profile summary', () => {
  const frame = (functionName: string, url: string) => ({ functionName, url, lineNumber: 0 });
  it('books a library allocation to the Deputy function whose call led to it', () => {
    const head = {
      callFrame: frame('(root)', ''), selfSize: 0, children: [
        { callFrame: frame('run', 'file:///x/src/enforcement/pipeline.ts'), selfSize: 100, children: [
          { callFrame: frame('sign', 'file:///x/node_modules/jose/dist/webapi/jws.js'), selfSize: 400, children: [] },
        ] },
        { callFrame: frame('tick', 'node:internal/process/task_queues'), selfSize: 50, children: [] },
      ],
    };
    const s = summarizeHeap(head);
    expect(s.total).toBe(550);
    expect(s.deputy).toEqual([['run src/enforcement/pipeline.ts:1', 500], ['(no Deputy frame)', 50]]);
    expect(s.groups).toEqual([['jose', 400], ['src/enforcement', 100], ['Node internals / native', 50]]);
  });
});

describe('the Node flags Deputy starts with', () => {
  const scripts = (JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: Record<string, string> }).scripts;
  it('are the same for npm start and the compiled start, and the bench uses exactly them', () => {
    expect(nodeFlagsOf(scripts.start!, 'src/main.ts')).toEqual(nodeFlagsOf(scripts['start:dist']!, 'dist/main.js'));
    expect(productNodeFlags()).toEqual(nodeFlagsOf(scripts['start:dist']!, 'dist/main.js'));
    expect(productNodeFlags()).toContain('--max-semi-space-size=64');
  });

  it('are read whole: --flag and --flag=value kept in order, the tsx loader left out', () => {
    expect(nodeFlagsOf('node --max-semi-space-size=64 --import tsx src/main.ts', 'src/main.ts')).toEqual(['--max-semi-space-size=64']);
    expect(nodeFlagsOf('node  --import=tsx --enable-source-maps --env-file=.env  src/main.ts ', 'src/main.ts')).toEqual(['--enable-source-maps', '--env-file=.env']);
    expect(nodeFlagsOf('node dist/main.js', 'dist/main.js')).toEqual([]);
  });

  it('refuse a list they cannot read whole, rather than dropping a value or a flag', () => {
    // Before: `--env-file` kept and `.env` dropped (Node then read the entry as the env file),
    // `--import ./otel.mjs` dropped whole (the check ran without the product's preload), `-r x`
    // dropped, a quoted value split in two.
    for (const script of [
      'node --env-file .env dist/main.js',
      'node --import ./otel.mjs dist/main.js',
      'node -r ./otel.cjs dist/main.js',
      'node --title="deputy server" dist/main.js',
      'node --max-semi-space-size 64 dist/main.js',
      'NODE_ENV=production node dist/main.js',
      'node dist/main.js --port=1',
    ]) {
      expect(() => nodeFlagsOf(script, 'dist/main.js'), script).toThrow(/start script/);
    }
  });
});

/** The `gc` entries `run` caused, once the observer has been called. */
async function gcEntries(run: () => void): Promise<PerformanceEntry[]> {
  const seen: PerformanceEntry[] = [];
  const observer = new PerformanceObserver((list) => seen.push(...list.getEntries()));
  observer.observe({ entryTypes: ['gc'] });
  run();
  await new Promise((r) => setTimeout(r, 50));
  observer.disconnect();
  return seen;
}

const youngUsed = () => getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')!.space_used_size;

describe('the bench GC helpers', () => {
  it('names a full collection mark-compact and a scavenge scavenge (perf_hooks numbers them 4 and 1)', async () => {
    expect((await gcEntries(settleHeap)).map(gcKindOf)).toContain('mark-compact');
    const minor = (await gcEntries(scavengeNow)).map(gcKindOf);
    expect(minor).toContain('scavenge');
    expect(minor).not.toContain('mark-compact');
  });
  it('settles what was just built out of the young generation, keeping it', () => {
    scavengeNow();
    const built = Array.from({ length: 20_000 }, (_, i) => ({ authorization: `DPoP ${i}`, dpop: `proof-${i}`.repeat(4) }));
    const before = youngUsed();
    settleHeap();
    expect(before).toBeGreaterThan(1_000_000);
    expect(youngUsed()).toBeLessThan(before / 4);
    expect(built[19_999]!.authorization).toBe('DPoP 19999');
  });
});

describe('the Cedar floor', () => {
  // Each policy set lives in a Cedar instance of its own (policy-store.ts): a floor call asked of
  // another instance names an unknown set and fails fast — the tenth round's first full bench
  // measured that failure as a floor of 39,543 calls/s (three times the real one).
  it('is a decision of the default set in its own instance, and refuses a call another instance would fail', async () => {
    const store = new PolicyStore({ dir: `${process.cwd()}/config/policies`, logger: createLogger('silent') });
    const set = await store.load();
    const { cedar: instance, call } = checkedFloorCall(set);
    const answer = instance.statefulIsAuthorized(call);
    expect(answer.type === 'success' && answer.response.decision).toBe('allow');
    expect(cedar.statefulIsAuthorized(cedarFloorCall(set.policySetId)).type).toBe('failure');
    expect(() => checkedFloorCall({ cedar, policySetId: set.policySetId })).toThrow(/floor call failed/);
  });
});
