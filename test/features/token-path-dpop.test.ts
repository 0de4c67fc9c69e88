/**
 * oidc-provider routes `/token` case-insensitively and with a trailing slash (its router folds
 * case, then tries the path without one `/`), so `POST /TOKEN` and `POST /token/` are the token
 * endpoint too. Its DPoP proof must be verified there as at `/token` (RFC 9449 §5): a bad proof
 * refused, never ignored into a Bearer token. Likewise the browser endpoints Deputy closes
 * (`/auth` with the code flow off, `/request`, `/session/end`) stay closed however they are spelled.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientAssertion } from '../support/agents.js';
import { REPO, startPdpHarness, type PdpHarness } from '../support/authzen.js';

let h: PdpHarness;
beforeAll(async () => {
  h = await startPdpHarness({ policies: `${REPO}test/fixtures/policies/chain` });
});
afterAll(() => h?.stop());

/** A PEP's client_credentials request at `path`, with `dpop` as its DPoP header. */
async function tokenRequest(path: string, dpop: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const body = new URLSearchParams({
    grant_type: 'client_credentials', scope: 'authzen:evaluate', client_id: h.pep.id,
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: await clientAssertion(h.pep, h.deputy.issuer),
  });
  const res = await fetch(`${h.deputy.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', dpop }, body });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('the token endpoint under every path oidc-provider routes to it', () => {
  it.each(['/token', '/TOKEN', '/Token', '/token/'])('%s: a malformed DPoP proof is invalid_dpop_proof, no token issued', async (path) => {
    const answer = await tokenRequest(path, 'not.a.proof');
    expect(answer.status).toBe(400);
    expect(answer.body.error).toBe('invalid_dpop_proof');
    expect(answer.body.access_token).toBeUndefined();
  });
});

describe('closed browser endpoints under every spelling oidc-provider routes', () => {
  it.each(['/auth', '/AUTH', '/Auth/', '/request', '/REQUEST', '/session/end', '/SESSION/END', '/Session/End/'])('%s: 404 not_found', async (path) => {
    const res = await fetch(`${h.deputy.url}${path}?client_id=${h.pep.id}&response_type=code`, { redirect: 'manual' });
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: string }).error).toBe('not_found');
  });
});
