/**
 * Delegation-chain semantics end to end: a mock Okta IdP, real token exchanges by agents with
 * DPoP (user → agent-a → agent-b → agent-c through handoffs), and a PEP asking the PDP about
 * the resulting tokens over HTTP. Policies: test/fixtures/policies/chain.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentConfig, authenticatedPost, exchange, exchangeError, testAgent, type TestAgent } from '../support/agents.js';
import { startPdpHarness, REPO, subOf, type PdpHarness } from '../support/authzen.js';
import { clientKeys, type ClientKeys } from '../support/clients.js';
import type { Json } from '../support/http.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';

const DOCS = 'https://docs.example.com';
const FORBIDDEN_API = 'https://forbidden.example.com';
const handoff = (id: string) => `urn:deputy:agent:${id}`;
const ALICE = { uid: '00ualice00000000001', email: 'alice@example.com' };

let idp: MockIdp;
let h: PdpHarness;
const agents: Record<string, TestAgent> = {};
/** Tokens: user → a (one link), → b (two), → c (three). */
const tokens: { one: string; two: string; three: string; handToB: string; handToC: string } = { one: '', two: '', three: '', handToB: '', handToC: '' };

async function userToken(user = ALICE, extra: Record<string, unknown> = {}): Promise<string> {
  return idp.oktaAccessToken({ uid: user.uid, email: user.email, scp: ['openid', 'docs.read', 'docs.write'], ...extra });
}

beforeAll(async () => {
  idp = await startMockIdp();
  const keys: Record<string, ClientKeys> = {};
  for (const id of ['agent-a', 'agent-b', 'agent-c']) keys[id] = await clientKeys();
  h = await startPdpHarness({
    policies: `${REPO}test/fixtures/policies/chain`,
    config: {
      trustedIssuers: [idp.issuerConfig('okta')],
      agents: [
        agentConfig('agent-a', keys['agent-a']!, { scopes: ['docs.read', 'docs.write'], audiences: [DOCS, FORBIDDEN_API, handoff('agent-b')], maxDelegationDepth: 3 }),
        agentConfig('agent-b', keys['agent-b']!, { scopes: ['docs.read', 'docs.write'], audiences: [DOCS, handoff('agent-c')], maxDelegationDepth: 3 }),
        agentConfig('agent-c', keys['agent-c']!, { scopes: ['docs.read', 'docs.write'], audiences: [DOCS], maxDelegationDepth: 3 }),
      ],
    },
  });
  for (const id of Object.keys(keys)) agents[id] = await testAgent(h.deputy.issuer, id, keys[id]!);
  const subject = await userToken();
  tokens.one = (await exchange(agents['agent-a']!, { subject_token: subject, resource: DOCS, scope: 'docs.read docs.write' })).access_token;
  tokens.handToB = (await exchange(agents['agent-a']!, { subject_token: subject, audience: handoff('agent-b'), scope: 'docs.read docs.write' })).access_token;
  tokens.two = (await exchange(agents['agent-b']!, { subject_token: tokens.handToB, resource: DOCS })).access_token;
  tokens.handToC = (await exchange(agents['agent-b']!, { subject_token: tokens.handToB, audience: handoff('agent-c') })).access_token;
  tokens.three = (await exchange(agents['agent-c']!, { subject_token: tokens.handToC, resource: DOCS })).access_token;
});
afterAll(async () => {
  await h?.stop();
  await idp?.close();
});

/** A delegated subject as a PEP sends it: `id` is the token's `sub` (the user) unless given. */
const delegated = (token: string, id?: string) => ({ type: 'User', id: id ?? subOf(token), properties: { token } });
const doc = (id: string, properties: Json = {}) => ({ type: 'Document', id, properties });
const ask = (subject: Json, action: string, resource: Json) => h.post('/access/v1/evaluation', { subject, action: { name: action }, resource });

/** The deny context, checked for what every deny must (not) carry. */
function denial(body: Json, token?: string): Json {
  expect(body.decision).toBe(false);
  if (token) expect(JSON.stringify(body)).not.toContain(token.split('.')[1]!.slice(0, 24));
  return body.context as Json;
}

describe('a request by a delegated subject is permitted only if the user and every agent are', () => {
  it('user → agent-a: permitted when both are (the user owns doc-1, agent-a is listed on it)', async () => {
    const { body } = await ask(delegated(tokens.one), 'read', doc('doc-1'));
    expect(body).toEqual({ decision: true });
  });

  it('the user is permitted but the agent is not → deny naming the agent', async () => {
    const { body } = await ask(delegated(tokens.one), 'read', doc('doc-4'));
    const ctx = denial(body, tokens.one);
    expect(ctx).toMatchObject({ id: 'not_permitted', link: { position: 1, depth: 1, type: 'Agent', id: 'agent-a' } });
    expect(ctx.reason_admin.en).toMatch(/agent "agent-a" \(link 1 of 1\) may not "read".*no policy permits it/);
    expect(ctx.reason_user).toEqual({ en: 'Access denied.' });
  });

  it('the agent is permitted but the user is not → deny naming the user (without the user id from the token)', async () => {
    const { body } = await ask(delegated(tokens.one), 'read', doc('doc-3'));
    const ctx = denial(body, tokens.one);
    expect(ctx).toMatchObject({ id: 'not_permitted', link: { position: 0, depth: 1, type: 'User' } });
    expect(ctx.link).not.toHaveProperty('id');
    expect(JSON.stringify(ctx)).not.toContain(ALICE.uid);
    expect(ctx.reason_admin.en).toMatch(/the user \(link 0 of 1\)/);
  });

  it('an earlier agent of the chain that is not permitted denies, though the acting agent is', async () => {
    // doc-6 lists agent-b and agent-c, not agent-a, which delegated to them.
    const { body } = await ask(delegated(tokens.three), 'read', doc('doc-6'));
    expect(denial(body, tokens.three)).toMatchObject({ id: 'not_permitted', link: { position: 1, depth: 3, id: 'agent-a' } });
    expect((await ask(delegated(tokens.three), 'read', doc('doc-5'))).body).toEqual({ decision: true });
  });

  it('context.chain gives each principal its position: a sub-agent may not write (forbid, with its @reason)', async () => {
    expect((await ask(delegated(tokens.one), 'write', doc('doc-2'))).body).toEqual({ decision: true });
    const { body } = await ask(delegated(tokens.two), 'write', doc('doc-2'));
    const ctx = denial(body, tokens.two);
    expect(ctx).toMatchObject({ id: 'forbidden', link: { position: 2, depth: 2, type: 'Agent', id: 'agent-b' }, policies: ['sub-agents-may-not-write'] });
    expect(ctx.reason_user).toEqual({ en: 'Sub-agents may not write.' });
  });

  it('depth beyond what a policy allows → deny: no agent deeper than 2 may delete', async () => {
    expect((await ask(delegated(tokens.two), 'delete', doc('doc-5'))).body).toEqual({ decision: true });
    const { body } = await ask(delegated(tokens.three), 'delete', doc('doc-5'));
    expect(denial(body, tokens.three)).toMatchObject({ id: 'forbidden', link: { position: 3, id: 'agent-c' }, policies: ['no-delete-deeper-than-2'] });
  });

  it('a forbid on the resource applies to every member, the user first', async () => {
    const { body } = await ask(delegated(tokens.two), 'read', doc('doc-x', { owner: ALICE.email, agents: ['agent-a', 'agent-b'], locked: true }));
    expect(denial(body)).toMatchObject({ id: 'forbidden', link: { position: 0 }, policies: ['locked-documents'] });
  });

  it('subject.id must name the token\'s user or its current agent', async () => {
    expect((await ask(delegated(tokens.two, 'agent-b'), 'read', doc('doc-2'))).body).toEqual({ decision: true });
    const { body } = await ask(delegated(tokens.two, 'mallory@example.com'), 'read', doc('doc-2'));
    expect(denial(body)).toMatchObject({ id: 'invalid_subject' });
  });
});

describe('invalid tokens in the subject are a deny with a reason, never an error', () => {
  it.each<[string, () => string | Promise<string>, RegExp]>([
    ['not a JWT', () => 'not-a-token', /not a JWT/],
    ['a token from another issuer', () => userToken(), /not valid/],
    ['a tampered token', () => `${tokens.one.slice(0, -4)}AAAA`, /not valid/],
    ['the PEP\'s own client_credentials token (no delegation)', () => h.pepToken, /carries no delegation/],
  ])('%s', async (_name, make, message) => {
    const token = await make();
    const res = await ask({ type: 'User', id: 'x', properties: { token } }, 'read', doc('doc-1'));
    expect(res.status).toBe(200);
    const ctx = denial(res.body, token.includes('.') ? token : undefined);
    expect(ctx.id).toBe('invalid_subject');
    expect(ctx.reason_admin.en).toMatch(message);
  });

  it('a token property that is not a string is a deny (invalid input)', async () => {
    const res = await ask({ type: 'User', id: 'x', properties: { token: { jwt: 'x' } } }, 'read', doc('doc-1'));
    expect(res.status).toBe(200);
    expect(denial(res.body).id).toBe('invalid_input');
  });
});

describe('batches with a delegated subject', () => {
  const items = [{ resource: doc('doc-2') }, { resource: doc('doc-4') }, { resource: doc('doc-5') }, { action: { name: 'write' }, resource: doc('doc-2') }];
  const batch = (semantic?: string) =>
    h.post('/access/v1/evaluations', { subject: delegated(tokens.two), action: { name: 'read' }, evaluations: items, ...(semantic ? { options: { evaluations_semantic: semantic } } : {}) });
  const decisions = (body: Json) => (body.evaluations as Json[]).map((e) => e.decision);

  it('execute_all (default) answers every item, in order', async () => {
    expect(decisions((await batch()).body)).toEqual([true, false, true, false]);
    expect(decisions((await batch('execute_all')).body)).toEqual([true, false, true, false]);
  });

  it('deny_on_first_deny stops at the first deny', async () => {
    const { body } = await batch('deny_on_first_deny');
    expect(decisions(body)).toEqual([true, false]);
    expect(body.evaluations[1].context.link).toMatchObject({ id: 'agent-a' });
  });

  it('permit_on_first_permit stops at the first permit', async () => {
    expect(decisions((await batch('permit_on_first_permit')).body)).toEqual([true]);
    const { body } = await h.post('/access/v1/evaluations', {
      subject: delegated(tokens.two),
      action: { name: 'read' },
      evaluations: [{ resource: doc('doc-4') }, { resource: doc('doc-1') }, { resource: doc('doc-2') }, { resource: doc('doc-5') }],
      options: { evaluations_semantic: 'permit_on_first_permit' },
    });
    expect(decisions(body)).toEqual([false, false, true]);
  });
});

describe('search respects the chain', () => {
  const results = (body: Json) => (body.results as Json[]).map((r) => r.id ?? r.name).sort();

  it('resource search: only documents every member of the chain may read', async () => {
    const plain = await h.post('/access/v1/search/resource', { subject: { type: 'User', id: ALICE.email, properties: { email: ALICE.email } }, action: { name: 'read' }, resource: { type: 'Document' } });
    expect(results(plain.body)).toEqual(['doc-1', 'doc-2', 'doc-4', 'doc-5', 'doc-6']);
    const one = await h.post('/access/v1/search/resource', { subject: delegated(tokens.one), action: { name: 'read' }, resource: { type: 'Document' } });
    expect(results(one.body)).toEqual(['doc-1', 'doc-2', 'doc-5']);
    const three = await h.post('/access/v1/search/resource', { subject: delegated(tokens.three), action: { name: 'delete' }, resource: { type: 'Document' } });
    expect(three.body).toMatchObject({ results: [], page: { next_token: '', count: 0, total: 0 } });
  });

  it('action search: what a sub-agent may do is narrower than what its delegator may do', async () => {
    const one = await h.post('/access/v1/search/action', { subject: delegated(tokens.one), resource: doc('doc-2') });
    expect(results(one.body)).toEqual(['delete', 'read', 'write']);
    const two = await h.post('/access/v1/search/action', { subject: delegated(tokens.two), resource: doc('doc-2') });
    expect(results(two.body)).toEqual(['delete', 'read']);
  });

  it('subject search over registry agents (plain agent subjects are not delegated, so none may read)', async () => {
    const { body } = await h.post('/access/v1/search/subject', { subject: { type: 'Agent' }, action: { name: 'read' }, resource: doc('doc-5') });
    expect(body.results).toEqual([]);
  });
});

describe('the token exchange is a PDP decision (action delegate)', () => {
  it('a forbid about the agent refuses the exchange as unauthorized_client, naming the policy', async () => {
    const err = await exchangeError(agents['agent-a']!, { subject_token: await userToken(), resource: FORBIDDEN_API, scope: 'docs.read' });
    expect(err.error).toBe('unauthorized_client');
    expect(err.error_description).toMatch(/agent "agent-a".*"no-delegation-to-forbidden-api"/);
  });

  it('a forbid about the user refuses the exchange as invalid_grant, naming the policy', async () => {
    const contractor = await userToken({ uid: '00ucontractor000001', email: 'carl@example.com' }, { groups: ['contractors'] });
    const err = await exchangeError(agents['agent-a']!, { subject_token: contractor, resource: DOCS, scope: 'docs.read' });
    expect(err.error).toBe('invalid_grant');
    expect(err.error_description).toMatch(/the user.*"no-agents-for-contractors"/);
  });
});

describe('receipts a PEP asks for (Deputy-Receipt: request)', () => {
  const exportChain = async (agent: string): Promise<Json[]> => {
    const res = await fetch(`${h.deputy.url}/admin/agents/${agent}/receipts/export`, { headers: { authorization: `Bearer ${h.adminToken}` } });
    expect(res.status).toBe(200);
    return (await res.text()).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Json);
  };
  const claims = (line: Json): Json => JSON.parse(Buffer.from(String(line.receipt ?? line.jws ?? line.token ?? Object.values(line).find((v) => typeof v === 'string' && v.split('.').length === 3)).split('.')[1]!, 'base64url').toString());

  it('writes a permit and a deny into the acting agent\'s chain, named in the response, with no token inside', async () => {
    const before = (await exportChain('agent-b')).length;
    const permit = await h.post('/access/v1/evaluation', { subject: delegated(tokens.two, 'agent-b'), action: { name: 'read' }, resource: doc('doc-2') }, { 'Deputy-Receipt': 'request' });
    expect(permit.body).toMatchObject({ decision: true });
    expect(permit.status).toBe(200);
    expect(permit.body).toMatchObject({ decision: true, context: { receipt: { agent: 'agent-b', id: expect.any(String), seq: expect.any(Number) } } });
    expect(permit.headers.get('deputy-receipt-id')).toBe(permit.body.context.receipt.id);
    const deny = await h.post('/access/v1/evaluation', { subject: delegated(tokens.two), action: { name: 'read' }, resource: doc('doc-4') }, { 'Deputy-Receipt': 'request' });
    expect(deny.body).toMatchObject({ decision: false, context: { receipt: { agent: 'agent-b' } } });

    const lines = await exportChain('agent-b');
    expect(lines.length).toBe(before + 2);
    const [p, d] = lines.slice(-2).map(claims);
    expect(p).toMatchObject({ event: 'access_evaluation', action: 'read', decision: 'permit', chain: ['agent-a', 'agent-b'], jti: permit.body.context.receipt.id });
    expect(d).toMatchObject({ event: 'access_evaluation', decision: 'deny', seq: (p!.seq as number) + 1 });
    expect(d!.reason).toEqual(expect.any(String));
    const text = JSON.stringify(lines.slice(-2));
    for (const t of [tokens.two, tokens.handToB]) expect(text).not.toContain(t.split('.')[2]!);
  });

  it('without the header writes nothing; a plain subject or a bad header value is a 400', async () => {
    const before = (await exportChain('agent-b')).length;
    expect((await h.post('/access/v1/evaluation', { subject: delegated(tokens.two, 'agent-b'), action: { name: 'read' }, resource: doc('doc-2') })).body).toEqual({ decision: true });
    expect((await exportChain('agent-b')).length).toBe(before);
    const plain = await h.post('/access/v1/evaluation', { subject: { type: 'User', id: ALICE.email, properties: { email: ALICE.email } }, action: { name: 'read' }, resource: doc('doc-2') }, { 'Deputy-Receipt': 'request' });
    expect(plain.status).toBe(400);
    const bad = await h.post('/access/v1/evaluation', { subject: delegated(tokens.two, 'agent-b'), action: { name: 'read' }, resource: doc('doc-2') }, { 'Deputy-Receipt': 'yes please' });
    expect(bad.status).toBe(400);
  });

  it('a body that is not I-JSON (a lone surrogate, RFC 7493 §2.1) is a 400 invalid_request and writes nothing: RFC 8785 has no text for it', async () => {
    const before = (await exportChain('agent-b')).length;
    for (const odd of ['\ud800', 'x\udfffy']) {
      const res = await h.post('/access/v1/evaluation', { subject: delegated(tokens.two, 'agent-b'), action: { name: 'read' }, resource: doc('doc-2'), context: { note: odd } }, { 'Deputy-Receipt': 'request' });
      expect(res.status).toBe(400);
      expect(res.body).toMatchObject({ error: 'invalid_request' });
    }
    expect((await exportChain('agent-b')).length).toBe(before);
    // Without a receipt asked for there is no digest; in an id Cedar is given (a 500 before) or an
    // action name the input is bad: a deny naming it (invalid_input), single and batch, never a 500.
    const odd = 'x\udfffy';
    // Every other caller value likewise, whether or not a policy reads it: context (values and
    // member names, however deep), action.properties, resource.properties.
    const bodies = [
      { subject: delegated(tokens.two, 'agent-b'), action: { name: 'read' }, resource: { ...doc('doc-2'), id: odd } },
      { subject: delegated(tokens.two, 'agent-b'), action: { name: odd }, resource: doc('doc-2') },
      { subject: delegated(tokens.two, 'agent-b'), action: { name: 'read' }, resource: doc('doc-2'), context: { note: odd } },
      { subject: delegated(tokens.two, 'agent-b'), action: { name: 'read' }, resource: doc('doc-2'), context: { a: [{ [odd]: 1 }] } },
      { subject: delegated(tokens.two, 'agent-b'), action: { name: 'read', properties: { why: odd } }, resource: doc('doc-2') },
      { subject: delegated(tokens.two, 'agent-b'), action: { name: 'read' }, resource: { ...doc('doc-2'), properties: { label: odd } } },
    ];
    for (const body of bodies) {
      const res = await h.post('/access/v1/evaluation', body);
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ decision: false, context: { id: 'invalid_input' } });
      const batch = await h.post('/access/v1/evaluations', { evaluations: [body, { ...body, resource: doc('doc-2'), action: { name: 'read' } }] });
      expect(batch.status).toBe(200);
      expect((batch.body as { evaluations: Array<{ decision: boolean }> }).evaluations[0]).toMatchObject({ decision: false });
    }
    expect((await h.post('/access/v1/evaluation', bodies[2]!)).body).toMatchObject({ context: { reason_admin: { en: 'context.note holds a lone surrogate (not I-JSON, RFC 7493 §2.1)' } } });
    // Search evaluates each candidate with the request's context: none is permitted with such a context.
    const search = { subject: delegated(tokens.two, 'agent-b'), action: { name: 'read' }, resource: { type: 'Document' } };
    expect(((await h.post('/access/v1/search/resource', search)).body.results as unknown[]).length).toBeGreaterThan(0);
    expect(await h.post('/access/v1/search/resource', { ...search, context: { note: odd } })).toMatchObject({ status: 200, body: { results: [] } });
    expect((await exportChain('agent-b')).length).toBe(before);
    // A well-formed astral character is ordinary text.
    const ok = await h.post('/access/v1/evaluation', { subject: delegated(tokens.two, 'agent-b'), action: { name: 'read' }, resource: doc('doc-2'), context: { note: '😀' } }, { 'Deputy-Receipt': 'request' });
    expect(ok.status).toBe(200);
  });
});

describe('links that are no longer valid', () => {
  it('a revoked link denies every token delegated from it (cascade), naming the revoked link', async () => {
    const subject = await userToken();
    const toB = (await exchange(agents['agent-a']!, { subject_token: subject, audience: handoff('agent-b'), scope: 'docs.read' })).access_token;
    const bToC = (await exchange(agents['agent-b']!, { subject_token: toB, audience: handoff('agent-c') })).access_token;
    const cToken = (await exchange(agents['agent-c']!, { subject_token: bToC, resource: DOCS })).access_token;
    expect((await ask(delegated(cToken), 'read', doc('doc-5'))).body).toEqual({ decision: true });

    const revoked = await authenticatedPost(`${h.deputy.url}/revoke`, h.deputy.issuer, h.admin, { token: bToC });
    expect(revoked.status).toBe(200);
    const { body } = await ask(delegated(cToken), 'read', doc('doc-5'));
    const ctx = denial(body, cToken);
    expect(ctx).toMatchObject({ id: 'invalid_chain', link: { position: 2, depth: 3, id: 'agent-b' } });
    expect(ctx.reason_admin.en).toMatch(/link 2 \(agent "agent-b"\) has been revoked/);
    // The earlier, unrevoked token of the same user is unaffected.
    expect((await ask(delegated(tokens.one), 'read', doc('doc-1'))).body).toEqual({ decision: true });
  });

  it('a link whose scopes are wider than its delegator\'s is refused (records tampered with in the store)', async () => {
    const subject = await userToken();
    const toB = (await exchange(agents['agent-a']!, { subject_token: subject, audience: handoff('agent-b'), scope: 'docs.read' })).access_token;
    const bToken = (await exchange(agents['agent-b']!, { subject_token: toB, resource: DOCS })).access_token;
    const jti = JSON.parse(Buffer.from(bToken.split('.')[1]!, 'base64url').toString()).jti as string;
    await h.deputy.store.query(`UPDATE token_records SET scope = 'docs.read docs.write' WHERE jti = $1`, [jti]);
    const { body } = await ask(delegated(bToken), 'read', doc('doc-5'));
    expect(denial(body)).toMatchObject({ id: 'invalid_chain', link: { position: 2, id: 'agent-b' } });
  });

  // Last: agent-b stays disabled.
  it('disabling an agent denies every chain through it, naming that agent\'s link', async () => {
    expect((await ask(delegated(tokens.three), 'read', doc('doc-5'))).body).toEqual({ decision: true });
    const res = await fetch(`${h.deputy.url}/admin/agents/agent-b/disable`, { method: 'POST', headers: { authorization: `Bearer ${h.adminToken}` } });
    expect(res.status).toBe(200);
    for (const token of [tokens.two, tokens.three]) {
      const { body } = await ask(delegated(token), 'read', doc('doc-5'));
      expect(denial(body, token)).toMatchObject({ id: 'invalid_chain', link: { position: 2, id: 'agent-b' } });
    }
    // A chain that does not go through agent-b is unaffected.
    expect((await ask(delegated(tokens.one), 'read', doc('doc-1'))).body).toEqual({ decision: true });
  });
});

