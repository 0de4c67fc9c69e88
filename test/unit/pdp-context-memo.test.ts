/**
 * The memoised Cedar context of a delegated subject's members (src/pdp/chain-evaluation.ts
 * `cedarContext`): for random chain positions, actions, AuthZEN contexts and action properties,
 * on two policy sets (two snapshots, as across a reload), the memoised context equals the one
 * projected afresh — on the first call, on repeated calls, interleaved with other actions and
 * the other snapshot — and a request carrying its own context is never answered from the memo.
 */
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { cedarContext, projectContext, type ActionRequest, type ChainPosition } from '../../src/pdp/chain-evaluation.js';
import { PolicyStore } from '../../src/pdp/policy-store.js';
import type { PolicySnapshot } from '../../src/pdp/policy-store.js';
import { REPO } from '../support/authzen.js';

let snapshots: PolicySnapshot[];

beforeAll(async () => {
  const logger = createLogger('silent');
  snapshots = [];
  for (const dir of [`${REPO}config/policies`, `${REPO}test/fixtures/policies/chain`]) {
    const store = new PolicyStore({ dir, logger });
    snapshots.push(await store.load());
  }
});

const chainArb: fc.Arbitrary<ChainPosition> = fc
  .record({
    position: fc.integer({ min: 0, max: 3 }),
    depth: fc.integer({ min: 1, max: 3 }),
    scopes: fc.subarray(['docs.read', 'docs.write', 'openid']),
    audience: fc.option(fc.constantFrom('https://docs.example.com', 'urn:deputy:agent:agent-b'), { nil: undefined }),
    delegator: fc.option(fc.constantFrom('agent-a', 'agent-b'), { nil: undefined }),
    user: fc.option(fc.constantFrom('okta:00u1', 'alice@example.com'), { nil: undefined }),
  })
  .map((c) => ({
    position: c.position,
    depth: c.depth,
    current: c.position === c.depth,
    delegated: true,
    scopes: c.scopes,
    ...(c.audience !== undefined ? { audience: c.audience } : {}),
    ...(c.delegator !== undefined ? { delegator: c.delegator } : {}),
    ...(c.user !== undefined ? { user: c.user } : {}),
  }));

/** AuthZEN context and action properties: mostly empty (the memoised case), sometimes not. */
const extrasArb = fc.record({
  context: fc.oneof(fc.constant({}), fc.dictionary(fc.constantFrom('ip', 'time', 'chain', 'purpose'), fc.oneof(fc.string({ maxLength: 8 }), fc.integer()), { maxKeys: 2 })),
  actionProperties: fc.oneof(fc.constant({}), fc.dictionary(fc.constantFrom('method', 'path'), fc.string({ maxLength: 8 }), { maxKeys: 2 })),
});

/** One call: which snapshot, which of its actions (by index), what extras. */
const callArb = fc.record({ snapshot: fc.nat(1), action: fc.nat(20), extras: extrasArb });

function request(snapshot: PolicySnapshot, actionIndex: number, extras: { context: Record<string, unknown>; actionProperties: Record<string, unknown> }): ActionRequest {
  const actions = snapshot.schema.actions;
  const action = actions[actionIndex % actions.length]!;
  // cedarContext reads only the action and the extras; the resource does not enter the context.
  return { action, resource: undefined as unknown as ActionRequest['resource'], ...extras };
}

/** The outcome of a projection: its value, or the error's class and message (a bad context throws). */
function outcome(project: () => unknown): unknown {
  try {
    return { value: project() };
  } catch (err) {
    return { error: (err as Error).constructor.name, message: (err as Error).message };
  }
}

describe('the memoised member context equals the fresh projection', () => {
  it('for random chains, actions, snapshots and extras, in any order of calls', () => {
    fc.assert(
      fc.property(fc.array(chainArb, { minLength: 1, maxLength: 3 }), fc.array(fc.tuple(fc.nat(2), callArb), { minLength: 1, maxLength: 12 }), (chains, calls) => {
        for (const [which, call] of calls) {
          const chain = chains[which % chains.length]!;
          const snapshot = snapshots[call.snapshot]!;
          const req = request(snapshot, call.action, call.extras);
          expect(outcome(() => cedarContext(snapshot, req, chain))).toEqual(outcome(() => projectContext(snapshot, req, chain)));
        }
      }),
      { seed: 16_05, numRuns: 300 },
    );
  });

  it('a repeated member and action is answered from the memo (the same object), a new snapshot is not', () => {
    const chain: ChainPosition = { position: 1, depth: 1, current: true, delegated: true, scopes: ['docs.read'], audience: 'https://docs.example.com', user: 'okta:00u1' };
    const [a, b] = snapshots as [PolicySnapshot, PolicySnapshot];
    const readA = request(a, a.schema.actions.findIndex((x) => x.name === 'read' && x.context), { context: {}, actionProperties: {} });
    const readB = request(b, b.schema.actions.findIndex((x) => x.name === 'read' && x.context), { context: {}, actionProperties: {} });
    expect(readA.action.context).toBeDefined();
    const first = cedarContext(a, readA, chain);
    expect(cedarContext(a, readA, chain)).toBe(first);
    expect(cedarContext(b, readB, chain)).toEqual(projectContext(b, readB, chain));
    expect(cedarContext(a, readA, chain)).not.toBe(first); // the memo followed the newer snapshot, then came back
    expect(cedarContext(a, readA, chain)).toEqual(first);
  });

  it('a request with its own context, or a plain subject, is projected afresh every time', () => {
    const [a] = snapshots as [PolicySnapshot];
    const index = a.schema.actions.findIndex((x) => x.name === 'read' && x.context);
    const delegated: ChainPosition = { position: 1, depth: 1, current: true, delegated: true, scopes: [] };
    const withContext = request(a, index, { context: { purpose: 'x' }, actionProperties: {} });
    const once = outcome(() => cedarContext(a, withContext, delegated));
    expect(outcome(() => cedarContext(a, withContext, delegated))).toEqual(once);
    const plain: ChainPosition = { position: 0, depth: 0, current: true, delegated: false, scopes: [] };
    const bare = request(a, index, { context: {}, actionProperties: {} });
    expect(cedarContext(a, bare, plain)).not.toBe(cedarContext(a, bare, plain));
  });
});
