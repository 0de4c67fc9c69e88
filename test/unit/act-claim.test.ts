/**
 * The `act` claim codec (RFC 8693 §4.1) and the delegation model's pure rules: round trips as
 * properties, refusals as tables (each with the message it must give), the parsing bound at its edge.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Agent } from '../../src/agents/registry.js';
import {
  ACT_PARSE_LIMIT,
  actFromChain,
  ChainClaimError,
  chainFromAct,
  checkGrantSequence,
  DelegationDenied,
  extendChain,
  RegistryAuthorizer,
  type DelegationGrant,
} from '../../src/delegation/index.js';

const agentId = fc.string({ minLength: 1, maxLength: 12 });
const chainOf = (maxLength: number) => fc.array(agentId, { maxLength });

/** A chain of `n` agents `a0 … a(n-1)` written as nested `act`. */
function nested(n: number): unknown {
  return actFromChain(Array.from({ length: n }, (_, i) => `a${i}`));
}

describe('act claim codec (RFC 8693 §4.1)', () => {
  it('round-trips every chain of non-empty ids within the parsing bound', () => {
    fc.assert(
      fc.property(chainOf(ACT_PARSE_LIMIT), (chain) => {
        expect(chainFromAct(actFromChain(chain))).toEqual(chain);
      }),
    );
  });

  it('writes the current actor outermost and the first agent innermost', () => {
    fc.assert(
      fc.property(chainOf(8).filter((c) => c.length > 0), (chain) => {
        let act = actFromChain(chain);
        expect(act?.sub).toBe(chain.at(-1));
        for (let i = 1; i < chain.length; i++) act = act?.act;
        expect(act).toEqual({ sub: chain[0] });
      }),
    );
  });

  it('reads back the same chain when levels carry other members (they are informational)', () => {
    expect(chainFromAct({ sub: 'b', iss: 'https://x', act: { sub: 'a', client_id: 'a', extra: [1] } })).toEqual(['a', 'b']);
  });

  it.each([
    ['a string', 'agent', /must be a JSON object/],
    ['null', null, /must be a JSON object/],
    ['an array', [{ sub: 'a' }], /must be a JSON object/],
    ['a number', 7, /must be a JSON object/],
    ['a level without sub', { act: { sub: 'a' } }, /non-empty string "sub"/],
    ['an empty sub', { sub: '' }, /non-empty string "sub"/],
    ['a numeric sub', { sub: 42 }, /non-empty string "sub"/],
    ['a nested array', { sub: 'b', act: [] }, /must be a JSON object/],
    ['a nested null', { sub: 'b', act: null }, /must be a JSON object/],
    ['a nested level without sub', { sub: 'b', act: { act: { sub: 'a' } } }, /non-empty string "sub"/],
  ])('refuses %s', (_what, act, message) => {
    expect(() => chainFromAct(act)).toThrow(ChainClaimError);
    expect(() => chainFromAct(act)).toThrow(message);
  });

  it.each([
    [0, 0],
    [1, 1],
    [ACT_PARSE_LIMIT, ACT_PARSE_LIMIT],
  ])('reads %i nested levels', (levels, length) => {
    expect(chainFromAct(nested(levels))).toHaveLength(length);
  });

  it.each([ACT_PARSE_LIMIT + 1, 1000])('refuses %i nested levels at the parsing bound', (levels) => {
    expect(() => chainFromAct(nested(levels))).toThrow(new RegExp(`deeper than ${ACT_PARSE_LIMIT} levels`));
  });

  it('refuses a self-referencing claim at the bound instead of looping', () => {
    const loop: Record<string, unknown> = { sub: 'a' };
    loop.act = loop;
    expect(() => chainFromAct(loop)).toThrow(ChainClaimError);
  });

  it('never throws anything but ChainClaimError on arbitrary JSON', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        try {
          const chain = chainFromAct(value);
          expect(chain.every((s) => typeof s === 'string' && s.length > 0)).toBe(true);
        } catch (err) {
          expect(err).toBeInstanceOf(ChainClaimError);
        }
      }),
    );
  });

  it('extends a chain only when the actor changes', () => {
    fc.assert(
      fc.property(chainOf(6), agentId, (chain, actor) => {
        const next = extendChain(chain, actor);
        expect(next.at(-1)).toBe(actor);
        expect(next.length - chain.length).toBe(chain.at(-1) === actor ? 0 : 1);
        expect(next.slice(0, chain.length)).toEqual(chain.slice(0, next.length));
      }),
    );
  });
});

function grant(chain: string[], scope: string, over: Partial<DelegationGrant> = {}): DelegationGrant {
  return { jti: chain.join('>'), agentId: chain.at(-1)!, userId: 'u', chain, audience: 'https://api', scope, expiresAt: 2e9, ...over };
}

describe('grant sequence (step 3 of subject resolution)', () => {
  it('accepts a chain that grows by its exchanging agent and narrows scopes', () => {
    expect(checkGrantSequence([grant(['a'], 'r w'), grant(['a'], 'r'), grant(['a', 'b'], 'r')])).toBeUndefined();
  });

  it.each([
    ['a link that skips an agent', [grant(['a'], 'r'), grant(['a', 'b', 'c'], 'r')], /link 3 \(agent "c"\) does not extend/],
    ['a link that rewrites history', [grant(['a'], 'r'), grant(['x', 'b'], 'r')], /link 2 \(agent "b"\) does not extend/],
    ['a link held by another agent', [grant(['a'], 'r'), grant(['a', 'b'], 'r', { agentId: 'z' })], /does not extend/],
    ['a link for another user', [grant(['a'], 'r'), grant(['a', 'b'], 'r', { userId: 'v' })], /does not extend/],
    ['a link that widens scopes', [grant(['a'], 'r'), grant(['a', 'b'], 'r w')], /link 2 \(agent "b"\) holds scopes its delegator did not have/],
  ])('refuses %s', (_what, grants, message) => {
    const problem = checkGrantSequence(grants);
    expect(problem).toMatchObject({ kind: 'invalid', reason: 'invalid_chain', depth: grants.at(-1)!.chain.length });
    expect(problem?.message).toMatch(message);
  });
});

describe('registry rules', () => {
  const agent: Agent = {
    id: 'b', name: 'B', owner: 'o', scopes: ['r'], audiences: ['https://api', 'urn:deputy:agent:*'], maxDelegationDepth: 2,
    status: 'active', source: 'config', createdAt: '', updatedAt: '',
  };
  const user = { id: 'u', issuerId: 'idp', groups: [], roles: [] };
  const rules = new RegistryAuthorizer(3);

  it.each([
    ['an allowed audience and scope', {}],
    ['a handoff audience under urn:deputy:agent:*', { audience: 'urn:deputy:agent:c' }],
    ['the depth limit itself', { chain: ['a', 'b'] }],
  ])('permits %s', async (_what, over) => {
    await expect(rules.authorize({ user, agent, chain: ['b'], audience: 'https://api', scopes: ['r'], ...over })).resolves.toBeUndefined();
  });

  it.each([
    ['a disabled agent', { agent: { ...agent, status: 'disabled' as const } }, 'unauthorized_client'],
    ['an unlisted audience', { audience: 'https://other' }, 'invalid_target'],
    ['the bare handoff prefix', { audience: 'urn:deputy:agent:' }, 'invalid_target'],
    ['an unlisted scope', { scopes: ['r', 'w'] }, 'invalid_scope'],
    ["a chain deeper than the agent's limit", { chain: ['a', 'x', 'b'] }, 'invalid_grant'],
  ])('refuses %s as %s', async (_what, over, code) => {
    const denial = await rules.authorize({ user, agent, chain: ['b'], audience: 'https://api', scopes: ['r'], ...over }).catch((e: unknown) => e);
    expect(denial).toBeInstanceOf(DelegationDenied);
    expect(denial).toMatchObject({ error: code });
  });

  it("applies the deployment's limit when it is below the agent's", async () => {
    const denial = await new RegistryAuthorizer(1).authorize({ user, agent, chain: ['a', 'b'], audience: 'https://api', scopes: [] }).catch((e: unknown) => e);
    expect(denial).toMatchObject({ error: 'invalid_grant', description: 'delegation depth 2 exceeds the limit of 1 for agent "b"' });
  });
});
