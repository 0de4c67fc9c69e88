import { defineConfig } from 'vitest/config';

/** The bench smoke run: its own CI step, outside the default `npm test` (which stays quick). */
export default defineConfig({
  test: {
    include: ['test/bench/**/*.test.ts'],
    testTimeout: 600_000,
    hookTimeout: 180_000,
    pool: 'forks',
    reporters: ['default'],
  },
});
