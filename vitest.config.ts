import { BaseSequencer, type TestSpecification } from 'vitest/node';
import { defineConfig } from 'vitest/config';

/**
 * The slowest files (measured: per-file time in a full PGlite run, issue 16 fourth round), started first so
 * that the end of the run is not one long file on one worker while the other cores idle. CI starts
 * from an empty vitest cache, where vitest itself orders by file size, which says little about time.
 */
const SLOWEST_FIRST = [
  'test/features/readme-snippets.test.ts',
  'test/features/data-dir-lock.test.ts',
  'test/unit/pglite-open.test.ts',
  'test/features/keys.test.ts',
  'test/features/cli.test.ts',
  'test/features/mcp-budgets.test.ts',
  'test/features/agent-deletion.test.ts',
  'test/features/mcp-relay.test.ts',
  'test/features/fuzz.test.ts',
  'test/features/llm-gateway.test.ts',
  'test/features/gateway.test.ts',
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
