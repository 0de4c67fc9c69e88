/**
 * The agent token resolver's cache (steps 1–2 of a subject token, src/oauth/agent-token-resolver.ts)
 * is bounded by bytes as well as entries: a token may be 16 KiB (nested `act`, many claims), and
 * 20,000 of them with their claims and records held hundreds of MiB (issue 16, twelfth round).
 * The verifier, records and revocations are stand-ins: the cache is what is under test.
 */
import { describe, expect, it } from 'vitest';
import type { AccessTokenVerifier } from '../../src/oauth/access-token.js';
import { AgentTokenResolver, footprint } from '../../src/oauth/agent-token-resolver.js';
import type { RevocationCache, TokenRecord, TokenRecords } from '../../src/oauth/token-records.js';

const NOW = Date.UTC(2026, 11, 1);
const EXP = NOW / 1000 + 3600;

/** A token-shaped string whose payload carries `jti`, a one-agent `act` and `pad` characters of padding. */
function token(jti: string, pad: number): string {
  const payload = { iss: 'https://deputy.example', sub: 'alice', jti, exp: EXP, scope: 'read', act: { sub: 'agent-a' }, pad: 'p'.repeat(pad) };
  return `eyJhbGciOiJFUzI1NiJ9.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.c2ln`;
}

function record(jti: string): TokenRecord {
  return {
    jti, parentJti: undefined, rootJti: jti, agentId: 'agent-a', userId: 'alice', userAttrs: { groups: [], roles: [] }, issuerId: 'okta', audience: 'https://api.example',
    scope: 'read', chain: ['agent-a'], cnfJkt: undefined, mayAct: undefined, upstream: undefined, issuedAt: NOW / 1000, expiresAt: EXP, revokedAt: undefined, revokedReason: undefined,
  };
}

function resolver(options: { budgetBytes?: number; maxEntries?: number } = {}) {
  const verified: string[] = [];
  const verifier = {
    verify: async (t: string) => {
      verified.push(t);
      return JSON.parse(Buffer.from(t.split('.')[1]!, 'base64url').toString()) as unknown;
    },
  } as unknown as AccessTokenVerifier;
  const records = { find: async (jti: string) => record(jti) } as unknown as TokenRecords;
  const revocations = { isRevoked: async () => false, knownLive: () => true } as unknown as RevocationCache;
  return { resolver: new AgentTokenResolver({ verifier, records, revocations, ...options }), verified };
}

describe('agent token resolver cache: bounded by bytes and by entries', () => {
  it('a flood of large distinct tokens stays within 8 MiB; the newest still hit, the oldest were forgotten', async () => {
    const { resolver: r, verified } = resolver();
    const tokens = Array.from({ length: 800 }, (_, i) => token(`t${i}`, 10 * 1024));
    for (const t of tokens) expect(await r.resolve(t, NOW)).toMatchObject({ kind: 'verified' });
    expect(r.bytes).toBeLessThanOrEqual(AgentTokenResolver.BUDGET_BYTES);
    expect(r.bytes).toBeGreaterThan(AgentTokenResolver.BUDGET_BYTES - footprint(tokens[0]!, [record('t0')]));
    expect(r.size).toBeLessThan(tokens.length);
    const before = verified.length;
    // The newest ones hit (nothing verified again) …
    for (const t of tokens.slice(-r.size)) expect(await r.resolve(t, NOW)).toMatchObject({ kind: 'verified' });
    expect(verified.length).toBe(before);
    // … the first one was forgotten (verified again; it held its entry past the byte bound before).
    expect(await r.resolve(tokens[0]!, NOW)).toMatchObject({ kind: 'verified' });
    expect(verified.length).toBe(before + 1);
    expect(r.bytes).toBeLessThanOrEqual(AgentTokenResolver.BUDGET_BYTES);
  });

  it('small tokens are bounded by entries; a token larger than the whole budget is verified but not cached', async () => {
    const { resolver: r, verified } = resolver({ maxEntries: 10, budgetBytes: 40 * 1024 });
    for (let i = 0; i < 25; i++) await r.resolve(token(`s${i}`, 0), NOW);
    expect(r.size).toBe(10);
    const big = token('big', 10 * 1024);
    expect(footprint(big, [record('big')])).toBeGreaterThan(40 * 1024);
    const bytes = r.bytes;
    expect(await r.resolve(big, NOW)).toMatchObject({ kind: 'verified' });
    expect(await r.resolve(big, NOW)).toMatchObject({ kind: 'verified' });
    expect(verified.filter((t) => t === big)).toHaveLength(2);
    expect(r.size).toBe(10);
    expect(r.bytes).toBe(bytes);
  });
});

describe('agent token resolver cache: its byte count never drifts', () => {
  it('replaced, evicted, re-added, expired and concurrent entries: the count stays the sum of what is cached', async () => {
    const budgetBytes = 64 * 1024;
    const maxEntries = 12;
    const { resolver: r } = resolver({ budgetBytes, maxEntries });
    const tokens = Array.from({ length: 40 }, (_, i) => token(`d${i}`, (i * 1543) % (24 * 1024)));
    let seed = 7;
    const next = () => (seed = (seed * 48271) % 2147483647);
    for (let round = 0; round < 300; round++) {
      const batch = Array.from({ length: 1 + (next() % 4) }, () => tokens[next() % tokens.length]!);
      // The same token twice at once; now and then past its expiry (its entry not served, replaced by a miss).
      const at = next() % 10 === 0 ? EXP * 1000 + 1 : NOW;
      await Promise.all([...batch, batch[0]!].map((t) => r.resolve(t, at)));
      expect(r.bytes).toBeGreaterThanOrEqual(0);
      expect(r.bytes).toBeLessThanOrEqual(budgetBytes);
      expect(r.size).toBeLessThanOrEqual(maxEntries);
    }
    // maxEntries fresh tokens of one size evict everything before them: the count is exactly theirs.
    const fresh = Array.from({ length: maxEntries }, (_, i) => token(`f${String(i).padStart(2, '0')}`, 100));
    for (const t of fresh) await r.resolve(t, NOW);
    expect(r.size).toBe(maxEntries);
    expect(r.bytes).toBe(maxEntries * footprint(fresh[0]!, [record('f00')]));
  });
});
