/**
 * Subject resolution in its two halves, without a server: the OAuth side's resolver
 * (AgentTokenResolver, steps 1–3 over stub verifier, records and revocation cache) and the
 * registry half (`checkAgainstRegistry`, step 4 over a stub agent lookup). The server-level behaviour is
 * test/features/authzen-chain.test.ts; these tables pin each refusal and its message.
 */
import { describe, expect, it } from 'vitest';
import type { Agent } from '../../src/agents/registry.js';
import { actFromChain, checkAgainstRegistry, RegistryAuthorizer, type AgentLookup, type VerifiedChain } from '../../src/delegation/index.js';
import { InvalidToken } from '../../src/errors/index.js';
import type { AccessTokenClaims, AccessTokenVerifier } from '../../src/oauth/access-token.js';
import { AgentTokenResolver } from '../../src/oauth/agent-token-resolver.js';
import type { RevocationCache, TokenRecord, TokenRecords } from '../../src/oauth/token-records.js';

const NOW = 1_900_000_000_000;
const EXP = NOW / 1000 + 600;
const TOKEN = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln';

function record(jti: string, chain: string[], scope: string, parentJti?: string, over: Partial<TokenRecord> = {}): TokenRecord {
  return {
    jti, parentJti, rootJti: 'r1', agentId: chain.at(-1)!, userId: 'u', userAttrs: { groups: ['g'], roles: [] }, issuerId: 'idp',
    audience: 'https://api', scope, chain, cnfJkt: undefined, mayAct: undefined, upstream: undefined,
    issuedAt: EXP - 900, expiresAt: EXP, revokedAt: undefined, revokedReason: undefined, ...over,
  };
}

/** user → a → b: the root exchange by `a`, then `b`'s. */
const CHAIN = [record('r1', ['a'], 'read write'), record('r2', ['a', 'b'], 'read', 'r1')];
const CLAIMS: AccessTokenClaims = { client_id: 'b', sub: 'u', jti: 'r2', exp: EXP, scope: 'read', act: actFromChain(['a', 'b'])! };

interface Setup {
  claims?: AccessTokenClaims | Error;
  records?: TokenRecord[];
  revoked?: string[];
}

function resolver({ claims = CLAIMS, records = CHAIN, revoked = [] }: Setup = {}): AgentTokenResolver {
  const verifier = { verify: async () => (claims instanceof Error ? Promise.reject(claims) : claims) } as unknown as AccessTokenVerifier;
  const store = { find: async (jti: string) => records.find((r) => r.jti === jti) } as unknown as TokenRecords;
  const revocations = { isRevoked: async (jti: string) => revoked.includes(jti) } as unknown as RevocationCache;
  return new AgentTokenResolver({ verifier, records: store, revocations });
}

describe('AgentTokenResolver (steps 1–3)', () => {
  it('resolves a token to its user, chain, grants (root first) and scopes', async () => {
    const resolved = await resolver().resolve(TOKEN, NOW);
    expect(resolved).toMatchObject({
      kind: 'verified',
      user: { id: 'u', issuerId: 'idp', groups: ['g'], roles: [] },
      chain: ['a', 'b'],
      scopes: ['read'],
    });
    expect((resolved as VerifiedChain).grants.map((g) => g.jti)).toEqual(['r1', 'r2']);
  });

  it.each<[string, Setup & { token?: string }, string, RegExp]>([
    ['a token that is not a JWT', { token: 'not a jwt' }, 'invalid_subject', /is not a JWT/],
    ['an oversized token', { token: `${'a'.repeat(16 * 1024)}.b.c` }, 'invalid_subject', /is not a JWT/],
    ['a token the verifier refuses', { claims: new InvalidToken('token expired') }, 'invalid_subject', /is not valid: token expired/],
    ['a token without act', { claims: { ...CLAIMS, act: undefined } }, 'invalid_subject', /carries no delegation/],
    ['a malformed act', { claims: { ...CLAIMS, act: { sub: '' } } }, 'invalid_subject', /"act" claim is malformed/],
    ['a token with no issuance record', { records: [] }, 'invalid_subject', /not issued by a Deputy token exchange/],
    ['a missing parent record', { records: [CHAIN[1]!] }, 'invalid_subject', /not issued by a Deputy token exchange/],
    ['an act that differs from the record', { claims: { ...CLAIMS, act: actFromChain(['x', 'b'])! } }, 'invalid_subject', /does not match its issuance record/],
    ['a sub that differs from the record', { claims: { ...CLAIMS, sub: 'v' } }, 'invalid_subject', /does not match its issuance record/],
    ['a link that widened scopes', { records: [record('r1', ['a'], 'read'), record('r2', ['a', 'b'], 'read write', 'r1')] }, 'invalid_chain', /link 2 \(agent "b"\) holds scopes/],
    ['a revoked root', { revoked: ['r1'] }, 'invalid_chain', /link 1 \(agent "a"\) has been revoked/],
    ['an expired link', { records: [record('r1', ['a'], 'read write', undefined, { expiresAt: NOW / 1000 - 1 }), CHAIN[1]!] }, 'invalid_chain', /link 1 \(agent "a"\) has expired/],
  ])('refuses %s', async (_what, setup, reason, message) => {
    const resolved = await resolver(setup).resolve(setup.token ?? TOKEN, NOW);
    expect(resolved).toMatchObject({ kind: 'invalid', reason });
    expect(resolved.kind === 'invalid' && resolved.message).toMatch(message);
  });

  it('sees a revocation made after the token was first resolved (static part cached, revocation not)', async () => {
    const revoked: string[] = [];
    const r = resolver({ revoked });
    expect((await r.resolve(TOKEN, NOW)).kind).toBe('verified');
    revoked.push('r2');
    expect(await r.resolve(TOKEN, NOW)).toMatchObject({ kind: 'invalid', reason: 'invalid_chain', position: 2, agentId: 'b' });
  });

  it('lets a store failure through (the PDP fails closed)', async () => {
    const verifier = { verify: async () => CLAIMS } as unknown as AccessTokenVerifier;
    const store = { find: async () => Promise.reject(new Error('store down')) } as unknown as TokenRecords;
    const revocations = { isRevoked: async () => false } as unknown as RevocationCache;
    await expect(new AgentTokenResolver({ verifier, records: store, revocations }).resolve(TOKEN, NOW)).rejects.toThrow('store down');
  });
});

function agent(id: string, over: Partial<Agent> = {}): Agent {
  return {
    id, name: id, owner: 'o', scopes: ['read', 'write'], audiences: ['https://api'], maxDelegationDepth: 3, status: 'active',
    source: 'config', createdAt: '', updatedAt: '', ...over,
  };
}

const VERIFIED: VerifiedChain = {
  kind: 'verified',
  user: { id: 'u', issuerId: 'idp', groups: [], roles: [] },
  chain: ['a', 'b'],
  grants: [record('r1', ['a'], 'read write'), record('r1b', ['a'], 'read', 'r1'), record('r2', ['a', 'b'], 'read', 'r1b')],
  scopes: ['read'],
};

const lookup = (...agents: Agent[]): AgentLookup => ({ get: async (id) => agents.find((a) => a.id === id) });

describe('checkAgainstRegistry (step 4)', () => {
  it('gives each agent with the latest grant it held at its position', async () => {
    const live = await checkAgainstRegistry(VERIFIED, lookup(agent('a'), agent('b')), new RegistryAuthorizer(5));
    expect(live.kind).toBe('delegated');
    if (live.kind !== 'delegated') return;
    expect(live.links.map((l) => [l.position, l.agent.id, l.grant.jti])).toEqual([[1, 'a', 'r1b'], [2, 'b', 'r2']]);
    expect(live).toMatchObject({ user: VERIFIED.user, chain: ['a', 'b'], scopes: ['read'] });
  });

  it.each<[string, Agent[], number, RegExp, number]>([
    ['an unregistered agent', [agent('a')], 5, /agent "b" at link 2 is not registered/, 2],
    ['a disabled agent', [agent('a', { status: 'disabled' }), agent('b')], 5, /agent "a" at link 1 is disabled/, 1],
    ['a scope the registry no longer allows', [agent('a', { scopes: ['read'] }), agent('b')], 5, /link 1: agent "a" is not allowed the scope "write"/, 1],
    ['an audience the registry no longer allows', [agent('a'), agent('b', { audiences: [] })], 5, /link 2: agent "b" is not allowed the audience/, 2],
    ['a chain deeper than the deployment now allows', [agent('a'), agent('b')], 1, /link 2: delegation depth 2 exceeds the limit of 1/, 2],
  ])('refuses %s', async (_what, agents, maxDepth, message, position) => {
    const live = await checkAgainstRegistry(VERIFIED, lookup(...agents), new RegistryAuthorizer(maxDepth));
    expect(live).toMatchObject({ kind: 'invalid', reason: 'invalid_chain', position, depth: 2 });
    expect(live.kind === 'invalid' && live.message).toMatch(message);
  });
});
