import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 180_000,
    pool: 'forks',
    // Two cores: a few files at once keeps the suite quick without starving the servers under test.
    maxWorkers: 3,
    reporters: ['default'],
  },
});
