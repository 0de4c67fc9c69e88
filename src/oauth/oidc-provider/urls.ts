/**
 * The URLs oidc-provider derives, and the client-assertion audience rule, from the issuer alone
 * (RFC 8414 §2, RFC 9449 §4.3, RFC 7523 §3). Both patch oidc-provider's `OIDCContext` prototype:
 * internals of the pinned version (9.13.3).
 *
 * @module
 */
import type Provider from 'oidc-provider';
import { errors } from 'oidc-provider';
import type { DeputyConfig } from '../../config/schema.js';

/**
 * Every URL oidc-provider builds for a request — discovery members, the `htu` it expects in a
 * DPoP proof, the audiences of a client assertion — derives from the issuer (RFC 8414 §2,
 * RFC 9449 §4.3), whatever the transport (TLS terminated by a proxy), `Host`, `X-Forwarded-*`
 * and `server.trustProxy` say. (oidc-provider's own `urlFor` reads them from the request, and
 * koa-mount runs it with Deputy's Koa app, so `provider.proxy` would not even apply.)
 *
 * At `/token` no oidc-provider code checks a DPoP proof's `htu`: Deputy verified it against the
 * issuer's token endpoint URL, with RFC 3986 normalization (./token-dpop.ts), and every grant
 * takes that result (./client-credentials-grant.ts, ./code-flow-grants.ts).
 */
export function issuerDerivedUrls(provider: Provider): void {
  const prototype = provider.OIDCContext.prototype as unknown as Record<string, unknown>;
  Object.defineProperty(prototype, 'urlFor', {
    configurable: true,
    writable: true,
    value: (name: string, options?: Record<string, unknown>): string => provider.urlFor(name, options),
  });
  // The audience rule has one home, checkClientAssertionAudience(), which runs after the
  // assertion's signature is verified and names the failed check; oidc-provider's broader
  // pre-check (issuer, token endpoint or endpoint URL, any member of an array) defers to it.
  Object.defineProperty(prototype, 'clientJwtAuthExpectedAudience', {
    configurable: true,
    writable: true,
    value: () => ({ has: () => true }),
  });
}

/** The `aud` values a client assertion may carry: the issuer, and the token endpoint URL if configured. */
export function clientAssertionAudiences(config: DeputyConfig, provider: Provider): ReadonlySet<string> {
  const accepted = new Set([provider.issuer]);
  if (config.oauth.clientAssertionAudience === 'issuer-or-token-endpoint') accepted.add(provider.urlFor('token'));
  return accepted;
}

/**
 * RFC 7523 §3 as draft-ietf-oauth-rfc7523bis tightens it: a client assertion's `aud` is the
 * issuer identifier, a single string (a list, or another URL, could make an assertion minted for
 * another server usable here). `invalid_client`, HTTP 401 (RFC 6749 §5.2).
 */
export function checkClientAssertionAudience(aud: unknown, accepted: ReadonlySet<string>): void {
  const expected = [...accepted].map((a) => `"${a}"`).join(' or ');
  if (typeof aud !== 'string') {
    throw invalidClient(`client_assertion "aud" must be a single string, the issuer identifier ${expected} (RFC 7523 §3)`);
  }
  if (!accepted.has(aud)) throw invalidClient(`client_assertion "aud" must be ${expected}`);
}

function invalidClient(description: string): Error {
  return Object.assign(new errors.CustomOIDCProviderError('invalid_client', description), { status: 401, statusCode: 401 });
}

