/** The jwt-bearer request as parsed (src/oauth/identity-assertion.ts `readAssertionRequest`), RFC 7523 §2.1. */
import { describe, expect, it } from 'vitest';
import { DeputyError } from '../../src/errors/index.js';
import { readAssertionRequest } from '../../src/oauth/identity-assertion.js';

const code = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    if (err instanceof DeputyError) return `${err.code}: ${err.description}`;
    throw err;
  }
  return 'accepted';
};

describe('readAssertionRequest', () => {
  it('reads the assertion, resources (deduplicated) and scopes', () => {
    expect(readAssertionRequest({ assertion: 'a.b.c', resource: ['https://x', 'https://x', 'https://y'], scope: 'read  write read' })).toEqual({
      assertion: 'a.b.c', targets: ['https://x', 'https://y'], scopes: ['read', 'write'],
    });
    expect(readAssertionRequest({ assertion: 'a.b.c' })).toEqual({ assertion: 'a.b.c', targets: [], scopes: undefined });
  });

  it.each([
    [{}, /invalid_request: missing required parameter "assertion"/],
    [{ assertion: '' }, /invalid_request: missing/],
    [{ assertion: ['a.b.c', 'd.e.f'] }, /invalid_request: "assertion" must be given once/],
    [{ assertion: 'x'.repeat(16 * 1024 + 1) }, /invalid_request: assertion is too large/],
    [{ assertion: 'a.b.c', scope: ['a', 'b'] }, /invalid_request: "scope" must be given once/],
    [{ assertion: 'a.b.c', resource: `https://x/${'a'.repeat(2048)}` }, /invalid_target: a resource value is too long/],
  ])('%# refuses bad input with the protocol error', (params, expected) => {
    expect(code(() => readAssertionRequest(params))).toMatch(expected);
  });
});

describe('oauth.idJag configuration', () => {
  it('names only trusted issuers; an unknown id stops the start naming the field', async () => {
    const { validateConfig } = await import('../../src/config/load.js');
    const okta = { id: 'okta', preset: 'okta', issuer: 'https://example.okta.com/oauth2/default', audience: 'api://deputy' };
    expect(validateConfig({ trustedIssuers: [okta], oauth: { idJag: { issuers: ['okta'] } } }, 'test').oauth.idJag).toEqual({ issuers: ['okta'], maxAgeSeconds: 300 });
    expect(validateConfig({}, 'test').oauth.idJag).toEqual({ issuers: [], maxAgeSeconds: 300 });
    expect(() => validateConfig({ trustedIssuers: [okta], oauth: { idJag: { issuers: ['entra'] } } }, 'test')).toThrow(/oauth\.idJag\.issuers\.0.*"entra" is not the id of a trusted issuer/s);
    expect(() => validateConfig({ oauth: { idJag: { maxAgeSeconds: 0 } } }, 'test')).toThrow(/oauth\.idJag\.maxAgeSeconds/);
  });
});
