/**
 * Bodies over the limit, on every surface that has one (issue 11 part 7): the client always
 * reads the whole 413 (JSON body, `Connection: close`) and never a connection reset, whether the
 * body is declared (`Content-Length`) or streamed (`Transfer-Encoding: chunked`, no length).
 * The server answers before it has read the body, so each case runs several times to catch the
 * race between the response and the rest of the upload (RFC 9112 §9.6 graceful close).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentConfig, dpopProof, exchange, testAgent, type TestAgent } from '../support/agents.js';
import { adminSetup, clientCredentialsToken, clientKeys, oauthClient } from '../support/clients.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { freePort } from '../support/net.js';
import { rawUpload, type UploadResult } from '../support/raw-http.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';
import { startMockUpstream, type MockUpstream } from '../support/upstream.js';

const FIVE_MB = 5 * 1024 * 1024;
const ROUNDS = 4;

let idp: MockIdp;
let up: MockUpstream;
let deputy: TestDeputy;
let port: number;
let adminToken: string;
let pepToken: string;
let agent: TestAgent;
let gwToken: string;

beforeAll(async () => {
  idp = await startMockIdp();
  up = await startMockUpstream();
  port = await freePort();
  const issuer = `http://localhost:${port}`;
  const admin = await adminSetup();
  const pepKeys = await clientKeys();
  const agentKeys = await clientKeys();
  deputy = await startTestDeputy({
    env: { ECHO_KEY: 'sk_body_limits_0123456789' },
    config: {
      server: { port },
      admin: { clients: [admin.config, { client_id: 'test-pep', scopes: ['authzen:evaluate'], jwks: pepKeys.jwks }] },
      trustedIssuers: [idp.issuerConfig('okta')],
      gateway: { maxRequestBytes: 1024 * 1024 },
      agents: [agentConfig('agent-a', agentKeys, { scopes: ['deputy.read'], audiences: [`${issuer}/gw/echo`] })],
      connections: [
        { id: 'echo', kind: 'api_key', baseUrl: `${up.base}/api`, allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'ECHO_KEY' }, requiredScopes: ['deputy.read'] },
      ],
      pdp: { watch: false },
    },
  });
  adminToken = await clientCredentialsToken(await oauthClient(deputy.issuer, admin.clientId, admin.keys), 'deputy:admin');
  pepToken = await clientCredentialsToken(await oauthClient(deputy.issuer, 'test-pep', pepKeys), 'authzen:evaluate');
  agent = await testAgent(deputy.issuer, 'agent-a', agentKeys);
  const subject = await idp.oktaAccessToken({ scp: ['deputy.read'] });
  gwToken = (await exchange(agent, { subject_token: subject, resource: `${issuer}/gw/echo`, scope: 'deputy.read' })).access_token;
}, 120_000);
afterAll(async () => {
  await deputy?.stop();
  await up?.close();
  await idp?.close();
});

function expect413(result: UploadResult, what: string): void {
  expect(result.error, `${what}: the client saw ${result.error}`).toBeUndefined();
  expect(result.response, `${what}: no complete response`).toBeDefined();
  const res = result.response!;
  expect(res.status, what).toBe(413);
  expect(res.headers.connection, what).toBe('close');
  expect(res.headers['content-type'], what).toMatch(/^application\/json/);
  const body = JSON.parse(res.body) as { error: string; error_description: string };
  expect(body.error, what).toBe('payload_too_large');
  expect(body.error_description, what).toMatch(/exceeds \d+ bytes/);
}

const surfaces: Array<{ name: string; path: string; contentType?: string; auth?: () => Promise<Record<string, string>> }> = [
  { name: '/token', path: '/token', contentType: 'application/x-www-form-urlencoded' },
  { name: '/introspect', path: '/introspect', contentType: 'application/x-www-form-urlencoded' },
  { name: '/revoke', path: '/revoke', contentType: 'application/x-www-form-urlencoded' },
  { name: '/access/v1/evaluation', path: '/access/v1/evaluation', auth: async () => ({ authorization: `Bearer ${pepToken}` }) },
  { name: '/access/v1/evaluations', path: '/access/v1/evaluations', auth: async () => ({ authorization: `Bearer ${pepToken}` }) },
  { name: '/admin/agents', path: '/admin/agents', auth: async () => ({ authorization: `Bearer ${adminToken}` }) },
  { name: '/admin/connections', path: '/admin/connections', auth: async () => ({ authorization: `Bearer ${adminToken}` }) },
  {
    name: '/gw/{connection}',
    path: '/gw/echo/upload',
    contentType: 'application/octet-stream',
    // A fresh DPoP proof per call (proofs are single use).
    auth: async () => ({
      authorization: `DPoP ${gwToken}`,
      dpop: await dpopProof(agent.dpop, `${deputy.issuer}/gw/echo/upload`, { accessToken: gwToken }),
    }),
  },
];

describe('a 5 MB body on every surface with a limit is answered 413, read whole by the client', { timeout: 120_000 }, () => {
  for (const surface of surfaces) {
    for (const chunked of [false, true]) {
      it(`${surface.name}, ${chunked ? 'chunked (no length)' : 'declared length'}`, async () => {
        for (let round = 0; round < ROUNDS; round += 1) {
          const headers = { 'content-type': surface.contentType ?? 'application/json', ...(await surface.auth?.()) };
          const result = await rawUpload(port, surface.path, { size: FIVE_MB, chunked, headers });
          expect413(result, `${surface.name} round ${round}`);
        }
      });
    }
  }

  it('the server keeps serving on other connections afterwards', async () => {
    expect((await fetch(`${deputy.url}/readyz`)).status).toBe(200);
  });
});
