import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The bench smoke run is its own CI step (`npm run test:bench`, vitest.bench.config.ts).
    exclude: ['test/bench/**', '**/node_modules/**'],
    testTimeout: 60_000,
    hookTimeout: 180_000,
    pool: 'forks',
    // Two cores: a few files at once keeps the suite quick without starving the servers under test.
    maxWorkers: 3,
    reporters: ['default'],
  },
});
