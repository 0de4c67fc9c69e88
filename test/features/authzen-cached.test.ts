/**
 * The PDP's cached path (src/http/authzen-cached.ts): a repeated AuthZEN request is answered
 * without the routes, byte for byte as the routes answered it, and never after anything the
 * decision depends on changed (agent token revoked, agent disabled, policies reloaded, tokens
 * expired) nor for a request the routes refuse (PEP token, malformed body, content type, size).
 */
import { request } from 'node:http';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { authenticatedPost, type TestAgent } from '../support/agents.js';
import { REPO, countEvaluations, startPdpHarness, type PdpHarness, chainAgents, chainTokens, delegated, doc, plainAlice } from '../support/authzen.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { decisionBasis, parseEvaluation } from '../../src/pdp/index.js';


let idp: MockIdp;
let h: PdpHarness;
let policies: string;
const agents: Record<string, TestAgent> = {};
const tokens = { one: '', three: '', handToB: '', handToC: '' };
/** Evaluations the routes made (the cached path makes none). */
let evaluatedSoFar: () => number;

beforeAll(async () => {
  idp = await startMockIdp();
  policies = mkdtempSync(join(tmpdir(), 'deputy-cached-policies-'));
  cpSync(`${REPO}test/fixtures/policies/chain`, policies, { recursive: true });
  const chain = await chainAgents();
  h = await startPdpHarness({
    policies,
    config: {
      trustedIssuers: [idp.issuerConfig('okta')],
      agents: chain.configs,
    },
  });
  const exchanged = await chainTokens(h.deputy.issuer, idp, chain.keys);
  Object.assign(agents, exchanged.agents);
  Object.assign(tokens, exchanged.tokens);
  // The PEP token's first use verifies it on the routes; from then on it is known to the cached path.
  expect((await h.post('/access/v1/evaluation', { subject: plain, action: { name: 'read' }, resource: doc('doc-6') })).status).toBe(200);
  evaluatedSoFar = countEvaluations(h);
});
afterAll(async () => {
  await h?.stop();
  await idp?.close();
  if (policies) rmSync(policies, { recursive: true, force: true });
});
afterEach(() => {
  vi.useRealTimers();
});

const plain = plainAlice;

interface Raw {
  status: number;
  headers: Record<string, string>;
  text: string;
}

/** POSTs `body` as is; the response's headers without `date` (and without the request id unless `keepId`). */
async function post(path: string, body: string, headers: Record<string, string> = {}, keepId = false): Promise<Raw> {
  const res = await fetch(`${h.deputy.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${h.pepToken}`, ...headers }, body });
  const all = Object.fromEntries([...res.headers.entries()].filter(([k]) => k !== 'date' && (keepId || k !== 'x-request-id')));
  return { status: res.status, headers: all, text: await res.text() };
}

/**
 * The routes' answer, then the same request again: the second must not reach the routes. (Tried
 * up to three times: an agent re-read by its cache while the first was answered changes the
 * basis, and the second then rightly goes to the routes.)
 */
async function twice(path: string, body: string, headers: Record<string, string> = {}, keepId = false): Promise<[Raw, Raw]> {
  for (let attempt = 1; ; attempt++) {
    const first = await post(path, body, headers, keepId);
    const before = evaluatedSoFar();
    const second = await post(path, body, headers, keepId);
    if (evaluatedSoFar() === before || attempt === 3) {
      expect(evaluatedSoFar(), 'the repeated request was answered from the cached path').toBe(before);
      return [first, second];
    }
  }
}

describe('a repeated request is answered from the cached path exactly as the routes answered it', () => {
  const cases: Array<[string, () => object]> = [
    ['plain subject', () => ({ subject: plain, action: { name: 'read' }, resource: doc('doc-1') })],
    ['one-link subject (permit)', () => ({ subject: delegated(tokens.one), action: { name: 'read' }, resource: doc('doc-1') })],
    ['one-link subject (deny with reasons)', () => ({ subject: delegated(tokens.one), action: { name: 'read' }, resource: doc('doc-4') })],
    ['three-link subject', () => ({ subject: delegated(tokens.three), action: { name: 'read' }, resource: doc('doc-1') })],
  ];
  it.each(cases)('POST /access/v1/evaluation, %s: status, headers and body bytes', async (_name, request) => {
    const [first, second] = await twice('/access/v1/evaluation', JSON.stringify(request()), { 'x-request-id': 'pep-req-1' }, true);
    expect(first.status).toBe(200);
    expect(second).toEqual(first);
    expect(second.headers['x-request-id']).toBe('pep-req-1');
    expect(second.headers).toMatchObject({ 'content-type': 'application/json; charset=utf-8', 'cache-control': expect.stringContaining('no-store'), 'access-control-allow-origin': '*' });
  });

  it('the raw response: header names, values and order, and the body bytes', async () => {
    const body = JSON.stringify({ subject: delegated(tokens.one), action: { name: 'read' }, resource: doc('doc-2') });
    const rawPost = () =>
      new Promise<{ status: number; headers: string[]; body: Buffer }>((resolve, reject) => {
        const headers = { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), authorization: `Bearer ${h.pepToken}`, 'x-request-id': 'raw-1' };
        const req = request(`${h.deputy.url}/access/v1/evaluation`, { method: 'POST', headers }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c)).on('end', () => resolve({ status: res.statusCode!, headers: res.rawHeaders.filter((_, i, all) => all[i - (i % 2)] !== 'Date'), body: Buffer.concat(chunks) }));
        });
        req.on('error', reject).end(body);
      });
    const first = await rawPost();
    const before = evaluatedSoFar();
    const second = await rawPost();
    expect(evaluatedSoFar()).toBe(before);
    expect(second).toEqual(first);
  });

  it.each(cases)('POST /access/v1/evaluations (single in batch clothing), %s', async (_name, request) => {
    const [first, second] = await twice('/access/v1/evaluations', JSON.stringify(request()));
    expect(first.status).toBe(200);
    expect(second).toEqual(first);
  });

  it('a batch (one invalid item, short-circuit semantics) and a fresh request id per request', async () => {
    const body = JSON.stringify({
      subject: delegated(tokens.one),
      action: { name: 'read' },
      evaluations: [{ resource: doc('doc-1') }, { resource: { type: 'Document' } }, { resource: doc('doc-4') }, { resource: doc('doc-2') }],
      options: { evaluations_semantic: 'deny_on_first_deny' },
    });
    const first = await post('/access/v1/evaluations', body, {}, true);
    const second = await post('/access/v1/evaluations', body, {}, true);
    expect(second.text).toBe(first.text);
    expect(JSON.parse(second.text).evaluations.length).toBeGreaterThan(1);
    expect(second.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(second.headers['x-request-id']).not.toBe(first.headers['x-request-id']);
  });

  it('a cached decision still counts in deputy_* metrics (request and decision)', async () => {
    const body = JSON.stringify({ subject: plain, action: { name: 'read' }, resource: doc('doc-2') });
    await post('/access/v1/evaluation', body);
    const count = async () => {
      const text = await (await fetch(`${h.deputy.url}/metrics`, { headers: { authorization: `Bearer ${h.adminToken}` } })).text();
      const http = text.match(/deputy_http_requests_total\{route="\/access\/v1\/evaluation",method="POST",status="200"\} (\d+)/);
      const decisions = text.match(/deputy_pdp_decisions_total\{decision="permit",source="evaluation"\} (\d+)/);
      return [Number(http?.[1]), Number(decisions?.[1])];
    };
    const [httpBefore, decisionsBefore] = await count();
    await twice('/access/v1/evaluation', body);
    const [httpAfter, decisionsAfter] = await count();
    expect(httpAfter! - httpBefore!).toBe(2);
    expect(decisionsAfter! - decisionsBefore!).toBe(2);
  });
});

describe('requests the routes refuse are refused the same way with their answer remembered', () => {
  const body = () => JSON.stringify({ subject: delegated(tokens.one), action: { name: 'read' }, resource: doc('doc-2') });

  it('no PEP token, a forged one, an admin token: 401 every time', async () => {
    await twice('/access/v1/evaluation', body());
    const [, payload] = h.pepToken.split('.');
    for (const authorization of [undefined, `Bearer ${h.pepToken.slice(0, -4)}AAAA`, `Bearer x.${payload}.y`, `Bearer ${h.adminToken}`]) {
      const res = await post('/access/v1/evaluation', body(), authorization === undefined ? { authorization: '' } : { authorization });
      expect(res.status).toBe(401);
      expect(res.headers['www-authenticate']).toBeDefined();
    }
  });

  it('malformed JSON, bad UTF-8, wrong content type, an oversized body: the routes\' errors', async () => {
    await twice('/access/v1/evaluation', body());
    const broken = await post('/access/v1/evaluation', `${body().slice(0, -1)}`);
    expect(broken.status).toBe(400);
    expect(JSON.parse(broken.text)).toMatchObject({ error: 'invalid_request' });
    const utf8 = await fetch(`${h.deputy.url}/access/v1/evaluation`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${h.pepToken}` }, body: Buffer.from([0x7b, 0xff, 0x7d]) });
    expect(utf8.status).toBe(400);
    expect((await post('/access/v1/evaluation', body(), { 'content-type': 'text/plain' })).status).toBe(400);
    const large = await post('/access/v1/evaluation', JSON.stringify({ pad: 'x'.repeat(h.deputy.config.server.bodyLimitBytes) }));
    expect(large.status).toBe(413);
  });

  it('a receipt request is never answered from the cached path', async () => {
    const [first] = await twice('/access/v1/evaluation', body());
    const before = evaluatedSoFar();
    const res = await post('/access/v1/evaluation', body(), { 'deputy-receipt': 'request' });
    expect(evaluatedSoFar()).toBe(before + 1);
    expect(res.headers['deputy-receipt-id']).toBeDefined();
    expect(JSON.parse(res.text).context.receipt).toBeDefined();
    expect(first.headers['deputy-receipt-id']).toBeUndefined();
  });
});

describe('nothing the decision depends on changes without the cached answer changing', () => {
  it('a revoked link of the subject token: deny at once, from the routes', async () => {
    const body = JSON.stringify({ subject: delegated(tokens.three), action: { name: 'read' }, resource: doc('doc-5') });
    const [first] = await twice('/access/v1/evaluation', body);
    expect(JSON.parse(first.text).decision).toBe(true);
    expect((await authenticatedPost(`${h.deputy.url}/revoke`, h.deputy.issuer, h.admin, { token: tokens.handToC })).status).toBe(200);
    const after = await post('/access/v1/evaluation', body);
    expect(JSON.parse(after.text)).toMatchObject({ decision: false, context: { id: 'invalid_chain' } });
  });

  it('a policy reload: the new policy set decides', async () => {
    const body = JSON.stringify({ subject: plain, action: { name: 'read' }, resource: doc('doc-5') });
    const [first] = await twice('/access/v1/evaluation', body);
    expect(JSON.parse(first.text).decision).toBe(true);
    const file = join(policies, 'chain.cedar');
    writeFileSync(file, `${readFileSync(file, 'utf8')}\n@id("no-doc-5")\nforbid (principal, action, resource == Document::"doc-5");\n`);
    const reload = await fetch(`${h.deputy.url}/admin/policies/reload`, { method: 'POST', headers: { authorization: `Bearer ${h.adminToken}` } });
    expect(reload.status).toBe(200);
    const after = await post('/access/v1/evaluation', body);
    expect(JSON.parse(after.text)).toMatchObject({ decision: false, context: { id: 'forbidden' } });
  });

  it('an expired subject token has no decision basis (nothing is reused), and an expired PEP token is refused', async () => {
    const body = JSON.stringify({ subject: delegated(tokens.one), action: { name: 'read' }, resource: doc('doc-1') });
    await twice('/access/v1/evaluation', body);
    const input = parseEvaluation(JSON.parse(body));
    expect(await decisionBasis(h.deputy.pdp.pdp, [input])).toBeDefined();
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() + 24 * 3600_000);
    expect(await decisionBasis(h.deputy.pdp.pdp, [input])).toBeUndefined();
    expect((await post('/access/v1/evaluation', body)).status).toBe(401);
  });

  // Last: agent-a stays disabled.
  it('a disabled agent: deny at once, from the routes', async () => {
    const body = JSON.stringify({ subject: delegated(tokens.one), action: { name: 'read' }, resource: doc('doc-1') });
    const [first] = await twice('/access/v1/evaluation', body);
    expect(JSON.parse(first.text).decision).toBe(true);
    const res = await fetch(`${h.deputy.url}/admin/agents/agent-a/disable`, { method: 'POST', headers: { authorization: `Bearer ${h.adminToken}` } });
    expect(res.status).toBe(200);
    const after = await post('/access/v1/evaluation', body);
    expect(JSON.parse(after.text)).toMatchObject({ decision: false, context: { id: 'invalid_chain' } });
  });
});
