/**
 * Client-authentication refusals at `/token`, `/introspect` and `/revoke` as the RFCs define
 * them: `401 invalid_client` (RFC 6749 §5.2, RFC 7662 §2.3, RFC 7523 §3.2).
 *
 * oidc-provider already answers a failed authentication (unknown client, bad signature, replayed
 * assertion, wrong method) with 401 `invalid_client`. It answers `400 invalid_request` when the
 * client sent no usable authentication at all; RFC 6749 §5.2 lists "no client authentication
 * included" and "unsupported authentication method" under `invalid_client`, and RFC 7523 §3.2
 * requires `invalid_client` for a client assertion that is not a valid JWT. This module
 * re-classifies exactly those refusals, which happen before any client is identified, as
 * oidc-provider's errors are handed to Deputy's serializer (./errors.ts).
 *
 * oidc-provider's own `invalid_client` always says "client authentication failed" and keeps the
 * check in `error_detail`. Deputy names the check (a wrong `aud`, a missing `exp`, a replayed
 * assertion, an unknown client): client identifiers are not secrets (RFC 6749 §2.2), and an
 * agent misconfigured behind a proxy learns which claim to fix. Signature-verification details
 * (from jose) are summarised, not passed on.
 *
 * `WWW-Authenticate`: RFC 6749 §5.2 requires a challenge matching the scheme when the client
 * used the `Authorization` header (`Basic`, which oidc-provider also names on its own 401s).
 * Deputy supports no HTTP authentication scheme for clients (`private_key_jwt` travels in the
 * body), so a request without that header gets no challenge to advertise.
 *
 * @module
 */
import type Koa from 'koa';
import type { KoaContextWithOIDC } from 'oidc-provider';
import { InvalidClient, type Challenge, type DeputyError } from '../../errors/index.js';

/** The endpoints where oidc-provider authenticates clients. */
const CLIENT_AUTHENTICATED_ROUTES = new Set(['token', 'introspection', 'revocation']);

/**
 * oidc-provider's `invalid_request` descriptions (lib/shared/client_auth.js, 9.13.3) that mean
 * "no or unusable client authentication", and what Deputy says instead. A version that changes
 * them fails test/features/metadata.test.ts rather than silently answering 400.
 */
const MISSING_OR_UNUSABLE: ReadonlyMap<string, string> = new Map([
  ['no client authentication mechanism provided', 'client authentication is required: send client_id with a private_key_jwt client_assertion (RFC 7523)'],
  ['invalid client_assertion format', 'client_assertion is not a JWT'],
  ['client_id mismatch', 'client_id does not match the subject of the client authentication'],
  ['invalid authorization header value format', 'the Authorization header is not a supported client authentication: use a private_key_jwt client_assertion'],
  ['client_id and client_secret in the authorization header are not properly encoded', 'HTTP Basic client authentication is not supported: use a private_key_jwt client_assertion'],
  ['client_secret must be provided in the Authorization header', 'HTTP Basic client authentication is not supported: use a private_key_jwt client_assertion'],
]);

/**
 * `error_detail`s of oidc-provider's `invalid_client` (lib/shared/jwt_client_auth.js,
 * client_auth.js, 9.13.3) and what Deputy says. Any other detail (signature or time checks of
 * the assertion, reported by jose) becomes {@link FAILED_GENERIC}.
 */
const CHECK_DESCRIPTIONS: ReadonlyMap<string, string> = new Map([
  ['alg mismatch', 'client_assertion is signed with an algorithm that is not accepted (see token_endpoint_auth_signing_alg_values_supported)'],
  ['expiration must be specified in the client_assertion JWT', 'client_assertion has no "exp"'],
  ['unique jti (JWT ID) must be provided in the client_assertion JWT', 'client_assertion has no "jti"'],
  ['iss (JWT issuer) must be provided in the client_assertion JWT', 'client_assertion has no "iss"'],
  ['iss (JWT issuer) must be the client_id', 'client_assertion "iss" must be the client_id'],
  ['sub (JWT subject) must be provided in the client_assertion JWT', 'client_assertion has no "sub"'],
  ['aud (JWT audience) must be provided in the client_assertion JWT', 'client_assertion has no "aud"'],
  ['list of audience (aud) must include the endpoint url, issuer identifier or token endpoint url', 'client_assertion "aud" must include the issuer, the token endpoint URL or this endpoint\'s URL'],
  ['audience (aud) must equal the endpoint url, issuer identifier or token endpoint url', 'client_assertion "aud" must be the issuer, the token endpoint URL or this endpoint\'s URL'],
  ['client assertion tokens must only be used once', 'client_assertion was already used (its "jti" must be unique)'],
  ['the provided authentication mechanism does not match the registered client authentication method', 'clients authenticate with a private_key_jwt client_assertion only'],
  ['client not found', 'unknown or disabled client'],
]);
/** What oidc-provider 9.13.3 says of every client-authentication failure (`InvalidClientAuth`). */
const PROVIDER_GENERIC = 'client authentication failed';
const FAILED_GENERIC = 'client_assertion did not verify: it must be signed with a key registered for the client, and be neither expired nor issued in the future';

/**
 * The error a client-authentication refusal at `/token`, `/introspect` or `/revoke` stands for:
 * {@link InvalidClient} naming the failed check (with a `Basic` challenge when the client used
 * HTTP Basic), or `err` itself for anything else. Called by the error rendering (./errors.ts)
 * with the error oidc-provider raised (`error_detail` names its check) and its typed form.
 */
export function asClientAuthenticationError(ctx: Koa.Context, raised: unknown, err: DeputyError): DeputyError {
  const route = (ctx as unknown as KoaContextWithOIDC).oidc?.route;
  if (route === undefined || !CLIENT_AUTHENTICATED_ROUTES.has(route)) return err;
  let description: string | undefined;
  // Both kinds are thrown only while authenticating the client (before any grant, token or
  // introspection check), whether or not oidc-provider had already looked the client up.
  if (err.status === 401 && err.code === 'invalid_client') {
    const detail = (raised as { error_detail?: unknown } | undefined)?.error_detail;
    description = (typeof detail === 'string' ? CHECK_DESCRIPTIONS.get(detail) : undefined) ?? deputyCheck(err.description) ?? FAILED_GENERIC;
  } else if (err.status === 400 && err.code === 'invalid_request') {
    description = MISSING_OR_UNUSABLE.get(err.description);
  }
  if (description === undefined) return err;
  return new InvalidClient(description, { cause: raised, ...basicChallenge(ctx) });
}

/**
 * A refusal Deputy's own checks wrote (the client-assertion audience rule in ./urls.ts) names
 * its check already; oidc-provider's own refusals all say {@link PROVIDER_GENERIC}.
 */
function deputyCheck(description: string): string | undefined {
  return description !== PROVIDER_GENERIC ? description : undefined;
}

/** RFC 6749 §5.2: the challenge for a client that tried HTTP Basic authentication. */
function basicChallenge(ctx: Koa.Context): { challenge?: Challenge } {
  if (!/^basic\b/i.test(ctx.get('Authorization'))) return {};
  return { challenge: { schemes: ['Basic'], realm: (ctx as unknown as KoaContextWithOIDC).oidc.issuer, error: true } };
}
