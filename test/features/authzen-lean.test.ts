/**
 * The PDP's lean path (src/http/authzen-lean.ts): with the decision cache off, an AuthZEN
 * evaluation is evaluated and answered before Koa, byte for byte as the routes answer it (the
 * same request with a query string goes to the routes), counted in the same metrics; bad input
 * (malformed, oversized, too deep, an expired or forged PEP token) is left to the routes, which
 * refuse it, and a failing evaluation is rendered by them without a second evaluation; a revoked
 * link or a disabled agent denies at once.
 */
import { appendFileSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { metrics } from '../../src/observability/metrics.js';
import { authenticatedPost, type TestAgent } from '../support/agents.js';
import { REPO, countEvaluations, countKoaContexts, evaluationCounts, holdPepTokenLive, rawExchange, rawPost, startPdpHarness, type PdpHarness, type RawAnswer, chainAgents, chainTokens, delegated, doc, plainAlice } from '../support/authzen.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';


let idp: MockIdp;
let h: PdpHarness;
/** The chain fixture plus an `export` action whose context declares `purpose` and `action.method` (the member-context memo's inputs). */
let policies: string;
const agents: Record<string, TestAgent> = {};
const tokens = { one: '', three: '', handToB: '', handToC: '' };
let evaluatedSoFar: () => number;
/** Koa contexts built so far for `/access/…` (a request answered on the lean path builds none). */
let koaContexts: () => number;

beforeAll(async () => {
  idp = await startMockIdp();
  const chain = await chainAgents();
  policies = mkdtempSync(join(tmpdir(), 'deputy-lean-'));
  cpSync(`${REPO}test/fixtures/policies/chain`, policies, { recursive: true });
  appendFileSync(join(policies, 'schema.cedarschema'), '\naction export appliesTo { principal: [User, Agent], resource: [Document], context: { chain: Chain, purpose?: String, action?: { method?: String } } };\n');
  appendFileSync(join(policies, 'chain.cedar'), [
    '\n@id("no-resale")\nforbid (principal, action == Action::"export", resource) when { context has purpose && context.purpose == "resale" };',
    '@id("no-export-by-delete")\nforbid (principal, action == Action::"export", resource) when { context has action && context.action has method && context.action.method == "DELETE" };\n',
  ].join('\n'));
  h = await startPdpHarness({
    policies,
    config: {
      pdp: { policies, decisionCacheSize: 0 },
      trustedIssuers: [idp.issuerConfig('okta')],
      agents: chain.configs,
    },
  });
  const exchanged = await chainTokens(h.deputy.issuer, idp, chain.keys);
  Object.assign(agents, exchanged.agents);
  Object.assign(tokens, exchanged.tokens);
  // The PEP token's first use verifies it on the routes; the next answer on each path teaches the lean path its head.
  const warm = { subject: plain, action: { name: 'read' }, resource: doc('doc-6') };
  for (const path of ['/access/v1/evaluation', '/access/v1/evaluation', '/access/v1/evaluations']) expect((await h.post(path, warm)).status).toBe(200);
  evaluatedSoFar = countEvaluations(h);
  // This file's PEP token is never revoked: its "not revoked" answer is held fresh, so that what
  // is asserted is the lean path's answer.
  holdPepTokenLive(h);
  koaContexts = countKoaContexts();
});
afterAll(async () => {
  vi.restoreAllMocks();
  await h?.stop();
  await idp?.close();
  if (policies) rmSync(policies, { recursive: true, force: true });
});
afterEach(() => {
  vi.useRealTimers();
});

const plain = plainAlice;

type Raw = RawAnswer;

/** POSTs `body` (bytes as given) with a fixed request id; the raw answer. */
const post = (path: string, body: string | Buffer, headers: Record<string, string> = {}): Promise<Raw> => rawPost(h, path, body, headers);

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
    const count = () => evaluationCounts(h);
    const [httpBefore, decisionsBefore] = await count();
    const { koa } = await leanAndRouted('/access/v1/evaluation', body);
    expect(koa).toBe(0);
    const [httpAfter, decisionsAfter] = await count();
    expect(httpAfter - httpBefore).toBe(2);
    expect(decisionsAfter - decisionsBefore).toBe(2);
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

  it('an evaluation that fails (a store away) is not evaluated again: the routes render its failure, as they would alone', async () => {
    const pdp = h.deputy.pdp.pdp;
    const evaluate = pdp.evaluate;
    let calls = 0;
    pdp.evaluate = () => (calls++, Promise.reject(new Error('store away')));
    try {
      const before = koaContexts();
      const { lean, routed } = await leanAndRouted('/access/v1/evaluation', valid());
      expect(koaContexts() - before).toBe(2);
      expect(lean.status).toBe(500);
      expect(lean).toEqual(routed);
      expect(calls, 'one evaluation per request, as on the routes alone').toBe(2);
    } finally {
      pdp.evaluate = evaluate;
    }
  });

  it('a batch whose later item fails: the earlier decisions are made and counted once, as on the routes alone', async () => {
    const pdp = h.deputy.pdp.pdp;
    const evaluate = pdp.evaluate;
    const calls: string[] = [];
    pdp.evaluate = (...args) => {
      const id = args[0].resource.id;
      calls.push(id);
      return id === 'doc-fail' ? Promise.reject(new Error('store away')) : evaluate(...args);
    };
    const permits = async () => {
      const text = await (await fetch(`${h.deputy.url}/metrics`, { headers: { authorization: `Bearer ${h.adminToken}` } })).text();
      return Number(text.match(/deputy_pdp_decisions_total\{decision="permit",source="evaluation"\} (\d+)/)?.[1]);
    };
    try {
      const body = JSON.stringify({ subject: delegated(tokens.one), action: { name: 'read' }, evaluations: [{ resource: doc('doc-1') }, { resource: doc('doc-fail') }] });
      const before = await permits();
      const lean = await post('/access/v1/evaluations', body);
      const afterLean = await permits();
      const routed = await post('/access/v1/evaluations?routes', body);
      expect(lean.status).toBe(500);
      expect(lean).toEqual(routed);
      expect(calls).toEqual(['doc-1', 'doc-fail', 'doc-1', 'doc-fail']);
      expect(afterLean - before).toBe(1);
      expect((await permits()) - afterLean).toBe(1);
    } finally {
      pdp.evaluate = evaluate;
    }
  });

  it('a failure after the answer was written (recording it) does not hand the request to Koa', async () => {
    const evaluations = evaluatedSoFar();
    const before = koaContexts();
    const inc = vi.spyOn(metrics.httpRequests, 'inc').mockImplementationOnce(() => {
      throw new Error('recording failed');
    });
    try {
      const res = await post('/access/v1/evaluation', valid());
      expect(res.status).toBe(200);
      expect(JSON.parse(res.body)).toMatchObject({ decision: true });
      expect(inc).toHaveBeenCalled();
    } finally {
      inc.mockRestore();
    }
    // One more request on the same server: nothing was left running on the first one.
    expect((await post('/access/v1/evaluation', valid())).status).toBe(200);
    expect(koaContexts() - before).toBe(0);
    expect(evaluatedSoFar() - evaluations).toBe(2);
  });

  it('a receipt request goes to the routes', async () => {
    const before = koaContexts();
    const res = await post('/access/v1/evaluation', valid(), { 'deputy-receipt': 'request' });
    expect(koaContexts() - before).toBe(1);
    expect(header(res, 'deputy-receipt-id')).toBeDefined();
  });
});


describe('over raw HTTP/1.x, the lean path\'s bytes are the routes\' bytes', () => {
  const evaluation = () => JSON.stringify({ subject: delegated(tokens.one), action: { name: 'read' }, resource: doc('doc-1') });
  const head = (path: string, body: string, extra: string[] = [], version = '1.1') =>
    [`POST ${path} HTTP/${version}`, 'Host: 127.0.0.1', 'Content-Type: application/json', `Content-Length: ${Buffer.byteLength(body)}`, `Authorization: Bearer ${h.pepToken}`, 'X-Request-ID: raw-1', ...extra, '', ''].join('\r\n');
  /** Each case: the parts to send for `path`, and how many Koa contexts the lean path may build. */
  const cases: Array<[string, (path: string) => Array<{ bytes: string; waitFor?: string }>, number]> = [
    ['HTTP/1.0 without keep-alive', (path) => [{ bytes: head(path, evaluation(), [], '1.0') + evaluation() }], 0],
    ['HTTP/1.0 with keep-alive, then close', (path) => [{ bytes: head(path, evaluation(), ['Connection: keep-alive'], '1.0') + evaluation() }, { bytes: head(path, evaluation(), [], '1.0') + evaluation(), waitFor: '"decision"' }], 0],
    ['Connection: close', (path) => [{ bytes: head(path, evaluation(), ['Connection: close']) + evaluation() }], 0],
    ['a cross-origin request (Origin) and a trace header', (path) => [{ bytes: head(path, evaluation(), ['Origin: https://evil.example', 'traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', 'Cookie: a=b', 'Connection: close']) + evaluation() }], 0],
    ['Expect: 100-continue, the body after the interim answer', (path) => [{ bytes: head(path, evaluation(), ['Expect: 100-continue', 'Connection: close']) }, { bytes: evaluation(), waitFor: '100 Continue\r\n\r\n' }], 0],
    ['a body split across writes', (path) => [{ bytes: head(path, evaluation(), ['Connection: close']) + evaluation().slice(0, 7) }, { bytes: evaluation().slice(7, 40) }, { bytes: evaluation().slice(40) }], 0],
    ['two pipelined evaluations', (path) => [{ bytes: head(path, evaluation()) + evaluation() + head(path, evaluation(), ['Connection: close']).replace('raw-1', 'raw-2') + evaluation() }], 0],
    ['a malformed body pipelined before an evaluation', (path) => [{ bytes: head(path, '{"subject"') + '{"subject"' + head(path, evaluation(), ['Connection: close']).replace('raw-1', 'raw-2') + evaluation() }], 1],
  ];

  it.each(cases)('%s', async (_name, parts, contexts) => {
    const before = koaContexts();
    const lean = await rawExchange(h, parts('/access/v1/evaluation'));
    expect(koaContexts() - before).toBe(contexts);
    const routed = await rawExchange(h, parts('/access/v1/evaluation?routes'));
    expect(lean).toMatch(/^HTTP\/1\.1 (100|200|400) /);
    expect(lean).toBe(routed);
    expect(lean).not.toMatch(/evil\.example|0af7651916cd43dd8448eb211c80319c|Set-Cookie|a=b/i);
  });
});

describe('a delegated member\'s memoised context never answers a request that brings its own', () => {
  const exportDoc = (extra: { context?: object; action?: object } = {}) =>
    JSON.stringify({ subject: delegated(tokens.three), action: { name: 'export', ...extra.action }, resource: doc('doc-5'), ...(extra.context ? { context: extra.context } : {}) });
  const decision = async (body: string) => JSON.parse((await post('/access/v1/evaluation', body)).body) as { decision: boolean; context?: { id?: string } };

  it('request context and action properties, interleaved with bare requests by the same token, on both paths', async () => {
    const sequence: Array<[string, boolean]> = [
      [exportDoc(), true],
      [exportDoc({ context: { purpose: 'resale' } }), false],
      [exportDoc(), true],
      [exportDoc({ action: { properties: { method: 'DELETE' } } }), false],
      [exportDoc(), true],
      [exportDoc({ context: { purpose: 'research' } }), true],
      [exportDoc({ context: { purpose: 'resale' }, action: { properties: { method: 'GET' } } }), false],
    ];
    for (const [body, expected] of sequence) {
      const { lean, routed, koa } = await leanAndRouted('/access/v1/evaluation', body);
      expect(koa, `${lean.status} ${lean.body}`).toBe(0);
      expect(lean).toEqual(routed);
      expect(JSON.parse(lean.body).decision, body).toBe(expected);
    }
  });

  it('a batch: items with and without their own context, the top-level context inherited or replaced', async () => {
    const body = JSON.stringify({
      subject: delegated(tokens.three),
      action: { name: 'export' },
      resource: doc('doc-5'),
      evaluations: [{}, { context: { purpose: 'resale' } }, {}, { action: { name: 'export', properties: { method: 'DELETE' } } }, {}],
    });
    const { lean, routed } = await leanAndRouted('/access/v1/evaluations', body);
    expect(lean).toEqual(routed);
    expect(JSON.parse(lean.body).evaluations.map((e: { decision: boolean }) => e.decision)).toEqual([true, false, true, false, true]);
    const defaulted = JSON.stringify({ subject: delegated(tokens.three), action: { name: 'export' }, resource: doc('doc-5'), context: { purpose: 'resale' }, evaluations: [{}, { context: {} }] });
    expect(JSON.parse((await post('/access/v1/evaluations', defaulted)).body).evaluations.map((e: { decision: boolean }) => e.decision)).toEqual([false, true]);
  });

  it('a policy reload that forbids what the memo permitted: the next bare request is denied', async () => {
    expect((await decision(exportDoc())).decision).toBe(true);
    appendFileSync(join(policies, 'chain.cedar'), '\n@id("no-export-by-sub-agents")\nforbid (principal is Agent, action == Action::"export", resource) when { context.chain.position > 2 };\n');
    try {
      const reload = await fetch(`${h.deputy.url}/admin/policies/reload`, { method: 'POST', headers: { authorization: `Bearer ${h.adminToken}` } });
      expect(reload.status).toBe(200);
      const { lean, routed } = await leanAndRouted('/access/v1/evaluation', exportDoc());
      expect(lean).toEqual(routed);
      expect(JSON.parse(lean.body)).toMatchObject({ decision: false, context: { id: 'forbidden' } });
    } finally {
      const text = readFileSync(join(policies, 'chain.cedar'), 'utf8');
      writeFileSync(join(policies, 'chain.cedar'), text.slice(0, text.indexOf('\n@id("no-export-by-sub-agents")')));
      expect((await fetch(`${h.deputy.url}/admin/policies/reload`, { method: 'POST', headers: { authorization: `Bearer ${h.adminToken}` } })).status).toBe(200);
    }
    expect((await decision(exportDoc())).decision).toBe(true);
  });
});

describe('the decision basis is read per request on the lean path too', () => {
  it('a revoked link of the subject token: deny at once', async () => {
    const body = JSON.stringify({ subject: delegated(tokens.three), action: { name: 'read' }, resource: doc('doc-5') });
    expect(JSON.parse((await post('/access/v1/evaluation', body)).body).decision).toBe(true);
    expect((await authenticatedPost(`${h.deputy.url}/revoke`, h.deputy.issuer, h.admin, { token: tokens.handToC })).status).toBe(200);
    const { lean, routed, koa } = await leanAndRouted('/access/v1/evaluation', body);
    expect(koa, `${lean.status} ${lean.body}`).toBe(0);
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
