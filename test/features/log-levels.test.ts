/**
 * Logging at production's default level (`warn`), over HTTP as agents call. Every other feature
 * test collects logs at `debug`, where the request's child logger is built by the access line;
 * since issue 16's eighth round that child is built only on first use and the access line is
 * skipped while `info` is off (src/http/middleware.ts). Here: a call that succeeds writes
 * nothing; one the upstream fails is still logged at `warn`, through the lazily built child,
 * with the `reqId` the response carries (given by the caller or generated); no line carries the
 * credential or the agent's token.
 */
import { randomBytes } from 'node:crypto';
import * as client from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentConfig, exchange, testAgent, type TestAgent } from '../support/agents.js';
import { clientKeys } from '../support/clients.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { freePort } from '../support/net.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';
import { startMockUpstream, type MockUpstream } from '../support/upstream.js';

const API_KEY = `sk_live_${randomBytes(16).toString('hex')}`;

let idp: MockIdp;
let up: MockUpstream;
let deputy: TestDeputy;
let agent: TestAgent;

beforeAll(async () => {
  idp = await startMockIdp();
  up = await startMockUpstream();
  const keys = await clientKeys();
  const port = await freePort();
  const audiences = ['echo', 'down'].map((c) => `http://localhost:${port}/gw/${c}`).concat(`http://localhost:${port}/llm/llm-down`);
  deputy = await startTestDeputy({
    logLevel: 'warn',
    env: { ECHO_KEY: API_KEY },
    config: {
      server: { port },
      trustedIssuers: [idp.issuerConfig('okta')],
      agents: [agentConfig('agent-l', keys, { scopes: ['deputy.read'], audiences })],
      connections: [
        { id: 'echo', kind: 'api_key', baseUrl: `${up.base}/api`, allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'ECHO_KEY' }, requiredScopes: ['deputy.read'] },
        { id: 'llm-down', kind: 'llm', provider: 'openai', baseUrl: `http://127.0.0.1:${await freePort()}`, allowInsecureHttp: true, secret: { env: 'ECHO_KEY' }, requiredScopes: ['deputy.read'] },
        { id: 'down', kind: 'api_key', baseUrl: `http://127.0.0.1:${await freePort()}`, allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'ECHO_KEY' }, requiredScopes: ['deputy.read'] },
      ],
    },
  });
  agent = await testAgent(deputy.issuer, 'agent-l', keys);
});
afterAll(async () => {
  await deputy?.stop();
  await up?.close();
  await idp?.close();
});

/** A DPoP-bound gateway call on `connection`, as an agent makes it, with the token it used. */
async function gatewayCall(connection: string, requestId?: string): Promise<{ res: Response; token: string }> {
  const subject = await idp.oktaAccessToken({ scp: ['deputy.read'] });
  const token = (await exchange(agent, { subject_token: subject, resource: `${deputy.issuer}/gw/${connection}`, scope: 'deputy.read' })).access_token;
  const headers = new Headers(requestId ? { 'X-Request-ID': requestId } : {});
  const res = await client.fetchProtectedResource(agent.config, token, new URL(`${deputy.issuer}/gw/${connection}/items`), 'GET', null, headers, { DPoP: agent.handle });
  return { res, token };
}

/** The collected lines carrying `reqId`, parsed. */
const linesOf = (reqId: string) => deputy.logs.flatMap((chunk) => chunk.split('\n').filter(Boolean)).map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.reqId === reqId);

describe('logs at the default level (warn)', () => {
  it('a call that succeeds writes no line: no access line, no gateway line', async () => {
    const { res } = await gatewayCall('echo');
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    const reqId = res.headers.get('x-request-id')!;
    expect(reqId).toMatch(/^[0-9a-f-]{36}$/);
    expect(linesOf(reqId)).toEqual([]);
  });

  it('an upstream failure is logged at warn with the reqId the response carries, generated or given', async () => {
    for (const given of [undefined, 'rt-log-1']) {
      const { res, token } = await gatewayCall('down', given);
      expect(res.status).toBe(502);
      const reqId = res.headers.get('x-request-id')!;
      if (given) expect(reqId).toBe(given);
      const lines = linesOf(reqId);
      expect(lines).toEqual([expect.objectContaining({ level: 'warn', msg: 'request not served', reqId, err: { code: 'bad_gateway', cause: 'Error (ECONNREFUSED)' } })]);
      const all = deputy.logs.join('');
      expect(all).not.toContain(API_KEY);
      expect(all).not.toContain(token);
    }
  });

  it('an unreachable LLM provider (fetch: TypeError "fetch failed") is logged with what failed underneath, not a bare TypeError', async () => {
    const subject = await idp.oktaAccessToken({ scp: ['deputy.read'] });
    const token = (await exchange(agent, { subject_token: subject, resource: `${deputy.issuer}/llm/llm-down`, scope: 'deputy.read' })).access_token;
    const body = JSON.stringify({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }], max_tokens: 5 });
    const headers = new Headers({ 'Content-Type': 'application/json' });
    const res = await client.fetchProtectedResource(agent.config, token, new URL(`${deputy.issuer}/llm/llm-down/v1/chat/completions`), 'POST', body, headers, { DPoP: agent.handle });
    expect(res.status).toBe(502);
    await res.arrayBuffer();
    const reqId = res.headers.get('x-request-id')!;
    expect(linesOf(reqId)).toEqual([expect.objectContaining({ level: 'warn', msg: 'request not served', reqId, err: { code: 'bad_gateway', cause: 'TypeError ← Error (ECONNREFUSED)' } })]);
    const all = deputy.logs.join('');
    expect(all).not.toContain(API_KEY);
    expect(all).not.toContain(token);
  });
});
