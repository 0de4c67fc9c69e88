/**
 * Opening embedded PGlite from an empty cluster made once (`provideEmptyCluster`, which the test
 * suite's setup calls): a new data folder becomes a real, persistent database that reopens as it
 * is, and in-memory databases restored from the same dump share nothing. Without a provided
 * dump (a process of its own), the first in-memory database is the one initdb made and is not
 * dumped (a server opens one); the second is initdb's too, and the next ones are restored from its
 * pristine dump: all empty, all independent.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { createPGliteStore } from '../../src/store/pglite.js';
import { TEST_NODE_FLAGS } from '../support/process.js';

const tmp = mkdtempSync(join(tmpdir(), 'deputy-pglite-open-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('PGlite from the provided empty cluster', () => {
  it('a new data folder is initialised, keeps what was written, and reopens as it is', async () => {
    const dataDir = join(tmp, 'data');
    const first = await createPGliteStore({ dataDir });
    try {
      expect(existsSync(join(dataDir, 'PG_VERSION'))).toBe(true);
      expect(await first.query('SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = $1', ['public'])).toEqual([{ n: 0 }]);
      await first.exec('CREATE TABLE kept (v text)');
      await first.query('INSERT INTO kept VALUES ($1)', ['written before the restart']);
    } finally {
      await first.close();
    }
    const again = await createPGliteStore({ dataDir });
    try {
      expect(await again.query('SELECT v FROM kept')).toEqual([{ v: 'written before the restart' }]);
    } finally {
      await again.close();
    }
  });

  it('in-memory databases restored from one dump are independent and empty', async () => {
    const [a, b] = await Promise.all([createPGliteStore({ dataDir: 'memory://' }), createPGliteStore({ dataDir: 'memory://' })]);
    try {
      await a.exec('CREATE TABLE only_in_a (v int)');
      expect(await a.query('SELECT count(*)::int AS n FROM only_in_a')).toEqual([{ n: 0 }]);
      expect(await b.query("SELECT to_regclass('only_in_a') IS NULL AS absent")).toEqual([{ absent: true }]);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});

describe('PGlite in a process given no dump', () => {
  it('the first two in-memory databases are initdb’s own, later ones restore the second’s pristine state; none sees another’s tables', async () => {
    const code = `import { createPGliteStore } from './src/store/pglite.ts';
const tables = async (s) => (await s.query("SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'"))[0].n;
const first = await createPGliteStore({ dataDir: 'memory://' });
await first.exec('CREATE TABLE only_in_first (v int)');
const [second, third] = await Promise.all([createPGliteStore({ dataDir: 'memory://' }), createPGliteStore({ dataDir: 'memory://' })]);
await second.exec('CREATE TABLE only_in_second (v int)');
await third.exec('CREATE TABLE only_in_third (v int)');
const fourth = await createPGliteStore({ dataDir: 'memory://' });
console.log(JSON.stringify([await tables(first), await tables(second), await tables(third), await tables(fourth)]));
await Promise.all([first.close(), second.close(), third.close(), fourth.close()]);`;
    const { stdout } = await promisify(execFile)(process.execPath, [...TEST_NODE_FLAGS, '--import', 'tsx', '--input-type=module', '-e', code]);
    expect(JSON.parse(stdout.trim())).toEqual([1, 1, 1, 0]);
  }, 180_000); // two initdb runs in a child process: slow on a loaded machine
});
