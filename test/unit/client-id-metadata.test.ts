import { describe, expect, it } from 'vitest';
import { DOCUMENT_MEMBERS, DOCUMENT_SCOPE_MEMBER, documentProblem, documentScopeCeiling, isAllowedDocumentUrl, isJsonMediaType, isSpecialUseAddress, providerDocument } from '../../src/oauth/client-id-metadata.js';
import { CookieSealer, safeReturnPath } from '../../src/signin/session.js';

describe('client ID metadata document policy', () => {
  it('allows only https URLs on allow-listed hosts (port included), without credentials or fragment', () => {
    const policy = { allowedHosts: ['mcp.example.com', 'app.example.org:8443'] };
    expect(isAllowedDocumentUrl('https://mcp.example.com/client.json', policy)).toBe(true);
    expect(isAllowedDocumentUrl('https://MCP.example.com/client.json', policy)).toBe(true);
    expect(isAllowedDocumentUrl('https://app.example.org:8443/c', policy)).toBe(true);
    for (const url of ['http://mcp.example.com/c', 'https://app.example.org/c', 'https://evil.example/c', 'https://u:p@mcp.example.com/c', 'https://mcp.example.com/c#x', 'https://mcp.example.com.evil.example/c', 'not a url']) {
      expect(isAllowedDocumentUrl(url, policy), url).toBe(false);
    }
  });

  it('classifies special-use addresses', () => {
    for (const ip of ['127.0.0.1', '10.1.2.3', '172.16.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '::1', '::', 'fe80::1', 'fd00::1', '::ffff:127.0.0.1', '::ffff:10.0.0.1', 'not-an-ip']) {
      expect(isSpecialUseAddress(ip), ip).toBe(true);
    }
    for (const ip of ['93.184.216.34', '8.8.8.8', '2606:4700::1111']) expect(isSpecialUseAddress(ip), ip).toBe(false);
  });

  it('accepts code-flow documents with none or private_key_jwt + jwks_uri only, naming the member it refuses', () => {
    const base = { redirect_uris: ['https://app.example/cb'], grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'] };
    const member = (doc: Record<string, unknown>) => documentProblem(doc)?.member;
    expect(documentProblem({ ...base, token_endpoint_auth_method: 'none' })).toBeUndefined();
    expect(documentProblem({ ...base, token_endpoint_auth_method: 'private_key_jwt', jwks_uri: 'https://app.example/jwks' })).toBeUndefined();
    expect(member({ ...base, token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [] } })).toBe('jwks');
    expect(member({ ...base, token_endpoint_auth_method: 'private_key_jwt' })).toBe('jwks_uri');
    expect(member({ ...base, token_endpoint_auth_method: 'client_secret_basic' })).toBe('token_endpoint_auth_method');
    expect(member({ ...base })).toBe('token_endpoint_auth_method');
    expect(member({ ...base, token_endpoint_auth_method: 'none', client_secret: 'x' })).toBe('client_secret');
    expect(member({ ...base, redirect_uris: [], token_endpoint_auth_method: 'none' })).toBe('redirect_uris');
    expect(member({ ...base, grant_types: ['client_credentials'], token_endpoint_auth_method: 'none' })).toBe('grant_types');
    expect(member({ ...base, response_types: ['code', 'token'], token_endpoint_auth_method: 'none' })).toBe('response_types');
    expect(member({ ...base, token_endpoint_auth_method: 'none', scope: 'a "quoted"' })).toBe('scope');
  });

  it('hands oidc-provider only the honoured members, scope as Deputy\'s ceiling; every RFC 7591 member has a decision', () => {
    const doc = {
      client_id: 'https://app.example/c.json', client_name: 'App', redirect_uris: ['http://127.0.0.1/cb'], token_endpoint_auth_method: 'none',
      scope: 'a  b', logo_uri: 'http://app.example/l.png', contacts: ['not an email'], software_id: 'x', unknown_member: 1, deputy_document_scope: 'forged',
    };
    expect(providerDocument(doc)).toEqual({ client_id: doc.client_id, client_name: 'App', redirect_uris: doc.redirect_uris, token_endpoint_auth_method: 'none', [DOCUMENT_SCOPE_MEMBER]: 'a b' });
    expect(providerDocument({ ...doc, scope: '' })).not.toHaveProperty(DOCUMENT_SCOPE_MEMBER);
    expect(() => providerDocument({ ...doc, jwks: {} })).toThrow(/member jwks:/);
    expect(documentScopeCeiling({ [DOCUMENT_SCOPE_MEMBER]: 'a b' })).toEqual(['a', 'b']);
    expect(documentScopeCeiling({})).toBeUndefined();
    const rfc7591 = ['redirect_uris', 'token_endpoint_auth_method', 'grant_types', 'response_types', 'client_name', 'client_uri', 'logo_uri', 'scope', 'contacts', 'tos_uri', 'policy_uri', 'jwks_uri', 'jwks', 'software_id', 'software_version', 'software_statement'];
    expect(rfc7591.filter((m) => !(m in DOCUMENT_MEMBERS))).toEqual([]);
  });

  it('recognises JSON media types', () => {
    expect(isJsonMediaType('application/json; charset=utf-8')).toBe(true);
    expect(isJsonMediaType('application/jwk-set+json')).toBe(true);
    expect(isJsonMediaType('text/html')).toBe(false);
    expect(isJsonMediaType(null)).toBe(false);
  });
});

describe('sign-in cookies', () => {
  const key = Buffer.alloc(32, 7).toString('base64url');
  const other = Buffer.alloc(32, 9).toString('base64url');

  it('seals and opens a session; a transaction never opens as a session; another key opens nothing', async () => {
    const sealer = new CookieSealer([key]);
    const sealed = await sealer.sealSession({ userId: 'okta:idp:00u1', issuerId: 'okta', groups: ['g'], roles: [], email: 'a@example.com' }, 60);
    expect(await sealer.openSession(sealed)).toMatchObject({ userId: 'okta:idp:00u1', issuerId: 'okta', groups: ['g'], email: 'a@example.com', csrf: expect.any(String) });
    const tx = await sealer.sealTransaction({ issuerId: 'okta', state: 's', nonce: 'n', codeVerifier: 'v', returnTo: '/' }, 60);
    expect(await sealer.openSession(tx)).toBeUndefined();
    expect(await sealer.openTransaction(tx)).toMatchObject({ state: 's' });
    expect(await new CookieSealer([other]).openSession(sealed)).toBeUndefined();
    // Rotation: a new key in front still opens cookies sealed with the old one.
    expect(await new CookieSealer([other, key]).openSession(sealed)).toMatchObject({ userId: 'okta:idp:00u1' });
    expect(await sealer.openSession('garbage')).toBeUndefined();
  });

  it('keeps return paths on Deputy', () => {
    expect(safeReturnPath('/connect/drive?ticket=abc')).toBe('/connect/drive?ticket=abc');
    for (const bad of ['//evil.example', '/\\evil.example', 'https://evil.example/', 'javascript:alert(1)', '/a\nb', '', undefined, 42]) {
      expect(safeReturnPath(bad), String(bad)).toBe('/signin/session');
    }
  });
});
