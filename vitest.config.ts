import { BaseSequencer, type TestSpecification } from 'vitest/node';
import { defineConfig } from 'vitest/config';

/**
 * The slowest files (measured: per-file time in a quiet full PGlite run, 124 s wall, issue 16 seventh
 * round — `npx vitest run --reporter=json`, each file's end − start; every file of 3.5 s or more),
 * started first so that the end of the run is not one long file on one worker while the other
 * cores idle. CI starts from an empty vitest cache, where vitest itself orders by file size, which
 * says little about time. Refresh it from such a report when files move.
 */
const SLOWEST_FIRST = [
  'test/features/readme-snippets.test.ts', // 29.1 s
  'test/unit/pdp-entity-slice-attacks.test.ts', // 21.2 s
  'test/unit/pglite-open.test.ts', // 20.8 s
  'test/features/data-dir-lock.test.ts', // 16.6 s
  'test/features/keys.test.ts', // 15.5 s
  'test/features/cli.test.ts', // 11.9 s
  'test/features/start.test.ts', // 11.0 s
  'test/features/client-id-metadata.test.ts', // 7.1 s
  'test/unit/pdp-entity-slice-scopes.test.ts', // 5.6 s
  'test/features/llm-gateway.test.ts', // 5.0 s
  'test/features/mcp-budgets.test.ts', // 4.9 s
  'test/features/mcp-relay.test.ts', // 4.8 s
  'test/features/gateway-hostile-upstream.test.ts', // 4.2 s
  'test/unit/federation.test.ts', // 3.9 s
  'test/features/authzen-conformance.test.ts', // 3.8 s
  'test/features/operator-privileges.test.ts', // 3.8 s
  'test/features/gateway.test.ts', // 3.7 s
  'test/store/store-contract.test.ts', // 3.7 s
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
