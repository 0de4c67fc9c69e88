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
 *
 * The dump is kept between runs in `node_modules/.cache/deputy-test/`, named by a digest of what
 * makes it (PGlite's version, the `initdb` arguments, the buffer pool): `initdb` is ~9 s of CPU on
 * one core while every worker waits for this setup (BENCHMARKS.md, issue 16 seventh round). It is
 * written under a temporary name and renamed, so a run never reads half a dump; a fresh checkout
 * or `npm ci` (CI) starts without it and makes it once. Delete the folder to make it again.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
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

/** Where the empty cluster's dump is kept between runs (see the module comment). */
const CACHE_DIR = join(import.meta.dirname, '../../node_modules/.cache/deputy-test');

/** The cached dump's file: named by everything that makes the cluster. */
function cachedDumpFile(): string {
  const pglite = JSON.parse(readFileSync(join(import.meta.dirname, '../../node_modules/@electric-sql/pglite/package.json'), 'utf8')) as { version: string };
  const key = createHash('sha256').update(JSON.stringify([pglite.version, TEST_INITDB_ARGS, TEST_SHARED_BUFFERS])).digest('hex').slice(0, 16);
  return join(CACHE_DIR, `empty-cluster-${key}.tar`);
}

/** The empty cluster's dump: from the cache, or made by `initdb` and then cached. */
async function emptyClusterDump(): Promise<Buffer> {
  const cached = cachedDumpFile();
  if (existsSync(cached)) return readFileSync(cached);
  const db = await PGlite.create({ initDbStartParams: TEST_INITDB_ARGS });
  await db.exec(`ALTER SYSTEM SET shared_buffers = '${TEST_SHARED_BUFFERS}'`);
  const dump = Buffer.from(await (await db.dumpDataDir('none')).arrayBuffer());
  await db.close();
  try {
    mkdirSync(CACHE_DIR, { recursive: true });
    const partial = `${cached}.${process.pid}.partial`;
    writeFileSync(partial, dump);
    renameSync(partial, cached);
  } catch {
    // No cache (read-only node_modules): the next run runs initdb again.
  }
  return dump;
}

/** `count` RSA-2048 private JWKs, generated concurrently. */
async function generateRsaPool(count: number): Promise<JWK[]> {
  return Promise.all(Array.from({ length: count }, async () => exportJWK((await generateKeyPair('RS256', { extractable: true })).privateKey)));
}

export default async function setup(project: TestProject): Promise<() => void> {
  const dir = mkdtempSync(join(tmpdir(), 'deputy-test-cluster-'));
  const rsaPool = generateRsaPool(RSA_POOL_SIZE);
  const dump = await emptyClusterDump();
  const dumpFile = join(dir, 'empty-cluster.tar');
  writeFileSync(dumpFile, dump);
  const template = join(dir, 'data');
  const folder = await PGlite.create({ dataDir: template, loadDataDir: new Blob([dump]) });
  await folder.close();
  project.provide('pgliteEmptyCluster', dumpFile);
  project.provide('pgliteDataDirTemplate', template);
  project.provide('rsaKeyPool', await rsaPool);
  return () => rmSync(dir, { recursive: true, force: true });
}
