/**
 * The PEP tokens the AuthZEN routes and the PDP's cached path share (src/http/authzen.ts
 * `PepTokens`): a verified Bearer token is known until it expires, and only such a token.
 */
import { describe, expect, it } from 'vitest';
import { PepTokens } from '../../src/http/authzen.js';
import type { AccessTokenClaims, AuthenticatedRequest } from '../../src/oauth/access-token.js';

const NOW = 1_800_000_000_000;

function verified(scheme: 'Bearer' | 'DPoP', claims: Partial<AccessTokenClaims>): AuthenticatedRequest {
  return { token: 't', scheme, scopes: new Set(['authzen:evaluate']), claims: { client_id: 'pep', exp: NOW / 1000 + 60, ...claims } as AccessTokenClaims };
}

describe('PepTokens', () => {
  it('knows a verified Bearer token by its header until it expires, and not a second later', () => {
    const tokens = new PepTokens();
    tokens.remember('Bearer a', verified('Bearer', {}));
    expect(tokens.get('Bearer a', NOW)).toBe('pep');
    expect(tokens.get('Bearer a', NOW + 59_999)).toBe('pep');
    expect(tokens.get('Bearer a', NOW + 60_000)).toBeUndefined();
    expect(tokens.get('Bearer b', NOW)).toBeUndefined();
    expect(tokens.get('', NOW)).toBeUndefined();
  });

  it('never remembers a DPoP-bound token, a token with cnf, or one without an expiry', () => {
    const tokens = new PepTokens();
    tokens.remember('DPoP a', verified('DPoP', { cnf: { jkt: 'x' } }));
    tokens.remember('Bearer c', verified('Bearer', { cnf: { jkt: 'x' } }));
    tokens.remember('Bearer e', verified('Bearer', { exp: undefined }));
    for (const header of ['DPoP a', 'Bearer c', 'Bearer e']) expect(tokens.get(header, NOW)).toBeUndefined();
  });

  it('stays bounded: emptied when full', () => {
    const tokens = new PepTokens();
    for (let i = 0; i <= PepTokens.MAX_ENTRIES; i++) tokens.remember(`Bearer ${i}`, verified('Bearer', {}));
    expect(tokens.get('Bearer 0', NOW)).toBeUndefined();
    expect(tokens.get(`Bearer ${PepTokens.MAX_ENTRIES}`, NOW)).toBe('pep');
  });
});
