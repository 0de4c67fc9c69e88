import { describe, expect, it } from 'vitest';
import { RecentProofs } from '../../src/mcp/recent-proofs.js';

const key = (k: string, ttlSeconds = 10) => ({ namespace: 'dpop', key: k, ttlSeconds });

describe('RecentProofs (the MCP gateway\'s process-local memory of spent proof keys)', () => {
  it('remembers a key for its TTL only, and per namespace', () => {
    const memory = new RecentProofs();
    memory.remember(key('a'), 1_000);
    expect(memory.has(key('a'), 1_000)).toBe(true);
    expect(memory.has({ ...key('a'), namespace: 'other' }, 1_000)).toBe(false);
    expect(memory.has(key('a'), 10_999)).toBe(true);
    expect(memory.has(key('a'), 11_000)).toBe(false);
    expect(memory.size).toBe(0);
  });

  it('a clock that went back keeps a key longer, never shorter', () => {
    const memory = new RecentProofs();
    memory.remember(key('a'), 50_000);
    expect(memory.has(key('a'), 0)).toBe(true);
  });

  it('is bounded: the oldest key goes first (a forgotten key is then known from the store only)', () => {
    const memory = new RecentProofs(3);
    for (const k of ['a', 'b', 'c', 'd']) memory.remember(key(k), 0);
    expect(memory.size).toBe(3);
    expect(memory.has(key('a'), 0)).toBe(false);
    expect(['b', 'c', 'd'].every((k) => memory.has(key(k), 0))).toBe(true);
  });
});
