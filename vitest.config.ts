import { BaseSequencer, type TestSpecification } from 'vitest/node';
import { defineConfig, type ViteUserConfig } from 'vitest/config';

/**
 * The slowest files, started first so that the end of the run is not one long file on one worker
 * while the other cores idle. CI starts from an empty vitest cache, where vitest itself orders by
 * file size, which says little about time: files missing here started last and ended the run
 * alone (npm-start-signal began 646 s into a 715 s run). Measured: each file's end − start in a
 * full PGlite run (`npx vitest run --reporter=json`; issue 16 thirteenth round, the 2 × Intel VM at
 * load 8–18, so ~4–5× a quiet run's figures; every file of 20 s or more there), less the runs
 * that round cut from the two PDP properties. Refresh it from such a report when files move.
 */
/**
 * The slow tier: files the default `npm test` leaves out so that it stays within its budget (≤ 3
 * minutes on PGlite on a 2-core machine). On the 2 × Intel VM of issue 16's thirteenth round the
 * whole suite took 204 s quiet, CPU-bound at ~400 CPU-seconds; the first five files here brought
 * it to 183 s (~355 CPU-seconds). `npm run test:slow` (vitest.slow.config.ts) runs them, and CI
 * runs it on both stores right after `npm test`, so nothing goes untested before a change lands.
 * What goes here is what a developer's loop rarely breaks and costs the most CPU per assertion:
 * real processes driven the way an operator or a newcomer would (`npm start` configured by a file
 * and the environment and stopped by SIGTERM, npm's signal hand-off, every README snippet against
 * `deputy dev`, a process opening the embedded store without the suite's prepared cluster, the
 * `deputy` CLI and key rotation as processes, a second process on a locked data folder, SIGHUP
 * reloading the PDP's policies, every bench script's options), the
 * opt-in worker-thread store (`store.pglite.thread: worker`: its own tests and the whole store
 * contract on it), and the PDP's exhaustive entity-slice attack grid (Cedar's answer on the slice
 * against the full set). CPU-seconds per file alone, less vitest's own start.
 */
export const SLOW_TIER = [
  'test/unit/pdp-entity-slice-attacks.test.ts', // 15 CPU-s alone
  'test/features/readme-snippets.test.ts', // 21
  'test/features/npm-start-signal.test.ts', // 25
  'test/store/pglite-thread.test.ts', // 14
  'test/store/store-contract-worker.test.ts', // 15
  'test/features/start.test.ts', // 19
  'test/unit/pglite-open.test.ts', // 16
  // CI at 58ff3ba still took 191 s for the rest: the operator commands as processes too.
  'test/features/cli.test.ts', // 30 s in that run
  'test/features/keys.test.ts', // 25 s
  'test/features/data-dir-lock.test.ts', // 22 s
  'test/unit/bench-options.test.ts', // 9 s
  'test/features/authzen-sighup.test.ts', // 8 s
];

const SLOWEST_FIRST = [
  'test/store/pglite-checkpoint.test.ts', // 63 s
  'test/unit/federation-accepted.test.ts', // 40 s
  'test/unit/pdp-entity-slice-scopes.test.ts', // 50 s at 120 runs, ~2/3 of it at 80
  'test/unit/federation.test.ts', // 34 s
  'test/unit/pdp-policy-scopes.test.ts', // 57 s at 60 runs, ~1/2 of it at 30
  'test/features/llm-gateway.test.ts', // 32 s
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

/** The settings both tiers share ({@link SLOW_TIER}): one global set-up, one worker model. */
export const sharedTestOptions = {
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
} satisfies ViteUserConfig['test'];

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The bench smoke run is its own CI step (`npm run test:bench`, vitest.bench.config.ts); the
    // slow tier another (`npm run test:slow`).
    exclude: ['test/bench/**', '**/node_modules/**', ...SLOW_TIER],
    ...sharedTestOptions,
  },
});
