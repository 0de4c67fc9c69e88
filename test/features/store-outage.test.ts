/**
 * The store goes away (issue 11 part 9): with the database unreachable, every surface that needs
 * it answers `503 temporarily_unavailable` with `Retry-After` and a JSON error body — `/token`
 * (client_credentials and token exchange), `/introspect`, `/revoke`, the admin API, the AuthZEN
 * PDP and the gateway — never a 500; when the database is back, the same requests succeed again.
 *
 * PostgreSQL only: Deputy reaches the database through a TCP proxy the test takes down (every
 * connection cut, new ones refused) and brings back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentConfig, authenticatedPost, dpopProof, exchange, rawExchange, testAgent, type TestAgent } from '../support/agents.js';
import { adminSetup, clientCredentialsToken, clientKeys, oauthClient, type ClientKeys } from '../support/clients.js';
import { createTestDatabase, usingPostgres, type TestDatabase } from '../support/database.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { freePort } from '../support/net.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';
import { startMockUpstream, type MockUpstream } from '../support/upstream.js';

let db: TestDatabase;
let proxy: TcpProxy;
let idp: MockIdp;
let up: MockUpstream;
let deputy: TestDeputy;
let issuer: string;
let admin: { id: string; keys: ClientKeys };
let adminToken: string;
let pepToken: string;
let agent: TestAgent;

beforeAll(async () => {
  if (!usingPostgres) return;
  db = await createTestDatabase();
  const real = new URL(db.url!);
  proxy = await startTcpProxy({ host: real.hostname, port: Number(real.port || 5432) });
  const proxied = new URL(db.url!);
  proxied.hostname = '127.0.0.1';
  proxied.port = String(proxy.port);
  idp = await startMockIdp();
  up = await startMockUpstream();
  const port = await freePort();
  issuer = `http://localhost:${port}`;
  const a = await adminSetup();
  admin = { id: a.clientId, keys: a.keys };
  const pepKeys = await clientKeys();
  const agentKeys = await clientKeys();
  deputy = await startTestDeputy({
    database: { url: proxied.toString(), drop: async () => {} },
    env: { ECHO_KEY: 'sk_outage_0123456789' },
    config: {
      server: { port },
      admin: { clients: [a.config, { client_id: 'test-pep', scopes: ['authzen:evaluate'], jwks: pepKeys.jwks }] },
      trustedIssuers: [idp.issuerConfig('okta')],
      agents: [agentConfig('agent-a', agentKeys, { scopes: ['deputy.read'], audiences: [`${issuer}/gw/echo`, 'https://api.example.com'] })],
      connections: [
        { id: 'echo', kind: 'api_key', baseUrl: `${up.base}/api`, allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'ECHO_KEY' }, requiredScopes: ['deputy.read'] },
      ],
      pdp: { watch: false },
    },
  });
  adminToken = await clientCredentialsToken(await oauthClient(deputy.issuer, admin.id, admin.keys), 'deputy:admin');
  pepToken = await clientCredentialsToken(await oauthClient(deputy.issuer, 'test-pep', pepKeys), 'authzen:evaluate');
  agent = await testAgent(deputy.issuer, 'agent-a', agentKeys);
}, 120_000);
afterAll(async () => {
  await proxy?.up().catch(() => {});
  await deputy?.stop();
  await proxy?.close();
  await up?.close();
  await idp?.close();
  await db?.drop();
});

async function gwToken(): Promise<string> {
  const subject = await idp.oktaAccessToken({ scp: ['deputy.read'] });
  return (await exchange(agent, { subject_token: subject, resource: `${issuer}/gw/echo`, scope: 'deputy.read' })).access_token;
}

/** One request per surface that needs the store; each builds fresh credentials (proofs and assertions are single use). */
function surfaces(tokens: { gw: string; introspected: string; revoked: string; evaluated: string }): Array<{ name: string; send: () => Promise<Response> }> {
  return [
    {
      name: 'POST /token (client_credentials)',
      send: () => authenticatedPost(`${deputy.url}/token`, issuer, admin, { grant_type: 'client_credentials', scope: 'deputy:admin' }),
    },
    {
      name: 'POST /token (token exchange)',
      send: async () => rawExchange(deputy.url, issuer, agent, { subject_token: await idp.oktaAccessToken({ scp: ['deputy.read'] }), resource: 'https://api.example.com', scope: 'deputy.read' }),
    },
    { name: 'POST /introspect', send: () => authenticatedPost(`${deputy.url}/introspect`, issuer, admin, { token: tokens.introspected }) },
    { name: 'POST /revoke', send: () => authenticatedPost(`${deputy.url}/revoke`, issuer, admin, { token: tokens.revoked }) },
    { name: 'GET /admin/agents', send: () => fetch(`${deputy.url}/admin/agents`, { headers: { authorization: `Bearer ${adminToken}` } }) },
    { name: 'GET /admin/connections', send: () => fetch(`${deputy.url}/admin/connections`, { headers: { authorization: `Bearer ${adminToken}` } }) },
    {
      name: 'POST /access/v1/evaluation (a delegated subject)',
      send: () =>
        fetch(`${deputy.url}/access/v1/evaluation`, {
          method: 'POST',
          headers: { authorization: `Bearer ${pepToken}`, 'content-type': 'application/json', 'deputy-receipt': 'request' },
          body: JSON.stringify({
            subject: { type: 'Agent', id: 'agent-a', properties: { token: tokens.evaluated } },
            action: { name: 'read' },
            resource: { type: 'Resource', id: 'doc-1', properties: { owner: 'someone@example.com', scope: 'deputy.read' } },
          }),
        }),
    },
    {
      name: 'GET /gw/echo',
      send: async () =>
        fetch(`${deputy.url}/gw/echo/items`, {
          headers: { authorization: `DPoP ${tokens.gw}`, dpop: await dpopProof(agent.dpop, `${issuer}/gw/echo/items`, { htm: 'GET', accessToken: tokens.gw }) },
        }),
    },
  ];
}

describe.skipIf(!usingPostgres)('the database goes away and comes back', { timeout: 180_000 }, () => {
  it('every surface answers 503 temporarily_unavailable with Retry-After while it is away, and serves again once it is back', async () => {
    const tokens = { gw: await gwToken(), introspected: await gwToken(), revoked: await gwToken(), evaluated: await gwToken() };
    const cases = surfaces(tokens);

    await proxy.down();
    for (const c of cases) {
      const res = await c.send();
      const text = await res.text();
      expect(res.status, `${c.name}: ${text}`).toBe(503);
      expect(res.headers.get('retry-after'), c.name).toMatch(/^\d+$/);
      expect(res.headers.get('content-type'), c.name).toMatch(/^application\/json/);
      const body = JSON.parse(text) as { error: string; error_description: string };
      expect(body.error, c.name).toBe('temporarily_unavailable');
      expect(body.error_description, c.name).toMatch(/store is unavailable/);
      expect(text, c.name).not.toMatch(/ECONNREFUSED|127\.0\.0\.1|postgres|stack/i);
    }
    expect((await fetch(`${deputy.url}/readyz`)).status).toBe(503);
    expect(deputy.logs.join('')).not.toMatch(/"msg":"unhandled error"/);

    await proxy.up();
    // The pool reconnects on demand: poll readiness (bounded) rather than assume a time.
    for (let i = 0; i < 50 && (await fetch(`${deputy.url}/readyz`)).status !== 200; i += 1) await new Promise((r) => setTimeout(r, 200));
    for (const c of cases) {
      const res = await c.send();
      expect(res.status, `${c.name}: ${await res.clone().text()}`).toBe(200);
      await res.arrayBuffer();
    }
  });
});

/**
 * After a failover the connection string can reach a read-only standby: the server answers every
 * write with SQLSTATE 25006 (read_only_sql_transaction). Made true here for the test's database
 * (`default_transaction_read_only` for new sessions, the pool's sessions ended): writes must
 * answer 503 like an outage — it is one for them — never a 500, and the log names the SQLSTATE.
 */
describe.skipIf(!usingPostgres)('the database turns read-only (a standby after a failover) and back', { timeout: 180_000 }, () => {
  async function setReadOnly(on: boolean): Promise<void> {
    const { default: pg } = await import('pg');
    // Through the server's own database: the test's is read-only once set.
    const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
    await client.connect();
    try {
      const name = new URL(db.url!).pathname.slice(1);
      await client.query(on ? `ALTER DATABASE ${name} SET default_transaction_read_only = on` : `ALTER DATABASE ${name} RESET default_transaction_read_only`);
      await client.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [name]);
    } finally {
      await client.end();
    }
  }

  it('every write answers 503 temporarily_unavailable with Retry-After, reads still answer, and all serve again once writable', async () => {
    const tokens = { gw: await gwToken(), introspected: await gwToken(), revoked: await gwToken(), evaluated: await gwToken() };
    const writes = new Set(['POST /token (token exchange)', 'POST /access/v1/evaluation (a delegated subject)', 'GET /gw/echo', 'DELETE /admin/connections/echo/users/someone']);
    const cases = [
      ...surfaces(tokens),
      { name: 'DELETE /admin/connections/echo/users/someone', send: () => fetch(`${deputy.url}/admin/connections/echo/users/someone%40example.com`, { method: 'DELETE', headers: { authorization: `Bearer ${adminToken}` } }) },
    ];
    const logged = deputy.logs.length;
    await setReadOnly(true);
    try {
      // The sessions ended: the first statements may meet a closed connection (an outage, 503 too).
      for (const c of cases) {
        const res = await c.send();
        const text = await res.text();
        expect(res.status, `${c.name}: ${text}`).not.toBe(500);
        if (writes.has(c.name)) {
          expect(res.status, `${c.name}: ${text}`).toBe(503);
          expect(res.headers.get('retry-after'), c.name).toMatch(/^\d+$/);
          expect((JSON.parse(text) as { error: string }).error, c.name).toBe('temporarily_unavailable');
          expect(text, c.name).not.toMatch(/read-only|25006|postgres|stack/i);
        }
      }
      const lines = deputy.logs.slice(logged).join('');
      expect(lines).not.toMatch(/"msg":"unhandled error"/);
      expect(lines).toMatch(/the database is read-only \(a standby\?\) ← [^"]*\(25006\)/);
    } finally {
      await setReadOnly(false);
    }
    for (let i = 0; i < 50 && (await fetch(`${deputy.url}/readyz`)).status !== 200; i += 1) await new Promise((r) => setTimeout(r, 200));
    const again = { gw: await gwToken(), introspected: await gwToken(), revoked: await gwToken(), evaluated: await gwToken() };
    for (const c of surfaces(again)) {
      const res = await c.send();
      expect(res.status, `${c.name}: ${await res.clone().text()}`).toBe(200);
      await res.arrayBuffer();
    }
  });
});
