/**
 * Statement names for prepared statements (src/store/prepared.ts): one name per text, distinct
 * texts distinct names, a bounded set, a new generation after a schema change.
 */
import { describe, expect, it } from 'vitest';
import { isStalePlan, MAX_NAMED, mustPrepareAgain, StatementNames } from '../../src/store/prepared.js';

describe('StatementNames', () => {
  it('gives a text the same name every time and distinct texts distinct names', () => {
    const names = new StatementNames();
    const a = names.nameOf('SELECT $1::int');
    expect(a).toMatch(/^deputy_0_[0-9a-f]{24}$/);
    expect(names.nameOf('SELECT $1::int')).toBe(a);
    expect(names.nameOf('SELECT $1::int ')).not.toBe(a);
    expect(new StatementNames().nameOf('SELECT $1::int')).toBe(a);
  });

  it(`names at most ${MAX_NAMED} texts; the rest get none (they run unnamed), the named keep theirs`, () => {
    const names = new StatementNames();
    const given = Array.from({ length: MAX_NAMED }, (_, i) => names.nameOf(`SELECT ${i}`));
    expect(new Set(given).size).toBe(MAX_NAMED);
    expect(names.nameOf('SELECT -1')).toBeUndefined();
    expect(names.nameOf('SELECT 0')).toBe(given[0]);
  });

  it('after invalidate, names every text afresh (a new generation), never reusing an old name', () => {
    const names = new StatementNames();
    const before = names.nameOf('SELECT 1');
    for (let i = 0; i < MAX_NAMED; i++) names.nameOf(`SELECT ${i + 2}`);
    names.invalidate();
    const after = names.nameOf('SELECT 1');
    expect(after).toMatch(/^deputy_1_/);
    expect(after).not.toBe(before);
    expect(names.nameOf('SELECT -1')).toBeDefined();
  });
});

describe('isStalePlan', () => {
  it("recognises PostgreSQL's stale-plan error only", () => {
    expect(isStalePlan(Object.assign(new Error('cached plan must not change result type'), { code: '0A000' }))).toBe(true);
    expect(isStalePlan(Object.assign(new Error('cached plan must not change result type'), { code: '23505' }))).toBe(false);
    expect(isStalePlan(Object.assign(new Error('unsupported'), { code: '0A000' }))).toBe(false);
    expect(isStalePlan(undefined)).toBe(false);
    expect(isStalePlan('0A000')).toBe(false);
  });
});

describe('mustPrepareAgain', () => {
  it('is true for a stale plan, a statement the session lost (26000), a parameter whose column changed type (42883, 42804), nothing else', () => {
    expect(mustPrepareAgain(Object.assign(new Error('cached plan must not change result type'), { code: '0A000' }))).toBe(true);
    expect(mustPrepareAgain(Object.assign(new Error('prepared statement "deputy_0_ab" does not exist'), { code: '26000' }))).toBe(true);
    expect(mustPrepareAgain(Object.assign(new Error('operator does not exist: text = integer'), { code: '42883' }))).toBe(true);
    expect(mustPrepareAgain(Object.assign(new Error('invalid input syntax for type integer'), { code: '22P02' }))).toBe(false);
    expect(mustPrepareAgain(null)).toBe(false);
    expect(mustPrepareAgain('26000')).toBe(false);
  });
});
