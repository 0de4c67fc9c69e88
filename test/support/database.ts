/**
 * Test databases. With `DATABASE_URL` set, every call gets a fresh PostgreSQL database on that
 * server (dropped by `drop()`), so test files never see each other's rows. Without it, an
 * in-memory PGlite database.
 */
import { randomBytes } from 'node:crypto';
import { cpSync, mkdirSync } from 'node:fs';
import pg from 'pg';
import { inject } from 'vitest';

export const usingPostgres = Boolean(process.env.DATABASE_URL);

export interface TestDatabase {
  /** `databaseUrl` for PostgreSQL, undefined for PGlite. */
  url: string | undefined;
  drop(): Promise<void>;
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const admin = process.env.DATABASE_URL;
  if (!admin) return { url: undefined, drop: async () => {} };
  const name = `deputy_t_${randomBytes(6).toString('hex')}`;
  await withClient(admin, (c) => c.query(`CREATE DATABASE ${name}`));
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: () => withClient(admin, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => {}),
  };
}

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/**
 * Makes `dir` (created, 0700) a PGlite data folder holding an empty, initialised cluster: a copy
 * of the one made once per run (`global-setup.ts`). For tests that run Deputy or a script as a
 * separate process on a new folder and are not about the folder's creation: the process opens it
 * as an existing database and skips `initdb` (seconds). Returns `dir`.
 */
export function initialisedDataDir(dir: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  cpSync(inject('pgliteDataDirTemplate'), dir, { recursive: true });
  return dir;
}
