import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listMigrations } from '../../src/store/migrate.js';
import { migrate, openStore, StoreUnavailable, type Store } from '../../src/store/index.js';
import { createTestDatabase, usingPostgres, type TestDatabase } from '../support/database.js';

function openTestStore(db: TestDatabase, poolSize = 5): Promise<Store> {
  return openStore({ databaseUrl: db.url, dataDir: 'memory://', poolSize });
}

/** Tables, columns, indexes and constraints of the public schema, for before/after comparisons. */
async function schemaOf(store: Store): Promise<unknown[]> {
  const columns = await store.query(
    `SELECT table_name, column_name, data_type, is_nullable, column_default
       FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, column_name`,
  );
  const indexes = await store.query(`SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY indexname`);
  const constraints = await store.query(
    `SELECT conrelid::regclass::text AS tbl, conname, pg_get_constraintdef(oid) AS def
       FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY conrelid::regclass::text, conname`,
  );
  return [columns, indexes, constraints];
}

async function tables(store: Store): Promise<string[]> {
  const rows = await store.query<{ table_name: string }>(
    `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name`,
  );
  return rows.map((r) => r.table_name);
}

const allVersions = listMigrations().map((m) => m.version);

describe('migrations', () => {
  let db: TestDatabase;
  let store: Store;

  beforeAll(async () => {
    db = await createTestDatabase();
    store = await openTestStore(db);
  });
  afterAll(async () => {
    await store?.close();
    await db?.drop();
  });

  it('a failing migration rolls back entirely, with nothing recorded', async () => {
    const [first] = listMigrations();
    const broken = { version: 998, name: 'broken', sql: 'CREATE TABLE half_done (id int); SELECT * FROM no_such_table;' };
    await expect(migrate(store, [first!, broken])).rejects.toThrow(/no_such_table/);
    expect(await tables(store)).toEqual([]);
  });

  it('applies every migration once, and a second run applies nothing and changes nothing', async () => {
    expect(allVersions.length).toBeGreaterThan(0);
    expect(await migrate(store)).toEqual(allVersions);
    const after = await schemaOf(store);
    expect(await tables(store)).toEqual(expect.arrayContaining(['agents', 'deputy_migrations', 'oidc_models']));

    expect(await migrate(store)).toEqual([]);
    expect(await schemaOf(store)).toEqual(after);
    const recorded = await store.query<{ version: number; name: string }>('SELECT version, name FROM deputy_migrations ORDER BY version');
    expect(recorded.map((r) => r.version)).toEqual(allVersions);
    expect(recorded.map((r) => r.name)).toEqual(listMigrations().map((m) => m.name));
  });

  it('a later failing migration leaves the applied ones and the schema as they were', async () => {
    const before = await schemaOf(store);
    const extra = [
      { version: 990, name: 'extra', sql: 'CREATE TABLE extra_table (id int)' },
      { version: 991, name: 'broken', sql: 'ALTER TABLE agents ADD COLUMN nope int; SELECT 1/0;' },
    ];
    await expect(migrate(store, [...listMigrations(), ...extra])).rejects.toThrow(/division by zero/);
    expect(await schemaOf(store)).toEqual(before);
    expect((await store.query<{ n: number }>('SELECT count(*)::int AS n FROM deputy_migrations'))[0]!.n).toBe(allVersions.length);
  });
  it('once closed, refuses work with StoreUnavailable; close is idempotent', async () => {
    await store.ping();
    await store.close();
    await store.close();
    await expect(store.ping()).rejects.toBeInstanceOf(StoreUnavailable);
    await expect(store.query('SELECT 1')).rejects.toBeInstanceOf(StoreUnavailable);
    await expect(store.exec('SELECT 1')).rejects.toBeInstanceOf(StoreUnavailable);
    await expect(store.transaction(async () => 1)).rejects.toBeInstanceOf(StoreUnavailable);
  });
});

describe('migration order and upgrades', () => {
  it('lists migrations by version number; refuses a misnamed file or two files with one number', () => {
    const dir = mkdtempSync(join(tmpdir(), 'deputy-migrations-'));
    try {
      // Written out of order: the listing order is the numbers', not the file system's.
      for (const f of ['016_c.sql', '004_b.sql', '100_d.sql', '014_a.sql', 'README.txt']) writeFileSync(join(dir, f), 'SELECT 1;');
      expect(listMigrations(dir).map((m) => [m.version, m.name])).toEqual([[4, 'b'], [14, 'a'], [16, 'c'], [100, 'd']]);
      writeFileSync(join(dir, '17_late.sql'), 'SELECT 1;');
      expect(() => listMigrations(dir)).toThrow(/migration 17_late\.sql is not named NNN_name\.sql/);
      rmSync(join(dir, '17_late.sql'));
      writeFileSync(join(dir, '014_other.sql'), 'SELECT 1;');
      expect(() => listMigrations(dir)).toThrow(/migrations a and other share version 14/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    // The shipped folder: strictly increasing, gaps and all.
    expect(allVersions).toEqual([...allVersions].sort((a, b) => a - b));
    expect(new Set(allVersions).size).toBe(allVersions.length);
  });

  it('a database an older Deputy migrated to 004 upgrades cleanly: 014, 015, 016 in order, its rows kept, the schema a fresh one has', async () => {
    const oldDb = await createTestDatabase();
    const freshDb = await createTestDatabase();
    const old = await openTestStore(oldDb);
    const fresh = await openTestStore(freshDb);
    try {
      const all = listMigrations();
      expect(await migrate(old, all.filter((m) => m.version <= 4))).toEqual([1, 2, 3, 4]);
      // Rows as that Deputy wrote them.
      await old.query(`INSERT INTO agents (id, name, owner, scopes, jwks, source) VALUES ('old-api', 'Old', 'o@example.com', '["a.read"]', '{"keys":[]}', 'api')`);
      await old.query(`INSERT INTO agents (id, name, owner, jwks_uri, source, status) VALUES ('old-config', 'Old', 'o@example.com', 'https://x.example/jwks', 'config', 'disabled')`);
      await old.query(`INSERT INTO connections (id, kind, settings, source) VALUES ('crm', 'api_key', '{"baseUrl":"https://crm.example"}', 'api')`);
      await old.query(`INSERT INTO receipt_chains (agent_id, seq, head) VALUES ('old-api', 0, 'genesis')`);

      // Listed out of order, applied in order.
      const pending = all.filter((m) => m.version > 4).reverse();
      expect(await migrate(old, [...all.filter((m) => m.version <= 4), ...pending])).toEqual(all.filter((m) => m.version > 4).map((m) => m.version));
      expect(await migrate(old)).toEqual([]);
      expect(await migrate(fresh)).toEqual(allVersions);
      expect(await schemaOf(old)).toEqual(await schemaOf(fresh));

      const agents = await old.query<{ id: string; source: string; status: string; client_id_url: string | null }>('SELECT id, source, status, client_id_url FROM agents ORDER BY id');
      expect(agents).toEqual([
        { id: 'old-api', source: 'api', status: 'active', client_id_url: null },
        { id: 'old-config', source: 'config', status: 'disabled', client_id_url: null },
      ]);
      expect(await old.query('SELECT id, kind FROM connections')).toEqual([{ id: 'crm', kind: 'api_key' }]);
      // What the new migrations allow now holds on the upgraded database: an LLM connection, a metadata-document agent.
      await old.query(`INSERT INTO connections (id, kind, settings, source) VALUES ('llm', 'llm', '{}', 'api')`);
      await old.query(`INSERT INTO agents (id, name, owner, source, client_id_url) VALUES ('cimd-0', 'Doc', 'x.example', 'client_id_metadata', 'https://x.example/c.json')`);
      await expect(old.query(`INSERT INTO agents (id, name, owner, source) VALUES ('no-keys', 'N', 'o', 'api')`)).rejects.toThrow(/agents_keys_check/);
    } finally {
      await old.close();
      await fresh.close();
      await oldDb.drop();
      await freshDb.drop();
    }
  });

  it('refuses two migrations with one version before running anything', async () => {
    const db = await createTestDatabase();
    const store = await openTestStore(db);
    try {
      const twins = [
        { version: 1, name: 'one', sql: 'CREATE TABLE one (id int)' },
        { version: 1, name: 'uno', sql: 'CREATE TABLE uno (id int)' },
      ];
      await expect(migrate(store, twins)).rejects.toThrow(/share version 1/);
      expect(await tables(store)).toEqual([]);
    } finally {
      await store.close();
      await db.drop();
    }
  });
});

describe.skipIf(!usingPostgres)('migrations on PostgreSQL, several instances at once', () => {
  it('instances migrating concurrently end with one schema and each migration recorded once', async () => {
    const db = await createTestDatabase();
    const stores = await Promise.all([openTestStore(db, 2), openTestStore(db, 2), openTestStore(db, 2)]);
    try {
      const results = await Promise.all(stores.map((s) => migrate(s)));
      // Exactly one instance applied everything; the others waited on the lock and found nothing to do.
      expect(results.filter((r) => r.length > 0)).toEqual([allVersions]);
      expect(results.filter((r) => r.length === 0)).toHaveLength(stores.length - 1);
      const counts = await stores[0]!.query<{ version: number; n: number }>(
        'SELECT version, count(*)::int AS n FROM deputy_migrations GROUP BY version ORDER BY version',
      );
      expect(counts).toEqual(allVersions.map((version) => ({ version, n: 1 })));
      // Every instance sees the same schema.
      const schemas = await Promise.all(stores.map(schemaOf));
      for (const s of schemas.slice(1)) expect(s).toEqual(schemas[0]);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
      await db.drop();
    }
  });
});

describe('store', () => {
  let db: TestDatabase;
  let store: Store;

  beforeAll(async () => {
    db = await createTestDatabase();
    store = await openTestStore(db);
    await migrate(store);
  });
  afterAll(async () => {
    await store?.close();
    await db?.drop();
  });

  const rowExists = async (id: string) =>
    (await store.query(`SELECT 1 FROM oidc_models WHERE model = 'TxTest' AND id = $1`, [id])).length === 1;
  const insert = `INSERT INTO oidc_models (model, id, payload) VALUES ('TxTest', $1, '{}'::jsonb)`;

  describe('transactions', () => {
    it('commit when the function resolves, and return its value', async () => {
      const id = randomUUID();
      const out = await store.transaction(async (tx) => {
        await tx.query(insert, [id]);
        return (await tx.query<{ n: number }>(`SELECT count(*)::int AS n FROM oidc_models WHERE id = $1`, [id]))[0]!.n;
      });
      expect(out).toBe(1);
      expect(await rowExists(id)).toBe(true);
    });

    it('roll back when the function throws, rethrowing the same error', async () => {
      const id = randomUUID();
      const boom = new Error('boom');
      await expect(
        store.transaction(async (tx) => {
          await tx.query(insert, [id]);
          await tx.exec(`UPDATE oidc_models SET payload = '{"touched":true}' WHERE model = 'TxTest'`);
          throw boom;
        }),
      ).rejects.toBe(boom);
      expect(await rowExists(id)).toBe(false);
      expect(await store.query(`SELECT 1 FROM oidc_models WHERE model = 'TxTest' AND payload ? 'touched'`)).toEqual([]);
    });

    it('roll back earlier statements when a later one fails', async () => {
      const a = randomUUID();
      const b = randomUUID();
      await store.query(insert, [b]);
      await expect(
        store.transaction(async (tx) => {
          await tx.query(insert, [a]);
          await tx.query(insert, [b]); // primary key violation
        }),
      ).rejects.toThrow(/duplicate key/);
      expect(await rowExists(a)).toBe(false);
      expect(await rowExists(b)).toBe(true);
      // The store is usable afterwards (the connection went back clean).
      const c = randomUUID();
      await store.transaction((tx) => tx.query(insert, [c]));
      expect(await rowExists(c)).toBe(true);
    });

    it.skipIf(!usingPostgres)('are isolated: uncommitted rows are invisible to other connections', async () => {
      const id = randomUUID();
      await store.transaction(async (tx) => {
        await tx.query(insert, [id]);
        expect(await rowExists(id)).toBe(false);
      });
      expect(await rowExists(id)).toBe(true);
    });
  });
  // The oidc-provider adapter and replay detection: test/store/contract.ts.
});
