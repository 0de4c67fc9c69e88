import { BaseSequencer, type TestSpecification } from 'vitest/node';
import { defineConfig } from 'vitest/config';

/**
 * The slowest files, started first so that the end of the run is not one long file on one worker
 * while the other cores idle. CI starts from an empty vitest cache, where vitest itself orders by
 * file size, which says little about time: files missing here started last and ended the run
 * alone (npm-start-signal began 646 s into a 715 s run). Measured: each file's end − start in a
 * full PGlite run (`npx vitest run --reporter=json`; issue 16 thirteenth round, the 2 × Intel VM at
 * load 8–18, so ~4–5× a quiet run's figures; every file of 20 s or more there), less the runs
 * that round cut from the two PDP properties. Refresh it from such a report when files move.
 */
const SLOWEST_FIRST = [
  'test/unit/pdp-entity-slice-attacks.test.ts', // 87 s
  'test/features/readme-snippets.test.ts', // 67 s
  'test/store/pglite-checkpoint.test.ts', // 63 s
  'test/features/cli.test.ts', // 58 s
  'test/features/keys.test.ts', // 53 s
  'test/features/data-dir-lock.test.ts', // 52 s
  'test/store/pglite-thread.test.ts', // 51 s
  'test/features/npm-start-signal.test.ts', // 47 s
  'test/unit/pglite-open.test.ts', // 40 s
  'test/unit/federation-accepted.test.ts', // 40 s
  'test/unit/pdp-entity-slice-scopes.test.ts', // 50 s at 120 runs, ~2/3 of it at 80
  'test/unit/federation.test.ts', // 34 s
  'test/unit/pdp-policy-scopes.test.ts', // 57 s at 60 runs, ~1/2 of it at 30
  'test/features/llm-gateway.test.ts', // 32 s
  'test/features/start.test.ts', // 30 s
  'test/store/store-contract.test.ts', // 29 s
  'test/features/fuzz.test.ts', // 26 s
  'test/features/authzen-conformance.test.ts', // 25 s
  'test/features/mcp-gateway.test.ts', // 24 s
  'test/features/token-exchange.test.ts', // 22 s
  'test/features/operator-privileges.test.ts', // 22 s
  'test/features/mcp-budgets.test.ts', // 22 s
  'test/features/subject-token-types.test.ts', // 21 s
  'test/features/gateway.test.ts', // 21 s
  'test/features/client-id-metadata.test.ts', // 20 s
];

/** vitest's order (failed, then longest, by its cache), with {@link SLOWEST_FIRST} ahead of it. */
class SlowestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const rank = (f: TestSpecification): number => {
      const i = SLOWEST_FIRST.findIndex((path) => f.moduleId.endsWith(`/${path}`));
      return i === -1 ? SLOWEST_FIRST.length : i;
    };
    return sorted.map((f, i) => ({ f, i, r: rank(f) })).sort((a, b) => a.r - b.r || a.i - b.i).map(({ f }) => f);
  }
}

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The bench smoke run is its own CI step (`npm run test:bench`, vitest.bench.config.ts).
    exclude: ['test/bench/**', '**/node_modules/**'],
    // One PGlite initdb per run, not one per test file / spawned process (test/support/global-setup.ts).
    globalSetup: ['test/support/global-setup.ts'],
    setupFiles: ['test/support/pglite-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 180_000,
    pool: 'forks',
    // Workers are reused across files (no fresh module graph per file): a third less time on two
    // cores. The V8 abort that once killed such a long-lived worker (Deoptimizer, "unreachable
    // code", Node 20/22) is Cedar's JS-to-Wasm deoptimisation, switched off in src/pdp/cedar.ts
    // (test/unit/v8-wasm-deopt.test.ts). Process-wide state (the metrics registry) is asserted by
    // deltas, never absolute counts.
    isolate: false,
    // Two cores: a few files at once keeps the suite quick without starving the servers under test.
    maxWorkers: 3,
    reporters: ['default'],
    sequence: { sequencer: SlowestFirst },
  },
});
