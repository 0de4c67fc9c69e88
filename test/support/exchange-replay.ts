/**
 * Raw token exchanges whose single-use values (the client assertion, RFC 7523 §3, and the DPoP
 * proof, RFC 9449 §11.1) are the caller's, so that a test can replay them, and the rows a request
 * could write, so that it can tell that a refused one wrote nothing.
 */
import { expect } from 'vitest';
import { ACCESS_TOKEN_TYPE, clientAssertion, dpopKeys, dpopProof, TOKEN_EXCHANGE } from './agents.js';
import type { ClientKeys } from './clients.js';
import type { MockIdp } from './mock-idp.js';
import type { TestDeputy } from './server.js';

/** The resource the exchanges ask for. */
export const API = 'https://api.example.com';

/** What a replayed DPoP proof gets (RFC 9449 §11.1). */
export const replayedProof = { status: 400, body: { error: 'invalid_dpop_proof', error_description: expect.stringMatching(/already been used/) } };
/** What a replayed client assertion gets (RFC 7523 §3: `jti` used once). */
export const replayedAssertion = { status: 401, body: { error: 'invalid_client', error_description: expect.stringMatching(/already used/) } };

/** Rows a request could write: token records (`t`), vault secrets (`v`), receipts (`r`). */
export interface Written {
  t: number;
  v: number;
  r: number;
}

export interface ReplayExchanges {
  /** One exchange for an Okta user token (scopes `deputy.read deputy.write`) at {@link API}; `params` add or override form fields. */
  send(assertion: string, proof: string, params?: Record<string, string>): Promise<{ status: number; body: Record<string, unknown> }>;
  /** A fresh client assertion and a fresh DPoP proof (a new key) for `/token`. */
  fresh(): Promise<{ assertion: string; proof: string }>;
  /** The rows written so far ({@link Written}). */
  written(): Promise<Written>;
}

/**
 * Exchanges at `deputy()` as `agent()` (read when called: the suites start Deputy in `beforeAll`),
 * for a user token of `idp()`.
 */
export function replayExchanges(deputy: () => TestDeputy, idp: () => MockIdp, agent: () => { id: string; keys: ClientKeys }): ReplayExchanges {
  return {
    async send(assertion, proof, params = {}) {
      const body = new URLSearchParams({
        grant_type: TOKEN_EXCHANGE, subject_token: await idp().oktaAccessToken({ scp: ['deputy.read', 'deputy.write'] }), subject_token_type: ACCESS_TOKEN_TYPE,
        resource: API, client_id: agent().id, client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: assertion, ...params,
      });
      const res = await fetch(`${deputy().url}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: proof }, body });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    },
    fresh: async () => ({ assertion: await clientAssertion(agent(), deputy().issuer), proof: await dpopProof(await dpopKeys(), `${deputy().issuer}/token`) }),
    async written() {
      const [row] = await deputy().store.query<Written>(
        'SELECT (SELECT count(*)::int FROM token_records) AS t, (SELECT count(*)::int FROM vault_secrets) AS v, (SELECT count(*)::int FROM receipts) AS r',
      );
      return row!;
    },
  };
}
