/**
 * Versioned SQL migrations (`./migrations/NNN_name.sql`), applied at start.
 *
 * Versions are numbers, applied in numeric order whatever order they are listed or named in
 * (the numbering has gaps: 001–004, then 014–016, numbered after the issues that added them, so
 * a database an older Deputy migrated to 004 gets 014, 015, 016 in that order). A `.sql` file in
 * the folder that is not `NNN_name.sql`, or two files with one number, stop the start rather
 * than being skipped or applied twice.
 *
 * All pending migrations run in one transaction that first takes a transaction-scoped advisory
 * lock, so several instances starting at once serialise: the first applies, the others wait and
 * then find nothing to do. A failing migration rolls back entirely.
 *
 * @module
 */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Store } from './store.js';

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));
/** Arbitrary constant: "deputy" in ASCII, the advisory-lock key every instance agrees on. */
const MIGRATION_LOCK_KEY = 0x646570757479;

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/**
 * The migrations in `dir` (the folder beside this module by default), in version order.
 *
 * @throws Error naming the file when a `.sql` file is not named `NNN_name.sql`, or two share a version.
 */
export function listMigrations(dir = MIGRATIONS_DIR): Migration[] {
  const files = readdirSync(dir).filter((f) => f.endsWith('.sql'));
  const misnamed = files.find((f) => !/^\d{3}_[a-z0-9_]+\.sql$/.test(f));
  if (misnamed !== undefined) throw new Error(`migration ${misnamed} is not named NNN_name.sql (three digits, lower-case name): it would never be applied`);
  const sep = dir.endsWith('/') ? '' : '/';
  return inVersionOrder(files.map((f) => ({ version: Number(f.slice(0, 3)), name: f.slice(4, -4), sql: readFileSync(dir + sep + f, 'utf8') })));
}

/** `migrations` sorted by version (numerically). @throws Error when two share a version. */
function inVersionOrder(migrations: readonly Migration[]): Migration[] {
  const sorted = [...migrations].sort((a, b) => a.version - b.version);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]!.version === sorted[i - 1]!.version) {
      throw new Error(`migrations ${sorted[i - 1]!.name} and ${sorted[i]!.name} share version ${sorted[i]!.version}: renumber one`);
    }
  }
  return sorted;
}

/**
 * Applies pending migrations in version order; returns the versions applied by this call, in the
 * order applied. @throws Error when two migrations share a version (before anything runs).
 */
export async function migrate(store: Store, migrations = listMigrations()): Promise<number[]> {
  const ordered = inVersionOrder(migrations);
  return store.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
    await tx.query(`CREATE TABLE IF NOT EXISTS deputy_migrations (
      version integer PRIMARY KEY,
      name text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now())`);
    const rows = await tx.query<{ version: number }>('SELECT version FROM deputy_migrations');
    const applied = new Set(rows.map((r) => Number(r.version)));
    const done: number[] = [];
    for (const m of ordered) {
      if (applied.has(m.version)) continue;
      await tx.exec(m.sql);
      await tx.query('INSERT INTO deputy_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
      done.push(m.version);
    }
    return done;
  });
}
