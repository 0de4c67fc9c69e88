/**
 * Named (prepared) statements, part of the store contract (./contract.ts): a statement run with
 * `{ prepare: true }` answers exactly as the same statement unnamed — rows, parameter types,
 * errors, transactions — past PostgreSQL's switch to a generic plan, after a schema change made
 * through this store or another, beyond the bound on names, and (PostgreSQL) on every pooled
 * connection, including one opened after the others were lost.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MAX_NAMED, MAX_SHAPES_NAMED } from '../../src/store/prepared.js';
import { StoreUnavailableError, type Queryable, type Store } from '../../src/store/index.js';

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

    it(`answer as unnamed after a column's type changed under a parameter, made by another ${concurrent ? 'instance' : 'statement'}`, async () => {
      const table = await probeTable(one());
      await one().query(`INSERT INTO ${table} (id, n) VALUES ('five', 5)`);
      const byN = `SELECT id FROM ${table} WHERE n = $1`;
      for (let i = 0; i < 7; i++) expect(await one().query(byN, ['5'], PREPARE)).toEqual([{ id: 'five' }]);
      if (concurrent) await two().exec(`ALTER TABLE ${table} ALTER COLUMN n TYPE text`);
      else await one().query(`ALTER TABLE ${table} ALTER COLUMN n TYPE text`);
      expect(await one().query(byN, ['5'])).toEqual([{ id: 'five' }]);
      expect(await one().query(byN, ['5'], PREPARE)).toEqual([{ id: 'five' }]);
    });

    it('answer with each execution\'s own rows under the shape described at preparation: none, one, many, RETURNING with no row, and a write without RETURNING', async () => {
      const store = one();
      const table = await probeTable(store);
      const upsert = `INSERT INTO ${table} (id, n) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING RETURNING id, n`;
      const write = `UPDATE ${table} SET n = n + 1 WHERE id = $1`;
      const select = `SELECT id, n FROM ${table} WHERE n >= $1 ORDER BY id`;
      for (let i = 0; i < 8; i++) {
        expect(await store.query(upsert, [`k${i}`, i], PREPARE)).toEqual([{ id: `k${i}`, n: i }]);
        expect(await store.query(upsert, [`k${i}`, 99], PREPARE)).toEqual([]);
        expect(await store.query(write, [`k${i}`], PREPARE)).toEqual([]);
        expect(await store.query(select, [100], PREPARE)).toEqual([]);
        expect(await store.query(select, [i + 1], PREPARE)).toEqual([{ id: `k${i}`, n: i + 1 }]);
        expect(await store.transaction((tx) => tx.query(select, [0], PREPARE))).toEqual(Array.from({ length: i + 1 }, (_, k) => ({ id: `k${k}`, n: k + 1 })));
      }
    });

    it(`beyond ${MAX_NAMED} distinct texts, the rest run unnamed with the same answers`, async () => {
      const store = one();
      const results = [];
      for (let k = 0; k < MAX_NAMED + 20; k++) results.push(...(await store.query<{ v: number }>(`SELECT $1::int + ${k} AS v`, [1000], PREPARE)));
      expect(results.map((r) => r.v)).toEqual(Array.from({ length: MAX_NAMED + 20 }, (_, k) => 1000 + k));
    });

    it(`a burst of shapes ('shape': texts varying with the input) takes at most ${MAX_SHAPES_NAMED} names: fixed statements run after it are named (pg_prepared_statements)`, async () => {
      const store = one();
      await store.exec('SELECT 1'); // a new generation of names: none taken yet
      const prepared = await store.transaction(async (tx) => {
        for (let k = 0; k < MAX_NAMED + 20; k++) await tx.query(`SELECT $1::int + ${k} AS shape`, [1], { prepare: 'shape' });
        for (let k = 0; k < 8; k++) expect(await tx.query(`SELECT $1::int - ${k} AS fixed`, [1], PREPARE)).toEqual([{ fixed: 1 - k }]);
        return tx.query<{ statement: string }>(`SELECT statement FROM pg_prepared_statements WHERE name LIKE 'deputy%'`);
      });
      expect(prepared.filter((p) => p.statement.includes(' AS shape')).length).toBe(MAX_SHAPES_NAMED);
      expect(prepared.filter((p) => p.statement.includes(' AS fixed')).length).toBe(8);
    });

    it('parse every result type as the unnamed statement does (int8, numeric, bytea, json, jsonb, timestamps, arrays, uuid, NULL), with parameters typed alike', async () => {
      const store = one();
      const sql = `SELECT $1::int8 AS big, $2::numeric AS num, $3::bytea AS bin, $4::json AS js, $5::jsonb AS jb, $6::timestamptz AS ts, $7::timestamp AS naive,
        $8::text[] AS arr, $9::int4[] AS ints, $10::uuid AS id, $11::boolean AS yes, $12::text AS nothing, $13 = 'x' AS untyped, length($14::text) AS huge`;
      const params = ['9007199254740993', '12345678901234567890.5', new Uint8Array([0, 1, 254, 255]), { a: [1, 'two'] }, { b: { c: null } }, new Date(Date.UTC(2026, 10, 30, 5, 6, 7, 890)),
        '2026-11-30 05:06:07.123', ['a', 'b,c', '"q"', ''], [1, null, 3], randomUUID(), true, null, 'x', 'z'.repeat(2_000_000)];
      for (let run = 0; run < 7; run++) expect(await store.query(sql, params, PREPARE)).toEqual(await store.query(sql, params));
      // A parameter's type is inferred from its use, as for the unnamed statement: '5' compared to an int column is an int.
      const table = await probeTable(store);
      await store.query(`INSERT INTO ${table} (id, n) VALUES ('five', 5)`);
      const byN = `SELECT id FROM ${table} WHERE n = $1`;
      expect(await store.query(byN, ['5'], PREPARE)).toEqual([{ id: 'five' }]);
      const named = await store.query(byN, ['five'], PREPARE).catch((err: unknown) => err);
      const unnamed = await store.query(byN, ['five']).catch((err: unknown) => err);
      expect(named).toMatchObject({ code: '22P02' });
      expect((named as { message: string }).message).toBe((unnamed as { message: string }).message);
    });

    it('run concurrently with unnamed statements and transactions, the first (preparing) run included, each answering its own caller', async () => {
      const store = one();
      const table = await probeTable(store);
      const insert = `INSERT INTO ${table} (id, n) VALUES ($1, $2) RETURNING n`;
      const work = Array.from({ length: 40 }, (_, i) => {
        if (i % 4 === 0) return store.transaction(async (tx) => [...(await tx.query(insert, [`t${i}`, i], PREPARE)), ...(await tx.query(`SELECT $1::int AS n`, [i]))]);
        if (i % 4 === 1) return store.query(`SELECT $1::int AS n`, [i]);
        if (i % 4 === 2) return store.query(insert, [`q${i}`, i], PREPARE);
        return store.transaction(async (tx) => {
          await tx.query(insert, [`r${i}`, i], PREPARE);
          throw new Error(`roll back ${i}`);
        }).catch(() => [{ n: i }]);
      });
      const answers = await Promise.all(work);
      answers.forEach((rows, i) => expect(rows.every((r) => (r as { n: number }).n === i)).toBe(true));
      const ids = (await store.query<{ id: string }>(`SELECT id FROM ${table} ORDER BY id`)).map((r) => r.id).sort();
      expect(ids).toEqual(Array.from({ length: 40 }, (_, i) => (i % 4 === 0 ? `t${i}` : i % 4 === 2 ? `q${i}` : undefined)).filter((x) => x !== undefined).sort());
    });

    it('are prepared again when the session lost them (DEALLOCATE, or DISCARD ALL from a pooler resetting the connection): outside a transaction the statement answers, inside one it fails and the next one answers', async () => {
      const store = one();
      const sql = `SELECT $1::int + 1 AS v`;
      for (let i = 0; i < 3; i++) expect(await store.query(sql, [i], PREPARE)).toMatchObject([{ v: i + 1 }]);
      // The same connection (a transaction's, pooled again last) loses its prepared statements.
      await store.transaction(async (tx) => {
        await tx.query(sql, [0], PREPARE);
        await tx.query('DEALLOCATE ALL');
      });
      // The next statement runs on that connection (pg's pool hands out the connection released last;
      // PGlite is one session) and answers; on PostgreSQL the connection that failed it is dropped.
      expect(await store.query<{ v: number }>(sql, [41], PREPARE)).toMatchObject([{ v: 42 }]);
      await expect(
        store.transaction(async (tx) => {
          await tx.query(sql, [0], PREPARE);
          await tx.query('DEALLOCATE ALL');
          return tx.query(sql, [1], PREPARE);
        }),
      ).rejects.toMatchObject({ code: '26000' });
      expect(await store.transaction((tx) => tx.query(sql, [1], PREPARE))).toMatchObject([{ v: 2 }]);
      expect(await store.query(sql, [2], PREPARE)).toMatchObject([{ v: 3 }]);
    });

    it('refuse a statement through a transaction that has ended, named or not, and change nothing', async () => {
      const store = one();
      const table = await probeTable(store);
      const insert = `INSERT INTO ${table} (id, n) VALUES ($1, $2)`;
      let leaked: Queryable | undefined;
      await store.transaction(async (tx) => {
        leaked = tx;
        await tx.query(insert, ['inside', 1], PREPARE);
      });
      await expect(leaked!.query(insert, ['late-named', 2], PREPARE)).rejects.toThrow(/transaction/i);
      await expect(leaked!.query(insert, ['late-unnamed', 3])).rejects.toThrow(/transaction/i);
      // Nor may it join another caller's transaction that is open meanwhile.
      await store
        .transaction(async (tx) => {
          await tx.query(insert, ['other', 4], PREPARE);
          await leaked!.query(insert, ['late-joined', 5], PREPARE).catch(() => undefined);
          throw new Error('roll back');
        })
        .catch(() => undefined);
      expect(await store.query(`SELECT id FROM ${table} ORDER BY id`)).toEqual([{ id: 'inside' }]);
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
