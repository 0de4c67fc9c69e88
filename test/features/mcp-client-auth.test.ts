/**
 * The MCP TypeScript SDK's client auth (`@modelcontextprotocol/sdk` 1.32, `auth()` driven by the
 * Streamable HTTP transport through an `OAuthClientProvider`), unmodified, against Deputy: a call
 * through the gateway (`/gw/mcp/…`, an MCP server upstream) gets 401; the SDK discovers Deputy's
 * RFC 8414 metadata, sends the user to `/auth` (code + PKCE S256 + `resource`); the browser step
 * is scripted (cookie jar through the mock Okta's sign-in and Deputy's consent); the SDK redeems
 * the code; its next connection lists and calls the upstream's tools.
 *
 * What is configuration, not modification: the provider (a registered agent's `client_id`, its
 * `private_key_jwt` assertion through `addClientAuthentication`) and the transport's `fetch`,
 * which adds DPoP proofs (RFC 9449) — the SDK has no DPoP of its own.
 *
 * And an MCP host that knows nothing of Deputy: no registration, its `client_id` the https URL of
 * its Client ID Metadata Document (the SDK's `clientMetadataUrl`, used because Deputy's metadata
 * says `client_id_metadata_document_supported`), a public client (`none`) binding its token with
 * DPoP; Deputy makes it the registry agent `cimd-…` (`act.sub`).
 *
 * And the same host through the MCP gateway (`/mcp/{server}`), where every message is decided
 * and receipted: from its 401 to a tool call.
 *
 * Discovery is the SDK's own: the gateway's 401 offers a `Bearer` challenge first with RFC 9728
 * `resource_metadata`, which names Deputy's protected resource metadata for `/gw/mcp`
 * (issue 13 §4), whose `authorization_servers` is Deputy.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { OAuthClientProvider, OAuthDiscoveryState } from '@modelcontextprotocol/sdk/client/auth.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { OAuthClientInformationMixed, OAuthClientMetadata, OAuthTokens } from '@modelcontextprotocol/sdk/shared/auth.js';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { agentConfig, clientAssertion, dpopKeys, dpopProof, type DpopKeys } from '../support/agents.js';
import { clientKeys, type ClientKeys } from '../support/clients.js';
import { OKTA_USER_ID, startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { freePort } from '../support/net.js';
import { Browser } from '../support/oauth-provider.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';
import { documentAgentId } from '../../src/agents/document-client.js';

const REDIRECT = 'http://127.0.0.1:9/mcp-callback';
let idp: MockIdp;
let deputy: TestDeputy;
let issuer: string;
let upstream: Server;
let upstreamBase: string;
let keys: ClientKeys;
let proofKeys: DpopKeys;
const upstreamKeys: string[] = [];
let certDir: string;
let docs: Server;
let documentUrl: string;

/** An MCP server over Streamable HTTP (stateless), with one tool. */
function mcpUpstream(): Server {
  return createServer(async (req, res) => {
    upstreamKeys.push(String(req.headers['x-api-key']));
    const server = new McpServer({ name: 'upstream', version: '1.0.0' });
    server.registerTool('echo', { description: 'echoes', inputSchema: { text: z.string() } }, async ({ text }) => ({ content: [{ type: 'text', text: `echo: ${text}` }] }));
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    res.on('close', () => void transport.close());
    await server.connect(transport);
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    await transport.handleRequest(req, res, chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) : undefined);
  });
}

/** The OAuthClientProvider of an MCP host: in-memory storage, the browser step recorded. */
abstract class HostProvider {
  authorizationUrl: URL | undefined;
  #tokens: OAuthTokens | undefined;
  #verifier = '';
  #discovery: OAuthDiscoveryState | undefined;

  get redirectUrl(): string {
    return REDIRECT;
  }
  tokens(): OAuthTokens | undefined {
    return this.#tokens;
  }
  saveTokens(tokens: OAuthTokens): void {
    this.#tokens = tokens;
  }
  redirectToAuthorization(url: URL): void {
    this.authorizationUrl = url;
  }
  saveCodeVerifier(verifier: string): void {
    this.#verifier = verifier;
  }
  codeVerifier(): string {
    return this.#verifier;
  }
  discoveryState(): OAuthDiscoveryState | undefined {
    return this.#discovery;
  }
  saveDiscoveryState(state: OAuthDiscoveryState): void {
    this.#discovery = state;
  }
}

/** A host configured with a registered agent's `client_id` and key. */
class TestProvider extends HostProvider implements OAuthClientProvider {
  get clientMetadata(): OAuthClientMetadata {
    return { client_name: 'MCP host', redirect_uris: [REDIRECT], grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'private_key_jwt', scope: 'deputy.read' };
  }
  clientInformation(): OAuthClientInformationMixed {
    return { client_id: 'mcp-agent' };
  }
  /** RFC 7523 private_key_jwt: the registered agent authenticates with its key. */
  async addClientAuthentication(_headers: Headers, params: URLSearchParams): Promise<void> {
    params.set('client_id', 'mcp-agent');
    params.set('client_assertion_type', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
    params.set('client_assertion', await clientAssertion({ id: 'mcp-agent', keys }, issuer));
  }
}

/** A host Deputy never heard of: its `client_id` is the URL of its metadata document; a public client. */
class DocumentProvider extends HostProvider implements OAuthClientProvider {
  #info: OAuthClientInformationMixed | undefined;
  get clientMetadataUrl(): string {
    return documentUrl;
  }
  get clientMetadata(): OAuthClientMetadata {
    return { client_name: 'Any MCP host', redirect_uris: [REDIRECT], grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'none', scope: 'deputy.read' };
  }
  clientInformation(): OAuthClientInformationMixed | undefined {
    return this.#info;
  }
  saveClientInformation(info: OAuthClientInformationMixed): void {
    this.#info = info;
  }
}

/** The transport's fetch: DPoP proofs at the token endpoint, and `Authorization: DPoP` + proof (with `ath`) at the gateway. */
const dpopFetch: typeof fetch = async (input, init) => {
  const url = new URL(input instanceof Request ? input.url : String(input));
  const headers = new Headers(init?.headers);
  const method = init?.method ?? 'GET';
  const htu = `${url.origin}${url.pathname}`;
  if (htu === `${issuer}/token`) headers.set('DPoP', await dpopProof(proofKeys, htu, { htm: method }));
  const bearer = /^Bearer (.+)$/.exec(headers.get('authorization') ?? '');
  if (bearer && url.origin === issuer) {
    headers.set('authorization', `DPoP ${bearer[1]}`);
    headers.set('DPoP', await dpopProof(proofKeys, htu, { htm: method, accessToken: bearer[1]! }));
  }
  return fetch(input, { ...init, headers });
};

beforeAll(async () => {
  idp = await startMockIdp();
  upstream = mcpUpstream();
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  upstreamBase = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  const port = await freePort();
  issuer = `http://localhost:${port}`;
  keys = await clientKeys();
  proofKeys = await dpopKeys();
  // The host's metadata document, over https (a throwaway self-signed certificate, trusted through caFile).
  certDir = mkdtempSync(join(tmpdir(), 'mcp-cimd-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost', '-keyout', join(certDir, 'key.pem'), '-out', join(certDir, 'cert.pem')], { stdio: 'ignore' });
  docs = createHttpsServer({ key: readFileSync(join(certDir, 'key.pem')), cert: readFileSync(join(certDir, 'cert.pem')) }, (req, res) => {
    if (req.url !== '/mcp-host.json') return void res.writeHead(404).end();
    // The SDK's own metadata, `scope` included (a ceiling for Deputy), as the host would publish it.
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ client_id: documentUrl, ...new DocumentProvider().clientMetadata }));
  });
  await new Promise<void>((resolve) => docs.listen(0, '127.0.0.1', resolve));
  documentUrl = `https://localhost:${(docs.address() as AddressInfo).port}/mcp-host.json`;
  deputy = await startTestDeputy({
    env: { MCP_KEY: 'mcp-upstream-key-0123456789' },
    config: {
      server: { port },
      trustedIssuers: [idp.issuerConfig('okta', { signIn: { clientId: 'deputy-signin' } })],
      agents: [agentConfig('mcp-agent', keys, { scopes: ['deputy.read'], audiences: [`${issuer}/gw/mcp`, `${issuer}/mcp/up`] })],
      connections: [{ id: 'mcp', kind: 'api_key', baseUrl: upstreamBase, allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'MCP_KEY' }, requiredScopes: ['deputy.read'] }],
      // The same upstream behind the MCP gateway (`/mcp/up`): every message decided (pins off: no pin to approve here).
      mcpServers: [{ id: 'up', url: `${upstreamBase}/mcp`, allowInsecureHttp: true, connection: 'mcp', requiredScopes: ['deputy.read'], pinning: 'off' }],
      oauth: {
        authorizationCode: {
          enabled: true,
          clients: [{ clientId: 'mcp-agent', redirectUris: [REDIRECT] }],
          clientIdMetadataDocuments: {
            enabled: true, allowedHosts: [new URL(documentUrl).host], scopes: ['deputy.read'], audiences: [`${issuer}/gw/mcp`, `${issuer}/mcp/up`],
            allowPrivateAddresses: true, caFile: join(certDir, 'cert.pem'),
          },
        },
      },
    },
  });
  idp.oktaSignIn.registerClient({ clientId: 'deputy-signin', redirectUri: `${issuer}/signin/callback`, jwksUri: `${deputy.url}/jwks` });
});
afterAll(async () => {
  await deputy?.stop();
  upstream?.closeAllConnections();
  upstream?.close();
  docs?.close();
  await idp?.close();
  if (certDir) rmSync(certDir, { recursive: true, force: true });
});

describe('the MCP SDK client against Deputy', () => {
  it('goes from a 401 at the gateway to a DPoP-bound token for the signed-in user and a successful tool call', async () => {
    const provider = new TestProvider();
    const serverUrl = new URL(`${issuer}/gw/mcp/mcp`);
    const first = new Client({ name: 'host', version: '1.0.0' });
    // The gateway answers 401; the SDK discovers Deputy and asks the user to authorize.
    await expect(first.connect(new StreamableHTTPClientTransport(serverUrl, { authProvider: provider, fetch: dpopFetch }))).rejects.toThrow(/Unauthorized/i);
    // Found from the 401 alone: its resource_metadata → Deputy's RFC 9728 document → Deputy.
    expect(provider.discoveryState()).toMatchObject({
      authorizationServerUrl: issuer,
      resourceMetadataUrl: `${issuer}/.well-known/oauth-protected-resource/gw/mcp`,
      resourceMetadata: { resource: `${issuer}/gw/mcp`, authorization_servers: [issuer] },
    });
    const authorization = provider.authorizationUrl!;
    expect(authorization.origin + authorization.pathname).toBe(`${issuer}/auth`);
    expect(Object.fromEntries(authorization.searchParams)).toMatchObject({ client_id: 'mcp-agent', response_type: 'code', code_challenge_method: 'S256', resource: `${issuer}/gw/mcp` });

    // The user's browser: sign-in at the IdP, consent at Deputy, back to the host with a code.
    const browser = new Browser();
    browser.setCookie('127.0.0.1', 'okta_user', OKTA_USER_ID);
    const consent = await browser.visit(authorization.href, { stopAt: (next) => next.href.startsWith(REDIRECT) });
    const csrf = /name="csrf" value="([^"]+)"/.exec(consent.body)![1]!;
    const decided = await browser.submit(consent.url, { csrf, decision: 'approve' }, { origin: issuer });
    const back = new URL((await browser.visit(decided.location!, { stopAt: (next) => next.href.startsWith(REDIRECT) })).location!);
    expect(back.searchParams.get('iss')).toBe(issuer);

    const transport = new StreamableHTTPClientTransport(serverUrl, { authProvider: provider, fetch: dpopFetch });
    await transport.finishAuth(back.searchParams.get('code')!);
    const token = provider.tokens()!.access_token;
    expect(decodeJwt(token)).toMatchObject({ sub: `okta:${new URL(idp.base).host}:${OKTA_USER_ID}`, act: { sub: 'mcp-agent' }, aud: `${issuer}/gw/mcp`, cnf: { jkt: expect.any(String) } });

    const client = new Client({ name: 'host', version: '1.0.0' });
    await client.connect(transport);
    const tools = await client.listTools();
    expect(tools.tools.map((t) => t.name)).toEqual(['echo']);
    const result = await client.callTool({ name: 'echo', arguments: { text: 'hi' } });
    expect(result.content).toEqual([{ type: 'text', text: 'echo: hi' }]);
    expect(upstreamKeys.at(-1)).toBe('mcp-upstream-key-0123456789');
    await client.close();
  });

  it('an MCP host identified only by its client ID metadata document URL goes from a 401 to a DPoP-bound token acting as its cimd- agent, and calls a tool', async () => {
    const provider = new DocumentProvider();
    const serverUrl = new URL(`${issuer}/gw/mcp/mcp`);
    const first = new Client({ name: 'any-host', version: '1.0.0' });
    await expect(first.connect(new StreamableHTTPClientTransport(serverUrl, { authProvider: provider, fetch: dpopFetch }))).rejects.toThrow(/Unauthorized/i);
    // Found from the 401 alone (RFC 9728 resource_metadata → Deputy), with no registration.
    expect(provider.discoveryState()).toMatchObject({ authorizationServerUrl: issuer, resourceMetadataUrl: `${issuer}/.well-known/oauth-protected-resource/gw/mcp` });
    const authorization = provider.authorizationUrl!;
    // The SDK used its document URL as client_id, because Deputy's metadata supports it.
    expect(Object.fromEntries(authorization.searchParams)).toMatchObject({ client_id: documentUrl, response_type: 'code', code_challenge_method: 'S256', resource: `${issuer}/gw/mcp` });

    const browser = new Browser();
    browser.setCookie('127.0.0.1', 'okta_user', OKTA_USER_ID);
    const consent = await browser.visit(authorization.href, { stopAt: (next) => next.href.startsWith(REDIRECT) });
    expect(consent.body).toContain('Any MCP host');
    const csrf = /name="csrf" value="([^"]+)"/.exec(consent.body)![1]!;
    const decided = await browser.submit(consent.url, { csrf, decision: 'approve' }, { origin: issuer });
    const back = new URL((await browser.visit(decided.location!, { stopAt: (next) => next.href.startsWith(REDIRECT) })).location!);

    const transport = new StreamableHTTPClientTransport(serverUrl, { authProvider: provider, fetch: dpopFetch });
    await transport.finishAuth(back.searchParams.get('code')!);
    const token = provider.tokens()!.access_token;
    const agentId = documentAgentId(documentUrl);
    expect(decodeJwt(token)).toMatchObject({ sub: `okta:${new URL(idp.base).host}:${OKTA_USER_ID}`, act: { sub: agentId }, client_id: documentUrl, aud: `${issuer}/gw/mcp`, cnf: { jkt: expect.any(String) } });
    expect(await deputy.agents.get(agentId)).toMatchObject({ source: 'client_id_metadata', clientIdUrl: documentUrl, name: 'Any MCP host' });

    const client = new Client({ name: 'any-host', version: '1.0.0' });
    await client.connect(transport);
    const result = await client.callTool({ name: 'echo', arguments: { text: 'from anywhere' } });
    expect(result.content).toEqual([{ type: 'text', text: 'echo: from anywhere' }]);
    await client.close();
  });
  it('through the MCP gateway (/mcp/{server}): a host identified by its metadata document goes from the 401 to a token and a decided tool call', async () => {
    const provider = new DocumentProvider();
    const serverUrl = new URL(`${issuer}/mcp/up`);
    const first = new Client({ name: 'any-host', version: '1.0.0' });
    await expect(first.connect(new StreamableHTTPClientTransport(serverUrl, { authProvider: provider, fetch: dpopFetch }))).rejects.toThrow(/Unauthorized/i);
    // Found from the 401's own resource_metadata (a Bearer challenge first), not by probing well-known URLs.
    expect(provider.discoveryState()).toMatchObject({
      authorizationServerUrl: issuer,
      resourceMetadataUrl: `${issuer}/.well-known/oauth-protected-resource/mcp/up`,
      resourceMetadata: { resource: `${issuer}/mcp/up`, authorization_servers: [issuer] },
    });
    const authorization = provider.authorizationUrl!;
    expect(Object.fromEntries(authorization.searchParams)).toMatchObject({ client_id: documentUrl, code_challenge_method: 'S256', resource: `${issuer}/mcp/up` });

    const browser = new Browser();
    browser.setCookie('127.0.0.1', 'okta_user', OKTA_USER_ID);
    const consent = await browser.visit(authorization.href, { stopAt: (next) => next.href.startsWith(REDIRECT) });
    const csrf = /name="csrf" value="([^"]+)"/.exec(consent.body)![1]!;
    const decided = await browser.submit(consent.url, { csrf, decision: 'approve' }, { origin: issuer });
    const back = new URL((await browser.visit(decided.location!, { stopAt: (next) => next.href.startsWith(REDIRECT) })).location!);

    const transport = new StreamableHTTPClientTransport(serverUrl, { authProvider: provider, fetch: dpopFetch });
    await transport.finishAuth(back.searchParams.get('code')!);
    const token = provider.tokens()!.access_token;
    const agentId = documentAgentId(documentUrl);
    expect(decodeJwt(token)).toMatchObject({ sub: `okta:${new URL(idp.base).host}:${OKTA_USER_ID}`, act: { sub: agentId }, aud: `${issuer}/mcp/up`, scope: 'deputy.read', cnf: { jkt: expect.any(String) } });

    const client = new Client({ name: 'any-host', version: '1.0.0' });
    await client.connect(transport);
    const result = await client.callTool({ name: 'echo', arguments: { text: 'via the MCP gateway' } });
    expect(result.content).toEqual([{ type: 'text', text: 'echo: via the MCP gateway' }]);
    expect(upstreamKeys.at(-1)).toBe('mcp-upstream-key-0123456789');
    // The MCP gateway decided and receipted the call for the derived agent acting for the user.
    await deputy.receipts.flush();
    const receipts = (await deputy.store.query<{ jws: string }>('SELECT jws FROM receipts WHERE agent_id = $1', [agentId])).map((r) => decodeJwt(r.jws));
    expect(receipts).toContainEqual(expect.objectContaining({ event: 'mcp_message', decision: 'permit', mcp: expect.objectContaining({ server: 'up', tool: 'echo' }) }));
    await client.close();
  });
});
