/**
 * The PDP's cached path (src/http/authzen-cached.ts): a repeated AuthZEN request is answered
 * without the routes, byte for byte as the routes answered it, and never after anything the
 * decision depends on changed (agent token revoked, agent disabled, policies reloaded, tokens
 * expired) nor for a request the routes refuse (PEP token, malformed body, content type, size).
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { authenticatedPost, type TestAgent } from '../support/agents.js';
import { REPO, countEvaluations, countKoaContexts, evaluationCounts, holdPepTokenLive, rawExchange, rawPost, startPdpHarness, type PdpHarness, chainAgents, chainTokens, delegated, doc, plainAlice } from '../support/authzen.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { decisionBasis, parseEvaluation } from '../../src/pdp/index.js';
import { AgentRegistry } from '../../src/agents/index.js';


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
    const first = await rawPost(h, '/access/v1/evaluation', body, { 'x-request-id': 'raw-1' });
    const before = evaluatedSoFar();
    const second = await rawPost(h, '/access/v1/evaluation', body, { 'x-request-id': 'raw-1' });
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
    const count = () => evaluationCounts(h);
    const [httpBefore, decisionsBefore] = await count();
    await twice('/access/v1/evaluation', body);
    const [httpAfter, decisionsAfter] = await count();
    expect(httpAfter - httpBefore).toBe(2);
    expect(decisionsAfter - decisionsBefore).toBe(2);
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

describe('a miss is evaluated before Koa (the lean path) and remembered as the routes\' answer is', () => {
  /** Koa contexts built for `/access/…` since this block's start. */
  let koaContexts: () => number;
  beforeAll(async () => {
    holdPepTokenLive(h);
    koaContexts = countKoaContexts();
    // The routes' next answer on each path (a miss) teaches the lean path its head.
    for (const [path, id] of [['/access/v1/evaluation', 'doc-7'], ['/access/v1/evaluations', 'doc-7']] as const) {
      expect((await h.post(path, { subject: plain, action: { name: 'read' }, resource: doc(id) })).status).toBe(200);
    }
  });
  afterAll(() => {
    vi.restoreAllMocks();
  });

  const cases: Array<[string, string, () => object]> = [
    ['/access/v1/evaluation', 'plain subject', () => ({ subject: plain, action: { name: 'read' }, resource: doc('doc-3') })],
    ['/access/v1/evaluation', 'one-link subject (permit)', () => ({ subject: delegated(tokens.one), action: { name: 'read' }, resource: doc('doc-3') })],
    ['/access/v1/evaluation', 'one-link subject (deny with reasons)', () => ({ subject: delegated(tokens.one), action: { name: 'delete' }, resource: doc('doc-4') })],
    ['/access/v1/evaluation', 'three-link subject', () => ({ subject: delegated(tokens.three), action: { name: 'read' }, resource: doc('doc-3') })],
    ['/access/v1/evaluations', 'single in batch clothing', () => ({ subject: delegated(tokens.one), action: { name: 'read' }, resource: doc('doc-3') })],
    ['/access/v1/evaluations', 'a batch with an invalid item, short-circuit semantics', () => ({
      subject: delegated(tokens.one),
      action: { name: 'read' },
      evaluations: [{ resource: doc('doc-3') }, { resource: { type: 'Document' } }, { resource: doc('doc-4') }, { resource: doc('doc-2') }],
      options: { evaluations_semantic: 'deny_on_first_deny' },
    })],
  ];

  it.each(cases)('%s, %s: no Koa context for the miss, the routes\' bytes, and the repeat is a hit with the same bytes', async (path, _name, request) => {
    // Two spellings of one request: the same answer under two keys, so that the routes answer
    // the second (a query string sends it to them) without the first's remembered answer.
    const compact = JSON.stringify(request());
    const spaced = JSON.stringify(request(), null, 1);
    const [contexts, evaluations] = [koaContexts(), evaluatedSoFar()];
    const miss = await rawPost(h, path, compact);
    expect(koaContexts() - contexts, 'the miss was answered before Koa').toBe(0);
    expect(evaluatedSoFar() - evaluations).toBeGreaterThan(0);
    const routed = await rawPost(h, `${path}?routes`, spaced);
    expect(koaContexts() - contexts).toBe(1);
    expect(miss.status).toBe(200);
    expect(miss).toEqual(routed);
    const evaluated = evaluatedSoFar();
    const hit = await rawPost(h, path, compact);
    expect(evaluatedSoFar(), 'the repeat was answered from what the miss remembered').toBe(evaluated);
    expect(koaContexts() - contexts).toBe(1);
    expect(hit).toEqual(routed);
  });

  it('counts the miss and the hit in deputy_* metrics once each, as the routes count them', async () => {
    const body = JSON.stringify({ subject: plain, action: { name: 'read' }, resource: doc('doc-5') });
    const count = () => evaluationCounts(h);
    const [httpBefore, decisionsBefore] = await count();
    const contexts = koaContexts();
    await rawPost(h, '/access/v1/evaluation', body);
    const [httpMiss, decisionsMiss] = await count();
    await rawPost(h, '/access/v1/evaluation', body);
    const [httpHit, decisionsHit] = await count();
    expect(koaContexts() - contexts).toBe(0);
    expect([httpMiss - httpBefore, decisionsMiss - decisionsBefore]).toEqual([1, 1]);
    expect([httpHit - httpMiss, decisionsHit - decisionsMiss]).toEqual([1, 1]);
  });

  it('a subject with no basis (an invalid token) is answered before Koa and never remembered', async () => {
    const body = JSON.stringify({ subject: delegated(`${tokens.one.slice(0, -4)}AAAA`), action: { name: 'read' }, resource: doc('doc-1') });
    const contexts = koaContexts();
    const first = await rawPost(h, '/access/v1/evaluation', body);
    const evaluated = evaluatedSoFar();
    const second = await rawPost(h, '/access/v1/evaluation', body);
    expect(koaContexts() - contexts).toBe(0);
    expect(evaluatedSoFar() - evaluated, 'evaluated again: nothing was remembered').toBe(1);
    expect(JSON.parse(first.body)).toMatchObject({ decision: false });
    expect(second).toEqual(first);
  });

  it('a store away while the basis is sought: the routes render the failure, the asynchronous phase is run once', async () => {
    // The registry's read of the agent the resource names fails (the store away).
    const read = storeAwayFor('agent-failing');
    try {
      const body = JSON.stringify({ subject: plain, action: { name: 'read' }, resource: { type: 'Agent', id: 'agent-failing' } });
      const contexts = koaContexts();
      const res = await rawPost(h, '/access/v1/evaluation', body);
      expect(koaContexts() - contexts, 'the routes rendered it').toBe(1);
      expect(res.status).toBe(500);
      expect(res.body).not.toMatch(/store away/);
      expect(read.calls(), 'one read per request, as on the routes alone').toBe(1);
    } finally {
      read.restore();
    }
    // Not remembered: the same request, with the store back, is evaluated.
    const evaluated = evaluatedSoFar();
    const again = await rawPost(h, '/access/v1/evaluation', JSON.stringify({ subject: plain, action: { name: 'read' }, resource: { type: 'Agent', id: 'agent-failing' } }));
    expect(again.status).toBe(200);
    expect(evaluatedSoFar() - evaluated).toBe(1);
  });

  // Red team (seventh round): the basis covers every item, the evaluation only those before the
  // short-circuit; a read failing past it made the answer a 500 where the routes answer 200.
  it.each(['deny_on_first_deny', 'permit_on_first_permit'])('a batch (%s) whose read fails past its short-circuit: the routes\' 200, one read, nothing remembered', async (semantic) => {
    const first = semantic === 'deny_on_first_deny' ? doc('doc-3') : doc('doc-1');
    const request = (spacing?: number) => JSON.stringify({ subject: plain, action: { name: 'read' }, evaluations: [{ resource: first }, { resource: { type: 'Agent', id: 'agent-failing' } }], options: { evaluations_semantic: semantic } }, null, spacing);
    const read = storeAwayFor('agent-failing');
    try {
      const contexts = koaContexts();
      const miss = await rawPost(h, '/access/v1/evaluations', request());
      expect(koaContexts() - contexts, 'answered before Koa').toBe(0);
      expect(read.calls(), 'the basis sought it once; the evaluation never reached it').toBe(1);
      const routed = await rawPost(h, '/access/v1/evaluations?routes', request(1));
      expect(routed.status).toBe(200);
      expect(miss).toEqual(routed);
      const evaluated = evaluatedSoFar();
      expect(await rawPost(h, '/access/v1/evaluations', request())).toEqual(routed);
      expect(evaluatedSoFar() - evaluated, 'no basis, nothing remembered: evaluated again').toBe(1);
    } finally {
      read.restore();
    }
  });
  // Red team (seventh round): the cached path's listener re-sought a due basis and, failing,
  // handed the request to the lean path, which sought it again: two waits on a store away.
  it('a remembered answer whose basis is due while the store is away: one read, the routes render the failure', async () => {
    const body = JSON.stringify({ subject: plain, action: { name: 'read' }, evaluations: [{ resource: doc('doc-3') }, { resource: { type: 'Agent', id: 'agent-b' } }] });
    expect((await rawPost(h, '/access/v1/evaluations', body)).status).toBe(200);
    const evaluated = evaluatedSoFar();
    expect((await rawPost(h, '/access/v1/evaluations', body)).status).toBe(200);
    expect(evaluatedSoFar(), 'remembered').toBe(evaluated);
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() + 10_000); // every cache due: the basis is sought again
    const read = storeAwayFor('agent-b');
    try {
      const res = await rawPost(h, '/access/v1/evaluations', body);
      expect(res.status).toBe(500);
      expect(read.calls(), 'one read per request').toBe(1);
    } finally {
      read.restore();
      vi.useRealTimers();
    }
  });
  // Red team (seventh round): the raw HTTP/1.x cases of the lean path's tests, with the cache on:
  // the miss (lean) and the repeat (a hit) on one connection, each with its own request id.
  let rawCase = 0;
  it.each([
    ['two pipelined requests, the second a hit of the first', (head: (extra?: string[], id?: string) => string, body: string) => [{ bytes: head() + body + head(['Connection: close'], 'raw-2') + body }]],
    ['HTTP/1.0 with keep-alive, then again', (head: (extra?: string[], id?: string, version?: string) => string, body: string) => [{ bytes: head(['Connection: keep-alive'], 'raw-1', '1.0') + body }, { bytes: head([], 'raw-2', '1.0') + body, waitFor: '"decision"' }]],
    ['Expect: 100-continue, then a pipelined repeat', (head: (extra?: string[], id?: string) => string, body: string) => [{ bytes: head(['Expect: 100-continue']) }, { bytes: body + head(['Connection: close'], 'raw-2') + body, waitFor: '100 Continue\r\n\r\n' }]],
  ] as const)('%s: the routes\' bytes, each request id its own', async (_name, parts) => {
    const body = JSON.stringify({ subject: delegated(tokens.one), action: { name: 'read' }, resource: doc(`raw-${++rawCase}`) });
    const exchange = (path: string) => {
      const head = (extra: string[] = [], id = 'raw-1', version = '1.1') =>
        [`POST ${path} HTTP/${version}`, 'Host: 127.0.0.1', 'Content-Type: application/json', `Content-Length: ${Buffer.byteLength(body)}`, `Authorization: Bearer ${h.pepToken}`, `X-Request-ID: ${id}`, ...extra, '', ''].join('\r\n');
      return rawExchange(h, parts(head, body));
    };
    const contexts = koaContexts();
    const cached = await exchange('/access/v1/evaluation');
    expect(koaContexts() - contexts, 'miss and repeat answered before Koa').toBe(0);
    const routed = await exchange('/access/v1/evaluation?routes');
    expect(cached.match(/^X-Request-ID: .*$/gm)).toEqual(['X-Request-ID: raw-1', 'X-Request-ID: raw-2']);
    expect(cached).toBe(routed);
  });
  // Red team (seventh round): a policy reload landing while a miss is in flight, after its basis
  // was started and before its decision. The answer is decided by the new policy set (the snapshot
  // is taken at the decision) and remembered under the older generation, so it is never a hit.
  it('a policy reload while a miss is in flight: decided by the new set, never served under the old basis', async () => {
    const get = AgentRegistry.prototype.get;
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let reached!: () => void;
    const reading = new Promise<void>((resolve) => (reached = resolve));
    const spy = vi.spyOn(AgentRegistry.prototype, 'get').mockImplementation(async function (this: AgentRegistry, id, db) {
      if (id === 'agent-a') {
        reached();
        await held;
      }
      return get.call(this, id, db);
    });
    const body = JSON.stringify({ subject: { type: 'Agent', id: 'agent-a', properties: {} }, action: { name: 'read' }, resource: doc('doc-race') });
    try {
      const miss = rawPost(h, '/access/v1/evaluation', body);
      await reading;
      const file = join(policies, 'chain.cedar');
      writeFileSync(file, `${readFileSync(file, 'utf8')}\n@id("race")\npermit (principal == Agent::"agent-a", action == Action::"read", resource == Document::"doc-race");\n`);
      const reload = await fetch(`${h.deputy.url}/admin/policies/reload`, { method: 'POST', headers: { authorization: `Bearer ${h.adminToken}` } });
      expect(reload.status).toBe(200);
      release();
      expect(JSON.parse((await miss).body)).toMatchObject({ decision: true });
    } finally {
      spy.mockRestore();
    }
    const evaluated = evaluatedSoFar();
    expect(JSON.parse((await rawPost(h, '/access/v1/evaluation', body)).body)).toMatchObject({ decision: true });
    expect(evaluatedSoFar() - evaluated, 'remembered under the older generation: evaluated again').toBe(1);
    const again = evaluatedSoFar();
    await rawPost(h, '/access/v1/evaluation', body);
    expect(evaluatedSoFar(), 'now remembered under the new generation').toBe(again);
  });
});

/** Makes the agent registry's reads of `id` fail as a store away would; counts them. */
function storeAwayFor(id: string): { calls: () => number; restore: () => void } {
  const get = AgentRegistry.prototype.get;
  let calls = 0;
  const spy = vi.spyOn(AgentRegistry.prototype, 'get').mockImplementation(function (this: AgentRegistry, agentId, db) {
    if (agentId !== id) return get.call(this, agentId, db);
    calls++;
    return Promise.reject(new Error('store away'));
  });
  return { calls: () => calls, restore: () => spy.mockRestore() };
}

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
