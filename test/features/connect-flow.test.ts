/**
 * `oauth2_user` connections end to end: a user who has not connected gets 424 with a connect
 * link; their browser goes through a real OAuth provider (node-oidc-provider: authorization
 * code + PKCE, rotating refresh tokens); the gateway then injects their token, refreshes it once
 * when it expires (also with concurrent callers and two service instances), and sends them
 * through the flow again when the provider revoked the grant.
 */
import * as client from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentConfig, exchange, testAgent, type TestAgent } from '../support/agents.js';
import { clientKeys } from '../support/clients.js';
import { json } from '../support/http.js';
import { OKTA_USER_ID, startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { Browser, startOAuthProvider, type OAuthProvider } from '../support/oauth-provider.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';
import { startMockUpstream, type MockUpstream } from '../support/upstream.js';
import { DownstreamClients } from '../../src/vault/connections/oauth-client.js';
import { USER_REFRESH_TOKEN_KIND, UserGrants } from '../../src/vault/connections/user-grants.js';
import { freePort } from '../support/net.js';

const CLIENT_SECRET = 'downstream-client-secret-0123456789abcdef';
const SIGNIN_SECRET = 'signin-client-secret-0123456789abcdef';
/** The attacker's Okta user id (the victim is {@link OKTA_USER_ID}). */
const MALLORY = '00u9mallory000000000';

/** A browser whose user is signed in at the mock Okta as `uid` (Deputy still asks for sign-in). */
function browserOf(uid = OKTA_USER_ID): Browser {
  const browser = new Browser();
  browser.setCookie('127.0.0.1', 'okta_user', uid);
  return browser;
}

let idp: MockIdp;
let up: MockUpstream;
let op: OAuthProvider;
let deputy: TestDeputy;
let issuer: string;
let agent: TestAgent;
let userId: string;
const seenTokens = new Set<string>();
const gw = (c: string) => `${issuer}/gw/${c}`;


beforeAll(async () => {
  idp = await startMockIdp();
  up = await startMockUpstream();
  const port = await freePort();
  issuer = `http://localhost:${port}`;
  op = await startOAuthProvider({ clientId: 'deputy', clientSecret: CLIENT_SECRET, redirectUri: `${issuer}/connect/callback`, accountId: 'downstream-alice', scopes: ['files.read'] });
  const keys = await clientKeys();
  deputy = await startTestDeputy({
    env: { DRIVE_SECRET: CLIENT_SECRET, SIGNIN_SECRET },
    config: {
      server: { port },
      trustedIssuers: [idp.issuerConfig('okta', { signIn: { clientId: 'deputy-signin', clientAuth: 'client_secret_basic', secret: { env: 'SIGNIN_SECRET' } } })],
      agents: [agentConfig('agent-a', keys, { scopes: ['deputy.read'], audiences: [`${issuer}/gw/drive`] })],
      connections: [
        {
          id: 'drive', kind: 'oauth2_user', baseUrl: `${up.base}/drive`, allowInsecureHttp: true,
          issuer: op.issuer, clientId: 'deputy', secret: { env: 'DRIVE_SECRET' }, scopes: ['files.read'], requiredScopes: ['deputy.read'],
        },
      ],
    },
  });
  idp.oktaSignIn.registerClient({ clientId: 'deputy-signin', redirectUri: `${issuer}/signin/callback`, secret: SIGNIN_SECRET });
  agent = await testAgent(deputy.issuer, 'agent-a', keys);
  userId = `okta:${new URL(idp.base).host}:${OKTA_USER_ID}`;
});
afterAll(async () => {
  await deputy?.stop();
  await op?.close();
  await up?.close();
  await idp?.close();
});

async function callDrive(path = '/files', uid = OKTA_USER_ID): Promise<Response> {
  const subject = await idp.oktaAccessToken({ scp: ['deputy.read'], uid });
  const token = (await exchange(agent, { subject_token: subject, resource: gw('drive'), scope: 'deputy.read' })).access_token;
  return client.fetchProtectedResource(agent.config, token, new URL(`${gw('drive')}${path}`), 'GET', null, new Headers(), { DPoP: agent.handle });
}

/** The token the upstream saw on its last request, checked against the provider's own store. */
async function lastUpstreamToken(): Promise<string> {
  const auth = up.requests.at(-1)!.headers.authorization as string;
  const token = auth.replace(/^Bearer /, '');
  seenTokens.add(token);
  const stored = await op.provider.AccessToken.find(token);
  expect(stored?.accountId).toBe('downstream-alice');
  return token;
}

const expireAccessToken = () => deputy.store.query("UPDATE connection_grants SET access_expires_at = now() - interval '1 minute'");

async function connect(connectUri: string): Promise<void> {
  const browser = browserOf();
  const done = await browser.visit(connectUri);
  expect(done.status).toBe(200);
  expect(done.url.startsWith(`${issuer}/connect/callback?`)).toBe(true);
  expect(done.body).toMatch(/connected to <b>drive<\/b>/);
}

describe('oauth2_user: connect, use, refresh, revoke', () => {
  it('answers 424 with a connect link to a user who has not connected; nothing reaches the upstream', async () => {
    const before = up.requests.length;
    const res = await callDrive();
    expect(res.status).toBe(424);
    const body = await json(res);
    expect(body).toMatchObject({ error: 'connection_required', error_description: expect.stringMatching(/has not connected/) });
    expect(body.connect_uri).toMatch(new RegExp(`^${issuer}/connect/drive\\?ticket=[A-Za-z0-9_-]{43}$`));
    expect(up.requests.length).toBe(before);
  });

  it('the connect flow (authorization code + PKCE) stores the grant; the upstream then gets the user\'s token', async () => {
    const link = (await json(await callDrive())).connect_uri as string;
    const browser = browserOf();
    // Stop at the provider's redirect back, to look at it before Deputy does.
    const atProvider = await browser.visit(link, { stopAt: (next) => next.href.startsWith(`${issuer}/connect/callback`) });
    const callback = new URL(atProvider.location!);
    expect(callback.searchParams.get('code')).toBeTruthy();
    expect(callback.searchParams.get('iss')).toBe(op.issuer);
    // The authorization request carried a S256 PKCE challenge (the provider requires it, too).
    expect(op.tokenGrants.authorization_code ?? 0).toBe(0);

    // Without a sign-in session, the callback is refused and the code is not redeemed.
    const stranger = await fetch(callback, { redirect: 'manual' });
    expect(stranger.status).toBe(403);
    expect(await json(stranger)).toMatchObject({ error: 'access_denied', error_description: expect.stringMatching(/not signed in/) });
    // Signed in as the same user in another browser, without the flow's cookie: refused (CSRF binding).
    const sameUser = browserOf();
    await sameUser.visit(`${issuer}/signin?return_to=/signin/session`);
    const otherBrowser = await sameUser.visit(callback.href);
    expect(otherBrowser.status).toBe(400);
    expect(JSON.parse(otherBrowser.body)).toMatchObject({ error: 'invalid_request', error_description: expect.stringMatching(/started in this browser/) });
    expect(op.tokenGrants.authorization_code ?? 0).toBe(0);

    const done = await browser.visit(callback.href);
    expect(done.status).toBe(200);
    expect(op.tokenGrants.authorization_code).toBe(1);
    // The flow is single use.
    expect((await browser.visit(callback.href)).status).toBe(400);

    const res = await callDrive('/files?q=report');
    expect(res.status).toBe(200);
    const token = await lastUpstreamToken();
    expect(await res.text()).not.toContain(token);
    const grant = await deputy.store.query<{ refresh_handle: string | null; user_id: string }>('SELECT refresh_handle, user_id FROM connection_grants WHERE connection_id = $1', ['drive']);
    expect(grant).toEqual([{ refresh_handle: expect.stringMatching(/^urt_/), user_id: userId }]);
  });

  it('refreshes an expired token once, for concurrent calls', async () => {
    const before = await (async () => {
      await callDrive();
      return lastUpstreamToken();
    })();
    const refreshes = op.tokenGrants.refresh_token ?? 0;
    await expireAccessToken();
    const results = await Promise.all([1, 2, 3, 4].map(() => callDrive()));
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    expect(op.tokenGrants.refresh_token).toBe(refreshes + 1);
    const after = await lastUpstreamToken();
    expect(after).not.toBe(before);
    const tokens = new Set(up.requests.slice(-4).map((r) => r.headers.authorization));
    expect(tokens).toEqual(new Set([`Bearer ${after}`]));
  });

  it('two instances refreshing the same user token at once refresh once (row lock), and the rotated grant still works', async () => {
    const connection = (await deputy.isolation.connections.get('drive'))!;
    const instance = () =>
      new UserGrants({
        store: deputy.store,
        vault: deputy.isolation.vault,
        clients: new DownstreamClients(deputy.isolation.connections, { timeoutSeconds: 10 }),
        connectUri: async () => 'unused',
      });
    const [one, two] = [instance(), instance()];
    const refreshes = op.tokenGrants.refresh_token ?? 0;
    await expireAccessToken();
    const [t1, t2] = await Promise.all([one.accessToken(connection, userId), two.accessToken(connection, userId)]);
    expect(t1).toBe(t2);
    expect(op.tokenGrants.refresh_token).toBe(refreshes + 1);
    seenTokens.add(t1);
    // With rotation, a second refresh with the old refresh token would have revoked the grant.
    expect((await callDrive()).status).toBe(200);
  });

  it('a refresh token the provider revoked sends the user through the connect flow again', async () => {
    const [row] = await deputy.store.query<{ refresh_handle: string }>('SELECT refresh_handle FROM connection_grants WHERE connection_id = $1 AND user_id = $2', ['drive', userId]);
    const refreshToken = (await deputy.isolation.vault.get(deputy.store, row!.refresh_handle, USER_REFRESH_TOKEN_KIND))!;
    seenTokens.add(refreshToken);
    await (await op.provider.RefreshToken.find(refreshToken))!.destroy();
    await expireAccessToken();

    const before = up.requests.length;
    const res = await callDrive();
    expect(res.status).toBe(424);
    const body = await json(res);
    expect(body.error_description).toMatch(/revoked/);
    expect(up.requests.length).toBe(before);
    expect(await deputy.store.query('SELECT 1 FROM connection_grants WHERE connection_id = $1', ['drive'])).toHaveLength(0);
    expect(await deputy.store.query('SELECT 1 FROM vault_secrets WHERE handle = $1', [row!.refresh_handle])).toHaveLength(0);

    await connect(body.connect_uri);
    expect((await callDrive()).status).toBe(200);
    await lastUpstreamToken();
  });

  it('a user who declines at the provider gets a clear error; an expired link is refused', async () => {
    const link = (await (async () => {
      await deputy.store.query('DELETE FROM connection_grants');
      return json(await callDrive());
    })()).connect_uri as string;
    op.denyNextInteraction();
    const declined = await browserOf().visit(link);
    expect(declined.status).toBe(400);
    expect(JSON.parse(declined.body)).toMatchObject({ error: 'invalid_request', error_description: expect.stringMatching(/did not authorize.*access_denied/) });

    const stale = (await json(await callDrive())).connect_uri as string;
    await deputy.store.query("UPDATE connect_flows SET expires_at = now() - interval '1 second' WHERE completed_at IS NULL");
    const expired = await browserOf().visit(stale);
    expect(expired.status).toBe(400);
    expect(JSON.parse(expired.body)).toMatchObject({ error_description: expect.stringMatching(/expired or was already used/) });
  });

  it('account-linking attack (RFC 9700 §4.7): the attacker\'s link opened by a victim signed in as someone else is refused; the attacker\'s calls carry no victim token', async () => {
    await deputy.store.query('DELETE FROM connection_grants');
    // The attacker's agent gets a 424 with a link for the attacker's own grant slot…
    const attackerLink = (await json(await callDrive('/files', MALLORY))).connect_uri as string;
    const codesBefore = op.tokenGrants.authorization_code ?? 0;
    // …and lures the victim (signed in at the enterprise IdP as herself) into opening it.
    const victim = browserOf(OKTA_USER_ID);
    const opened = await victim.visit(attackerLink, { stopAt: (next) => next.origin === op.issuer });
    expect(opened.status).toBe(403);
    expect(JSON.parse(opened.body)).toMatchObject({ error: 'access_denied', error_description: expect.stringMatching(/another user/) });
    // The victim never reached the downstream provider; nothing was redeemed or stored.
    expect(opened.location).toBeUndefined();
    expect(op.tokenGrants.authorization_code ?? 0).toBe(codesBefore);
    expect(await deputy.store.query('SELECT 1 FROM connection_grants')).toHaveLength(0);
    // The attacker's next gateway call still gets 424: no downstream token of anyone's.
    const before = up.requests.length;
    const next = await callDrive('/files', MALLORY);
    expect(next.status).toBe(424);
    expect(up.requests.length).toBe(before);
    // The link's rightful user can still use it.
    const mallory = browserOf(MALLORY);
    const done = await mallory.visit(attackerLink);
    expect(done.status).toBe(200);
    expect((await callDrive('/files', MALLORY)).status).toBe(200);
  });

  it('no log line and no plaintext column contains the user\'s downstream tokens or the client secret', async () => {
    const secrets = [CLIENT_SECRET, SIGNIN_SECRET, ...seenTokens];
    expect(seenTokens.size).toBeGreaterThanOrEqual(3);
    const logs = deputy.logs.join('');
    expect(logs).toContain('user token refresh');
    for (const s of secrets) expect(logs).not.toContain(s);
    const tables = await deputy.store.query<{ table_name: string }>("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'");
    for (const { table_name } of tables) {
      const dump = (await deputy.store.query<{ row: string }>(`SELECT t::text AS row FROM "${table_name}" t`)).map((r) => r.row).join('\n');
      for (const s of secrets) {
        expect(dump, table_name).not.toContain(s);
        expect(dump, table_name).not.toContain(Buffer.from(s).toString('hex'));
      }
    }
  });
});
