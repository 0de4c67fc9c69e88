import { defineConfig } from 'vitest/config';

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
    // Each file in a fresh worker. Reusing workers across files (`isolate: false`) cut a quiet
    // PGlite run from ~300 s to ~190 s, but one such long-lived worker died of a V8 fatal error
    // (Deoptimizer, "unreachable code") on Node 20 in CI: stability first.
    isolate: true,
    // Two cores: a few files at once keeps the suite quick without starving the servers under test.
    maxWorkers: 3,
    reporters: ['default'],
  },
});
