/**
 * Operator privileges never reach an agent (DESIGN invariant; issue 10, part 2), over real HTTP:
 *
 * 1. Every Deputy-own scope and resource × (registry POST, registry PATCH, static configuration,
 *    token exchange) is refused with the protocol's error, naming the field or the check —
 *    also for agents stored before registration refused them (rows already in the database).
 * 2. A matrix of token kinds × surfaces: only the pair the token was issued for is accepted;
 *    tokens forged with operator scopes for an agent (defence in depth) are refused too.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importJWK, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, validateConfig } from '../../src/config/load.js';
import { startDeputy } from '../../src/main.js';
import { agentConfig, dpopProof, exchange, exchangeError, testAgent, type DpopKeys, type TestAgent } from '../support/agents.js';
import { adminSetup, clientCredentialsToken, clientKeys, oauthClient, type ClientKeys } from '../support/clients.js';
import { createTestDatabase } from '../support/database.js';
import { json, type Json } from '../support/http.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { freePort } from '../support/net.js';
import { TEST_NODE_FLAGS } from '../support/process.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';
import { startMockUpstream, type MockUpstream } from '../support/upstream.js';

let idp: MockIdp;
let up: MockUpstream;
let deputy: TestDeputy;
let issuer: string;
let port: number;
let adminToken: string;
let pepToken: string;
const keys: Record<string, ClientKeys> = {};
const agents: Record<string, TestAgent> = {};
let admin: Awaited<ReturnType<typeof adminSetup>>;
const gw = (connection: string) => `${issuer}/gw/${connection}`;
const HANDOFF = 'urn:deputy:agent:agent-h';

/** Scopes in Deputy's namespaces, look-alikes included. */
const DEPUTY_SCOPES = ['deputy:admin', 'authzen:evaluate', 'deputy:anything', 'authzen:search', 'DEPUTY:ADMIN', 'Authzen:Evaluate'];

/** Deputy's own resources under the issuer: every surface, spelling variants, near-gateway URLs. */
const deputyResources = (): string[] => [
  `${issuer}/admin`,
  `${issuer}/admin/`,
  `${issuer}/admin/agents`,
  `${issuer}/admin/policies`,
  `${issuer}/admin/receipts/x`,
  `${issuer}/access`,
  `${issuer}/access/v1/evaluation`,
  `${issuer}/receipts/jwks`,
  `${issuer}/jwks`,
  `${issuer}/token`,
  `${issuer}/introspect`,
  `${issuer}/.well-known/openid-configuration`,
  `${issuer}/connect/echo`,
  issuer,
  `${issuer}/`,
  `HTTP://LOCALHOST:${port}/admin`,
  `http://localhost:${port}/x/../admin`,
  `http://localhost:${port}/admin#frag`,
  `http://user@localhost:${port}/gw/echo`,
  `${issuer}/gw/echo?x=1`,
  `${issuer}/gw/echo#f`,
  `${issuer}/gw/echo/deeper`,
  `${issuer}/gw/`,
  `${issuer}/gw`,
  `${issuer}/gw/ECHO`,
];

beforeAll(async () => {
  idp = await startMockIdp();
  up = await startMockUpstream();
  port = await freePort();
  issuer = `http://localhost:${port}`;
  admin = await adminSetup();
  const pepKeys = await clientKeys();
  for (const id of ['agent-gw', 'agent-h', 'legacy-admin', 'legacy-mixed']) keys[id] = await clientKeys();
  deputy = await startTestDeputy({
    env: { ECHO_KEY: 'sk_test_echo' },
    config: {
      server: { port },
      admin: { clients: [admin.config, { client_id: 'test-pep', scopes: ['authzen:evaluate'], jwks: pepKeys.jwks }] },
      trustedIssuers: [idp.issuerConfig('okta')],
      gateway: { authorizer: 'scopes' },
      agents: [
        agentConfig('agent-gw', keys['agent-gw']!, { scopes: ['deputy.read'], audiences: [gw('echo'), HANDOFF, 'https://api.example.com'] }),
        agentConfig('agent-h', keys['agent-h']!, { scopes: ['deputy.read'], audiences: [gw('echo')] }),
      ],
      connections: [{ id: 'echo', kind: 'api_key', baseUrl: `${up.base}/api`, allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'ECHO_KEY' }, requiredScopes: ['deputy.read'] }],
    },
  });
  // Agents stored before registration refused Deputy's own scopes and resources.
  const insert = (id: string, scopes: string[], audiences: string[]) =>
    deputy.store.query(
      `INSERT INTO agents (id, name, owner, scopes, audiences, max_delegation_depth, status, jwks, source)
       VALUES ($1, $1, 'owner@example.com', $2::jsonb, $3::jsonb, 3, 'active', $4::jsonb, 'api')`,
      [id, JSON.stringify(scopes), JSON.stringify(audiences), JSON.stringify(keys[id]!.jwks)],
    );
  await insert('legacy-admin', ['deputy:admin', 'authzen:evaluate'], [`${issuer}/admin`]);
  await insert('legacy-mixed', ['deputy:admin', 'deputy.read'], [gw('echo')]);
  for (const id of Object.keys(keys)) agents[id] = await testAgent(issuer, id, keys[id]!);
  adminToken = await clientCredentialsToken(await oauthClient(issuer, admin.clientId, admin.keys), 'deputy:admin');
  pepToken = await clientCredentialsToken(await oauthClient(issuer, 'test-pep', pepKeys), 'authzen:evaluate');
});
/** Processes `npm start` tests spawned: killed at the end if a start was not refused as expected. */
const spawned = new Set<ChildProcess>();
afterAll(async () => {
  for (const child of spawned) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await deputy?.stop();
  await up?.close();
  await idp?.close();
});

async function adminCall(method: string, path: string, body?: unknown): Promise<{ status: number; body: Json }> {
  const res = await fetch(`${deputy.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${adminToken}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: await json(res) };
}

const newAgent = (id: string, fields: { scopes?: string[]; audiences?: string[] } = {}) => ({
  id,
  name: id,
  owner: 'owner@example.com',
  jwks_uri: 'https://agents.example.com/jwks.json',
  scopes: ['deputy.read'],
  audiences: ['https://api.example.com'],
  ...fields,
});

async function countRows(table: 'token_records' | 'receipts'): Promise<number> {
  const rows = await deputy.store.query<{ n: string | number }>(`SELECT count(*) AS n FROM ${table}`);
  return Number(rows[0]!.n);
}

describe("Deputy's own scopes and resources are never granted to an agent", () => {
  it('the issue as reported: an admin registers an agent with deputy:admin for <issuer>/admin → 400, nothing stored', async () => {
    const res = await adminCall('POST', '/admin/agents', newAgent('rogue', { scopes: ['deputy:admin'], audiences: [`${issuer}/admin`] }));
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_request');
    expect(res.body.error_description).toMatch(/scopes\.0: .*Deputy's own scopes/);
    expect((await adminCall('GET', '/admin/agents/rogue')).status).toBe(404);
  });

  it('registry POST refuses every Deputy-own scope (400 naming scopes.N)', async () => {
    for (const scope of DEPUTY_SCOPES) {
      const res = await adminCall('POST', '/admin/agents', newAgent(`p-${randomUUID().slice(0, 8)}`, { scopes: ['deputy.read', scope] }));
      expect(res.status, scope).toBe(400);
      expect(res.body.error, scope).toBe('invalid_request');
      expect(res.body.error_description, scope).toMatch(/scopes\.1: .*Deputy's own scopes/);
    }
  });

  it('registry POST refuses every Deputy-own resource (400 naming audiences.N)', async () => {
    for (const audience of deputyResources()) {
      const res = await adminCall('POST', '/admin/agents', newAgent(`p-${randomUUID().slice(0, 8)}`, { audiences: ['https://api.example.com', audience] }));
      expect(res.status, audience).toBe(400);
      expect(res.body.error, audience).toBe('invalid_request');
      expect(res.body.error_description, audience).toMatch(/audiences\.1: .*(Deputy's own resources|without a fragment)/);
    }
  });

  it('registry POST accepts agent-facing audiences: gateway connections, handoffs, other hosts', async () => {
    const audiences = [gw('echo'), gw('other_conn-1'), 'urn:deputy:agent:*', HANDOFF, 'https://api.example.com', `http://127.0.0.1:${port + 1}/admin`, 'api://default'];
    const res = await adminCall('POST', '/admin/agents', newAgent('facing', { audiences }));
    expect(res.status).toBe(201);
    expect(res.body.audiences).toEqual(audiences);
  });

  it('registry POST refuses an agent taking an operator client id', async () => {
    const res = await adminCall('POST', '/admin/agents', newAgent(admin.clientId));
    expect(res.status).toBe(400);
    expect(res.body.error_description).toMatch(/id: .*operator client/);
  });

  it('registry PATCH refuses every Deputy-own scope and resource; the agent is unchanged', async () => {
    expect((await adminCall('POST', '/admin/agents', newAgent('patchable'))).status).toBe(201);
    for (const scope of DEPUTY_SCOPES) {
      const res = await adminCall('PATCH', '/admin/agents/patchable', { scopes: [scope] });
      expect(res.status, scope).toBe(400);
      expect(res.body.error_description, scope).toMatch(/scopes\.0: .*Deputy's own scopes/);
    }
    for (const audience of deputyResources()) {
      const res = await adminCall('PATCH', '/admin/agents/patchable', { audiences: [audience] });
      expect(res.status, audience).toBe(400);
      expect(res.body.error_description, audience).toMatch(/audiences\.0: .*(Deputy's own resources|without a fragment)/);
    }
    const now = await adminCall('GET', '/admin/agents/patchable');
    expect(now.body).toMatchObject({ scopes: ['deputy.read'], audiences: ['https://api.example.com'] });
    expect((await adminCall('PATCH', '/admin/agents/patchable', { audiences: [gw('echo')] })).status).toBe(200);
  });

  it('static configuration refuses every Deputy-own scope and resource, naming the field', () => {
    const configWith = (fields: { scopes: string[]; audiences: string[] }, server: Record<string, unknown> = { issuer }) =>
      () => validateConfig({ server, agents: [agentConfig('ok', keys['agent-h']!, { scopes: [], audiences: [] }), agentConfig('bad', keys['agent-h']!, fields)] }, 'test.yaml');
    const refusal = (fn: () => unknown): ConfigError => {
      try {
        fn();
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        return err as ConfigError;
      }
      throw new Error('the configuration was accepted');
    };
    for (const scope of DEPUTY_SCOPES) {
      const err = refusal(configWith({ scopes: ['deputy.read', scope], audiences: [] }));
      expect(err.issues, scope).toEqual([expect.stringMatching(/^agents\.1\.scopes\.1 \(agent "[^"]+"\): .*Deputy's own scopes/)]);
    }
    for (const audience of deputyResources()) {
      const err = refusal(configWith({ scopes: [], audiences: ['https://api.example.com', audience] }));
      expect(err.issues, audience).toEqual([expect.stringMatching(/^agents\.1\.audiences\.1 \(agent "[^"]+"\): .*(Deputy's own resources|without a fragment)/)]);
      // Without server.issuer, the issuer is http://localhost:<port>.
      const byPort = refusal(configWith({ scopes: [], audiences: [audience] }, { port }));
      expect(byPort.issues, audience).toEqual([expect.stringMatching(/^agents\.1\.audiences\.0 \(agent "[^"]+"\): /)]);
    }
    expect(() => configWith({ scopes: ['deputy.read'], audiences: [gw('echo'), HANDOFF, 'urn:deputy:agent:*'] })()).not.toThrow();
  });

  it('static configuration: the issuer known only once listening (port 0) is checked at start', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'deputy-keys-'));
    const database = await createTestDatabase();
    try {
      const base = validateConfig({
        server: { port: 0, host: '127.0.0.1', issuer: 'http://deputy.test' },
        store: database.url ? { databaseUrl: database.url } : { dataDir: 'memory://' },
        keys: { dir, generate: true },
        log: { level: 'silent' },
      }, 'test');
      const bad = { ...agentConfig('bad', keys['agent-h']!, { scopes: [], audiences: ['http://DEPUTY.test:80/access'] }), maxDelegationDepth: 3, status: 'active' as const };
      const start = startDeputy({ config: { ...base, agents: [bad] }, env: {} });
      await expect(start).rejects.toBeInstanceOf(ConfigError);
      await expect(start).rejects.toThrow(/agents\.0\.audiences\.0 \(agent "[^"]+"\): .*(Deputy's own resources|without a fragment)/);
    } finally {
      await database.drop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('npm start: a configured agent with a Deputy-own scope stops the start with exit code 2 naming the field', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'deputy-start-'));
    try {
      const file = join(dir, 'deputy.yaml');
      writeFileSync(file, `agents:\n  - id: bad\n    name: Bad\n    owner: o@example.com\n    scopes: [deputy:admin]\n    jwks_uri: https://x.example/jwks\n`);
      const child = spawn(process.execPath, [...TEST_NODE_FLAGS, '--import', 'tsx', 'src/main.ts'], {
        env: { PATH: process.env.PATH ?? '', HOME: dir, DEPUTY_CONFIG: file, PORT: String(await freePort()), DEPUTY_DATA_DIR: join(dir, 'data'), DEPUTY_KEYS_DIR: join(dir, 'keys') },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      spawned.add(child);
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
      const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
      expect(code).toBe(2);
      expect(stderr).toMatch(/agents\.0\.scopes\.0 \(agent "[^"]+"\): .*Deputy's own scopes/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('token exchange refuses every Deputy-own scope (invalid_scope) and resource / audience (invalid_target), writing nothing', async () => {
    const agent = agents['agent-gw']!;
    const before = { records: await countRows('token_records'), receipts: await countRows('receipts') };
    for (const scope of DEPUTY_SCOPES) {
      const subject = await idp.oktaAccessToken({ scp: ['deputy.read', scope] });
      const err = await exchangeError(agent, { subject_token: subject, resource: gw('echo'), scope: `deputy.read ${scope}` });
      expect(err, scope).toMatchObject({ error: 'invalid_scope', status: 400 });
      expect(err.error_description, scope).toMatch(/Deputy's own scopes/);
    }
    for (const target of deputyResources()) {
      for (const param of ['resource', 'audience'] as const) {
        const subject = await idp.oktaAccessToken();
        const err = await exchangeError(agent, { subject_token: subject, [param]: target, scope: 'deputy.read' });
        expect(err, `${param}=${target}`).toMatchObject({ error: 'invalid_target', status: 400 });
        expect(err.error_description, `${param}=${target}`).toMatch(/Deputy's own resources/);
      }
    }
    expect({ records: await countRows('token_records'), receipts: await countRows('receipts') }).toEqual(before);
  });

  it('token exchange refuses them for agents stored before the fix, requested or defaulted', async () => {
    const legacy = agents['legacy-admin']!;
    const subject = () => idp.oktaAccessToken({ scp: ['deputy:admin', 'authzen:evaluate', 'deputy.read'] });
    // The issue's input: the stored agent asks for its stored audience and scope.
    expect(await exchangeError(legacy, { subject_token: await subject(), resource: `${issuer}/admin`, scope: 'deputy:admin' })).toMatchObject({ error: 'invalid_scope' });
    expect(await exchangeError(legacy, { subject_token: await subject(), resource: `${issuer}/admin` })).toMatchObject({ error: 'invalid_target' });
    expect(await exchangeError(legacy, { subject_token: await subject(), audience: `${issuer}/access` })).toMatchObject({ error: 'invalid_target' });
    // Nothing requested: the stored (only) audience is the default, and it is refused too.
    const defaulted = await exchangeError(legacy, { subject_token: await subject() });
    expect(defaulted).toMatchObject({ error: 'invalid_target' });
    expect(defaulted.error_description).toContain(`${issuer}/admin`);

    // A stored agent with a Deputy scope among ordinary ones: the default grant leaves it out.
    const mixed = agents['legacy-mixed']!;
    const res = await exchange(mixed, { subject_token: await subject(), resource: gw('echo') });
    expect(res.scope).toBe('deputy.read');
    expect(await exchangeError(mixed, { subject_token: await idp.oktaAccessToken({ scp: ['deputy:admin'] }), resource: gw('echo') })).toMatchObject({ error: 'invalid_scope' });
  });
});

// ---------------------------------------------------------------------------------------------

interface Presented {
  authorization: string;
  /** The DPoP key for a bound token (a fresh proof per request). */
  dpop?: DpopKeys;
  token: string;
}

interface Surface {
  name: string;
  method: string;
  path: string;
  body?: unknown;
  /** The status a matching token gets (the surface accepted it). */
  ok: number;
}

const EVALUATION = { subject: { type: 'user', id: 'alice' }, action: { name: 'read' }, resource: { type: 'document', id: '1' } };

const SURFACES: Surface[] = [
  { name: 'admin agents', method: 'GET', path: '/admin/agents', ok: 200 },
  { name: 'admin agent', method: 'GET', path: '/admin/agents/agent-gw', ok: 200 },
  { name: 'admin connections', method: 'GET', path: '/admin/connections', ok: 200 },
  { name: 'admin policies', method: 'GET', path: '/admin/policies', ok: 200 },
  { name: 'receipts list', method: 'GET', path: '/admin/agents/agent-gw/receipts', ok: 200 },
  { name: 'receipt read', method: 'GET', path: '/admin/receipts/none', ok: 404 },
  { name: 'PDP evaluation', method: 'POST', path: '/access/v1/evaluation', body: EVALUATION, ok: 200 },
  { name: 'PDP evaluations', method: 'POST', path: '/access/v1/evaluations', body: { evaluations: [EVALUATION] }, ok: 200 },
  { name: 'PDP search', method: 'POST', path: '/access/v1/search/action', body: { subject: EVALUATION.subject, resource: EVALUATION.resource }, ok: 200 },
  { name: 'metrics', method: 'GET', path: '/metrics', ok: 200 },
  { name: 'gateway', method: 'GET', path: '/gw/echo/items', ok: 200 },
];

const kindOf = (s: Surface): 'admin' | 'pep' | 'gateway' =>
  s.path.startsWith('/admin') || s.path === '/metrics' ? 'admin' : s.path.startsWith('/access') ? 'pep' : 'gateway';

/** What a surface's refusal of another surface's token must name: the audience (and scope) it needs. */
const needs = (s: Surface): string =>
  ({ admin: `${issuer}/admin with the deputy:admin scope;`, pep: `${issuer}/access with the authzen:evaluate scope;`, gateway: `${issuer}/gw/echo;` })[kindOf(s)];

async function call(surface: Surface, presented: Presented): Promise<Response> {
  const proof = presented.dpop ? await dpopProof(presented.dpop, `${issuer}${surface.path}`, { htm: surface.method, accessToken: presented.token }) : undefined;
  return fetch(`${deputy.url}${surface.path}`, {
    method: surface.method,
    headers: {
      authorization: presented.authorization,
      ...(proof ? { dpop: proof } : {}),
      ...(surface.body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(surface.body === undefined ? {} : { body: JSON.stringify(surface.body) }),
  });
}

async function expectRefused(res: Response, label: string, scheme: 'Bearer' | 'DPoP'): Promise<Json> {
  expect([401, 403], label).toContain(res.status);
  const body = await json(res);
  expect(body.error, label).toBe(res.status === 401 ? 'invalid_token' : 'insufficient_scope');
  const challenge = res.headers.get('www-authenticate') ?? '';
  expect(challenge.startsWith(`${scheme} `), `${label}: ${challenge}`).toBe(true);
  expect(challenge, label).toContain(`error="${body.error}"`);
  return body;
}

/** A token signed with Deputy's own key: what a bug elsewhere could mint. */
async function forge(claims: Record<string, unknown>): Promise<string> {
  const jwk = deputy.keys.activeSigningKey.jwk;
  const key = await importJWK(jwk, jwk.alg);
  return new SignJWT({ jti: randomUUID(), sub: 'okta:user', ...claims })
    .setProtectedHeader({ alg: jwk.alg, kid: jwk.kid, typ: 'at+jwt' })
    .setIssuer(issuer)
    .setIssuedAt()
    .setExpirationTime('2m')
    .sign(key);
}

describe('each surface accepts only the tokens issued for it', () => {
  it('token kinds × surfaces: only the matching pair is accepted', async () => {
    const agent = agents['agent-gw']!;
    const gwToken = (await exchange(agent, { subject_token: await idp.oktaAccessToken(), resource: gw('echo'), scope: 'deputy.read' })).access_token;
    const handoffToken = (await exchange(agent, { subject_token: await idp.oktaAccessToken(), audience: HANDOFF, scope: 'deputy.read' })).access_token;
    const kinds: Array<{ name: string; presented: Presented; accepts: 'admin' | 'pep' | 'gateway' | 'none' }> = [
      { name: 'admin client token', presented: { authorization: `Bearer ${adminToken}`, token: adminToken }, accepts: 'admin' },
      { name: 'PEP client token', presented: { authorization: `Bearer ${pepToken}`, token: pepToken }, accepts: 'pep' },
      { name: 'agent token for a gateway connection', presented: { authorization: `DPoP ${gwToken}`, token: gwToken, dpop: agent.dpop }, accepts: 'gateway' },
      { name: 'agent handoff token', presented: { authorization: `DPoP ${handoffToken}`, token: handoffToken, dpop: agent.dpop }, accepts: 'none' },
    ];
    for (const kind of kinds) {
      for (const surface of SURFACES) {
        const label = `${kind.name} at ${surface.name}`;
        const res = await call(surface, kind.presented);
        if (kindOf(surface) === kind.accepts) {
          expect(res.status, label).toBe(surface.ok);
          await res.arrayBuffer();
        } else {
          // The gateway's challenge is always DPoP (RFC 9449 §7.1); elsewhere it follows the scheme used.
          const body = await expectRefused(res, label, kindOf(surface) === 'gateway' || kind.presented.dpop ? 'DPoP' : 'Bearer');
          // A valid Deputy token of another surface: the refusal says what this one needs, and what the token is for.
          expect(body.error_description, label).toContain(`this resource needs a token for ${needs(surface)} this one is for `);
          expect(body.error_description, label).not.toContain(kind.presented.token);
        }
      }
    }
  });

  it('defence in depth: agent tokens carrying operator scope and audience are refused at /admin and /access/v1', async () => {
    const agent = agents['agent-gw']!;
    const act = { sub: 'agent-gw' };
    const cases: Array<{ name: string; claims: Record<string, unknown>; dpop: boolean; surface: Surface }> = [
      { name: 'exchanged agent token for /admin (the issue)', claims: { aud: `${issuer}/admin`, scope: 'deputy:admin', client_id: 'agent-gw', act, cnf: { jkt: agent.dpop.jkt } }, dpop: true, surface: SURFACES[0]! },
      { name: 'agent token for /admin, unbound', claims: { aud: `${issuer}/admin`, scope: 'deputy:admin', client_id: 'agent-gw' }, dpop: false, surface: SURFACES[3]! },
      { name: 'exchanged token carrying an operator client_id', claims: { aud: `${issuer}/admin`, scope: 'deputy:admin', client_id: admin.clientId, act, cnf: { jkt: agent.dpop.jkt } }, dpop: true, surface: SURFACES[4]! },
      { name: 'exchanged agent token for /access', claims: { aud: `${issuer}/access`, scope: 'authzen:evaluate', client_id: 'agent-gw', act, cnf: { jkt: agent.dpop.jkt } }, dpop: true, surface: SURFACES[6]! },
      { name: 'agent token for /access, unbound', claims: { aud: `${issuer}/access`, scope: 'authzen:evaluate', client_id: 'agent-gw' }, dpop: false, surface: SURFACES[7]! },
      { name: 'PEP client token with deputy:admin (not configured for it)', claims: { aud: `${issuer}/admin`, scope: 'deputy:admin', client_id: 'test-pep' }, dpop: false, surface: SURFACES[0]! },
    ];
    for (const c of cases) {
      const token = await forge(c.claims);
      const res = await call(c.surface, { authorization: `${c.dpop ? 'DPoP' : 'Bearer'} ${token}`, token, ...(c.dpop ? { dpop: agent.dpop } : {}) });
      await expectRefused(res, c.name, c.dpop ? 'DPoP' : 'Bearer');
      expect(res.status, c.name).toBe(401);
    }
    // The same forged shape with the operator's own client_id and no `act` is what Deputy issues to operators: accepted.
    const operator = await forge({ aud: `${issuer}/admin`, scope: 'deputy:admin', client_id: admin.clientId });
    expect((await call(SURFACES[0]!, { authorization: `Bearer ${operator}`, token: operator })).status).toBe(200);
  });
});
