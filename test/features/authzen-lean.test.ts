/**
 * The PDP's lean path (src/http/authzen-lean.ts): with the decision cache off, an AuthZEN
 * evaluation is evaluated and answered before Koa, byte for byte as the routes answer it (the
 * same request with a query string goes to the routes), counted in the same metrics; bad input
 * (malformed, oversized, too deep, an expired or forged PEP token) and a failing evaluation are
 * left to the routes, which refuse them; a revoked link or a disabled agent denies at once.
 */
import { request } from 'node:http';
import Koa from 'koa';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { agentConfig, authenticatedPost, exchange, testAgent, type TestAgent } from '../support/agents.js';
import { REPO, countEvaluations, startPdpHarness, type PdpHarness } from '../support/authzen.js';
import { clientKeys, type ClientKeys } from '../support/clients.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';

const DOCS = 'https://docs.example.com';
const handoff = (id: string) => `urn:deputy:agent:${id}`;
const ALICE = { uid: '00ualice00000000001', email: 'alice@example.com' };

let idp: MockIdp;
let h: PdpHarness;
const agents: Record<string, TestAgent> = {};
const tokens = { one: '', three: '', handToB: '', handToC: '' };
let evaluatedSoFar: () => number;
/** Koa contexts built so far (a request answered on the lean path builds none). */
let koaContexts: () => number;

beforeAll(async () => {
  idp = await startMockIdp();
  const keys: Record<string, ClientKeys> = {};
  for (const id of ['agent-a', 'agent-b', 'agent-c']) keys[id] = await clientKeys();
  h = await startPdpHarness({
    policies: `${REPO}test/fixtures/policies/chain`,
    config: {
      pdp: { policies: `${REPO}test/fixtures/policies/chain`, decisionCacheSize: 0 },
      trustedIssuers: [idp.issuerConfig('okta')],
      agents: [
        agentConfig('agent-a', keys['agent-a']!, { scopes: ['docs.read'], audiences: [DOCS, handoff('agent-b')], maxDelegationDepth: 3 }),
        agentConfig('agent-b', keys['agent-b']!, { scopes: ['docs.read'], audiences: [DOCS, handoff('agent-c')], maxDelegationDepth: 3 }),
        agentConfig('agent-c', keys['agent-c']!, { scopes: ['docs.read'], audiences: [DOCS], maxDelegationDepth: 3 }),
      ],
    },
  });
  for (const id of Object.keys(keys)) agents[id] = await testAgent(h.deputy.issuer, id, keys[id]!);
  const user = await idp.oktaAccessToken({ uid: ALICE.uid, email: ALICE.email, scp: ['openid', 'docs.read'] });
  tokens.one = (await exchange(agents['agent-a']!, { subject_token: user, resource: DOCS, scope: 'docs.read' })).access_token;
  tokens.handToB = (await exchange(agents['agent-a']!, { subject_token: user, audience: handoff('agent-b'), scope: 'docs.read' })).access_token;
  tokens.handToC = (await exchange(agents['agent-b']!, { subject_token: tokens.handToB, audience: handoff('agent-c') })).access_token;
  tokens.three = (await exchange(agents['agent-c']!, { subject_token: tokens.handToC, resource: DOCS })).access_token;
  // The PEP token's first use verifies it on the routes; the next answer on each path teaches the lean path its head.
  const warm = { subject: plain, action: { name: 'read' }, resource: doc('doc-6') };
  for (const path of ['/access/v1/evaluation', '/access/v1/evaluation', '/access/v1/evaluations']) expect((await h.post(path, warm)).status).toBe(200);
  evaluatedSoFar = countEvaluations(h);
  const spy = vi.spyOn(Koa.prototype, 'createContext');
  koaContexts = () => spy.mock.calls.length;
});
afterAll(async () => {
  vi.restoreAllMocks();
  await h?.stop();
  await idp?.close();
});
afterEach(() => {
  vi.useRealTimers();
});

const subOf = (token: string): string => JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).sub;
const delegated = (token: string) => ({ type: 'User', id: subOf(token), properties: { token } });
const plain = { type: 'User', id: ALICE.email, properties: { email: ALICE.email } };
const doc = (id: string) => ({ type: 'Document', id, properties: {} });

interface Raw {
  status: number;
  /** Raw header names and values in order, without `Date`. */
  headers: string[];
  body: string;
}

/** POSTs `body` (bytes as given) with a fixed request id; the raw answer. */
function post(path: string, body: string | Buffer, headers: Record<string, string> = {}): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const all = { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), authorization: `Bearer ${h.pepToken}`, 'x-request-id': 'lean-1', ...headers };
    const req = request(`${h.deputy.url}${path}`, { method: 'POST', headers: all }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c)).on('end', () => resolve({ status: res.statusCode!, headers: res.rawHeaders.filter((_, i, raw) => raw[i - (i % 2)] !== 'Date'), body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject).end(body);
  });
}

/** The lean path's answer (no Koa context built), then the routes' answer to the same request (a query string sends it there). */
async function leanAndRouted(path: string, body: string | Buffer, headers: Record<string, string> = {}): Promise<{ lean: Raw; routed: Raw; koa: number }> {
  const before = koaContexts();
  const lean = await post(path, body, headers);
  const koa = koaContexts() - before;
  const routed = await post(`${path}?routes`, body, headers);
  expect(koaContexts() - before - koa, 'the query string went to the routes').toBe(1);
  return { lean, routed, koa };
}

const header = (raw: Raw, name: string): string | undefined => raw.headers[raw.headers.findIndex((v, i) => i % 2 === 0 && v.toLowerCase() === name) + 1];

describe('an evaluation is answered before Koa exactly as the routes answer it', () => {
  const cases: Array<[string, () => object]> = [
    ['plain subject', () => ({ subject: plain, action: { name: 'read' }, resource: doc('doc-1') })],
    ['one-link subject (permit)', () => ({ subject: delegated(tokens.one), action: { name: 'read' }, resource: doc('doc-1') })],
    ['one-link subject (deny with reasons)', () => ({ subject: delegated(tokens.one), action: { name: 'read' }, resource: doc('doc-4') })],
    ['three-link subject', () => ({ subject: delegated(tokens.three), action: { name: 'read' }, resource: doc('doc-1') })],
    ['three-link subject, a forbidden action', () => ({ subject: delegated(tokens.three), action: { name: 'delete' }, resource: doc('doc-1') })],
  ];

  it.each(cases)('POST /access/v1/evaluation, %s: status, header names, values and order, body bytes', async (_name, body) => {
    const evaluations = evaluatedSoFar();
    const { lean, routed, koa } = await leanAndRouted('/access/v1/evaluation', JSON.stringify(body()));
    expect(koa).toBe(0);
    expect(evaluatedSoFar() - evaluations).toBe(2);
    expect(lean.status).toBe(200);
    expect(lean).toEqual(routed);
    expect(header(lean, 'x-request-id')).toBe('lean-1');
    expect(header(lean, 'access-control-allow-origin')).toBe('*');
  });

  it.each(cases)('POST /access/v1/evaluations (single in batch clothing), %s', async (_name, body) => {
    const { lean, routed, koa } = await leanAndRouted('/access/v1/evaluations', JSON.stringify(body()));
    expect(koa).toBe(0);
    expect(lean).toEqual(routed);
  });

  it('a batch with an invalid item and short-circuit semantics', async () => {
    const body = JSON.stringify({
      subject: delegated(tokens.one),
      action: { name: 'read' },
      evaluations: [{ resource: doc('doc-1') }, { resource: { type: 'Document' } }, { resource: doc('doc-4') }, { resource: doc('doc-2') }],
      options: { evaluations_semantic: 'deny_on_first_deny' },
    });
    const { lean, routed, koa } = await leanAndRouted('/access/v1/evaluations', body);
    expect(koa).toBe(0);
    expect(lean).toEqual(routed);
    expect(JSON.parse(lean.body).evaluations.length).toBeGreaterThan(1);
  });

  it('no request id: a fresh one per request, as the routes give', async () => {
    const body = JSON.stringify({ subject: plain, action: { name: 'read' }, resource: doc('doc-2') });
    const first = await post('/access/v1/evaluation', body, { 'x-request-id': '' });
    const second = await post('/access/v1/evaluation', body, { 'x-request-id': '' });
    expect(header(first, 'x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    expect(header(second, 'x-request-id')).not.toBe(header(first, 'x-request-id'));
    expect(second.body).toBe(first.body);
  });

  it('counts the request and its decision in deputy_* metrics, as the routes do', async () => {
    const body = JSON.stringify({ subject: plain, action: { name: 'read' }, resource: doc('doc-2') });
    const count = async () => {
      const text = await (await fetch(`${h.deputy.url}/metrics`, { headers: { authorization: `Bearer ${h.adminToken}` } })).text();
      const http = text.match(/deputy_http_requests_total\{route="\/access\/v1\/evaluation",method="POST",status="200"\} (\d+)/);
      const decisions = text.match(/deputy_pdp_decisions_total\{decision="permit",source="evaluation"\} (\d+)/);
      return [Number(http?.[1]), Number(decisions?.[1])];
    };
    const [httpBefore, decisionsBefore] = await count();
    const { koa } = await leanAndRouted('/access/v1/evaluation', body);
    expect(koa).toBe(0);
    const [httpAfter, decisionsAfter] = await count();
    expect(httpAfter! - httpBefore!).toBe(2);
    expect(decisionsAfter! - decisionsBefore!).toBe(2);
  });

  it('logs the access line as the routes do', async () => {
    const seen = h.deputy.logs.length;
    await post('/access/v1/evaluation', JSON.stringify({ subject: plain, action: { name: 'read' }, resource: doc('doc-3') }), { 'x-request-id': 'lean-log-1' });
    const lines = h.deputy.logs.slice(seen).map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.reqId === 'lean-log-1');
    expect(lines).toContainEqual(expect.objectContaining({ msg: 'request', method: 'POST', path: '/access/v1/evaluation', status: 200 }));
  });
});

describe('what the lean path does not answer is left to the routes, which refuse it as before', () => {
  const valid = () => JSON.stringify({ subject: delegated(tokens.one), action: { name: 'read' }, resource: doc('doc-2') });
  const refusals: Array<[string, () => string | Buffer, Record<string, string>, number]> = [
    ['malformed JSON', () => valid().slice(0, -1), {}, 400],
    ['bad UTF-8', () => Buffer.from([0x7b, 0xff, 0x7d]), {}, 400],
    ['an empty object (no subject)', () => '{}', {}, 400],
    ['a missing resource id', () => JSON.stringify({ subject: plain, action: { name: 'read' }, resource: { type: 'Document' } }), {}, 400],
    ['JSON nested too deep', () => `${'['.repeat(200)}${']'.repeat(200)}`, {}, 400],
    ['a wrong content type', valid, { 'content-type': 'text/plain' }, 400],
    ['a forged PEP token', valid, { authorization: `Bearer ${'x'.repeat(20)}.${'y'.repeat(20)}.zz` }, 401],
    ['no PEP token', valid, { authorization: '' }, 401],
  ];

  it.each(refusals)('%s: the routes\' error, the same on both paths', async (_name, body, headers, status) => {
    const evaluations = evaluatedSoFar();
    const { lean, routed, koa } = await leanAndRouted('/access/v1/evaluation', body(), headers);
    expect(koa).toBe(1);
    expect(lean.status).toBe(status);
    expect(lean).toEqual(routed);
    expect(evaluatedSoFar()).toBe(evaluations);
  });

  it('an oversized body: 413 from the routes', async () => {
    const res = await post('/access/v1/evaluation', JSON.stringify({ pad: 'x'.repeat(h.deputy.config.server.bodyLimitBytes) }));
    expect(res.status).toBe(413);
  });

  it('an expired PEP token: 401 from the routes, not an answer', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() + 24 * 3600_000);
    const before = koaContexts();
    const res = await post('/access/v1/evaluation', valid());
    expect(res.status).toBe(401);
    expect(koaContexts() - before).toBe(1);
  });

  it('an evaluation that fails (a store away) is evaluated again by the routes, which answer or render the error', async () => {
    const pdp = h.deputy.pdp.pdp;
    const evaluate = pdp.evaluate;
    let failures = 1;
    pdp.evaluate = (...args) => (failures-- > 0 ? Promise.reject(new Error('store away')) : evaluate(...args));
    try {
      const before = koaContexts();
      const res = await post('/access/v1/evaluation', valid());
      expect(koaContexts() - before).toBe(1);
      expect(res.status).toBe(200);
      expect(JSON.parse(res.body)).toMatchObject({ decision: true });
      failures = 2;
      expect((await post('/access/v1/evaluation', valid())).status).toBe(500);
    } finally {
      pdp.evaluate = evaluate;
    }
  });

  it('a receipt request goes to the routes', async () => {
    const before = koaContexts();
    const res = await post('/access/v1/evaluation', valid(), { 'deputy-receipt': 'request' });
    expect(koaContexts() - before).toBe(1);
    expect(header(res, 'deputy-receipt-id')).toBeDefined();
  });
});

describe('the decision basis is read per request on the lean path too', () => {
  it('a revoked link of the subject token: deny at once', async () => {
    const body = JSON.stringify({ subject: delegated(tokens.three), action: { name: 'read' }, resource: doc('doc-5') });
    expect(JSON.parse((await post('/access/v1/evaluation', body)).body).decision).toBe(true);
    expect((await authenticatedPost(`${h.deputy.url}/revoke`, h.deputy.issuer, h.admin, { token: tokens.handToC })).status).toBe(200);
    const { lean, routed, koa } = await leanAndRouted('/access/v1/evaluation', body);
    expect(koa).toBe(0);
    expect(lean).toEqual(routed);
    expect(JSON.parse(lean.body)).toMatchObject({ decision: false, context: { id: 'invalid_chain' } });
  });

  it('a disabled agent: deny at once', async () => {
    const body = JSON.stringify({ subject: delegated(tokens.one), action: { name: 'read' }, resource: doc('doc-1') });
    expect(JSON.parse((await post('/access/v1/evaluation', body)).body).decision).toBe(true);
    const res = await fetch(`${h.deputy.url}/admin/agents/agent-a/disable`, { method: 'POST', headers: { authorization: `Bearer ${h.adminToken}` } });
    expect(res.status).toBe(200);
    const { lean, routed, koa } = await leanAndRouted('/access/v1/evaluation', body);
    expect(koa).toBe(0);
    expect(lean).toEqual(routed);
    expect(JSON.parse(lean.body)).toMatchObject({ decision: false, context: { id: 'invalid_chain' } });
  });
});
