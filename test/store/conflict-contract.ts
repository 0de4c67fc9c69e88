/**
 * The conflict part of the store contract (./contract.ts): a transaction the server aborts for a
 * conflict with a concurrent one — SQLSTATE 40001 serialization_failure, 40P01 deadlock_detected
 * — is the store's `StoreUnavailableError` (503 `temporarily_unavailable` on every surface), and
 * `transaction(fn, { retryConflicts: true })` runs it again, `fn` included, a bounded number of
 * times (src/store/store.ts `retryConflicts`). Nothing else is ever run again.
 *
 * On both stores the server raises the SQLSTATE itself (PL/pgSQL `RAISE … USING ERRCODE`: the
 * driver's own error, as a real conflict reaches Deputy). On PostgreSQL, across two instances, a
 * real write skew under SERIALIZABLE and a real deadlock.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CONFLICT_ATTEMPTS, StoreUnavailableError, type Queryable, type Store } from '../../src/store/index.js';

/** One scratch table for this part (the test database is the suite's own). */
async function scratch(store: Store): Promise<void> {
  await store.exec('CREATE TABLE IF NOT EXISTS conflict_contract (id text PRIMARY KEY, grp text NOT NULL)');
}

/** Raises `sqlstate` from the server, as PostgreSQL raises a real conflict. */
async function raise(tx: Queryable, sqlstate: string): Promise<void> {
  await tx.query(`DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '${sqlstate}'; END $$`);
}

async function rowsOf(store: Store, grp: string): Promise<string[]> {
  return (await store.query<{ id: string }>('SELECT id FROM conflict_contract WHERE grp = $1 ORDER BY id', [grp])).map((r) => r.id);
}

/** Resolves once `n` callers arrived (each run of a transaction arrives at most once: `first`). */
function barrier(n: number): () => Promise<void> {
  let arrived = 0;
  let open!: () => void;
  const all = new Promise<void>((resolve) => (open = resolve));
  return () => {
    arrived += 1;
    if (arrived === n) open();
    return Promise.race([all, new Promise<void>((_, reject) => setTimeout(() => reject(new Error('barrier: the other transaction never arrived')), 10_000))]);
  };
}

export function conflictContract(one: () => Store, two: () => Store, concurrent: boolean): void {
  describe('a transaction the server aborts for a conflict (40001, 40P01)', () => {
    it.each(['40001', '40P01'])('%s: without retryConflicts it is StoreUnavailableError (the SQLSTATE its cause), run once, nothing committed', async (sqlstate) => {
      await scratch(one());
      const grp = randomUUID();
      let runs = 0;
      const err = await one()
        .transaction(async (tx) => {
          runs += 1;
          await tx.query('INSERT INTO conflict_contract (id, grp) VALUES ($1, $2)', [`${grp}-r${runs}`, grp]);
          await raise(tx, sqlstate);
        })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StoreUnavailableError);
      expect(((err as Error).cause as { code?: string }).code).toBe(sqlstate);
      expect((err as Error).message).toMatch(/^the database aborted the transaction/);
      expect(runs).toBe(1);
      expect(await rowsOf(one(), grp)).toEqual([]);
    });

    it.each(['40001', '40P01'])('%s once: with retryConflicts the whole transaction runs again and commits once', async (sqlstate) => {
      await scratch(one());
      const grp = randomUUID();
      let runs = 0;
      const result = await one().transaction(
        async (tx) => {
          runs += 1;
          await tx.query('INSERT INTO conflict_contract (id, grp) VALUES ($1, $2)', [`${grp}-r${runs}`, grp]);
          if (runs === 1) await raise(tx, sqlstate);
          return runs;
        },
        { retryConflicts: true },
      );
      expect(result).toBe(2);
      // The first run's row was rolled back with it: only the second's is there.
      expect(await rowsOf(one(), grp)).toEqual([`${grp}-r2`]);
    });

    it('a conflict every time: CONFLICT_ATTEMPTS runs, then StoreUnavailableError; nothing committed', async () => {
      await scratch(one());
      const grp = randomUUID();
      let runs = 0;
      const err = await one()
        .transaction(
          async (tx) => {
            runs += 1;
            await tx.query('INSERT INTO conflict_contract (id, grp) VALUES ($1, $2)', [`${grp}-r${runs}`, grp]);
            await raise(tx, '40001');
          },
          { retryConflicts: true },
        )
        .catch((e: unknown) => e);
      expect(runs).toBe(CONFLICT_ATTEMPTS);
      expect(err).toBeInstanceOf(StoreUnavailableError);
      expect(await rowsOf(one(), grp)).toEqual([]);
    });

    it('a conflict raised at COMMIT (a deferred constraint trigger, as SERIALIZABLE raises one there) is retried like one raised by a statement; the store serves after', async () => {
      await one().exec(`CREATE TABLE IF NOT EXISTS conflict_at_commit (id text PRIMARY KEY, fail boolean NOT NULL);
        CREATE OR REPLACE FUNCTION conflict_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.fail THEN RAISE EXCEPTION 'injected at commit' USING ERRCODE = '40001'; END IF; RETURN NEW; END $$;
        DROP TRIGGER IF EXISTS conflict_at_commit ON conflict_at_commit;
        CREATE CONSTRAINT TRIGGER conflict_at_commit AFTER INSERT ON conflict_at_commit DEFERRABLE INITIALLY DEFERRED
          FOR EACH ROW EXECUTE FUNCTION conflict_at_commit();`);
      const grp = randomUUID();
      let runs = 0;
      const insert = (tx: Queryable, id: string, fail: boolean) => tx.query('INSERT INTO conflict_at_commit (id, fail) VALUES ($1, $2)', [id, fail]);
      const result = await one().transaction(
        async (tx) => {
          runs += 1;
          await insert(tx, `${grp}-r${runs}`, runs === 1);
          return runs;
        },
        { retryConflicts: true },
      );
      expect(result).toBe(2);
      const rows = await one().query<{ id: string }>('SELECT id FROM conflict_at_commit WHERE id LIKE $1 ORDER BY id', [`${grp}%`]);
      expect(rows.map((r) => r.id)).toEqual([`${grp}-r2`]);
      const err = await one().transaction((tx) => insert(tx, `${grp}-once`, true)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StoreUnavailableError);
      expect(((err as Error).cause as { code?: string }).code).toBe('40001');
      await one().transaction((tx) => insert(tx, `${grp}-after`, false));
    });

    it('any other error (a unique violation, class 40 other than 40001/40P01) is never run again', async () => {
      await scratch(one());
      const grp = randomUUID();
      await one().query('INSERT INTO conflict_contract (id, grp) VALUES ($1, $2)', [`${grp}-taken`, grp]);
      for (const fail of [(tx: Queryable) => tx.query('INSERT INTO conflict_contract (id, grp) VALUES ($1, $2)', [`${grp}-taken`, grp]), (tx: Queryable) => raise(tx, '40003')]) {
        let runs = 0;
        const err = await one()
          .transaction(
            async (tx) => {
              runs += 1;
              await fail(tx);
            },
            { retryConflicts: true },
          )
          .catch((e: unknown) => e);
        expect(err).not.toBeInstanceOf(StoreUnavailableError);
        expect(runs).toBe(1);
      }
    });

    it.skipIf(!concurrent)('a real write skew under SERIALIZABLE across two instances: one is aborted (40001) without retry; both commit with it', async () => {
      await scratch(one());
      /** Each reads the group empty, then inserts into it: SSI aborts one of two that overlap. */
      const skew = async (store: Store, grp: string, id: string, meet: () => Promise<void>, retry: boolean): Promise<void> => {
        let first = true;
        await store.transaction(
          async (tx) => {
            await tx.query('SET TRANSACTION ISOLATION LEVEL SERIALIZABLE');
            const seen = await tx.query<{ n: string }>('SELECT count(*)::text AS n FROM conflict_contract WHERE grp = $1', [grp]);
            if (first) {
              first = false;
              await meet();
            }
            if (seen[0]!.n === '0') await tx.query('INSERT INTO conflict_contract (id, grp) VALUES ($1, $2)', [`${grp}-${id}`, grp]);
          },
          { retryConflicts: retry },
        );
      };
      const plain = randomUUID();
      const meetPlain = barrier(2);
      const settled = await Promise.allSettled([skew(one(), plain, 'a', meetPlain, false), skew(two(), plain, 'b', meetPlain, false)]);
      const refused = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected');
      expect(refused).toHaveLength(1);
      expect(refused[0]!.reason).toBeInstanceOf(StoreUnavailableError);
      expect((refused[0]!.reason as Error).cause).toMatchObject({ code: '40001' });
      expect(await rowsOf(one(), plain)).toHaveLength(1);

      // Retried, the loser reads the winner's row and inserts nothing: serializable, both succeed.
      const retried = randomUUID();
      const meetRetried = barrier(2);
      await Promise.all([skew(one(), retried, 'a', meetRetried, true), skew(two(), retried, 'b', meetRetried, true)]);
      expect(await rowsOf(one(), retried)).toHaveLength(1);
    });

    it.skipIf(!concurrent)('a real deadlock across two instances: one is aborted (40P01) without retry; both commit with it', { timeout: 30_000 }, async () => {
      await scratch(one());
      /** Locks `a` then `b` (or the reverse), meeting the other in between: the second lock closes the cycle. */
      const crossed = async (store: Store, grp: string, order: readonly [string, string], meet: () => Promise<void>, retry: boolean): Promise<void> => {
        let first = true;
        await store.transaction(
          async (tx) => {
            await tx.query('UPDATE conflict_contract SET grp = grp WHERE id = $1', [`${grp}-${order[0]}`]);
            if (first) {
              first = false;
              await meet();
            }
            await tx.query('UPDATE conflict_contract SET grp = grp WHERE id = $1', [`${grp}-${order[1]}`]);
          },
          { retryConflicts: retry },
        );
      };
      for (const retry of [false, true]) {
        const grp = randomUUID();
        await one().query('INSERT INTO conflict_contract (id, grp) VALUES ($1, $2), ($3, $2)', [`${grp}-a`, grp, `${grp}-b`]);
        const meet = barrier(2);
        const settled = await Promise.allSettled([crossed(one(), grp, ['a', 'b'], meet, retry), crossed(two(), grp, ['b', 'a'], meet, retry)]);
        const refused = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected');
        if (retry) {
          expect(refused).toEqual([]);
        } else {
          expect(refused).toHaveLength(1);
          expect(refused[0]!.reason).toBeInstanceOf(StoreUnavailableError);
          expect((refused[0]!.reason as Error).cause).toMatchObject({ code: '40P01' });
        }
      }
    });
  });
}
