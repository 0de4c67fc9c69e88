/**
 * The "no budget applies" memo (src/budgets/budgets.ts `NoBudgetMemo`): its staleness and memory
 * bounds, and a look-up racing a budget change (README "Budgets").
 */
import { describe, expect, it } from 'vitest';
import { NO_BUDGET_TTL_MS, NoBudgetMemo, scopeKey } from '../../src/budgets/budgets.js';

describe('NoBudgetMemo', () => {
  it('remembers a scope for the bound only', () => {
    const memo = new NoBudgetMemo();
    memo.remember('k', memo.generation, 1_000);
    expect(memo.has('k', 1_000 + NO_BUDGET_TTL_MS - 1)).toBe(true);
    expect(memo.has('k', 1_000 + NO_BUDGET_TTL_MS)).toBe(false);
  });

  it('holds at most 10,000 scopes however many distinct ones call, dropping the oldest', () => {
    const memo = new NoBudgetMemo();
    for (let i = 0; i <= 10_000; i++) memo.remember(`k${i}`, memo.generation, 0);
    expect(memo.has('k0', 1)).toBe(false);
    expect(memo.has('k1', 1)).toBe(true);
    expect(memo.has('k10000', 1)).toBe(true);
  });

  it('a look-up that started before a budget change is not remembered; a change forgets everything', () => {
    const memo = new NoBudgetMemo();
    memo.remember('old', memo.generation, 0);
    const before = memo.generation;
    memo.forget(); // a budget created through this instance while the look-up ran
    memo.remember('racing', before, 0);
    expect(memo.has('racing', 1)).toBe(false);
    expect(memo.has('old', 1)).toBe(false);
  });

  it('keys a scope by every part a budget can select on, so no two scopes share an answer', () => {
    const base = { agents: ['a', 'b'], user: 'u', connection: 'c' };
    const keys = [base, { ...base, agents: ['b', 'a'] }, { ...base, agents: ['a'] }, { ...base, user: 'v' }, { ...base, connection: 'd' }, { ...base, model: 'm' }, { ...base, agents: ['a","b'] }].map(scopeKey);
    expect(new Set(keys).size).toBe(keys.length);
  });
});
