/**
 * Revocable operator tokens attacked as an adversary would, over HTTP: a revoked PEP token on
 * every AuthZEN path (evaluation, evaluations, search; the lean path with the decision cache off,
 * the cached path with it on, the routes behind both); revocation requests with wrong client
 * authentication, by a client the token was not issued to (an agent, another PEP), with a lying
 * `token_type_hint`; a PEP trying to revoke an agent's token. Every refusal changes nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentConfig, authenticatedPost, clientAssertion, exchange, testAgent, type TestAgent } from '../support/agents.js';
import { REPO, startPdpHarness, type PdpHarness } from '../support/authzen.js';
import { clientCredentialsToken, clientKeys, oauthClient, type ClientKeys } from '../support/clients.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';

const POLICIES = `${REPO}test/fixtures/policies/chain`;
const DOCS = 'https://docs.example.com';
const ALICE = { uid: '00ualice00000000001', email: 'alice@example.com' };
const PLAIN = { type: 'User', id: ALICE.email, properties: { email: ALICE.email } };
const EVALUATION = { subject: PLAIN, action: { name: 'read' }, resource: { type: 'Document', id: 'doc-1', properties: {} } };
/** Every AuthZEN request a PEP sends with its token: path and body. */
const REQUESTS: ReadonlyArray<readonly [string, unknown]> = [
  ['/access/v1/evaluation', EVALUATION],
  ['/access/v1/evaluations', { evaluations: [EVALUATION, EVALUATION] }],
  ['/access/v1/search/resource', { subject: PLAIN, action: { name: 'read' }, resource: { type: 'Document' } }],
];

async function call(base: string, path: string, body: unknown, token: string): Promise<{ status: number; challenge: string | null }> {
  const res = await fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify(body) });
  await res.arrayBuffer();
  return { status: res.status, challenge: res.headers.get('www-authenticate') };
}

for (const [name, decisionCacheSize] of [['lean path (decision cache off)', 0], ['cached path (decision cache on)', undefined]] as const) {
  describe(`revoked operator tokens, ${name}`, () => {
    let idp: MockIdp;
    let h: PdpHarness;
    let agent: TestAgent;
    let agentToken: string;
    let otherPep: { id: string; keys: ClientKeys };
    const pepToken = async () => clientCredentialsToken(await oauthClient(h.deputy.issuer, h.pep.id, h.pep.keys), 'authzen:evaluate');
    const revokeAs = (caller: { id: string; keys: ClientKeys }, form: Record<string, string>) => authenticatedPost(`${h.deputy.url}/revoke`, h.deputy.issuer, caller, form);
    const introspect = async (token: string) => (await (await authenticatedPost(`${h.deputy.url}/introspect`, h.deputy.issuer, h.admin, { token })).json()) as Record<string, unknown>;
    const works = async (token: string) => {
      for (const [path, body] of REQUESTS) expect((await call(h.deputy.url, path, body, token)).status, path).toBe(200);
    };

    beforeAll(async () => {
      idp = await startMockIdp();
      const keys = await clientKeys();
      otherPep = { id: 'other-pep', keys: await clientKeys() };
      h = await startPdpHarness({
        policies: POLICIES,
        config: {
          pdp: { policies: POLICIES, ...(decisionCacheSize === undefined ? {} : { decisionCacheSize }) },
          trustedIssuers: [idp.issuerConfig('okta')],
          agents: [agentConfig('agent-a', keys, { scopes: ['docs.read'], audiences: [DOCS], maxDelegationDepth: 3 })],
          admin: { clients: [{ client_id: otherPep.id, scopes: ['authzen:evaluate'], jwks: otherPep.keys.jwks }] },
        },
      });
      agent = await testAgent(h.deputy.issuer, 'agent-a', keys);
      const user = await idp.oktaAccessToken({ uid: ALICE.uid, email: ALICE.email, scp: ['openid', 'docs.read'] });
      agentToken = (await exchange(agent, { subject_token: user, resource: DOCS, scope: 'docs.read' })).access_token;
    });
    afterAll(async () => {
      await h?.stop();
      await idp?.close();
    });

    it('a revoked PEP token is refused on every AuthZEN path, remembered or not, with 401 invalid_token', async () => {
      const token = await pepToken();
      // Twice: the first verifies and remembers it, the second takes the remembered (lean / cached) path.
      await works(token);
      await works(token);
      expect((await revokeAs(h.pep, { token })).status).toBe(200);
      for (let i = 0; i < 2; i++) {
        for (const [path, body] of REQUESTS) {
          const answer = await call(h.deputy.url, path, body, token);
          expect(answer.status, path).toBe(401);
          expect(answer.challenge, path).toMatch(/error="invalid_token"/);
        }
      }
      await works(h.pepToken);
    });

    it('refused revocations change nothing: wrong client authentication, an agent, another PEP, the token in another parameter', async () => {
      const token = await pepToken();
      await works(token);
      // A client assertion signed with another client's key: invalid_client (RFC 6749 §5.2).
      const forged = new URLSearchParams({ token, client_id: h.pep.id, client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: await clientAssertion({ id: h.pep.id, keys: otherPep.keys }, h.deputy.issuer) });
      const wrongAuth = await fetch(`${h.deputy.url}/revoke`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: forged });
      expect(wrongAuth.status).toBe(401);
      expect(((await wrongAuth.json()) as { error: string }).error).toBe('invalid_client');
      // No client authentication at all: invalid_client too.
      const anonymous = await fetch(`${h.deputy.url}/revoke`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ token }) });
      expect(anonymous.status).toBe(401);
      expect(((await anonymous.json()) as { error: string }).error).toBe('invalid_client');
      // The agent and another PEP may not revoke this PEP's token.
      for (const caller of [{ id: agent.id, keys: agent.keys }, otherPep]) {
        const refused = await revokeAs(caller, { token, token_type_hint: 'access_token' });
        expect(refused.status).toBe(400);
        expect(((await refused.json()) as { error: string }).error).toBe('unauthorized_client');
      }
      await works(token);
      expect(await introspect(token)).toMatchObject({ active: true });
      // A lying hint does not matter: the token is the PEP's own, so it is revoked.
      expect((await revokeAs(h.pep, { token, token_type_hint: 'refresh_token' })).status).toBe(200);
      expect((await call(h.deputy.url, REQUESTS[0]![0], REQUESTS[0]![1], token)).status).toBe(401);
      expect(await introspect(token)).toEqual({ active: false });
    });

    it("a PEP cannot revoke an agent's token (unauthorized_client), and the token stays active", async () => {
      const refused = await revokeAs(h.pep, { token: agentToken });
      expect(refused.status).toBe(400);
      expect(((await refused.json()) as { error: string }).error).toBe('unauthorized_client');
      expect(await introspect(agentToken)).toMatchObject({ active: true, client_id: 'agent-a' });
    });
  });
}
