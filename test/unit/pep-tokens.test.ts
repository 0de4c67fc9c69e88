/**
 * The PEP tokens the AuthZEN routes and the PDP's cached path share (src/http/authzen.ts
 * `PepTokens`): a verified Bearer token is known until it expires — and only while its "not
 * revoked" answer is fresh (src/oauth/operator-token-revocation.ts `knownLive`) — and only such a token.
 */
import { describe, expect, it } from 'vitest';
import { PepTokens } from '../../src/http/authzen.js';
import type { AccessTokenClaims, AuthenticatedRequest } from '../../src/oauth/access-token.js';

const NOW = 1_800_000_000_000;

function verified(scheme: 'Bearer' | 'DPoP', claims: Partial<AccessTokenClaims>): AuthenticatedRequest {
  return { token: 't', scheme, scopes: new Set(['authzen:evaluate']), claims: { client_id: 'pep', jti: 'jti-1', exp: NOW / 1000 + 60, ...claims } as AccessTokenClaims };
}

/** Revocation answers: every `jti` known live, except those in `revoked`. */
const live = (revoked: ReadonlySet<string> = new Set()) => ({ knownLive: (jti: string) => !revoked.has(jti) });

describe('PepTokens', () => {
  it('knows a verified Bearer token by its header until it expires, and not a second later', () => {
    const tokens = new PepTokens(live());
    tokens.remember('Bearer a', verified('Bearer', {}));
    expect(tokens.get('Bearer a', NOW)).toBe('pep');
    expect(tokens.get('Bearer a', NOW + 59_999)).toBe('pep');
    expect(tokens.get('Bearer a', NOW + 60_000)).toBeUndefined();
    expect(tokens.get('Bearer b', NOW)).toBeUndefined();
    expect(tokens.get('', NOW)).toBeUndefined();
  });

  it('is not known while its "not revoked" answer is not fresh (revoked, or not asked lately): the routes then authenticate it in full', () => {
    const revoked = new Set<string>();
    const tokens = new PepTokens(live(revoked));
    tokens.remember('Bearer a', verified('Bearer', {}));
    tokens.remember('Bearer b', verified('Bearer', { jti: 'jti-2' }));
    expect(tokens.get('Bearer a', NOW)).toBe('pep');
    revoked.add('jti-1');
    expect(tokens.get('Bearer a', NOW)).toBeUndefined();
    expect(tokens.get('Bearer b', NOW)).toBe('pep');
  });

  it('never remembers a DPoP-bound token, a token with cnf, or one without an expiry or a jti', () => {
    const tokens = new PepTokens(live());
    tokens.remember('DPoP a', verified('DPoP', { cnf: { jkt: 'x' } }));
    tokens.remember('Bearer c', verified('Bearer', { cnf: { jkt: 'x' } }));
    tokens.remember('Bearer e', verified('Bearer', { exp: undefined }));
    tokens.remember('Bearer j', verified('Bearer', { jti: undefined }));
    for (const header of ['DPoP a', 'Bearer c', 'Bearer e', 'Bearer j']) expect(tokens.get(header, NOW)).toBeUndefined();
  });

  it('stays bounded: emptied when full', () => {
    const tokens = new PepTokens(live());
    for (let i = 0; i <= PepTokens.MAX_ENTRIES; i++) tokens.remember(`Bearer ${i}`, verified('Bearer', {}));
    expect(tokens.get('Bearer 0', NOW)).toBeUndefined();
    expect(tokens.get(`Bearer ${PepTokens.MAX_ENTRIES}`, NOW)).toBe('pep');
  });

  it('stays within its byte budget when flooded with long headers: the newest known, the oldest forgotten, none larger than the budget kept', () => {
    const tokens = new PepTokens(live());
    // Entries at 15 KiB each: by entries alone (1000) these held ~15 MiB.
    const header = (i: number) => `Bearer ${String(i).padStart(6, '0')}${'x'.repeat(15 * 1024)}`;
    const n = PepTokens.MAX_ENTRIES;
    for (let i = 0; i < n; i++) tokens.remember(header(i), verified('Bearer', { jti: `jti-${i}` }));
    expect(tokens.bytes).toBeLessThanOrEqual(PepTokens.BUDGET_BYTES);
    expect(tokens.size).toBeLessThan(n);
    expect(tokens.size).toBeGreaterThan(PepTokens.BUDGET_BYTES / (16 * 1024 + 512) - 1);
    expect(tokens.get(header(n - 1), NOW)).toBe('pep');
    expect(tokens.get(header(0), NOW)).toBeUndefined();
    // One header larger than the whole budget is never kept (the request was served; the next one authenticates in full).
    const huge = `Bearer ${'y'.repeat(PepTokens.BUDGET_BYTES)}`;
    tokens.remember(huge, verified('Bearer', {}));
    expect(tokens.get(huge, NOW)).toBeUndefined();
    expect(tokens.bytes).toBeLessThanOrEqual(PepTokens.BUDGET_BYTES);
    // Small headers are bounded by entries as before.
    const small = new PepTokens(live(), { budgetBytes: 1024 * 1024, maxEntries: 10 });
    for (let i = 0; i < 50; i++) small.remember(`Bearer s${i}`, verified('Bearer', {}));
    expect(small.size).toBe(10);
  });

  it('answers a repeated header from the entry found last only while that is its entry (token verified again, entry evicted)', () => {
    const tokens = new PepTokens(live());
    tokens.remember('Bearer a', verified('Bearer', {}));
    expect(tokens.get('Bearer a', NOW)).toBe('pep');
    // Verified again (a new expiry, another client id): the new entry answers, not the one found last.
    tokens.remember('Bearer a', verified('Bearer', { client_id: 'pep-2', exp: NOW / 1000 + 1 }));
    expect(tokens.get(`Bearer ${'a'}`, NOW)).toBe('pep-2');
    expect(tokens.get('Bearer a', NOW + 1000)).toBeUndefined();
    // Evicted when the set is full (the one remembered longest ago): the token found last is gone too.
    const full = new PepTokens(live());
    full.remember('Bearer 0', verified('Bearer', {}));
    expect(full.get('Bearer 0', NOW)).toBe('pep');
    for (let i = 1; i <= PepTokens.MAX_ENTRIES; i++) full.remember(`Bearer ${i}`, verified('Bearer', {}));
    expect(full.get('Bearer 0', NOW)).toBeUndefined();
  });
});
