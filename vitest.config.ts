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
    // A worker process runs several files in turn and keeps what it loaded (oidc-provider, the
    // compiled PGlite and Cedar WebAssembly): each file still starts its own servers, databases
    // and keys, so no test shares state with another file's.
    isolate: false,
    // Two cores: a few files at once keeps the suite quick without starving the servers under test.
    maxWorkers: 3,
    reporters: ['default'],
  },
});
