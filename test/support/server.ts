/**
 * Starts a real Deputy on a free port for a test, with its own keys folder, its own database
 * (see ./database.ts) and a log capture that tests scan for leaked secrets.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { validateConfig } from '../../src/config/load.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { createLogger } from '../../src/log.js';
import { startDeputy, type DeputyServer } from '../../src/main.js';
import { createTestDatabase, type TestDatabase } from './database.js';

/**
 * `TEST_PGLITE_THREAD=worker` runs the embedded store of every server the tests start in its worker
 * thread (`store.pglite.thread`), so the whole suite can be run against that mode; a test's own
 * `store` input still wins. Ignored on PostgreSQL.
 */
function pgliteThread(): Pick<NonNullable<ConfigInput['store']>, 'pglite'> {
  const thread = process.env.TEST_PGLITE_THREAD;
  return thread === 'worker' || thread === 'main' ? { pglite: { thread } } : {};
}

export interface TestDeputy extends DeputyServer {
  /** Every log line written so far. */
  logs: string[];
  keysDir: string;
  database: TestDatabase;
  /** Closes the server and removes its database and keys. */
  stop(): Promise<void>;
}

export interface TestDeputyOptions {
  config?: ConfigInput;
  /** Reuse a keys folder (restarts, rotation). */
  keysDir?: string;
  /** Reuse a database (restarts, several instances). */
  database?: TestDatabase;
  /** Environment the key store reads (`DEPUTY_SIGNING_KEYS`…); empty by default. */
  env?: Readonly<Record<string, string | undefined>>;
  /** The collected logger's level: `debug` by default; production's default (`warn`) to test what is logged there. */
  logLevel?: string;
}

export async function startTestDeputy(options: TestDeputyOptions = {}): Promise<TestDeputy> {
  const keysDir = options.keysDir ?? mkdtempSync(join(tmpdir(), 'deputy-keys-'));
  const database = options.database ?? (await createTestDatabase());
  const input = options.config ?? {};
  const config = validateConfig(
    {
      ...input,
      server: { port: 0, host: '127.0.0.1', shutdownGraceSeconds: 1, ...input.server },
      store: { ...(database.url ? { databaseUrl: database.url } : { dataDir: 'memory://' }), poolSize: 5, ...pgliteThread(), ...input.store },
      keys: { dir: keysDir, generate: true, ...input.keys },
      log: { level: 'debug', ...input.log },
    },
    'test',
  );
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(String(chunk));
      cb();
    },
  });
  const deputy = await startDeputy({ config, logger: createLogger(options.logLevel ?? 'debug', sink), env: options.env ?? {} });
  const owned = { keys: !options.keysDir, db: !options.database };
  return Object.assign(Object.create(null), deputy, {
    logs,
    keysDir,
    database,
    async stop() {
      await deputy.close(100);
      if (owned.db) await database.drop();
      if (owned.keys) rmSync(keysDir, { recursive: true, force: true });
    },
  }) as TestDeputy;
}
