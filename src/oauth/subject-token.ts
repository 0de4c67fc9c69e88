/**
 * The RFC 8693 §2.1 `subject_token`: who the exchange acts for. Two kinds exist:
 *
 * - **federated**: a token from a trusted enterprise IdP (Okta, Entra ID, OIDC) — the first
 *   link of a chain. Verified by `src/federation`.
 * - **deputy**: an agent token Deputy issued earlier — sub-delegation. Verified with Deputy's own
 *   keys, and only while its record says it is live (never revoked, never expired).
 *
 * The `iss` claim routes a token to one or the other; routing reads the unverified payload
 * only to choose the verifier, which then checks everything. Before routing, a JWT whose header
 * `typ` marks it as something that is never a subject token — a DPoP proof (`dpop+jwt`), a
 * Deputy receipt (`deputy-receipt+jwt`) — is refused as such (RFC 8725 §3.11 explicit typing).
 *
 * Each kind is validated as the type declared (RFC 8693 §3):
 *
 * | declared | IdP access token | IdP ID token | Deputy agent / handoff token |
 * |----------|------------------|--------------|------------------------------|
 * | `access_token` | accepted | refused | accepted |
 * | `id_token` | refused | accepted (issuer with `idToken.clientId`) | refused (`invalid_request`) |
 * | `jwt` | accepted when it satisfies one kind's rules only | same | accepted (Deputy issues one kind) |
 *
 * @module
 */
import { decodeProtectedHeader } from 'jose';
import { RECEIPT_TYP } from '../audit/receipt.js';
import { FederationError } from '../federation/errors.js';
import { peekIssuer } from '../federation/issuer.js';
import type { FederatedIdentity } from '../federation/identity.js';
import type { FederationVerifier, SubjectTokenKind } from '../federation/verify.js';
import { DeputyError } from '../errors/index.js';
import type { AccessTokenClaims, AccessTokenVerifier } from './access-token.js';
import { chainFromAct, ChainClaimError, type DelegatingUser, type DelegationChain } from '../delegation/index.js';
import type { TokenRecord, TokenRecords } from './token-records.js';

/** RFC 8693 §3 token type identifiers Deputy accepts as `subject_token_type`. */
export const TOKEN_TYPES: Readonly<Record<SubjectTokenKind, string>> = {
  access_token: 'urn:ietf:params:oauth:token-type:access_token',
  id_token: 'urn:ietf:params:oauth:token-type:id_token',
  jwt: 'urn:ietf:params:oauth:token-type:jwt',
};

/**
 * A refused subject token: `invalid_grant` (RFC 6749 §5.2, RFC 8693 §2.2.2) or, for a token or
 * type that can never be a subject token, `invalid_request`. HTTP 400; a member of the one error
 * family, so the token endpoint renders it as it is.
 */
export class SubjectTokenError extends DeputyError {
  constructor(
    error: 'invalid_grant' | 'invalid_request',
    description: string,
    options?: { cause?: unknown },
  ) {
    super(400, error, description, options);
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

/** A subject token from a trusted enterprise IdP, verified: the federated identity. */
export interface FederatedSubject extends SubjectBase {
  kind: 'federated';
  identity: FederatedIdentity;
}

/** A subject token Deputy issued (an agent token), verified: its claims and its token record. */
export interface DeputySubject extends SubjectBase {
  kind: 'deputy';
  claims: AccessTokenClaims;
  record: TokenRecord;
}

/** The verified subject of an exchange (RFC 8693 §2.1 `subject_token`). */
export type Subject = FederatedSubject | DeputySubject;

/** What subject-token resolution reads: the issuer, the federation verifier, the access-token verifier, token records. */
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

/** Header `typ` values (lower case) of JWTs that are never subject tokens, with what they are. */
const NEVER_SUBJECT_TYP: ReadonlyMap<string, string> = new Map([
  ['dpop+jwt', 'a DPoP proof (RFC 9449); a proof goes in the DPoP header'],
  [RECEIPT_TYP, 'a Deputy receipt'],
]);

/** The unverified header `typ`, lower case, used only to refuse what is never a subject token. */
function peekTyp(token: string): string | undefined {
  try {
    const typ = decodeProtectedHeader(token).typ;
    return typeof typ === 'string' ? typ.toLowerCase() : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Verifies `token` as the declared `kind` and returns who the exchange acts for.
 *
 * @throws SubjectTokenError `invalid_request` for a token that can never be a subject token or a
 *   type the issuer does not accept; `invalid_grant` for every failed check of the token itself.
 * @see {@link https://www.rfc-editor.org/rfc/rfc8693#section-2.1 RFC 8693 §2.1}
 */
export async function resolveSubject(deps: SubjectTokenDeps, token: string, kind: SubjectTokenKind): Promise<Subject> {
  const never = NEVER_SUBJECT_TYP.get(peekTyp(token) ?? '');
  if (never !== undefined) throw new SubjectTokenError('invalid_request', `subject_token is ${never}, never a subject token`);
  if (peekIssuer(token) === deps.issuer) return resolveDeputySubject(deps, token, kind);
  return resolveFederatedSubject(deps, token, kind);
}

async function resolveFederatedSubject(deps: SubjectTokenDeps, token: string, kind: SubjectTokenKind): Promise<FederatedSubject> {
  let identity: FederatedIdentity;
  try {
    identity = await deps.federation.verify(token, kind);
  } catch (err) {
    if (err instanceof FederationError) {
      // A type this issuer does not accept is a request the client should not have made (RFC 8693 §2.2.2).
      const error = err.code === 'ERR_FEDERATION_TOKEN_TYPE_NOT_ACCEPTED' ? 'invalid_request' : 'invalid_grant';
      throw new SubjectTokenError(error, `subject_token: ${err.description}`, { cause: err });
    }
    throw err;
  }
  // Access tokens: their scopes. ID tokens: what the operator grants ID-token subjects (none by default).
  return federatedSubject(identity, identity.scopes);
}

/**
 * A verified IdP identity as the first link of a delegation (a subject token, or an ID-JAG at
 * the jwt-bearer grant: ./identity-assertion.ts), with the `scopes` it allows (`undefined`
 * when it carries no scope information, as {@link SubjectBase.scopes}).
 */
export function federatedSubject(identity: FederatedIdentity, scopes: string[] | undefined): FederatedSubject {
  return { kind: 'federated', identity, user: userOf(identity), scopes, expiresAt: identity.expiresAt, chain: [], mayAct: identity.mayAct };
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
  checkDeputyClaims(claims, record);
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

/** Whether two JSON values are equal (objects compared member by member, order ignored). */
function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null || Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k) => Object.hasOwn(b, k) && sameJson((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

function chainOfClaim(act: unknown): DelegationChain | undefined {
  if (act === undefined) return [];
  try {
    return chainFromAct(act);
  } catch (err) {
    if (err instanceof ChainClaimError) return undefined;
    throw err;
  }
}

/**
 * The restricting claims of a Deputy agent token must be well-formed and say what Deputy
 * recorded when it issued the token: `act` (the chain), `cnf.jkt` (the key), `scope`, `aud`,
 * `may_act`, `client_id`, `sub`. The record is what Deputy acts on; a token whose claims say
 * otherwise (a signing-key compromise, a bug) is refused rather than half-honoured.
 */
function checkDeputyClaims(claims: AccessTokenClaims, record: TokenRecord): void {
  const chain = chainOfClaim(claims.act);
  const checks: ReadonlyArray<readonly [string, boolean]> = [
    ['act', chain !== undefined && sameJson(chain, record.chain)],
    ['cnf', claims.cnf === undefined ? record.cnfJkt === undefined : typeof claims.cnf === 'object' && claims.cnf !== null && !Array.isArray(claims.cnf) && claims.cnf.jkt === record.cnfJkt],
    ['scope', claims.scope === record.scope],
    ['aud', claims.aud === record.audience],
    ['may_act', sameJson(claims.may_act, record.mayAct)],
    ['client_id', claims.client_id === record.agentId],
    ['sub', claims.sub === record.userId],
  ];
  const bad = checks.find(([, ok]) => !ok);
  if (bad !== undefined) throw new SubjectTokenError('invalid_grant', `subject_token's "${bad[0]}" claim is malformed or differs from what Deputy issued`);
}
