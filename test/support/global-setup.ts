/**
 * Once per test run (vitest `globalSetup`): one freshly initialised PGlite cluster, made by
 * `initdb` here once instead of in every test file and every spawned process.
 *
 * - `pgliteEmptyCluster`: the path of its dump (`dumpDataDir('none')`); `./pglite-setup.ts` hands
 *   it to the store of each test file (`provideEmptyCluster`), so in-memory databases and new
 *   data folders opened by tests start from a copy of it.
 * - `pgliteDataDirTemplate`: a data folder holding it (no lock, no Deputy tables), which
 *   `initialisedDataDir()` copies for tests that start Deputy or a script as a separate process
 *   on a new folder. `test/features/start.test.ts` still starts on a folder that does not exist.
 * - `rsaKeyPool`: RSA private JWKs generated once, handed out by `./rsa-keys.ts`.
 *
 * The cluster's `shared_buffers` is 16 MB (`ALTER SYSTEM`, in its `postgresql.auto.conf`), not
 * initdb's 128 MB: starting PostgreSQL touches its whole buffer pool, which was half the CPU of
 * opening a test database (~0.8 s of ~2.5 s; BENCHMARKS.md, issue 16 sixth round). A test
 * database's tables fit in 16 MB many times over, and PGlite's files are in memory anyway, so a
 * smaller pool changes no query's result, only how much memory the database takes.
 *
 * Its WAL segments are 1 MB (`initdb --wal-segsize=1`), not 16 MB: the dump carries the WAL
 * directory, which every test database unpacks into memory when it opens (40 MB → 31 MB of dump,
 * ~0.07 s of CPU less per open; BENCHMARKS.md, issue 16 sixth round, second pass). Segment size
 * changes where PostgreSQL cuts its log, not what a query sees; Deputy's own databases keep 16 MB.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    pgliteEmptyCluster: string;
    pgliteDataDirTemplate: string;
    rsaKeyPool: JWK[];
  }
}

/** RSA keys handed out per test file (./rsa-keys.ts); a file needing more generates the rest. */
const RSA_POOL_SIZE = 8;

/** PostgreSQL's buffer pool in every test cluster (see the module comment). */
const TEST_SHARED_BUFFERS = '16MB';

/** `initdb` arguments of the test cluster: 1 MB WAL segments (see the module comment). */
const TEST_INITDB_ARGS = ['--wal-segsize=1'];

/** `count` RSA-2048 private JWKs, generated concurrently. */
async function generateRsaPool(count: number): Promise<JWK[]> {
  return Promise.all(Array.from({ length: count }, async () => exportJWK((await generateKeyPair('RS256', { extractable: true })).privateKey)));
}

export default async function setup(project: TestProject): Promise<() => void> {
  const dir = mkdtempSync(join(tmpdir(), 'deputy-test-cluster-'));
  const rsaPool = generateRsaPool(RSA_POOL_SIZE);
  const db = await PGlite.create({ initDbStartParams: TEST_INITDB_ARGS });
  await db.exec(`ALTER SYSTEM SET shared_buffers = '${TEST_SHARED_BUFFERS}'`);
  const dump = await db.dumpDataDir('none');
  await db.close();
  const dumpFile = join(dir, 'empty-cluster.tar');
  writeFileSync(dumpFile, Buffer.from(await dump.arrayBuffer()));
  const template = join(dir, 'data');
  const folder = await PGlite.create({ dataDir: template, loadDataDir: dump });
  await folder.close();
  project.provide('pgliteEmptyCluster', dumpFile);
  project.provide('pgliteDataDirTemplate', template);
  project.provide('rsaKeyPool', await rsaPool);
  return () => rmSync(dir, { recursive: true, force: true });
}
