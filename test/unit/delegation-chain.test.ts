import { describe, expect, it } from 'vitest';
import { actFromChain, chainFromAct, ChainClaimError, extendChain, handoffTarget, mayActNames } from '../../src/delegation/index.js';

describe('delegation chain (RFC 8693 §4.1 act)', () => {
  it('writes the current actor outermost and reads it back in delegation order', () => {
    const act = actFromChain(['a', 'b', 'c']);
    expect(act).toEqual({ sub: 'c', act: { sub: 'b', act: { sub: 'a' } } });
    expect(chainFromAct(act)).toEqual(['a', 'b', 'c']);
    expect(actFromChain([])).toBeUndefined();
    expect(chainFromAct(undefined)).toEqual([]);
  });

  it('refuses malformed act claims', () => {
    for (const bad of ['x', [], { act: { sub: 'a' } }, { sub: '' }, { sub: 'a', act: 5 }, null]) {
      expect(() => chainFromAct(bad)).toThrow(ChainClaimError);
    }
    let deep: Record<string, unknown> = { sub: 'x' };
    for (let i = 0; i < 40; i += 1) deep = { sub: `a${i}`, act: deep };
    expect(() => chainFromAct(deep)).toThrow(/deeper than 32/);
  });

  it('adds a level only when the actor changes', () => {
    expect(extendChain(['a'], 'b')).toEqual(['a', 'b']);
    expect(extendChain(['a', 'b'], 'b')).toEqual(['a', 'b']);
    expect(extendChain([], 'a')).toEqual(['a']);
  });

  it('matches may_act (RFC 8693 §4.4) by sub or client_id, and only for Deputy as issuer', () => {
    const iss = 'https://deputy.example.com';
    expect(mayActNames({ sub: 'b' }, 'b', iss)).toBe(true);
    expect(mayActNames({ client_id: 'b' }, 'b', iss)).toBe(true);
    expect(mayActNames({ sub: 'b', iss }, 'b', iss)).toBe(true);
    expect(mayActNames({ sub: 'b', iss: 'https://other.example.com' }, 'b', iss)).toBe(false);
    expect(mayActNames({ sub: 'c' }, 'b', iss)).toBe(false);
    expect(mayActNames(undefined, 'b', iss)).toBe(false);
    expect(mayActNames(['b'], 'b', iss)).toBe(false);
  });

  it('recognises handoff audiences', () => {
    expect(handoffTarget('urn:deputy:agent:b')).toBe('b');
    expect(handoffTarget('urn:deputy:agent:')).toBeUndefined();
    expect(handoffTarget('https://api.example.com')).toBeUndefined();
  });
});
