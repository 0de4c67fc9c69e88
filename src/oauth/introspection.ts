/**
 * Introspection (RFC 7662) and revocation (RFC 7009) of Deputy's JWT access tokens: agent tokens
 * (token records) and its operator clients' `client_credentials` tokens (no record; their
 * revocations are recorded, ./operator-token-revocation.ts).
 *
 * oidc-provider authenticates the caller at `/introspect` and `/revoke` (private_key_jwt) and
 * then refuses JWT access tokens (`unsupported_token_type`: it stores none). A hook
 * (./oidc-provider/introspection-hook.ts) runs after it: when the caller authenticated and the
 * token is one of Deputy's own JWTs, it answers with {@link introspect} / {@link revoke} from the
 * token records instead — with the whole delegation chain for introspection (Keycloak drops
 * `act`), and with a cascade for revocation. This module is plain functions over values.
 *
 * Who may ask: admin / PEP clients (from configuration) about any token; an agent about tokens
 * issued to it. Anyone else gets `active: false`, as RFC 7662 §2.2 prescribes for tokens a
 * caller may not introspect.
 *
 * Who may revoke: admin clients holding `deputy:admin`, the token's agent, and any agent earlier
 * in its chain (revoking what was delegated from you); an operator client its own
 * `client_credentials` tokens. A PEP (an admin client with only `authzen:evaluate`) may
 * introspect any token but revoke only its own: a compromised PEP must not be able to cut every
 * agent off. RFC 7009 §2.1 refuses anyone else with an error, and nothing changes: `400
 * unauthorized_client` (RFC 6749 §5.2 — the client did authenticate, so this is not
 * `invalid_client`, whose 401 would tell it to fix its credentials). A token Deputy cannot
 * revoke (an agent's token without a record) is `unsupported_token_type` (RFC 7009 §2.2.1)
 * rather than a 200 that would claim it was revoked. An invalid, expired or foreign token is a
 * 200 (RFC 7009 §2.2: revoking it has no purpose left).
 *
 * @module
 */
import { UnauthorizedClient, UnsupportedTokenType } from '../errors/index.js';
import type { Logger } from '../log.js';
import type { AccessTokenClaims, AccessTokenVerifier } from './access-token.js';
import type { OperatorTokenRevocations } from './operator-token-revocation.js';
import type { RevocationCache, TokenRecord, TokenRecords } from './token-records.js';

/** What introspection and revocation read: the access-token verifier, token records and revocation cache, and which clients may introspect or revoke. */
export interface IntrospectionDeps {
  verifier: AccessTokenVerifier;
  records: TokenRecords;
  revocations: RevocationCache;
  /** Revoked `client_credentials` tokens of the operator clients (they have no token record). */
  operatorTokens: OperatorTokenRevocations;
  /** Client ids of admin / PEP clients (configuration `admin.clients`): they may introspect any token. */
  adminClients: ReadonlySet<string>;
  /** Client ids of the admin clients holding `deputy:admin`: they may revoke any token. */
  revokingClients: ReadonlySet<string>;
  logger: Logger;
}

async function verified(deps: IntrospectionDeps, token: string): Promise<AccessTokenClaims | undefined> {
  try {
    return await deps.verifier.verify(token, undefined);
  } catch {
    return undefined;
  }
}

/** RFC 7662 §2.2 response for a live token, with Deputy's chain members. */
function introspectionResponse(claims: AccessTokenClaims, record: TokenRecord | undefined): Record<string, unknown> {
  const response: Record<string, unknown> = {
    active: true,
    iss: claims.iss,
    sub: claims.sub,
    aud: claims.aud,
    client_id: claims.client_id,
    scope: claims.scope,
    exp: claims.exp,
    iat: claims.iat,
    jti: claims.jti,
    token_type: claims.cnf?.jkt ? 'DPoP' : 'Bearer',
  };
  if (claims.cnf) response.cnf = claims.cnf;
  if (claims.act) response.act = claims.act;
  if (claims.may_act) response.may_act = claims.may_act;
  if (record) {
    response.delegation_chain = record.chain;
    response.delegation_depth = record.chain.length;
    response.subject_issuer = record.issuerId;
    if (record.parentJti) response.parent_jti = record.parentJti;
  }
  return response;
}

/**
 * RFC 7662 §2.2: the introspection response for `token` as `caller` (a client id) may see it:
 * `{ active: false }` for an invalid, revoked or foreign token.
 */
export async function introspect(deps: IntrospectionDeps, caller: string, token: string): Promise<Record<string, unknown>> {
  const claims = await verified(deps, token);
  if (!claims?.jti) return { active: false };
  if (!deps.adminClients.has(caller) && claims.client_id !== caller) return { active: false };
  const record = await deps.records.find(claims.jti);
  if (record?.revokedAt !== undefined) return { active: false };
  if (!record && (await deps.operatorTokens.isRevoked(claims.jti, claims.exp!))) return { active: false };
  return introspectionResponse(claims, record);
}

/**
 * RFC 7009 §2.1 for one of Deputy's JWTs. Resolves when the token is revoked (cascading to
 * everything delegated from it) or was not a live Deputy token; throws
 * {@link UnauthorizedClient} / {@link UnsupportedTokenType} and changes nothing otherwise.
 */
export async function revoke(deps: IntrospectionDeps, caller: string, token: string): Promise<void> {
  const claims = await verified(deps, token);
  if (!claims?.jti) return;
  const record = await deps.records.find(claims.jti);
  const allowed = deps.revokingClients.has(caller) || (record ? record.agentId === caller || record.chain.includes(caller) : claims.client_id === caller);
  if (!allowed) throw new UnauthorizedClient('this token was not issued to the client, nor delegated from one of its tokens');
  if (!record) return revokeOperatorToken(deps, caller, claims);
  const revoked = await deps.records.revokeCascade(record.jti, `revoked by ${caller}`);
  deps.revocations.forget();
  deps.logger.info({ by: caller, jti: record.jti, cascade: revoked.length }, 'token revoked');
}

/**
 * A token Deputy issued without a record: `client_credentials` to an operator client (a PEP's or
 * an admin's token). Recorded as revoked until its `exp` (src/oauth/operator-token-revocation.ts),
 * refused at once by this instance's operator surfaces and within 2 s by the others'. A token
 * with an `act` claim but no record is not one Deputy can revoke (`unsupported_token_type`).
 */
async function revokeOperatorToken(deps: IntrospectionDeps, caller: string, claims: AccessTokenClaims): Promise<void> {
  if (claims.act !== undefined || !deps.adminClients.has(claims.client_id)) {
    throw new UnsupportedTokenType('only tokens issued by token exchange or to operator clients can be revoked; this one expires at its "exp"');
  }
  await deps.operatorTokens.revoke(claims.jti!, claims.exp!);
  deps.logger.info({ by: caller, jti: claims.jti, client_id: claims.client_id }, 'operator token revoked');
}
