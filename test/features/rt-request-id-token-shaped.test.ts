/**
 * Red team (issue 16, twelfth round: receipt inputs from every producer). A caller's
 * `X-Request-ID` is echoed and becomes the receipt's `request_id` when it matches the request-id
 * pattern (1–128 of `A-Za-z0-9._:-`) — which a JWS's shape also matches. A gateway call carrying
 * `X-Request-ID: eyJ….….…` had its receipt refused ("looks like a token": receipts never carry
 * tokens), so the call was answered as a store outage (503) and counted in
 * `deputy_receipt_append_failures_total` — an alert an agent must not be able to raise — and every
 * log line of the request carried the token-shaped text. Such an id is now replaced, as any
 * other that does not fit, so the call is forwarded and receipted. Over HTTP as a real agent.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentConfig, dpopProof, exchange, testAgent, type TestAgent } from '../support/agents.js';
import { adminSetup, clientCredentialsToken, clientKeys, oauthClient } from '../support/clients.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { freePort } from '../support/net.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';
import { startMockUpstream, type MockUpstream } from '../support/upstream.js';

const API_KEY = `sk_live_${randomBytes(16).toString('hex')}`;
const TOKEN_SHAPED = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl';

let idp: MockIdp;
let up: MockUpstream;
let deputy: TestDeputy;
let agent: TestAgent;
let adminToken: string;

beforeAll(async () => {
  idp = await startMockIdp();
  up = await startMockUpstream();
  const port = await freePort();
  const base = `http://localhost:${port}`;
  const a = await adminSetup();
  const keys = await clientKeys();
  deputy = await startTestDeputy({
    env: { ECHO_KEY: API_KEY },
    config: {
      server: { port },
      admin: { clients: [a.config] },
      trustedIssuers: [idp.issuerConfig('okta')],
      agents: [agentConfig('agent-a', keys, { scopes: ['deputy.read'], audiences: [`${base}/gw/echo`] })],
      connections: [{ id: 'echo', kind: 'api_key', baseUrl: `${up.base}/api`, allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'ECHO_KEY' }, requiredScopes: ['deputy.read'] }],
    },
  });
  agent = await testAgent(deputy.issuer, 'agent-a', keys);
  adminToken = await clientCredentialsToken(await oauthClient(deputy.issuer, a.clientId, a.keys), 'deputy:admin');
}, 60_000);
afterAll(async () => {
  await deputy?.stop();
  await up?.close();
  await idp?.close();
});

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${deputy.url}/metrics`, { headers: { authorization: `Bearer ${adminToken}` } })).text();
  return text.split('\n').filter((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`)).reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

describe('a token-shaped X-Request-ID', () => {
  it('is not taken as the request id: the gateway call is forwarded and receipted, no receipt-failure alert', async () => {
    const url = `${deputy.issuer}/gw/echo/items`;
    const subject = await idp.oktaAccessToken({ scp: ['deputy.read'] });
    const token = (await exchange(agent, { subject_token: subject, resource: `${deputy.issuer}/gw/echo`, scope: 'deputy.read' })).access_token;
    const failures = await metric('deputy_receipt_append_failures_total');
    const res = await fetch(url, { headers: { authorization: `DPoP ${token}`, dpop: await dpopProof(agent.dpop, url, { htm: 'GET', accessToken: token }), 'x-request-id': TOKEN_SHAPED } });
    await res.text();
    expect(res.status).toBe(200);
    expect(res.headers.get('x-request-id')).not.toBe(TOKEN_SHAPED);
    expect(await metric('deputy_receipt_append_failures_total')).toBe(failures);
    await deputy.receipts.flush();
    const { receipts } = await deputy.receipts.list('agent-a', { limit: 1000 });
    expect(receipts.some((r) => r.jws.includes('.') && JSON.parse(Buffer.from(r.jws.split('.')[1]!, 'base64url').toString()).event === 'gateway_call')).toBe(true);
    // A request id that fits is still echoed.
    const plain = await fetch(`${deputy.url}/.well-known/openid-configuration`, { headers: { 'x-request-id': 'req-123.a:b' } });
    await plain.text();
    expect(plain.headers.get('x-request-id')).toBe('req-123.a:b');
  }, 60_000);
});
