/**
 * CapturedUpstreamTokens (src/oauth/upstream-capture.ts): which vault row holds an agent's
 * captured upstream token — keyed by agent, issuer and token, unused once the token expired,
 * bounded (oldest forgotten first), off with a bound of 0.
 */
import { describe, expect, it } from 'vitest';
import { CapturedUpstreamTokens } from '../../src/oauth/upstream-capture.js';

const key = CapturedUpstreamTokens.key;

describe('CapturedUpstreamTokens', () => {
  it('keys by agent, issuer and token, and keeps no token', () => {
    const keys = [key('a', 'okta', 't1'), key('b', 'okta', 't1'), key('a', 'entra', 't1'), key('a', 'okta', 't2'), key('a\0okta', '', 't1')];
    expect(new Set(keys).size).toBe(keys.length);
    expect(key('a', 'okta', 't1')).toBe(keys[0]);
    expect(keys[0]).not.toContain('t1');
  });

  it('answers a remembered handle until the token expires, then forgets it', () => {
    const memo = new CapturedUpstreamTokens();
    memo.remember(key('a', 'okta', 't'), 'upt_1', 1_000);
    expect(memo.handle(key('a', 'okta', 't'), 999)).toBe('upt_1');
    expect(memo.handle(key('b', 'okta', 't'), 999)).toBeUndefined();
    expect(memo.handle(key('a', 'okta', 't'), 1_000)).toBeUndefined();
    expect(memo.size).toBe(0);
  });

  it('is bounded: past the bound the oldest entry is forgotten; a re-remembered one is the newest', () => {
    const memo = new CapturedUpstreamTokens(2);
    memo.remember('k1', 'h1', 10);
    memo.remember('k2', 'h2', 10);
    memo.remember('k1', 'h1', 10);
    memo.remember('k3', 'h3', 10);
    expect(memo.size).toBe(2);
    expect([memo.handle('k1', 0), memo.handle('k2', 0), memo.handle('k3', 0)]).toEqual(['h1', undefined, 'h3']);
    memo.forget('k1');
    expect(memo.handle('k1', 0)).toBeUndefined();
  });

  it('remembers nothing with a bound of 0', () => {
    const memo = new CapturedUpstreamTokens(0);
    memo.remember('k', 'h', 10);
    expect(memo.handle('k', 0)).toBeUndefined();
  });
});
