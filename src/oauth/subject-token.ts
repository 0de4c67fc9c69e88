/**
 * The RFC 8693 §2.1 `subject_token`: who the exchange acts for. Two kinds exist:
 *
 * - **federated**: a token from a trusted enterprise IdP (Okta, Entra ID, OIDC) — the first
 *   link of a chain. Verified by `src/federation`.
 * - **deputy**: an agent token Deputy issued earlier — sub-delegation. Verified with Deputy's own
 *   keys, and only while its record says it is live (never revoked, never expired).
 *
 * The `iss` claim routes a token to one or the other; routing reads the unverified payload
 * only to choose the verifier, which then checks everything.
 *
 * @module
 */
import { decodeJwt } from 'jose';
import { FederationError } from '../federation/errors.js';
import type { FederatedIdentity } from '../federation/identity.js';
import type { FederationVerifier, SubjectTokenKind } from '../federation/verify.js';
import { DeputyError } from '../errors/index.js';
import type { AccessTokenClaims, AccessTokenVerifier } from './access-token.js';
import type { DelegatingUser } from './delegation-authorizer.js';
import type { DelegationChain } from './delegation-chain.js';
import type { TokenRecord, TokenRecords } from './token-records.js';

/** RFC 8693 §3 token type identifiers Deputy accepts as `subject_token_type`. */
export const TOKEN_TYPES: Readonly<Record<SubjectTokenKind, string>> = {
  access_token: 'urn:ietf:params:oauth:token-type:access_token',
  id_token: 'urn:ietf:params:oauth:token-type:id_token',
  jwt: 'urn:ietf:params:oauth:token-type:jwt',
};

/** A refused subject or actor token: always `invalid_grant` (RFC 6749 §5.2) or `invalid_request`. */
export class SubjectTokenError extends Error {
  constructor(
    readonly error: 'invalid_grant' | 'invalid_request',
    readonly description: string,
    options?: { cause?: unknown },
  ) {
    super(description, options);
    this.name = 'SubjectTokenError';
  }
}

interface SubjectBase {
  user: DelegatingUser;
  /** Scopes the subject token allows; `undefined` when it carries no scope information. */
  scopes: readonly string[] | undefined;
  /** Epoch seconds; the issued token never outlives it. */
  expiresAt: number;
  chain: DelegationChain;
  mayAct: Record<string, unknown> | undefined;
}

export interface FederatedSubject extends SubjectBase {
  kind: 'federated';
  identity: FederatedIdentity;
}

export interface DeputySubject extends SubjectBase {
  kind: 'deputy';
  claims: AccessTokenClaims;
  record: TokenRecord;
}

export type Subject = FederatedSubject | DeputySubject;

export interface SubjectTokenDeps {
  issuer: string;
  federation: FederationVerifier;
  verifier: AccessTokenVerifier;
  records: TokenRecords;
}

/** Maps a `subject_token_type` URN to its kind, or refuses it. */
export function subjectTokenKind(type: string): SubjectTokenKind {
  const kind = (Object.keys(TOKEN_TYPES) as SubjectTokenKind[]).find((k) => TOKEN_TYPES[k] === type);
  if (kind === undefined) {
    throw new SubjectTokenError('invalid_request', `subject_token_type "${type}" is not supported (use ${Object.values(TOKEN_TYPES).join(', ')})`);
  }
  return kind;
}

/** The unverified `iss`, used only to route the token to its verifier. */
function peekIssuer(token: string): string | undefined {
  try {
    const iss = decodeJwt(token).iss;
    return typeof iss === 'string' ? iss : undefined;
  } catch {
    return undefined;
  }
}

export async function resolveSubject(deps: SubjectTokenDeps, token: string, kind: SubjectTokenKind): Promise<Subject> {
  if (peekIssuer(token) === deps.issuer) return resolveDeputySubject(deps, token, kind);
  return resolveFederatedSubject(deps, token, kind);
}

async function resolveFederatedSubject(deps: SubjectTokenDeps, token: string, kind: SubjectTokenKind): Promise<FederatedSubject> {
  let identity: FederatedIdentity;
  try {
    identity = await deps.federation.verify(token, kind);
  } catch (err) {
    if (err instanceof FederationError) throw new SubjectTokenError('invalid_grant', `subject_token: ${err.description}`, { cause: err });
    throw err;
  }
  return {
    kind: 'federated',
    identity,
    user: userOf(identity),
    // An ID token (OpenID Connect Core §2) carries no delegated scopes: it does not narrow.
    scopes: kind === 'id_token' ? undefined : identity.scopes,
    expiresAt: identity.expiresAt,
    chain: [],
    mayAct: identity.mayAct,
  };
}

function userOf(identity: FederatedIdentity): DelegatingUser {
  return {
    id: identity.userId,
    issuerId: identity.issuerId,
    groups: identity.groups,
    roles: identity.roles,
    ...(identity.email === undefined ? {} : { email: identity.email }),
    ...(identity.tenant === undefined ? {} : { tenant: identity.tenant }),
  };
}

async function resolveDeputySubject(deps: SubjectTokenDeps, token: string, kind: SubjectTokenKind): Promise<DeputySubject> {
  if (kind === 'id_token') throw new SubjectTokenError('invalid_request', 'subject_token is a Deputy access token but subject_token_type says id_token');
  let claims: AccessTokenClaims;
  try {
    claims = await deps.verifier.verify(token, undefined);
  } catch (err) {
    if (err instanceof DeputyError) throw new SubjectTokenError('invalid_grant', `subject_token: ${err.description}`, { cause: err });
    throw err;
  }
  const record = claims.jti === undefined ? undefined : await deps.records.find(claims.jti);
  if (record === undefined) throw new SubjectTokenError('invalid_grant', 'subject_token is not an agent token issued by token exchange');
  if (record.revokedAt !== undefined) throw new SubjectTokenError('invalid_grant', 'subject_token has been revoked');
  return {
    kind: 'deputy',
    claims,
    record,
    user: { id: record.userId, issuerId: record.issuerId, ...record.userAttrs },
    scopes: record.scope.split(' ').filter(Boolean),
    expiresAt: record.expiresAt,
    chain: record.chain,
    mayAct: record.mayAct,
  };
}
