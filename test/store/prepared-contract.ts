/**
 * Named (prepared) statements, part of the store contract (./contract.ts): a statement run with
 * `{ prepare: true }` answers exactly as the same statement unnamed — rows, parameter types,
 * errors, transactions — past PostgreSQL's switch to a generic plan, after a schema change made
 * through this store or another, beyond the bound on names, and (PostgreSQL) on every pooled
 * connection, including one opened after the others were lost.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MAX_NAMED } from '../../src/store/prepared.js';
import { StoreUnavailableError, type Store } from '../../src/store/index.js';

const PREPARE = { prepare: true } as const;

/** A fresh probe table (through `exec`, as migrations do); its name is unique per call. */
async function probeTable(store: Store): Promise<string> {
  const table = `prep_${randomUUID().replaceAll('-', '')}`;
  await store.exec(`CREATE TABLE ${table} (id text PRIMARY KEY, n int, tags text[], doc jsonb, at timestamptz)`);
  return table;
}

export function preparedStatementContract(one: () => Store, two: () => Store, concurrent: boolean): void {
  describe('named (prepared) statements', () => {
    it('answer as the unnamed statement, run after run (past the generic-plan switch), with every parameter type and nulls', async () => {
      const table = await probeTable(one());
      const insert = `INSERT INTO ${table} (id, n, tags, doc, at) VALUES ($1, $2, $3::text[], $4::jsonb, $5) RETURNING id, n, tags, doc, at`;
      for (let i = 0; i < 12; i++) {
        const params = [`r${i}`, i % 3 === 0 ? null : i, i % 2 ? ['a', `t${i}`] : [], JSON.stringify({ i, nested: { ok: i % 2 === 0 } }), new Date(Date.UTC(2026, 0, 1 + i))];
        const [row] = await one().query(insert, params, PREPARE);
        expect(row).toEqual({ id: `r${i}`, n: i % 3 === 0 ? null : i, tags: i % 2 ? ['a', `t${i}`] : [], doc: { i, nested: { ok: i % 2 === 0 } }, at: new Date(Date.UTC(2026, 0, 1 + i)) });
      }
      const select = `SELECT id, n, tags, doc, at FROM ${table} WHERE id = ANY($1::text[]) AND (n IS NULL OR n >= $2) ORDER BY id`;
      for (let i = 0; i < 12; i++) {
        const params = [[`r${i}`, `r${(i + 5) % 12}`, 'absent'], i % 4];
        for (const store of [one(), two()]) expect(await store.query(select, params, PREPARE)).toEqual(await store.query(select, params));
      }
    });

    it('fail with the same error as unnamed, change nothing, and keep working afterwards, in and out of transactions', async () => {
      const store = one();
      const table = await probeTable(store);
      const insert = `INSERT INTO ${table} (id, n) VALUES ($1, $2)`;
      await store.query(insert, ['dup', 1], PREPARE);
      const named = await store.query(insert, ['dup', 2], PREPARE).catch((err: unknown) => err);
      const unnamed = await store.query(insert, ['dup', 3]).catch((err: unknown) => err);
      expect(named).toMatchObject({ code: '23505' });
      expect((named as { code: string }).code).toBe((unnamed as { code: string }).code);
      await expect(store.query(insert, ['dup', 'not a number'], PREPARE)).rejects.toMatchObject({ code: '22P02' });
      await expect(
        store.transaction(async (tx) => {
          await tx.query(insert, ['in-tx', 4], PREPARE);
          expect(await tx.query(`SELECT n FROM ${table} WHERE id = $1`, ['in-tx'], PREPARE)).toEqual([{ n: 4 }]);
          throw new Error('roll back');
        }),
      ).rejects.toThrow('roll back');
      await expect(store.transaction((tx) => tx.query(insert, ['dup', 5], PREPARE))).rejects.toMatchObject({ code: '23505' });
      await store.transaction((tx) => tx.query(insert, ['after', 6], PREPARE));
      await store.query(insert, ['last', 7], PREPARE);
      expect(await store.query(`SELECT id, n FROM ${table} ORDER BY id`, [], PREPARE)).toEqual([
        { id: 'after', n: 6 },
        { id: 'dup', n: 1 },
        { id: 'last', n: 7 },
      ]);
    });

    it(`answer with the new columns after a schema change, made through the store's exec or by another ${concurrent ? 'instance' : 'statement'}`, async () => {
      const table = await probeTable(one());
      await one().query(`INSERT INTO ${table} (id, n) VALUES ('a', 1)`);
      const select = `SELECT * FROM ${table} WHERE id = $1`;
      for (const store of new Set([one(), two()])) for (let i = 0; i < 7; i++) expect(await store.query(select, ['a'], PREPARE)).toMatchObject([{ id: 'a', n: 1 }]);
      await one().exec(`ALTER TABLE ${table} ADD COLUMN extra int NOT NULL DEFAULT 7`);
      expect(await one().query(select, ['a'], PREPARE)).toEqual([{ id: 'a', n: 1, tags: null, doc: null, at: null, extra: 7 }]);
      // Not through `exec`: the stale plan is detected and the statement prepared afresh.
      if (concurrent) await one().exec(`ALTER TABLE ${table} ADD COLUMN more text NOT NULL DEFAULT 'm'`);
      else await one().query(`ALTER TABLE ${table} ADD COLUMN more text NOT NULL DEFAULT 'm'`);
      expect(await two().query(select, ['a'], PREPARE)).toEqual([{ id: 'a', n: 1, tags: null, doc: null, at: null, extra: 7, more: 'm' }]);
    });

    it(`beyond ${MAX_NAMED} distinct texts, the rest run unnamed with the same answers`, async () => {
      const store = one();
      const results = [];
      for (let k = 0; k < MAX_NAMED + 20; k++) results.push(...(await store.query<{ v: number }>(`SELECT $1::int + ${k} AS v`, [1000], PREPARE)));
      expect(results.map((r) => r.v)).toEqual(Array.from({ length: MAX_NAMED + 20 }, (_, k) => 1000 + k));
    });

    it.skipIf(!concurrent)('are prepared on every pooled connection that runs them, including connections opened after the others were lost', async () => {
      const store = one();
      const sql = `SELECT $1::int * 2 AS v, pg_backend_pid() AS pid FROM pg_sleep(0.01)`;
      const first = await Promise.all(Array.from({ length: 6 }, (_, i) => store.query<{ v: number; pid: number }>(sql, [i], PREPARE)));
      expect(first.map((r) => r[0]!.v)).toEqual([0, 2, 4, 6, 8, 10]);
      expect(new Set(first.map((r) => r[0]!.pid)).size).toBeGreaterThan(1);
      // Lose every connection of the first instance (from the second one), then run the statement again.
      const pids = [...new Set(first.map((r) => r[0]!.pid))];
      await two().query('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS p(pid)', [pids]);
      const answers: number[] = [];
      for (let i = 0; i < 20 && answers.length < 6; i++) {
        const got = await store.query<{ v: number; pid: number }>(sql, [21], PREPARE).catch((err: unknown) => {
          if (err instanceof StoreUnavailableError) return undefined; // a pooled connection that was lost
          throw err;
        });
        if (got) {
          expect(pids).not.toContain(got[0]!.pid);
          answers.push(got[0]!.v);
        }
      }
      expect(answers).toEqual([42, 42, 42, 42, 42, 42]);
    });
  });
}
