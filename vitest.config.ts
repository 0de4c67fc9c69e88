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
    // Two cores: a few files at once keeps the suite quick without starving the servers under test.
    maxWorkers: 3,
    reporters: ['default'],
  },
});
