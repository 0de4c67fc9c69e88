/**
 * Revoking a PEP's (or an admin's) client_credentials token (RFC 7009) over HTTP, as real
 * clients do: the PDP refuses it at once through the instance that revoked it — on the routed
 * path and on the cached path (src/http/authzen-cached.ts), which remembers verified PEP tokens —
 * with 401 `invalid_token` and the Bearer challenge (RFC 6750 §3.1); introspection calls it
 * inactive; who may revoke it; and, on PostgreSQL, another instance refusing it too.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { authenticatedPost, claimsOf, clientAssertion } from '../support/agents.js';
import { REPO, countEvaluations, startPdpHarness, type PdpHarness } from '../support/authzen.js';
import { adminSetup, clientCredentialsToken, clientKeys, oauthClient } from '../support/clients.js';
import { createTestDatabase, usingPostgres, type TestDatabase } from '../support/database.js';
import { json } from '../support/http.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';

const POLICIES = `${REPO}test/fixtures/policies/chain`;
const EVALUATION = { subject: { type: 'User', id: 'alice@example.com', properties: { email: 'alice@example.com' } }, action: { name: 'read' }, resource: { type: 'Document', id: 'doc-1', properties: {} } };

/** One evaluation with `token`, as a PEP sends it. */
async function evaluate(base: string, token: string): Promise<{ status: number; challenge: string | null; body: Record<string, unknown> }> {
  const res = await fetch(`${base}/access/v1/evaluation`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify(EVALUATION),
  });
  return { status: res.status, challenge: res.headers.get('www-authenticate'), body: (await res.json()) as Record<string, unknown> };
}

function expectRevokedRefusal(answer: { status: number; challenge: string | null }): void {
  expect(answer.status).toBe(401);
  expect(answer.challenge).toMatch(/^Bearer /);
  expect(answer.challenge).toMatch(/error="invalid_token"/);
  expect(answer.challenge).toMatch(/revoked/);
}

describe('PEP token revocation on one instance', () => {
  let h: PdpHarness;
  let clients: { pep: Awaited<ReturnType<typeof oauthClient>>; admin: Awaited<ReturnType<typeof oauthClient>> };
  const pepToken = () => clientCredentialsToken(clients.pep, 'authzen:evaluate');
  const revoke = (token: string, caller: { id: string; keys: PdpHarness['pep']['keys'] }) => authenticatedPost(`${h.deputy.url}/revoke`, h.deputy.issuer, caller, { token });
  const introspect = (token: string) => authenticatedPost(`${h.deputy.url}/introspect`, h.deputy.issuer, h.admin, { token }).then((r) => json(r));

  beforeAll(async () => {
    h = await startPdpHarness({ policies: POLICIES });
    clients = { pep: await oauthClient(h.deputy.issuer, h.pep.id, h.pep.keys), admin: await oauthClient(h.deputy.issuer, h.admin.id, h.admin.keys) };
  });
  afterAll(() => h?.stop());

  it('a PEP revokes its own token: the next evaluation with it (remembered, cached path) is 401 invalid_token; its other token still works', async () => {
    const token = await pepToken();
    const other = await pepToken();
    const evaluations = countEvaluations(h);
    // The first call verifies the token; the second, with it remembered, is remembered; the third is answered by the cached path.
    for (let i = 0; i < 3; i++) expect((await evaluate(h.deputy.url, token)).status).toBe(200);
    expect(evaluations()).toBe(2);
    expect((await revoke(token, h.pep)).status).toBe(200);
    expectRevokedRefusal(await evaluate(h.deputy.url, token));
    expectRevokedRefusal(await evaluate(h.deputy.url, token));
    expect(evaluations()).toBe(2); // refused before any decision
    expect((await evaluate(h.deputy.url, other)).status).toBe(200);
    expect(await introspect(token)).toEqual({ active: false });
    expect(await introspect(other)).toMatchObject({ active: true, client_id: h.pep.id });
    // Revoking it again is a 200 and changes nothing.
    expect((await revoke(token, h.pep)).status).toBe(200);
    expect((await evaluate(h.deputy.url, other)).status).toBe(200);
  });

  it('an admin may revoke a PEP token (refused at once on the routed path too); a PEP may not revoke an admin token', async () => {
    const token = await pepToken();
    const adminToken = await clientCredentialsToken(clients.admin, 'deputy:admin');
    const refused = await revoke(adminToken, h.pep);
    expect(refused.status).toBe(400);
    expect((await json(refused)).error).toBe('unauthorized_client');
    expect((await fetch(`${h.deputy.url}/admin/agents`, { headers: { authorization: `Bearer ${adminToken}` } })).status).toBe(200);

    expect((await revoke(token, h.admin)).status).toBe(200);
    expectRevokedRefusal(await evaluate(h.deputy.url, token));
    // The admin's own token, revoked by the admin, stops working at /admin too.
    expect((await revoke(adminToken, h.admin)).status).toBe(200);
    const admin = await fetch(`${h.deputy.url}/admin/agents`, { headers: { authorization: `Bearer ${adminToken}` } });
    expect(admin.status).toBe(401);
    expect(admin.headers.get('www-authenticate')).toMatch(/error="invalid_token"/);
  });

  it('a revocation naming no token of Deputy, or a malformed one, changes nothing', async () => {
    const token = await pepToken();
    expect((await evaluate(h.deputy.url, token)).status).toBe(200);
    expect((await revoke('not-a-token', h.pep)).status).toBe(200);
    expect((await revoke(`${token.slice(0, -4)}AAAA`, h.pep)).status).toBe(200);
    expect((await evaluate(h.deputy.url, token)).status).toBe(200);
    expect(claimsOf(token).client_id).toBe(h.pep.id);
  });
});

describe.skipIf(!usingPostgres)('PEP token revocation across two instances on one PostgreSQL', () => {
  const ISSUER = 'http://deputy.test';
  let database: TestDatabase;
  let keysDir: string;
  let one: TestDeputy;
  let two: TestDeputy;
  let pep: { id: string; keys: Awaited<ReturnType<typeof clientKeys>> };

  beforeAll(async () => {
    database = await createTestDatabase();
    keysDir = mkdtempSync(join(tmpdir(), 'deputy-pep-keys-'));
    pep = { id: 'test-pep', keys: await clientKeys() };
    const admin = await adminSetup();
    const config = { server: { issuer: ISSUER }, pdp: { policies: POLICIES, watch: false }, admin: { clients: [admin.config, { client_id: pep.id, scopes: ['authzen:evaluate' as const], jwks: pep.keys.jwks }] } };
    one = await startTestDeputy({ config, keysDir, database });
    two = await startTestDeputy({ config, keysDir, database });
  });
  afterAll(async () => {
    await one?.stop();
    await two?.stop();
    await database?.drop();
    if (keysDir) rmSync(keysDir, { recursive: true, force: true });
  });

  /** A form POST as a load balancer forwards it (Host is the public name), as the PEP with private_key_jwt. */
  async function post(instance: TestDeputy, path: string, fields: Record<string, string>): Promise<{ status: number; body: Record<string, unknown> }> {
    const body = new URLSearchParams({
      ...fields, client_id: pep.id,
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: await clientAssertion(pep, ISSUER),
    });
    const res = await request(`${instance.url}${path}`, { method: 'POST', headers: { host: 'deputy.test', 'content-type': 'application/x-www-form-urlencoded' }, body: body.toString() });
    const text = await res.body.text();
    return { status: res.statusCode, body: (text ? JSON.parse(text) : {}) as Record<string, unknown> };
  }
  const tokenFrom = async (instance: TestDeputy) => (await post(instance, '/token', { grant_type: 'client_credentials', scope: 'authzen:evaluate' })).body.access_token as string;
  const revokeOn = async (instance: TestDeputy, token: string) => (await post(instance, '/revoke', { token })).status;

  it('revoked through one instance: refused there at once, by the other once its revocation answer is refreshed, and at once on a token it had not seen', async () => {
    const seen = await tokenFrom(one);
    const unseen = await tokenFrom(one);
    for (const instance of [one, two]) expect((await evaluate(instance.url, seen)).status).toBe(200);
    expect(await revokeOn(one, seen)).toBe(200);
    expect(await revokeOn(one, unseen)).toBe(200);
    expectRevokedRefusal(await evaluate(one.url, seen));
    expectRevokedRefusal(await evaluate(two.url, unseen));
    // The other instance may use its "not revoked" answer for the documented bound (2 s) only.
    await vi.waitFor(async () => expectRevokedRefusal(await evaluate(two.url, seen)), { timeout: 15_000, interval: 250 });
  });
});

describe('a PEP removed from admin.clients', () => {
  const ISSUER = 'http://deputy.test';
  let database: TestDatabase;
  let keysDir: string;
  let running: TestDeputy | undefined;

  beforeAll(async () => {
    database = await createTestDatabase();
    keysDir = mkdtempSync(join(tmpdir(), 'deputy-pep-removed-keys-'));
  });
  afterAll(async () => {
    await running?.stop();
    await database?.drop();
    if (keysDir) rmSync(keysDir, { recursive: true, force: true });
  });

  // Configuration (admin.clients included) is read at start; SIGHUP reloads only the policy set
  // (README, "Agents and admin clients"): the removal takes effect when an instance restarts.
  it('is refused at once by an instance started without it: its unexpired token is 401 invalid_token, and it gets no new one', async () => {
    const pep = { id: 'removed-pep', keys: await clientKeys() };
    const admin = await adminSetup();
    const withPep = { server: { issuer: ISSUER }, pdp: { policies: POLICIES, watch: false }, admin: { clients: [admin.config, { client_id: pep.id, scopes: ['authzen:evaluate' as const], jwks: pep.keys.jwks }] } };
    const token = async (instance: TestDeputy) => {
      const body = new URLSearchParams({
        grant_type: 'client_credentials', scope: 'authzen:evaluate', client_id: pep.id,
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: await clientAssertion(pep, ISSUER),
      });
      const res = await request(`${instance.url}/token`, { method: 'POST', headers: { host: 'deputy.test', 'content-type': 'application/x-www-form-urlencoded' }, body: body.toString() });
      return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
    };
    running = await startTestDeputy({ config: withPep, keysDir, database });
    const issued = await token(running);
    expect(issued.status).toBe(200);
    const pepToken = issued.body.access_token as string;
    expect((await evaluate(running.url, pepToken)).status).toBe(200);
    await running.stop();

    running = await startTestDeputy({ config: { ...withPep, admin: { clients: [admin.config] } }, keysDir, database });
    const refused = await evaluate(running.url, pepToken);
    expect(refused.status).toBe(401);
    expect(refused.challenge).toMatch(/error="invalid_token"/);
    const again = await token(running);
    expect(again.status).toBe(401);
    expect(again.body.error).toBe('invalid_client');
  });
});
