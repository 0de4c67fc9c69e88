/**
 * Transactions the database aborts for a conflict with a concurrent one — SQLSTATE 40001
 * serialization_failure (an operator's `default_transaction_isolation = serializable`), 40P01
 * deadlock_detected — seen over HTTP, on both stores: where the whole transaction is safe to run
 * again Deputy does (bounded), so a conflict or two is invisible to the client; past the bound,
 * and where nothing retries, the answer is `503 temporarily_unavailable` with `Retry-After` —
 * never a 500 — and the log names the SQLSTATE.
 *
 * The conflicts are the server's own errors: a trigger raises the SQLSTATE on the table's writes
 * (`RAISE … USING ERRCODE`), as many times as armed — a sequence counts them, since the
 * transaction each one aborts rolls back everything else.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentConfig, dpopProof, exchange, rawExchange, testAgent, type TestAgent } from '../support/agents.js';
import { adminSetup, clientCredentialsToken, clientKeys, oauthClient } from '../support/clients.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { freePort } from '../support/net.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';
import { startMockUpstream, type MockUpstream } from '../support/upstream.js';
import { CONFLICT_ATTEMPTS } from '../../src/store/index.js';

let idp: MockIdp;
let up: MockUpstream;
let deputy: TestDeputy;
let adminToken: string;
let pepToken: string;
let agent: TestAgent;
let gwAudience: string;

/** Raises the armed SQLSTATE on writes to the armed table, for the next `n` rows. */
const FAULTS = `
  CREATE SEQUENCE conflict_fault_seq;
  CREATE TABLE conflict_fault (tbl text PRIMARY KEY, n bigint NOT NULL, code text NOT NULL);
  CREATE FUNCTION conflict_fault() RETURNS trigger LANGUAGE plpgsql AS $$
  DECLARE lim bigint; c text;
  BEGIN
    SELECT n, code INTO lim, c FROM conflict_fault WHERE tbl = TG_TABLE_NAME;
    IF lim IS NOT NULL AND nextval('conflict_fault_seq') <= lim THEN
      RAISE EXCEPTION 'injected conflict' USING ERRCODE = c;
    END IF;
    RETURN NEW;
  END $$;
  CREATE TRIGGER conflict_fault BEFORE INSERT OR UPDATE ON receipts FOR EACH ROW EXECUTE FUNCTION conflict_fault();
  CREATE TRIGGER conflict_fault BEFORE INSERT OR UPDATE ON agents FOR EACH ROW EXECUTE FUNCTION conflict_fault();`;

/** The next `n` writes to `table` raise `code`; `n` = 0 disarms. */
async function arm(table: 'receipts' | 'agents', n: number, code = '40001'): Promise<void> {
  await deputy.store.exec(`DELETE FROM conflict_fault; SELECT setval('conflict_fault_seq', 1, false);`);
  if (n > 0) await deputy.store.query('INSERT INTO conflict_fault (tbl, n, code) VALUES ($1, $2, $3)', [table, n, code]);
}

/** How many conflicts were raised since the last {@link arm}. */
async function raised(): Promise<number> {
  const rows = await deputy.store.query<{ last_value: string; is_called: boolean }>('SELECT last_value::text, is_called FROM conflict_fault_seq');
  const { n } = (await deputy.store.query<{ n: string }>('SELECT COALESCE(max(n), 0)::text AS n FROM conflict_fault'))[0]!;
  return rows[0]!.is_called ? Math.min(Number(rows[0]!.last_value), Number(n)) : 0;
}

beforeAll(async () => {
  idp = await startMockIdp();
  up = await startMockUpstream();
  const a = await adminSetup();
  const pepKeys = await clientKeys();
  const agentKeys = await clientKeys();
  const port = await freePort();
  gwAudience = `http://localhost:${port}/gw/echo`;
  deputy = await startTestDeputy({
    env: { ECHO_KEY: 'sk_conflict_0123456789' },
    config: {
      server: { port },
      admin: { clients: [a.config, { client_id: 'test-pep', scopes: ['authzen:evaluate'], jwks: pepKeys.jwks }] },
      trustedIssuers: [idp.issuerConfig('okta')],
      agents: [
        agentConfig('agent-a', agentKeys, { scopes: ['deputy.read'], audiences: ['https://api.example.com', gwAudience] }),
        agentConfig('agent-b', await clientKeys(), { scopes: ['deputy.read'], audiences: ['https://api.example.com'] }),
      ],
      connections: [
        { id: 'echo', kind: 'api_key', baseUrl: `${up.base}/api`, allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'ECHO_KEY' }, requiredScopes: ['deputy.read'] },
      ],
      pdp: { watch: false },
    },
  });
  adminToken = await clientCredentialsToken(await oauthClient(deputy.issuer, a.clientId, a.keys), 'deputy:admin');
  pepToken = await clientCredentialsToken(await oauthClient(deputy.issuer, 'test-pep', pepKeys), 'authzen:evaluate');
  agent = await testAgent(deputy.issuer, 'agent-a', agentKeys);
  await deputy.store.exec(FAULTS);
}, 120_000);
afterAll(async () => {
  await deputy?.stop();
  await up?.close();
  await idp?.close();
});

async function agentToken(resource: string): Promise<string> {
  const subject = await idp.oktaAccessToken({ scp: ['deputy.read'] });
  return (await exchange(agent, { subject_token: subject, resource, scope: 'deputy.read' })).access_token;
}

/** One request per surface whose write is a receipt; each builds fresh credentials. */
function receiptWriters(tokens: { gw: string; evaluated: string }): Array<{ name: string; send: () => Promise<Response> }> {
  return [
    {
      name: 'POST /token (token exchange)',
      send: async () => rawExchange(deputy.url, deputy.issuer, agent, { subject_token: await idp.oktaAccessToken({ scp: ['deputy.read'] }), resource: 'https://api.example.com', scope: 'deputy.read' }),
    },
    {
      name: 'POST /access/v1/evaluation (with a receipt)',
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
          headers: { authorization: `DPoP ${tokens.gw}`, dpop: await dpopProof(agent.dpop, `${deputy.issuer}/gw/echo/items`, { htm: 'GET', accessToken: tokens.gw }) },
        }),
    },
  ];
}

async function expect503(res: Response, name: string): Promise<void> {
  const text = await res.text();
  expect(res.status, `${name}: ${text}`).toBe(503);
  expect(res.headers.get('retry-after'), name).toMatch(/^\d+$/);
  const body = JSON.parse(text) as { error: string; error_description: string };
  expect(body.error, name).toBe('temporarily_unavailable');
  expect(text, name).not.toMatch(/40001|40P01|serializ|deadlock|injected|postgres|stack/i);
}

describe('a transaction the database aborts for a conflict (40001 / 40P01)', { timeout: 120_000 }, () => {
  it.each(['40001', '40P01'])('%s on the admin API: retried until it commits (the client sees 200), past the bound 503 with Retry-After', async (code) => {
    const disable = () => fetch(`${deputy.url}/admin/agents/agent-b/disable`, { method: 'POST', headers: { authorization: `Bearer ${adminToken}` } });
    const enable = () => fetch(`${deputy.url}/admin/agents/agent-b/enable`, { method: 'POST', headers: { authorization: `Bearer ${adminToken}` } });
    await arm('agents', CONFLICT_ATTEMPTS - 1, code);
    const res = await disable();
    expect(res.status, await res.clone().text()).toBe(200);
    expect(((await res.json()) as { status: string }).status).toBe('disabled');
    expect(await raised()).toBe(CONFLICT_ATTEMPTS - 1);

    const logged = deputy.logs.length;
    await arm('agents', 1_000, code);
    await expect503(await enable(), 'POST /admin/agents/agent-b/enable');
    expect(await raised()).toBe(CONFLICT_ATTEMPTS);
    const lines = deputy.logs.slice(logged).join('');
    expect(lines).not.toMatch(/"msg":"unhandled error"/);
    expect(lines).toMatch(new RegExp(`the database aborted the transaction[^"]*← [^"]*\\(${code}\\)`));
    await arm('agents', 0);
    // Nothing of the refused transaction stayed: still disabled, and enabling works again.
    const again = await enable();
    expect(((await again.json()) as { status: string }).status).toBe('active');
  });

  it('on a receipt write (exchange, decision, gateway call): a conflict on the group statement and one on the locked path are invisible; one every time is 503', async () => {
    for (const c of receiptWriters({ gw: await agentToken(gwAudience), evaluated: await agentToken('https://api.example.com') })) {
      // The group statement, then the locked path's first run: its second commits.
      await arm('receipts', 2);
      const res = await c.send();
      expect(res.status, `${c.name}: ${await res.clone().text()}`).toBe(200);
      await res.arrayBuffer();
      expect(await raised(), c.name).toBe(2);
    }
    const logged = deputy.logs.length;
    const tokens = { gw: await agentToken(gwAudience), evaluated: await agentToken('https://api.example.com') };
    await arm('receipts', 1_000);
    for (const c of receiptWriters(tokens)) await expect503(await c.send(), c.name);
    await arm('receipts', 0);
    const lines = deputy.logs.slice(logged).join('');
    expect(lines).not.toMatch(/"msg":"unhandled error"/);
    expect(lines).toMatch(/the database aborted the transaction[^"]*← [^"]*\(40001\)/);
  });
});
