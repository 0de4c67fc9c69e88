/**
 * The AuthZEN HTTPS binding over real HTTP with Deputy's default policy set: PEP
 * authentication, metadata, request ids, and bad input — each a 400 / 401 / 413 or a deny with
 * a reason, never a 500.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO, startPdpHarness, type PdpHarness } from '../support/authzen.js';
import type { Json } from '../support/http.js';

let h: PdpHarness;
beforeAll(async () => {
  h = await startPdpHarness({ policies: `${REPO}config/policies`, config: { pdp: { maxBatch: 5 } } });
});
afterAll(() => h?.stop());

const alice = { type: 'User', id: 'alice', properties: { email: 'alice@example.com' } };
const ownDoc = { type: 'Resource', id: 'doc-1', properties: { owner: 'alice@example.com' } };
const valid = { subject: alice, action: { name: 'read' }, resource: ownDoc };

async function raw(path: string, init: RequestInit & { headers?: Record<string, string> }): Promise<{ status: number; headers: Headers; text: string }> {
  const res = await fetch(`${h.deputy.url}${path}`, { method: 'POST', ...init, headers: { authorization: `Bearer ${h.pepToken}`, ...init.headers } });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

describe('metadata (AuthZEN 1.0 §9)', () => {
  it('GET /.well-known/authzen-configuration names the PDP, every endpoint and the capabilities, without authentication', async () => {
    const res = await fetch(`${h.deputy.url}/.well-known/authzen-configuration`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    const meta = (await res.json()) as Json;
    const base = h.deputy.issuer;
    expect(meta).toEqual({
      policy_decision_point: base,
      access_evaluation_endpoint: `${base}/access/v1/evaluation`,
      access_evaluations_endpoint: `${base}/access/v1/evaluations`,
      search_subject_endpoint: `${base}/access/v1/search/subject`,
      search_resource_endpoint: `${base}/access/v1/search/resource`,
      search_action_endpoint: `${base}/access/v1/search/action`,
      capabilities: ['urn:deputy:authzen:delegation-chain', 'urn:deputy:authzen:cedar'],
    });
    for (const key of Object.keys(meta).filter((k) => k.endsWith('_endpoint'))) {
      const path = new URL(meta[key] as string).pathname;
      const body: Json = {
        search_subject_endpoint: { ...valid, subject: { type: 'User' } },
        search_resource_endpoint: { ...valid, resource: { type: 'Resource' } },
        search_action_endpoint: { subject: alice, resource: ownDoc },
      }[key] ?? valid;
      expect((await h.post(path, body)).status, path).toBe(200);
    }
  });
});

describe('PEP authentication (§11.2, §11.3)', () => {
  it('is required by default: no token → 401 with WWW-Authenticate', async () => {
    const res = await raw('/access/v1/evaluation', { headers: { authorization: '', 'content-type': 'application/json' }, body: JSON.stringify(valid) });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^(Bearer|DPoP) realm="deputy"/);
    expect(JSON.parse(res.text)).toMatchObject({ error: 'invalid_token' });
  });

  it('a forged token, or a Deputy token for another resource, is refused with 401', async () => {
    const forged = await raw('/access/v1/evaluation', { headers: { authorization: `Bearer ${h.pepToken.slice(0, -6)}AAAAAA`, 'content-type': 'application/json' }, body: JSON.stringify(valid) });
    expect(forged.status).toBe(401);
    const admin = await raw('/access/v1/evaluations', { headers: { authorization: `Bearer ${h.adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify(valid) });
    expect(admin.status).toBe(401);
    expect(admin.headers.get('www-authenticate')).toMatch(/error="invalid_token"/);
  });

  it('the PEP token is accepted on every endpoint and a deny is 200 {"decision": false}', async () => {
    expect((await h.post('/access/v1/evaluation', valid)).body).toEqual({ decision: true });
    const denied = await h.post('/access/v1/evaluation', { ...valid, resource: { type: 'Resource', id: 'doc-2', properties: { owner: 'bob@example.com' } } });
    expect(denied.status).toBe(200);
    expect(denied.body).toMatchObject({ decision: false, context: { id: 'not_permitted', reason_user: { en: 'Access denied.' } } });
    expect(denied.body.context.reason_admin.en).toMatch(/subject "User" "alice" may not "read" on "Resource" "doc-2": no policy permits it/);
  });
});

describe('request ids (§10.1.3)', () => {
  it.each(['bfe9eb29-ab87-4ca3-be83-a1d5d8305716', 'pep/42 retry#1'])('X-Request-ID %j is echoed, on success and on error', async (id) => {
    expect((await h.post('/access/v1/evaluation', valid, { 'x-request-id': id })).headers.get('x-request-id')).toBe(id);
    expect((await h.post('/access/v1/evaluation', { subject: alice }, { 'x-request-id': id })).headers.get('x-request-id')).toBe(id);
  });
});

describe('malformed requests are 400 with a message (§10.1.1, §10.1.2)', () => {
  it.each([
    ['non-JSON', 'application/json', '{"subject": '],
    ['empty body', 'application/json', ''],
    ['a JSON array', 'application/json', '[]'],
    ['a JSON string', 'application/json', '"hello"'],
    ['a non-JSON content type', 'text/plain', JSON.stringify(valid)],
    ['form encoding', 'application/x-www-form-urlencoded', 'subject=alice'],
  ])('%s', async (_name, type, body) => {
    const res = await raw('/access/v1/evaluation', { headers: { 'content-type': type }, body });
    expect(res.status).toBe(400);
    expect(JSON.parse(res.text)).toMatchObject({ error: 'invalid_request', error_description: expect.any(String) });
  });

  it('invalid UTF-8 is refused', async () => {
    const res = await raw('/access/v1/evaluation', { headers: { 'content-type': 'application/json' }, body: Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]) });
    expect(res.status).toBe(400);
    expect(JSON.parse(res.text).error_description).toMatch(/UTF-8/);
  });

  it.each([
    [{ action: valid.action, resource: ownDoc }, /subject is required/],
    [{ subject: alice, resource: ownDoc }, /action is required/],
    [{ subject: alice, action: valid.action }, /resource is required/],
    [{ ...valid, subject: { type: 'User' } }, /subject.id is required/],
    [{ ...valid, subject: { id: 'alice' } }, /subject.type is required/],
    [{ ...valid, subject: { type: 'User', id: 42 } }, /subject.id must be a string/],
    [{ ...valid, subject: 'alice' }, /subject must be a JSON object/],
    [{ ...valid, action: { name: '' } }, /action.name must not be empty/],
    [{ ...valid, action: { id: 'read' } }, /action.name is required/],
    [{ ...valid, resource: { type: 'Resource', id: 'x', properties: [] } }, /resource.properties must be a JSON object/],
    [{ ...valid, context: 'now' }, /context must be a JSON object/],
  ] as const)('%j → %s', async (body, message) => {
    const res = await h.post('/access/v1/evaluation', body);
    expect(res.status).toBe(400);
    expect(res.body.error_description).toMatch(message);
  });

  it('a body over the size limit is 413; deep nesting is 400', async () => {
    const huge = await h.post('/access/v1/evaluation', { ...valid, context: { pad: 'x'.repeat(70 * 1024) } });
    expect(huge.status).toBe(413);
    let deep: unknown = 'bottom';
    for (let i = 0; i < 200; i++) deep = { d: deep };
    const nested = await h.post('/access/v1/evaluation', { ...valid, context: deep });
    expect(nested.status).toBe(400);
    expect(nested.body.error_description).toMatch(/nested deeper than 32/);
    const arrays = await raw('/access/v1/evaluation', { headers: { 'content-type': 'application/json' }, body: `${'['.repeat(5000)}${']'.repeat(5000)}` });
    expect(arrays.status).toBe(400);
  });

  it('batches: an unusable item is denied in place; a malformed batch is 400', async () => {
    const mixed = await h.post('/access/v1/evaluations', { subject: alice, action: { name: 'read' }, evaluations: [{ resource: ownDoc }, { action: { name: 7 } }, {}] });
    expect(mixed.status).toBe(200);
    expect(mixed.body.evaluations).toEqual([
      { decision: true },
      { decision: false, context: { id: 'invalid_request', error: { status: 400, message: 'action.name must be a string' } } },
      { decision: false, context: { id: 'invalid_request', error: { status: 400, message: 'resource is required' } } },
    ]);
    for (const [body, message] of [
      [{ evaluations: {} }, /evaluations must be an array/],
      [{ ...valid, evaluations: [{}, {}, {}, {}, {}, {}] }, /at most 5/],
      [{ ...valid, evaluations: [{}], options: { evaluations_semantic: 'all' } }, /evaluations_semantic/],
      [{ evaluations: [] }, /subject is required/],
    ] as const) {
      const res = await h.post('/access/v1/evaluations', body);
      expect(res.status).toBe(400);
      expect(res.body.error_description).toMatch(message);
    }
  });
});

describe('liberal where drafts differ; unknown input is a deny with a reason', () => {
  it('unknown members are ignored, and draft-00 attributes directly on an entity are read as properties', async () => {
    const res = await h.post('/access/v1/evaluation', {
      subject: { type: 'User', id: 'alice', email: 'alice@example.com', shoe_size: 44 },
      action: { name: 'read', verb: 'GET' },
      resource: { type: 'Resource', id: 'doc-1', owner: 'alice@example.com', properties: { colour: 'red' } },
      context: { time: '1985-10-26T01:22-07:00' },
      future_member: { anything: true },
    });
    expect(res.body).toEqual({ decision: true });
  });

  it.each([
    [{ ...valid, action: { name: 'teleport' } }, 'invalid_input', /action "teleport" is not declared/],
    [{ ...valid, resource: { type: 'Spaceship', id: '1' } }, 'invalid_input', /resource type "Spaceship" is not an entity type/],
    [{ ...valid, resource: { ...ownDoc, properties: { owner: 5 } } }, 'invalid_input', /resource.properties.owner must be a string/],
    [{ ...valid, subject: { type: 'Agent', id: 'no-such-agent' } }, 'invalid_input', /agent "no-such-agent", which is not registered/],
    [{ ...valid, resource: { type: 'Audience', id: 'https://api.example.com' } }, 'not_permitted', /does not apply action "read"/],
  ] as const)('%j → deny %s', async (body, kind, message) => {
    const res = await h.post('/access/v1/evaluation', body);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ decision: false, context: { id: kind } });
    expect(res.body.context.reason_admin.en).toMatch(message);
  });

  it('a deny never quotes a property value', async () => {
    const res = await h.post('/access/v1/evaluation', { ...valid, resource: { ...ownDoc, properties: { owner: ['s3cr3t-value'] } } });
    expect(res.body.decision).toBe(false);
    expect(JSON.stringify(res.body)).not.toContain('s3cr3t-value');
  });
});

describe('methods', () => {
  it('a GET on an evaluation endpoint is not a decision', async () => {
    const res = await fetch(`${h.deputy.url}/access/v1/evaluation`, { headers: { authorization: `Bearer ${h.pepToken}` } });
    expect([404, 405]).toContain(res.status);
  });
});
