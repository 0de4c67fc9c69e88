import { defineConfig } from 'vitest/config';
import { SLOW_TIER, sharedTestOptions } from './vitest.config.js';

/**
 * The slow tier (`npm run test:slow`): the files the default `npm test` leaves out to stay within
 * its time budget ({@link SLOW_TIER} says which and why). CI runs it on both stores.
 */
export default defineConfig({
  test: {
    include: [...SLOW_TIER],
    ...sharedTestOptions,
  },
});
