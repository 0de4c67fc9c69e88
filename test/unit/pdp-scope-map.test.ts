/**
 * `ScopeMap` (src/pdp/entity-slice.ts): the per-Cedar-call lookup of scoped reads and policy
 * subsets by (principal type, action, resource type) without a key string. Keys that a joined
 * string could confuse stay apart; `size` counts distinct keys (the scoped reads' bound).
 */
import { describe, expect, it } from 'vitest';
import { ScopeMap } from '../../src/pdp/entity-slice.js';

const act = (id: string, type = 'Action') => ({ type, id });

describe('ScopeMap', () => {
  it('keeps apart keys whose parts would join to one string, and answers undefined for unknown ones', () => {
    const m = new ScopeMap<string>();
    m.set('User', act('a\0b'), 'Resource', 'one');
    m.set('User', act('a'), 'b\0Resource', 'two');
    m.set('User\0Action', act('a\0b'), 'Resource', 'three');
    m.set('User', act('read', 'NS::Action'), 'Resource', 'four');
    expect(m.get('User', act('a\0b'), 'Resource')).toBe('one');
    expect(m.get('User', act('a'), 'b\0Resource')).toBe('two');
    expect(m.get('User\0Action', act('a\0b'), 'Resource')).toBe('three');
    expect(m.get('User', act('read', 'NS::Action'), 'Resource')).toBe('four');
    expect(m.get('User', act('read'), 'Resource')).toBeUndefined();
    expect(m.get('Agent', act('a\0b'), 'Resource')).toBeUndefined();
    expect(m.size).toBe(4);
  });

  it('replaces the value of a key set again without counting it twice', () => {
    const m = new ScopeMap<number>();
    m.set('User', act('read'), 'Resource', 1);
    m.set('User', act('read'), 'Resource', 2);
    expect(m.get('User', act('read'), 'Resource')).toBe(2);
    expect(m.size).toBe(1);
  });
});
