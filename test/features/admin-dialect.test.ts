/**
 * The admin API speaks one dialect (README "Admin API conventions", src/http/admin-api.ts), on
 * every admin endpoint: agents, connections, policies, receipts.
 *
 * - every member of every response is snake_case, and every timestamp an RFC 3339 UTC string;
 * - every internal (camelCase) spelling of a writable member is refused on write, naming the
 *   member and its right spelling; unknown members are refused, named; nothing changes;
 * - every listing pages the same way: `limit` 1–200, `cursor` → `next_cursor`, bad cursor → 400;
 * - every admin response, refusals and unknown paths included, is `Cache-Control: no-store`.
 *
 * The YAML configuration keeps its camelCase names: the configured connection below is written so.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentPatchSchema, agentSchema } from '../../src/config/schema.js';
import { schemaMembers, snakeCase } from '../../src/http/admin-api.js';
import { connectionInputSchema } from '../../src/vault/connections/config.js';
import { adminSetup, clientCredentialsToken, clientKeys, oauthClient, type ClientKeys } from '../support/clients.js';
import { json, type Json } from '../support/http.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';

let deputy: TestDeputy;
let token: string;
let agentKeys: ClientKeys;
let receiptId: string;

const SNAKE = /^[a-z][a-z0-9]*(_[a-z0-9]+)*$/;
const RFC3339_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
/** Members that are timestamps by name: `*_at`, and the JWT names that only signed claims may use. */
const TIME_MEMBER = /(_at|^iat|^exp|^nbf)$/;

async function call(method: string, path: string, body?: unknown): Promise<Response> {
  return fetch(`${deputy.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

const newAgent = (id: string): Json => ({
  id,
  name: `Agent ${id}`,
  owner: 'alice@example.com',
  scopes: ['calendar.read'],
  audiences: ['https://api.example.com'],
  max_delegation_depth: 2,
  jwks: agentKeys.jwks,
});

const newConnection = (id: string): Json => ({
  id,
  kind: 'oauth2_user',
  name: `Connection ${id}`,
  base_url: 'http://127.0.0.1:9/api',
  allow_insecure_http: true,
  required_scopes: ['deputy.read'],
  timeout_seconds: 5,
  token_endpoint: 'http://127.0.0.1:9/token',
  authorization_endpoint: 'http://127.0.0.1:9/authorize',
  authorization_params: { access_type: 'offline' },
  client_id: 'deputy',
  client_auth: 'client_secret_post',
  secret: 'downstream-client-secret',
});

beforeAll(async () => {
  const admin = await adminSetup();
  agentKeys = await clientKeys();
  deputy = await startTestDeputy({
    config: {
      admin: { clients: [admin.config] },
      agents: [{ id: 'config-agent', name: 'From config', owner: 'ops@example.com', maxDelegationDepth: 2, jwks: agentKeys.jwks }],
      connections: [{ id: 'configured', kind: 'api_key', baseUrl: 'http://127.0.0.1:9/v1', allowInsecureHttp: true, header: 'X-Api-Key', requiredScopes: ['deputy.read'] }],
    },
  });
  token = await clientCredentialsToken(await oauthClient(deputy.issuer, admin.clientId, admin.keys), 'deputy:admin');
  for (const id of ['dialect-a', 'dialect-b', 'dialect-c']) expect((await call('POST', '/admin/agents', newAgent(id))).status).toBe(201);
  for (const id of ['made-a', 'made-b']) expect((await call('POST', '/admin/connections', newConnection(id))).status).toBe(201);
  for (const resource of ['https://api.example.com/1', 'https://api.example.com/2', 'https://api.example.com/3']) {
    const r = await deputy.receipts.append({ agent: 'dialect-a', chain: ['dialect-a'], event: 'access_evaluation', action: 'read', resource, decision: 'permit' });
    receiptId = r.id;
  }
});
afterAll(() => deputy?.stop());

/** Every member name in `value` (path, name) and every timestamp-named member's value. */
function walk(value: unknown, path = '$', out: Array<{ path: string; name: string; value: unknown }> = []): typeof out {
  if (Array.isArray(value)) value.forEach((v, i) => walk(v, `${path}[${i}]`, out));
  else if (value !== null && typeof value === 'object') {
    for (const [name, v] of Object.entries(value)) {
      out.push({ path: `${path}.${name}`, name, value: v });
      walk(v, `${path}.${name}`, out);
    }
  }
  return out;
}

/** Signed receipt claims are reproduced as signed: JWT NumericDate `iat` is theirs alone. */
const inSignedClaims = (path: string) => /\.claims\./.test(path);

interface ReadCase {
  name: string;
  method: string;
  path: string;
  body?: unknown;
  status: number;
  /** Timestamp members the response must carry (so the format check cannot pass vacuously). */
  times: string[];
}

const READS: ReadCase[] = [
  { name: 'agent list', method: 'GET', path: '/admin/agents', status: 200, times: ['created_at', 'updated_at'] },
  { name: 'agent read', method: 'GET', path: '/admin/agents/dialect-a', status: 200, times: ['created_at', 'updated_at'] },
  { name: 'agent create', method: 'POST', path: '/admin/agents', body: 'NEW_AGENT', status: 201, times: ['created_at', 'updated_at'] },
  { name: 'agent update', method: 'PATCH', path: '/admin/agents/dialect-b', body: { max_delegation_depth: 3, jwks_uri: 'https://agents.example.com/jwks.json' }, status: 200, times: ['created_at', 'updated_at'] },
  { name: 'agent disable', method: 'POST', path: '/admin/agents/dialect-c/disable', status: 200, times: ['created_at', 'updated_at'] },
  { name: 'agent enable', method: 'POST', path: '/admin/agents/dialect-c/enable', status: 200, times: ['created_at', 'updated_at'] },
  { name: 'connection list', method: 'GET', path: '/admin/connections', status: 200, times: ['created_at', 'updated_at', 'secret_updated_at'] },
  { name: 'connection read', method: 'GET', path: '/admin/connections/made-a', status: 200, times: ['created_at', 'updated_at', 'secret_updated_at'] },
  { name: 'connection create', method: 'POST', path: '/admin/connections', body: 'NEW_CONNECTION', status: 201, times: ['created_at', 'updated_at', 'secret_updated_at'] },
  { name: 'connection secret rotation', method: 'POST', path: '/admin/connections/made-b/secret', body: { secret: 'rotated-secret' }, status: 200, times: ['created_at', 'updated_at', 'secret_updated_at'] },
  { name: 'policy set', method: 'GET', path: '/admin/policies', status: 200, times: ['loaded_at'] },
  { name: 'policy reload', method: 'POST', path: '/admin/policies/reload', status: 200, times: [] },
  { name: 'receipt list', method: 'GET', path: '/admin/agents/dialect-a/receipts', status: 200, times: ['issued_at'] },
  { name: 'receipt read', method: 'GET', path: '/admin/receipts/RECEIPT', status: 200, times: ['issued_at'] },
];

describe('admin API dialect: responses', () => {
  let made = 0;
  it.each(READS)('$name: snake_case members, RFC 3339 UTC timestamps, no-store', async (c) => {
    made += 1;
    const body = c.body === 'NEW_AGENT' ? newAgent(`fresh-${made}`) : c.body === 'NEW_CONNECTION' ? newConnection(`fresh-${made}`) : c.body;
    const res = await call(c.method, c.path.replace('RECEIPT', receiptId), body);
    expect(res.status).toBe(c.status);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const members = walk(await json(res));
    const notSnake = members.filter((m) => !SNAKE.test(m.name)).map((m) => m.path);
    expect(notSnake).toEqual([]);
    const times = members.filter((m) => TIME_MEMBER.test(m.name) && !inSignedClaims(m.path));
    for (const t of times) {
      if (t.value === null) continue;
      expect(t.value, t.path).toMatch(RFC3339_UTC);
      expect(new Date(t.value as string).toISOString(), t.path).toBe(t.value);
    }
    for (const name of c.times) expect(times.some((t) => t.name === name && typeof t.value === 'string'), name).toBe(true);
  });

  it('a configured connection (camelCase in the YAML) reads in snake_case, settings included', async () => {
    const read = await json(await call('GET', '/admin/connections/configured'));
    expect(read.settings).toMatchObject({ base_url: 'http://127.0.0.1:9/v1', allow_insecure_http: true, required_scopes: ['deputy.read'], header: 'X-Api-Key' });
    expect(read.settings).not.toHaveProperty('baseUrl');
    const agent = await json(await call('GET', '/admin/agents/config-agent'));
    expect(agent).toMatchObject({ max_delegation_depth: 2 });
    expect(agent).not.toHaveProperty('maxDelegationDepth');
  });

  it('what a connection is created with reads back in the same spelling', async () => {
    const { secret: _secret, id, kind, name, ...settings } = newConnection('round-trip');
    const created = await json(await call('POST', '/admin/connections', { id, kind, name, ...settings, secret: 's' }));
    expect(created).toMatchObject({ id, kind, name, settings: { ...settings, id, kind, name } });
    expect(JSON.stringify(created)).not.toContain('downstream-client-secret');
  });

  it('refusals and unknown admin paths are no-store too', async () => {
    for (const [method, path] of [['GET', '/admin/agents/nobody'], ['GET', '/admin/nothing-here'], ['GET', '/admin/agents?limit=0'], ['DELETE', '/admin/policies']] as const) {
      const res = await call(method, path);
      expect(res.status, path).toBeGreaterThanOrEqual(400);
      expect(res.headers.get('cache-control'), path).toBe('no-store');
    }
    const anonymous = await fetch(`${deputy.url}/admin/connections`);
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('cache-control')).toBe('no-store');
  });
});

/** Every writable member whose internal (YAML) name is not its wire name. */
const camel = (names: string[]) => [...new Set(names)].filter((n) => snakeCase(n) !== n);

interface WriteCase {
  name: string;
  method: string;
  path: string;
  /** A valid body in the wire dialect. */
  valid: () => Json;
  /** The internal spellings of its members. */
  internal: string[];
  /** Whether the write took effect (for "nothing changes"). */
  exists: () => Promise<boolean>;
}

const WRITES: WriteCase[] = [
  {
    name: 'agent create', method: 'POST', path: '/admin/agents', valid: () => newAgent('never-made'),
    internal: camel([...schemaMembers(agentSchema), 'jwksUri']),
    exists: async () => (await call('GET', '/admin/agents/never-made')).status !== 404,
  },
  {
    name: 'agent update', method: 'PATCH', path: '/admin/agents/dialect-a', valid: () => ({ name: 'Changed name' }),
    internal: camel([...schemaMembers(agentPatchSchema), 'jwksUri']),
    exists: async () => (await json(await call('GET', '/admin/agents/dialect-a'))).name === 'Changed name',
  },
  {
    name: 'connection create', method: 'POST', path: '/admin/connections', valid: () => newConnection('never-made'),
    internal: camel(schemaMembers(connectionInputSchema)),
    exists: async () => (await call('GET', '/admin/connections/never-made')).status !== 404,
  },
];

describe('admin API dialect: writes', () => {
  it('the schemas do have camelCase members (the table below is not empty)', () => {
    expect(WRITES.find((w) => w.name === 'agent create')!.internal).toEqual(expect.arrayContaining(['maxDelegationDepth', 'jwksUri']));
    expect(WRITES.find((w) => w.name === 'connection create')!.internal).toEqual(
      expect.arrayContaining(['baseUrl', 'allowInsecureHttp', 'requiredScopes', 'timeoutSeconds', 'tokenEndpoint', 'clientId', 'clientAuth', 'authorizationEndpoint', 'authorizationParams']),
    );
  });

  const misspellings = WRITES.flatMap((w) => w.internal.map((member) => ({ ...w, member, wire: snakeCase(member) })));
  it.each(misspellings)('$name: $member is refused, naming $wire; nothing changes', async (w) => {
    const body = w.valid();
    const value = body[w.wire] ?? 'x';
    delete body[w.wire];
    const res = await call(w.method, w.path, { ...body, [w.member]: value });
    expect(res.status).toBe(400);
    const err = await json(res);
    expect(err.error).toBe('invalid_request');
    expect(err.error_description).toContain(`${w.member} is not a field; use ${w.wire}`);
    expect(await w.exists()).toBe(false);
  });

  const unknowns = [
    ...WRITES.map((w) => ({ name: w.name, method: w.method, path: w.path, body: () => ({ ...w.valid(), colour: 'blue' }), exists: w.exists })),
    { name: 'secret rotation', method: 'POST', path: '/admin/connections/made-a/secret', body: () => ({ secret: 'another', colour: 'blue' }), exists: async () => (await json(await call('GET', '/admin/connections/made-a'))).secret_version !== 1 },
  ];
  it.each(unknowns)('$name: an unknown member is refused, named; nothing changes', async (w) => {
    const res = await call(w.method, w.path, w.body());
    expect(res.status).toBe(400);
    const err = await json(res);
    expect(err.error).toBe('invalid_request');
    expect(err.error_description).toMatch(/"colour" is not a field/);
    expect(await w.exists()).toBe(false);
  });

  // The body parser refuses a member named `__proto__` (co-body's prototype-poisoning check) and
  // zod would drop it from a record silently; the refusal said "request body is not valid JSON",
  // sending the writer looking for a syntax error in valid JSON. It names the member's path.
  // Written as raw text: JSON.stringify of an object literal's `__proto__` writes no member.
  const protoBodies = [
    {
      name: 'connection create (a record: authorization_params)', method: 'POST', path: '/admin/connections',
      text: () => JSON.stringify(newConnection('proto-params')).replace('"authorization_params":{', '"authorization_params":{"__proto__":"consent",'),
      at: 'authorization_params.__proto__', exists: async () => (await call('GET', '/admin/connections/proto-params')).status !== 404,
    },
    {
      name: 'agent create (nested in a list: jwks.keys.0)', method: 'POST', path: '/admin/agents',
      text: () => JSON.stringify(newAgent('proto-agent')).replace('"keys":[{', '"keys":[{"__proto__":{"use":"enc"},'),
      at: 'jwks.keys.0.__proto__', exists: async () => (await call('GET', '/admin/agents/proto-agent')).status !== 404,
    },
    {
      name: 'connection create (top level)', method: 'POST', path: '/admin/connections',
      text: () => JSON.stringify(newConnection('proto-top')).replace('{', '{"__proto__":{"kind":"api_key"},'),
      at: '__proto__', exists: async () => (await call('GET', '/admin/connections/proto-top')).status !== 404,
    },
  ];
  it.each(protoBodies)('$name: a member named __proto__ is refused naming its path; nothing changes', async (w) => {
    const text = w.text();
    expect(text).toContain('"__proto__"');
    const res = await fetch(`${deputy.url}${w.path}`, { method: w.method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: text });
    expect(res.status).toBe(400);
    const err = await json(res);
    expect(err.error).toBe('invalid_request');
    expect(err.error_description).toBe(`invalid request body: ${w.at}: "__proto__" is not a usable name`);
    expect(await w.exists()).toBe(false);
  });

  it('a member named __proto__ nested 30,000 deep is refused as such too (400, not a stack overflow), its path shortened', async () => {
    const depth = 30_000;
    const text = JSON.stringify(newConnection('proto-deep')).replace('"authorization_params":{}', '').replace(/}$/, `,"authorization_params":${'['.repeat(depth)}{"__proto__":1}${']'.repeat(depth)}}`);
    const res = await fetch(`${deputy.url}/admin/connections`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: text });
    expect(res.status).toBe(400);
    const err = await json(res);
    expect(err.error_description).toMatch(/^invalid request body: authorization_params(\.0)+…(\.0)+\.__proto__: "__proto__" is not a usable name$/);
    expect(err.error_description.length).toBeLessThan(400);
    expect((await call('GET', '/admin/connections/proto-deep')).status).toBe(404);
  });

  it('members named constructor, toString or prototype are kept as given (own names, no inherited ones)', async () => {
    const body = { ...newConnection('named-like-object'), authorization_params: { constructor: 'a', tostring: 'b', prototype: 'c' } };
    expect((await call('POST', '/admin/connections', body)).status).toBe(201);
    const read = await json(await call('GET', '/admin/connections/named-like-object'));
    expect(read.settings.authorization_params).toEqual({ constructor: 'a', tostring: 'b', prototype: 'c' });
    expect((await call('DELETE', '/admin/connections/named-like-object')).status).toBe(204);
  });

  it('validation messages name members in the wire spelling', async () => {
    const res = await call('POST', '/admin/agents', { ...newAgent('bad-depth'), max_delegation_depth: 0 });
    expect((await json(res)).error_description).toMatch(/max_delegation_depth: /);
    const conn = await call('POST', '/admin/connections', { ...newConnection('bad-auth'), kind: 'on_behalf_of', grant: 'entra_obo', client_auth: 'none', authorization_endpoint: undefined, authorization_params: undefined });
    const err = await json(conn);
    expect(err.error_description).toMatch(/client_auth: only oauth2_user connections may be public clients \(client_auth: none\)/);
    expect(err.error_description).not.toMatch(/clientAuth/);
  });
});

interface Listing {
  name: string;
  path: string;
  member: string;
  key: (item: Json) => string | number;
}

const LISTINGS: Listing[] = [
  { name: 'agents', path: '/admin/agents', member: 'agents', key: (i) => i.id },
  { name: 'connections', path: '/admin/connections', member: 'connections', key: (i) => i.id },
  { name: 'receipts', path: '/admin/agents/dialect-a/receipts', member: 'receipts', key: (i) => i.seq },
];

describe('admin API dialect: pagination', () => {
  it.each(LISTINGS)('$name: limit=1 pages with next_cursor through the whole listing', async (l) => {
    const whole = await json(await call('GET', `${l.path}?limit=200`));
    expect(whole.next_cursor).toBeNull();
    expect(whole[l.member].length).toBeGreaterThanOrEqual(3);
    const seen: Array<string | number> = [];
    let cursor: string | null = null;
    do {
      const page: Json = await json(await call('GET', `${l.path}?limit=1${cursor ? `&cursor=${cursor}` : ''}`));
      expect(page[l.member].length).toBe(1);
      seen.push(l.key(page[l.member][0]));
      cursor = page.next_cursor;
      expect(seen.length).toBeLessThanOrEqual(whole[l.member].length);
    } while (cursor);
    expect(seen).toEqual(whole[l.member].map(l.key));
  });

  const other = (l: Listing) => LISTINGS.find((o) => o !== l)!;
  it.each(LISTINGS)('$name: a limit out of 1–200, a malformed cursor or another listing\'s cursor → 400 invalid_request', async (l) => {
    const foreign: Json = await json(await call('GET', `${other(l).path}?limit=1`));
    expect(foreign.next_cursor).toEqual(expect.any(String));
    const bad = ['limit=0', 'limit=201', 'limit=-1', 'limit=1.5', 'limit=x', 'limit=', 'limit=1&limit=2', 'cursor=%21%21', 'cursor=', `cursor=${Buffer.from('nothing').toString('base64url')}`, `cursor=${foreign.next_cursor}`];
    for (const q of bad) {
      const res = await call('GET', `${l.path}?${q}`);
      expect(res.status, q).toBe(400);
      const err = await json(res);
      expect(err.error, q).toBe('invalid_request');
      expect(err.error_description, q).toMatch(/^(limit must be an integer from 1 to 200|cursor is malformed)/);
    }
    expect((await call('GET', `${l.path}?limit=200`)).status).toBe(200);
  });
});
