/**
 * src/pdp/remembered-decisions.ts on a PDP fake that exposes exactly what the basis is made of
 * (policy generation, a delegated subject's records and liveness): a decision answered from
 * memory only while its basis holds; one whose evaluation raced a reload or a revocation never
 * remembered under the new state; nothing remembered for a subject without a basis, a failed
 * evaluation, or with the cache off; memory bounded by entries and by bytes. And the gateway's
 * authorizers answering synchronously exactly what they answer asynchronously.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import type { Agent } from '../../src/agents/index.js';
import { AllOf, PdpGatewayAuthorizer } from '../../src/gateway/pdp-authorizer.js';
import type { GatewayAuthorizationRequest, GatewayAuthorizer, GatewayDecision } from '../../src/gateway/authorizer.js';
import type { Decision, EvaluationInput, PolicyDecisionPoint, PreparedSubject } from '../../src/pdp/index.js';
import { footprint, RememberedDecisions } from '../../src/pdp/remembered-decisions.js';

const PERMIT: Decision = { decision: true, policies: ['p'] };

/** A PDP as the remembered path sees it; `onEvaluate` runs inside each evaluation (races). */
class FakePdp {
  generation = 1;
  live = true;
  fails = false;
  invalid = false;
  evaluations = 0;
  onEvaluate: () => void = () => {};
  readonly grants = [{ jti: 'g' }];
  readonly store = { current: { generation: 0 } };
  readonly agent = { id: 'agent-a' } as Agent;

  asPdp(): PolicyDecisionPoint {
    const self = this;
    Object.defineProperty(this.store, 'current', { get: () => ({ generation: self.generation }) });
    return this as unknown as PolicyDecisionPoint;
  }
  async prepareSubject(): Promise<PreparedSubject> {
    if (this.fails) throw new Error('store away');
    if (this.invalid || !this.live) return { kind: 'invalid', reason: 'invalid_chain', message: 'revoked' } as PreparedSubject;
    return { kind: 'delegated', grants: this.grants, links: [{ agent: this.agent }] } as unknown as PreparedSubject;
  }
  async prepareEntity(input: unknown) {
    return { input, agent: undefined };
  }
  peekEntityAgent() {
    return { agent: undefined };
  }
  delegationHolds(_input: unknown, grants: unknown, agents: readonly Agent[]): boolean {
    return this.live && grants === this.grants && agents[0] === this.agent;
  }
  async evaluate(): Promise<Decision> {
    this.evaluations++;
    if (this.fails) throw new Error('store away');
    this.onEvaluate();
    return this.live ? PERMIT : { decision: false, denial: { kind: 'invalid_chain', admin: 'revoked', user: 'revoked', policies: [] } as never };
  }
}

const input = (path = '/x', token = 'tok'): EvaluationInput => ({
  subject: { type: 'Agent', id: 'agent-a', properties: { token } },
  action: { name: 'read', properties: { method: 'GET', path, connection: 'c' } },
  resource: { type: 'Resource', id: 'c', properties: { scope: 's' } },
  context: {},
});

const big = { budgetBytes: 1 << 20, maxEntries: 1000 };

describe('RememberedDecisions', () => {
  it('answers a repeated evaluation synchronously, the very decision, while the basis holds', async () => {
    const fake = new FakePdp();
    const memory = new RememberedDecisions(fake.asPdp(), big);
    const first = memory.evaluate(input());
    expect(first).toBeInstanceOf(Promise);
    expect(await first).toBe(PERMIT);
    expect(memory.evaluate(input())).toBe(PERMIT);
    expect(fake.evaluations).toBe(1);
    expect(memory.evaluate(input('/y'))).toBeInstanceOf(Promise);
  });

  it('a reload, a revocation: evaluated again, never answered from memory', async () => {
    const fake = new FakePdp();
    const memory = new RememberedDecisions(fake.asPdp(), big);
    await memory.evaluate(input());
    fake.generation++;
    expect(memory.evaluate(input())).toBeInstanceOf(Promise);
    await memory.evaluate(input());
    expect(memory.evaluate(input())).toBe(PERMIT);
    fake.live = false;
    const after = memory.evaluate(input());
    expect(after).toBeInstanceOf(Promise);
    expect((await after).decision).toBe(false);
    expect(memory.evaluate(input()), 'a subject without a basis is never remembered').toBeInstanceOf(Promise);
  });

  it('a reload racing the evaluation: remembered under the older generation, so the next call is evaluated', async () => {
    const fake = new FakePdp();
    const memory = new RememberedDecisions(fake.asPdp(), big);
    fake.onEvaluate = () => void fake.generation++;
    await memory.evaluate(input());
    fake.onEvaluate = () => {};
    const next = memory.evaluate(input());
    expect(next).toBeInstanceOf(Promise);
    await next;
    expect(memory.evaluate(input())).toBe(PERMIT);
  });

  it('a revocation racing the evaluation: the permit it computed is never answered afterwards', async () => {
    const fake = new FakePdp();
    const memory = new RememberedDecisions(fake.asPdp(), big);
    fake.onEvaluate = () => void (fake.live = false);
    // The evaluation decided before it saw the revocation (the fake's order): a permit.
    fake.evaluate = async function (this: FakePdp) {
      this.evaluations++;
      this.onEvaluate();
      return PERMIT;
    };
    expect(await memory.evaluate(input())).toBe(PERMIT);
    expect(memory.evaluate(input())).toBeInstanceOf(Promise);
  });

  it('a failed evaluation is not remembered and rejects (fail closed)', async () => {
    const fake = new FakePdp();
    const memory = new RememberedDecisions(fake.asPdp(), big);
    fake.fails = true;
    await expect(memory.evaluate(input())).rejects.toThrow('store away');
    fake.fails = false;
    expect(memory.size).toBe(0);
    expect(memory.evaluate(input())).toBeInstanceOf(Promise);
  });

  it('off with the decision cache (no entries or no bytes): every evaluation goes to the PDP', async () => {
    for (const options of [{ budgetBytes: 1 << 20, maxEntries: 0 }, { budgetBytes: 0, maxEntries: 1000 }]) {
      const fake = new FakePdp();
      const memory = new RememberedDecisions(fake.asPdp(), options);
      await memory.evaluate(input());
      expect(memory.evaluate(input())).toBeInstanceOf(Promise);
      expect(memory.size).toBe(0);
    }
  });

  it('bounded by entries: the decisions remembered longest ago are forgotten first', async () => {
    const fake = new FakePdp();
    const memory = new RememberedDecisions(fake.asPdp(), { budgetBytes: 1 << 20, maxEntries: 3 });
    for (const p of ['/1', '/2', '/3', '/4']) await memory.evaluate(input(p));
    expect(memory.size).toBe(3);
    expect(memory.evaluate(input('/1'))).toBeInstanceOf(Promise);
    expect(memory.evaluate(input('/4'))).toBe(PERMIT);
  });

  it('bounded by bytes: never past the budget; an entry larger than the whole budget is not remembered', async () => {
    const fake = new FakePdp();
    const one = footprint(JSON.stringify(input('/1')), PERMIT);
    const memory = new RememberedDecisions(fake.asPdp(), { budgetBytes: 2 * one + 10, maxEntries: 1000 });
    for (const p of ['/1', '/2', '/3']) await memory.evaluate(input(p));
    expect(memory.size).toBe(2);
    expect(memory.bytes).toBeLessThanOrEqual(2 * one + 10);
    expect(memory.evaluate(input('/1'))).toBeInstanceOf(Promise);
    await memory.evaluate(input('/long'.repeat(1000)));
    expect(memory.evaluate(input('/long'.repeat(1000)))).toBeInstanceOf(Promise);
    expect(memory.bytes).toBeLessThanOrEqual(2 * one + 10);
  });

  it('the key is the whole evaluation: another token is another decision', async () => {
    const fake = new FakePdp();
    const memory = new RememberedDecisions(fake.asPdp(), big);
    await memory.evaluate(input('/x', 'tok-1'));
    expect(memory.evaluate(input('/x', 'tok-2'))).toBeInstanceOf(Promise);
  });
});

describe('the gateway authorizers answer synchronously what they answer asynchronously', () => {
  const conn = { id: 'c', kind: 'api_key', settings: { requiredScopes: ['s'], routes: [] } } as never;
  const req: GatewayAuthorizationRequest = {
    subject: { userId: 'u', userAttrs: {} as never, chain: ['a'] as never, agentId: 'a', scopes: new Set(['s']), token: 't', jti: 'j' },
    action: { name: 'http:GET', method: 'GET', path: '/x', route: undefined },
    resource: { type: 'connection', id: 'c', kind: 'api_key', connection: conn },
  };
  const denial: Decision = { decision: false, denial: { kind: 'forbidden', admin: 'admin reason', user: 'user reason', policies: ['f'] } as never };

  it.each([
    ['permit', PERMIT],
    ['denial', denial],
  ])('%s: the same decision, reason and policies either way', async (_name, decision) => {
    for (const adminReasons of [false, true]) {
      const options = { issuer: 'https://deputy', declaresAction: () => false, adminReasons };
      const sync = new PdpGatewayAuthorizer({ evaluate: () => decision }, options).authorize(req);
      const later = new PdpGatewayAuthorizer({ evaluate: async () => decision }, options).authorize(req);
      expect(sync).not.toBeInstanceOf(Promise);
      expect(later).toBeInstanceOf(Promise);
      expect(sync).toEqual(await later);
    }
  });

  it('AllOf: synchronous while every authorizer is; the first refusal wins either way', async () => {
    const allow: GatewayDecision = { allowed: true, context: { policies: ['p'] } };
    const refuse: GatewayDecision = { allowed: false, reason: 'no' };
    const sync = (d: GatewayDecision): GatewayAuthorizer => ({ authorize: () => d });
    const async = (d: GatewayDecision): GatewayAuthorizer => ({ authorize: async () => d });
    expect(new AllOf(sync(allow), sync(allow)).authorize(req)).toBe(allow);
    expect(new AllOf(sync(refuse), sync(allow)).authorize(req)).toBe(refuse);
    expect(await new AllOf(async(allow), sync(refuse)).authorize(req)).toBe(refuse);
    expect(await new AllOf(sync(allow), async(refuse), sync(allow)).authorize(req)).toBe(refuse);
    expect(await new AllOf(async(allow), async(allow)).authorize(req)).toBe(allow);
    let called = false;
    await new AllOf(async(refuse), { authorize: () => ((called = true), allow) }).authorize(req);
    expect(called, 'nothing is asked after a refusal').toBe(false);
  });
});

describe('RememberedDecisions: memory, as the gateway hands it strings', () => {
  // A gateway path is a slice of the request's URL (Koa's parsed path, then the route's capture): in
  // V8 a slice of 13+ characters keeps its whole parent — here a URL with a 64 KiB query string — alive.
  it.each([['a short path', 0], ['a long path', 4000]])('holds no more than its byte budget (plus slack) when the evaluation\'s strings are slices of larger ones: %s', async (_, extra) => {
    setFlagsFromString('--expose_gc');
    const gc = runInNewContext('gc') as () => void;
    const budgetBytes = 1 << 20;
    const fake = new FakePdp();
    const memory = new RememberedDecisions(fake.asPdp(), { budgetBytes, maxEntries: 100_000 });
    const query = 'q'.repeat(256 * 1024);
    const long = 'l'.repeat(extra);
    gc();
    const before = process.memoryUsage().heapUsed;
    for (let i = 0; i < 600; i++) {
      const url = `/segments/of/a/path/${i}${long}?q=${query}${i}`;
      const path = url.slice(0, url.indexOf('?'));
      await memory.evaluate(input(path));
    }
    gc();
    const grown = process.memoryUsage().heapUsed - before;
    expect(memory.bytes).toBeLessThanOrEqual(budgetBytes);
    expect(memory.size).toBeGreaterThan(40);
    // Before the fix: every remembered evaluation kept its 256 KiB URL (≈ 15–130 MiB for a 1 MiB budget).
    expect(grown).toBeLessThan(4 * budgetBytes);
  });
});
