/**
 * Which kind of token an enterprise IdP's JWT is — an OAuth access token or an OpenID Connect
 * ID token — decided by rules the other kind of the same issuer cannot satisfy (RFC 8725
 * §3.11–3.12, RFC 8693 §3, OpenID Connect Core §2, RFC 9068 §2).
 *
 * | rule | access token | ID token |
 * |------|--------------|----------|
 * | `aud` names | the configured API `audience` | the configured OIDC client id (`idToken.clientId`) |
 * | header `typ` (absent, or one of; case-insensitive) | `JWT`, `at+jwt`, `application/at+jwt` | `JWT` |
 * | must not carry | claims only ID tokens carry: `nonce`, `at_hash`, `c_hash`, `s_hash` | claims that grant a client authorization: `scope`, `scp`, `client_id`, and per preset Okta `cid`, `uid`, Entra `azpacr`, `appid`, `appidacr` |
 * | must carry | at least one of the claims that grant a client authorization (above) | `iat` (OIDC Core §2) |
 * | neither kind carries | `events` (logout tokens, security event tokens) | same |
 *
 * The audience split is the main defence: an ID token is checked only against the client id,
 * an access token only against the API audience. The claim rules hold even when an operator
 * configures the same value for both (an Entra app registration that is both client and API):
 * an access token must carry a claim by which it authorizes a client (scopes, the client id)
 * and an ID token must carry none, so no token satisfies both. An access token that authorizes
 * no client has nothing to delegate anyway.
 *
 * `jwt` (RFC 8693 §3, "the token is a JWT") says nothing about the kind, so a `jwt` subject token
 * is accepted only when it is unambiguous: it satisfies the rules of exactly one kind.
 *
 * @module
 */
import type { JWTPayload, ProtectedHeaderParameters } from 'jose';
import type { FederationPreset, TrustedIssuerConfig } from './config.js';

/** The kinds of subject token an enterprise IdP issues that Deputy accepts. */
export type FederatedTokenKind = 'access_token' | 'id_token';

/** Header `typ` values (lower case) each kind may carry; an absent `typ` is fine for both. */
const TYP: Readonly<Record<FederatedTokenKind, ReadonlySet<string>>> = {
  access_token: new Set(['jwt', 'at+jwt', 'application/at+jwt']),
  id_token: new Set(['jwt']),
};

/** OIDC Core §2 `nonce`, §3.1.3.6 `at_hash`, §3.3.2.11 `c_hash`, FAPI 1.0 §5.1 `s_hash`: only in ID tokens. */
const ID_TOKEN_ONLY = ['nonce', 'at_hash', 'c_hash', 's_hash'] as const;

/** Claims by which a token grants a client authorization (RFC 9068 §2.2, RFC 8693 §4.2): only in access tokens. */
const ACCESS_TOKEN_ONLY: Readonly<Record<FederationPreset, readonly string[]>> = {
  okta: ['scope', 'scp', 'client_id', 'cid', 'uid'],
  entra: ['scope', 'scp', 'client_id', 'azpacr', 'appid', 'appidacr'],
  oidc: ['scope', 'scp', 'client_id'],
};

/** OIDC Back-Channel Logout §2.4 logout tokens and RFC 8417 security event tokens: never a subject. */
const NEITHER = ['events'] as const;

/** The `aud` values a kind must name, or undefined when the issuer does not accept that kind. */
export function audienceOf(kind: FederatedTokenKind, config: TrustedIssuerConfig): readonly string[] | undefined {
  const value = kind === 'access_token' ? config.audience : config.idToken?.clientId;
  if (value === undefined) return undefined;
  return typeof value === 'string' ? [value] : value;
}

/** Human name of a kind, for error descriptions. */
export function kindName(kind: FederatedTokenKind): string {
  return kind === 'access_token' ? 'an access token' : 'an ID token';
}

function audiences(claims: JWTPayload): string[] {
  const { aud } = claims;
  if (typeof aud === 'string') return [aud];
  return Array.isArray(aud) ? aud.filter((a): a is string => typeof a === 'string') : [];
}

function present(claims: JWTPayload, names: readonly string[]): string[] {
  return names.filter((name) => Object.hasOwn(claims, name));
}

function quoted(names: readonly string[]): string {
  return names.map((n) => `"${n}"`).join(', ');
}

/**
 * The first rule of `kind` the (verified) token breaks, as a description naming the rule and
 * never a claim value; `undefined` when the token satisfies every rule of `kind`.
 *
 * `audience` is reported separately (`'audience'`) so callers can keep its own error code.
 */
export function kindProblem(
  kind: FederatedTokenKind,
  header: ProtectedHeaderParameters,
  claims: JWTPayload,
  config: TrustedIssuerConfig,
): { rule: 'audience' | 'shape'; description: string } | undefined {
  const expected = audienceOf(kind, config);
  if (expected === undefined) return { rule: 'shape', description: `trusted issuer "${config.id}" accepts no ID tokens (idToken.clientId is not configured)` };
  if (!audiences(claims).some((aud) => expected.includes(aud))) {
    const what = kind === 'id_token' ? 'the OIDC client id configured' : 'the audience required';
    return { rule: 'audience', description: `its audience (aud) does not include ${what} by trusted issuer "${config.id}": ${expected.join(' or ')}` };
  }
  const typ = header.typ;
  if (typ !== undefined && (typeof typ !== 'string' || !TYP[kind].has(typ.toLowerCase()))) {
    return { rule: 'shape', description: `its header typ is not one ${kindName(kind)} carries (${[...TYP[kind]].join(', ')}, or none)` };
  }
  const neither = present(claims, NEITHER);
  if (neither.length > 0) return { rule: 'shape', description: `it carries ${quoted(neither)}, as logout and security event tokens do` };
  const foreign = present(claims, kind === 'access_token' ? ID_TOKEN_ONLY : ACCESS_TOKEN_ONLY[config.preset]);
  if (foreign.length > 0) {
    const other = kind === 'access_token' ? 'ID tokens' : 'access tokens';
    return { rule: 'shape', description: `it carries ${quoted(foreign)}, which only ${other} carry` };
  }
  if (kind === 'id_token' && typeof claims.iat !== 'number') return { rule: 'shape', description: 'it has no "iat" claim, which every ID token carries (OpenID Connect Core §2)' };
  if (kind === 'access_token' && present(claims, ACCESS_TOKEN_ONLY[config.preset]).length === 0) {
    return { rule: 'shape', description: `it carries none of ${quoted(ACCESS_TOKEN_ONLY[config.preset])}, by which an access token authorizes a client` };
  }
  return undefined;
}
