/** RFC 9728 pure logic: the well-known address, resource paths of requests, challenges. */
import { describe, expect, it } from 'vitest';
import { InvalidDpopProof, InvalidToken, NotFound } from '../../src/errors/index.js';
import { challengeHeader } from '../../src/errors/serialize.js';
import { dpopOnlyChallenge } from '../../src/oauth/access-token.js';
import {
  gatewayResource,
  mcpServerResource,
  pdpResource,
  protectedResourceMetadata,
  protectedResourceMetadataUrl,
  resourcePathOf,
  withResourceMetadata,
} from '../../src/oauth/protected-resource-metadata.js';
import { DPOP_ALGS } from '../../src/util/algorithms.js';

const ISSUER = 'https://deputy.example.com';

describe('protectedResourceMetadataUrl (RFC 9728 §3.1)', () => {
  it.each([
    [`${ISSUER}/gw/echo`, `${ISSUER}/.well-known/oauth-protected-resource/gw/echo`],
    [`${ISSUER}/access`, `${ISSUER}/.well-known/oauth-protected-resource/access`],
    [`${ISSUER}/mcp/files`, `${ISSUER}/.well-known/oauth-protected-resource/mcp/files`],
    [`${ISSUER}/`, `${ISSUER}/.well-known/oauth-protected-resource`],
    ['http://localhost:8080/gw/a?x=1', 'http://localhost:8080/.well-known/oauth-protected-resource/gw/a?x=1'],
  ])('%s → %s', (resource, url) => {
    expect(protectedResourceMetadataUrl(resource)).toBe(url);
  });

  it('refuses a relative identifier', () => {
    expect(() => protectedResourceMetadataUrl('/gw/echo')).toThrow(TypeError);
  });
});

describe('resourcePathOf', () => {
  it.each([
    ['/gw/echo', '/gw/echo'],
    ['/gw/echo/', '/gw/echo'],
    ['/gw/echo/v1/things', '/gw/echo'],
    ['/mcp/files', '/mcp/files'],
    ['/mcp/files/session', '/mcp/files'],
    ['/access/v1', '/access'],
    ['/access/v1/evaluation', '/access'],
    ['/access', undefined],
    ['/access/v10', undefined],
    ['/admin/agents', undefined],
    ['/gw', undefined],
    ['/gw/', undefined],
    ['/token', undefined],
  ])('%s → %s', (path, resource) => {
    expect(resourcePathOf(path)).toBe(resource);
  });
});

describe('documents', () => {
  it('gateway, MCP server, PDP', () => {
    expect(protectedResourceMetadata(ISSUER, gatewayResource(ISSUER, { id: 'echo', scopes: ['a'] }))).toEqual({
      resource: `${ISSUER}/gw/echo`,
      authorization_servers: [ISSUER],
      bearer_methods_supported: ['header'],
      scopes_supported: ['a'],
      resource_name: 'echo',
      dpop_signing_alg_values_supported: [...DPOP_ALGS],
      dpop_bound_access_tokens_required: true,
    });
    expect(protectedResourceMetadata(ISSUER, mcpServerResource(ISSUER, { id: 'files', name: 'Files', scopes: [] }))).toMatchObject({ resource: `${ISSUER}/mcp/files`, resource_name: 'Files', dpop_bound_access_tokens_required: true });
    expect(protectedResourceMetadata(ISSUER, pdpResource(ISSUER))).toMatchObject({ resource: `${ISSUER}/access`, scopes_supported: ['authzen:evaluate'], dpop_bound_access_tokens_required: false });
  });
});

describe('withResourceMetadata (RFC 9728 §5.1)', () => {
  const url = `${ISSUER}/.well-known/oauth-protected-resource/gw/echo`;
  const header = (err: ReturnType<typeof withResourceMetadata>) => challengeHeader(err.challenge!, err.code, err.description);

  it('no credentials: Bearer first, then DPoP, each naming the document, no error', () => {
    // The gateway's challenge for a request without credentials (src/oauth/access-token.ts).
    const bare = new InvalidToken('an access token is required');
    bare.challenge = { schemes: ['DPoP'], realm: 'deputy', error: false, algs: DPOP_ALGS };
    const err = withResourceMetadata(bare, url);
    expect(header(err)).toBe(`Bearer realm="deputy", resource_metadata="${url}", DPoP realm="deputy", resource_metadata="${url}", algs="${DPOP_ALGS.join(' ')}"`);
  });

  it('refused credentials: the scheme stays, the error is named, the document added', () => {
    const err = withResourceMetadata(dpopOnlyChallenge(new InvalidDpopProof('the DPoP proof is missing')), url);
    expect(header(err)).toBe(`DPoP realm="deputy", error="invalid_dpop_proof", error_description="the DPoP proof is missing", resource_metadata="${url}", algs="${DPOP_ALGS.join(' ')}"`);
  });

  it('leaves other errors and challenge-less 401s alone', () => {
    const notFound = new NotFound('no');
    expect(withResourceMetadata(notFound, url).challenge).toBeUndefined();
    const plain = new InvalidToken('x');
    expect(withResourceMetadata(plain, url).challenge).toBeUndefined();
  });
});

describe('lookups (src/http/protected-resource-metadata.ts)', () => {
  it('MCP servers: /mcp/{server} for a server the registry has, nothing else', async () => {
    const { mcpServerLookup } = await import('../../src/http/protected-resource-metadata.js');
    const lookup = mcpServerLookup(ISSUER, { get: async (id) => (id === 'files' ? { id, name: 'Files', requiredScopes: ['files.read'] } : undefined) });
    expect(await lookup('/mcp/files')).toEqual({ resource: `${ISSUER}/mcp/files`, name: 'Files', scopes: ['files.read'], dpopRequired: true });
    for (const path of ['/mcp/other', '/mcp/files/x', '/mcp/BAD', '/gw/files', '/mcp/']) expect(await lookup(path), path).toBeUndefined();
  });
});
