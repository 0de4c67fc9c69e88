/**
 * OAuth 2.0 Token Exchange (RFC 8693) at `/token`: an agent exchanges a user's token (from a
 * trusted enterprise IdP, or an agent token Deputy issued) for a short-lived, DPoP-bound agent
 * token with the delegation chain in nested `act` claims.
 *
 * One path serves every request; each step below runs for every exchange, in this order:
 *
 * 1. `readRequest` — parameters present, well-formed, supported (RFC 8693 §2.1); then
 *    `refuseDeputyOwn` — no `scope` / `resource` / `audience` naming Deputy's own scopes or
 *    resources (src/oauth/deputy-own.ts): those belong to operator clients, never to an agent.
 * 2. `requireDpop` — the request's DPoP proof (RFC 9449 §4.3, §5), verified before the client
 *    was authenticated (./oidc-provider/token-dpop.ts): the issued token is bound to its key. Its
 *    `jti` and the client assertion's are not looked up: step 8's statement records them and
 *    refuses a replay with its own error (`invalid_dpop_proof` / `invalid_client`); a replay
 *    refused earlier is answered as one by ./oidc-provider/token-dpop.ts, and at step 7 a replay
 *    is looked up before a `deny` receipt is written.
 * 3. `resolveSubject` — the subject token verified (federation, or Deputy's own keys + record).
 * 4. `checkActorToken` — when sent, `actor_token` must identify the authenticated agent.
 * 5. `checkMayAct` — whoever holds a Deputy agent token may exchange it only if its `may_act`
 *    names them or they prove possession of its key; a `may_act` in any subject token binds;
 *    `checkConfirmation` — a sender-constrained IdP token (`cnf`) needs a proof of its key.
 * 6. `chooseAudience` / `chooseScopes` — one audience (RFC 8707), scopes never wider than the
 *    request, the agent, and the subject token, and never Deputy's own — also when they come
 *    from an agent's stored defaults (rows written before registration refused them).
 * 7. `authorizer.authorize` — policy (registry rules; Cedar `delegate` once the PDP is on).
 * 8. `issue` — `mint` the RFC 9068 JWT through the {@link AccessTokenMinter} port (implemented
 *    by ./oidc-provider/; its `jti` is chosen first) and, while it is signed, `recordIssued`
 *    (written once it is signed): the proof and client assertion `jti`s
 *    (`ExchangeInput.spends`), the token record (and the encrypted upstream token, one row per
 *    agent and IdP token on each instance: ./upstream-capture.ts) and its
 *    `permit` receipt (src/audit), all or nothing, in the statement of the agent's receipt group
 *    writer (`ReceiptAppender.appendWith`): one commit per group of concurrent exchanges. A failed
 *    exchange writes nothing but those replay entries (spent by the caller whatever happens next,
 *    RFC 9449 §11.1) and, when policy refused it at step 7, a `deny` receipt.
 *
 * Steps 6–8 are {@link issueDelegated}, shared with the ID-JAG grant (./identity-assertion.ts),
 * which also reuses steps 1b, 2 and 5 (`refuseDeputyOwn`, `requireDpop`, `checkMayAct`,
 * `checkConfirmation`): every agent token is issued, recorded and receipted the same way.
 *
 * {@link exchange} works over plain values — the parsed parameters, the authenticated client's
 * id, the verified DPoP proof, the request id — and returns the RFC 8693 §2.2.1 response; it
 * knows neither Koa nor oidc-provider. Refusals are the typed errors of src/errors (RFC 6749
 * §5.2 codes), rendered by the one serializer.
 *
 * @module
 */
import { createLocalJWKSet, jwtVerify, type JWTHeaderParameters, type JWTVerifyGetKey } from 'jose';
import type { Agent, AgentRegistry } from '../agents/index.js';
import { requestDigest, type DigestValue } from '../audit/digest.js';
import { receiptText, type ReceiptInput } from '../audit/receipt.js';
import type { ReceiptAppender } from '../audit/receipts.js';
import { DeputyError, InvalidDpopProof, InvalidGrant, InvalidRequest, InvalidScope, InvalidTarget, UnauthorizedClient } from '../errors/index.js';
import { CachedJwks } from '../federation/jwks.js';
import type { FederationVerifier } from '../federation/verify.js';
import { traced, tracedStep } from '../observability/tracing.js';
import { unexpectedError, type Logger } from '../log.js';
import type { Queryable, StatementCondition, StatementPart, Store } from '../store/index.js';
import { newHandle, type EnvelopeVault } from '../vault/envelope.js';
import type { AccessTokenVerifier } from './access-token.js';
import { firstRecorded, recordOnce, spendEach, type OnceKey, type SingleUse } from './adapter.js';
import { ACTOR_TOKEN_ALGS } from '../util/algorithms.js';
import { isDeputyResource, isDeputyScope } from './deputy-own.js';
import { actFromChain, DelegationDenied, extendChain, handoffTarget, mayActNames, type ActorClaim, type DelegatingUser, type DelegationAuthorizer, type DelegationChain, type DenialCode } from '../delegation/index.js';
import { resolveSubject, subjectTokenKind, SubjectTokenError, TOKEN_TYPES, type Subject } from './subject-token.js';
import { AgentNotActive, ParentRevoked, type NewTokenRecord, type TokenRecords, type UserAttributes } from './token-records.js';
import { CapturedUpstreamTokens } from './upstream-capture.js';
import { MAX_RESOURCE_URI } from './uri.js';
import { sha256Base64url } from '../util/sha256.js';

/** RFC 8693 §2.1 grant type. */
export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';

/** RFC 8693 §2.1 request parameters (plus RFC 8707 `resource`). */
export const TOKEN_EXCHANGE_PARAMETERS = [
  'subject_token',
  'subject_token_type',
  'actor_token',
  'actor_token_type',
  'requested_token_type',
  'resource',
  'audience',
  'scope',
] as const;

/** The only token type Deputy issues (RFC 8693 §3). */
export const ACCESS_TOKEN_TYPE = TOKEN_TYPES.access_token;
/** `gty` recorded on issued tokens. */
export const TOKEN_EXCHANGE_GTY = 'token_exchange';
/** Vault `kind` of an upstream subject token. */
export const UPSTREAM_TOKEN_KIND = 'upstream_subject_token';

/**
 * Seconds a captured upstream token's vault row outlives its `expires_at` (the token's `exp`, or
 * sooner: {@link UPSTREAM_REUSE_SECONDS}) before the periodic purge deletes it. Every token
 * record that references the row expires no later than that (`expiresIn` is capped by the
 * token, a child's by its parent's, and no exchange references the row past its reuse window),
 * so the grace only absorbs clock skew between instances and the store.
 * The same hour as token records' purge (./token-records.ts `purgeExpired`).
 */
export const UPSTREAM_PURGE_GRACE_SECONDS = 3600;

/**
 * Deletes captured upstream tokens past their expiry plus {@link UPSTREAM_PURGE_GRACE_SECONDS}
 * (else `vault_secrets` grows without bound while an agent lives). Only this kind: connection
 * secrets, users' connect grants and PKCE verifiers have lifecycles of their own (and no
 * expiry). A reader that still holds a purged handle finds no row: the gateway's on-behalf-of
 * exchange answers `invalid_token` (src/vault/connections/on-behalf-of.ts), and a new exchange
 * that remembered the row writes it again (./upstream-capture.ts). Returns how many were deleted.
 */
export function purgeExpiredUpstream(vault: EnvelopeVault, db: Queryable): Promise<number> {
  return vault.purgeExpired(db, UPSTREAM_TOKEN_KIND, UPSTREAM_PURGE_GRACE_SECONDS);
}
/** Parameter sizes beyond which the request is refused before any parsing. */
const MAX_TOKEN_PARAM = 16 * 1024;
/** Longest accepted `resource` / `audience` value, in characters. */
export const MAX_TARGET = MAX_RESOURCE_URI;

/** The services the token exchange reads: issuer, store, agent registry, federation, verifier, token records, the delegation authorizer, receipts, vault, token lifetime (seconds), logger. */
export interface TokenExchangeDeps {
  issuer: string;
  store: Store;
  agents: AgentRegistry;
  federation: FederationVerifier;
  verifier: AccessTokenVerifier;
  records: TokenRecords;
  authorizer: DelegationAuthorizer;
  /** Where each exchange's receipt goes (a `permit` with the token record, a `deny` on refusal). */
  receipts: ReceiptAppender;
  /** Where the upstream subject token is kept, envelope-encrypted (the process's one vault). */
  vault: EnvelopeVault;
  /** Lifetime of issued tokens, in seconds (capped by the subject token's expiry). */
  accessTokenTTL: number;
  logger: Logger;
  /**
   * The upstream tokens' vault rows this process committed, reused by the same agent's later
   * exchanges of the same subject token; absent: every exchange writes a row of its own.
   */
  capturedUpstream?: CapturedUpstreamTokens;
}

/**
 * The port through which an exchange signs its token (RFC 9068 JWT access token): implemented on
 * the oidc-provider side (src/oauth/oidc-provider/token-exchange-grant.ts), faked in unit tests.
 */
export interface AccessTokenMinter {
  /**
   * Starts signing the access token: returns its `jti` at once and the compact JWT as a promise
   * (rejecting with whatever the signer throws, rendered as `server_error`), so that the token
   * record and the receipt naming that `jti` are prepared while the signature is computed.
   */
  mint(request: MintRequest): MintedToken;
}

/** What to sign: the claims of the issued token, as plain values. */
export interface MintRequest {
  /** `client_id`: the agent that holds the token. */
  clientId: string;
  /** `sub`: the delegating user's id. */
  accountId: string;
  /** `aud`: the one audience (RFC 8707). */
  audience: string;
  /** `scope`, space-separated. */
  scope: string;
  /** Lifetime in seconds (≥ 1). */
  expiresIn: number;
  /** `cnf.jkt` (RFC 9449 §6.1): the thumbprint of the DPoP key the token is bound to. */
  jkt: string;
  /** `gty` recorded by oidc-provider. */
  gty: string;
  /** Extra claims: `act` (RFC 8693 §4.1) and, for a handoff, `may_act` (§4.4). */
  extra: { act: ActorClaim | undefined; may_act?: Record<string, unknown> };
}

/** A token being signed. */
export interface MintedToken {
  /** The compact JWT, once signed. */
  value: Promise<string>;
  /** Its `jti`, the key of its token record (chosen before signing). */
  jti: string;
}

/** RFC 8693 §2.1 parameters as parsed from the form: a repeated parameter is an array. */
export type TokenExchangeParameters = Readonly<Record<string, string | readonly string[] | null | undefined>>;

/** The verified DPoP proof of the request (RFC 9449 §4.3); its `jti` is in `ExchangeInput.spends` or already spent (§11.1). */
export interface VerifiedProof {
  /** RFC 7638 thumbprint of the proof key: the issued token's `cnf.jkt`. */
  jkt: string;
  /** The proof's `jti`, recorded in the receipt's request digest. */
  jti: string;
}

/** One token-exchange request, as plain values. */
export interface ExchangeInput {
  /** The request's parameters (RFC 8693 §2.1, RFC 8707 `resource`). */
  params: TokenExchangeParameters;
  /** The authenticated client (RFC 6749 §2.3; `private_key_jwt`): its `client_id`. */
  clientId: string;
  /** The request's verified DPoP proof; `undefined` when it sent none (refused: DPoP is required). */
  dpop: VerifiedProof | undefined;
  /** The request id (`X-Request-ID`), recorded in the receipt. */
  requestId?: string;
  /**
   * Single-use values of the request not spent yet (its DPoP proof and client assertion `jti`s,
   * not looked up): recorded by the issuing statement, which writes nothing and fails with the
   * first recorded one's `replayed()` error when one was recorded before (a replay) or meanwhile
   * (a race). The caller spends them itself when the exchange fails.
   */
  spends?: readonly SingleUse[];
}

/** RFC 8693 §2.2.1 successful response. */
export interface TokenExchangeResponse {
  access_token: string;
  issued_token_type: string;
  /** RFC 9449 §5: always `DPoP` (every agent token is bound). */
  token_type: 'DPoP';
  /** Seconds. */
  expires_in: number;
  scope: string;
}

/** {@link TokenExchangeDeps} plus the signer of this request's token. */
export interface ExchangeDeps extends TokenExchangeDeps {
  minter: AccessTokenMinter;
}

interface ExchangeRequest {
  subjectToken: string;
  subjectKind: ReturnType<typeof subjectTokenKind>;
  actorToken: string | undefined;
  targets: string[];
  scopes: string[] | undefined;
}

/**
 * A parameter sent at most once (RFC 6749 §3.2); empty counts as absent.
 * @throws InvalidRequest when it was repeated
 */
export function single(params: TokenExchangeParameters, name: string): string | undefined {
  const value = params[name];
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string') throw new InvalidRequest(`"${name}" must be given once`);
  return value;
}

/** A parameter that may be repeated (RFC 8707 `resource`, RFC 8693 `audience`), as a list. */
export function many(params: TokenExchangeParameters, name: string): string[] {
  const value = params[name];
  if (value === undefined || value === null || value === '') return [];
  return (typeof value === 'string' ? [value] : [...value]).map(String);
}

/**
 * Step 1: RFC 8693 §2.1 parameters.
 * @throws InvalidRequest / InvalidTarget naming the parameter at fault
 */
export function readRequest(params: TokenExchangeParameters): ExchangeRequest {
  const subjectToken = single(params, 'subject_token');
  const subjectType = single(params, 'subject_token_type');
  if (subjectToken === undefined) throw new InvalidRequest('missing required parameter "subject_token"');
  if (subjectType === undefined) throw new InvalidRequest('missing required parameter "subject_token_type"');
  if (subjectToken.length > MAX_TOKEN_PARAM) throw new InvalidRequest('subject_token is too large');
  const actorToken = single(params, 'actor_token');
  const actorType = single(params, 'actor_token_type');
  if (actorToken !== undefined && actorType === undefined) throw new InvalidRequest('"actor_token_type" is required with "actor_token" (RFC 8693 §2.1)');
  if (actorToken === undefined && actorType !== undefined) throw new InvalidRequest('"actor_token_type" was sent without "actor_token"');
  if (actorType !== undefined && actorType !== TOKEN_TYPES.jwt) throw new InvalidRequest(`actor_token_type must be ${TOKEN_TYPES.jwt}`);
  if (actorToken !== undefined && actorToken.length > MAX_TOKEN_PARAM) throw new InvalidRequest('actor_token is too large');
  const requested = single(params, 'requested_token_type');
  if (requested !== undefined && requested !== ACCESS_TOKEN_TYPE) {
    throw new InvalidRequest(`requested_token_type "${requested.slice(0, 100)}" is not supported; Deputy issues ${ACCESS_TOKEN_TYPE}`);
  }
  const targets = [...new Set([...many(params, 'resource'), ...many(params, 'audience')])];
  if (targets.some((t) => t.length > MAX_TARGET)) throw new InvalidTarget('a resource or audience value is too long');
  const scope = single(params, 'scope');
  const subjectKind = subjectTokenKind(subjectType);
  return { subjectToken, subjectKind, actorToken, targets, scopes: scope === undefined ? undefined : [...new Set(scope.split(' ').filter(Boolean))] };
}

/**
 * Step 1b: Deputy's own scopes (`invalid_scope`, RFC 6749 §5.2) and resources (`invalid_target`,
 * RFC 8707 §2 / RFC 8693 §2.2.2) are never issued to an agent, whatever its registration says.
 */
export function refuseDeputyOwn(request: Pick<ExchangeRequest, 'targets' | 'scopes'>, issuer: string): void {
  const scope = request.scopes?.find(isDeputyScope);
  if (scope !== undefined) throw new InvalidScope(`the scope "${scope.slice(0, 100)}" is one of Deputy's own scopes and is never granted to an agent`);
  const target = request.targets.find((t) => isDeputyResource(t, issuer));
  if (target !== undefined) throw new InvalidTarget(`"${target.slice(0, 200)}" is one of Deputy's own resources and is never granted to an agent (agents may target ${issuer}/gw/{connection})`);
}

/**
 * Step 2: the proof was verified ahead of the grant (its `jti` spent, or in `ExchangeInput.spends`)
 * (./oidc-provider/token-dpop.ts). At the token endpoint a DPoP refusal is a 400 (RFC 9449 §5).
 */
export function requireDpop(dpop: VerifiedProof | undefined): VerifiedProof {
  if (dpop === undefined) {
    throw new InvalidDpopProof('a DPoP proof is required: agent tokens are always bound to the agent\'s key (RFC 9449)', { status: 400 });
  }
  return dpop;
}

/**
 * Agents' published key sets (`jwks_uri`), one per URI: refetched at once when an actor token
 * names a `kid` not seen yet (key rotation needs no wait), at most once per cooldown otherwise.
 * Bounded (agents registered through the admin API can be many): past
 * {@link MAX_REMOTE_KEY_SETS} URIs the least recently inserted is dropped and refetched on its
 * next use.
 */
const remoteKeySets = new Map<string, JWTVerifyGetKey>();
const MAX_REMOTE_KEY_SETS = 1000;
/** Inline key sets, per agent object: the registry hands out the same object while it is cached, so keys are imported once. */
const localKeySets = new WeakMap<Agent, JWTVerifyGetKey>();

function agentKeys(agent: Agent): JWTVerifyGetKey {
  if (agent.jwks) {
    let set = localKeySets.get(agent);
    if (!set) localKeySets.set(agent, (set = createLocalJWKSet(agent.jwks as Parameters<typeof createLocalJWKSet>[0])));
    return set;
  }
  const uri = agent.jwks_uri!;
  let set = remoteKeySets.get(uri);
  if (!set && remoteKeySets.size >= MAX_REMOTE_KEY_SETS) remoteKeySets.delete(remoteKeySets.keys().next().value!);
  if (!set) remoteKeySets.set(uri, (set = new CachedJwks(new URL(uri), { cacheMaxAgeMs: 600_000, unknownKidCooldownMs: 30_000, timeoutMs: 5000 }).getKey));
  return set;
}

/**
 * `typ` values an actor token may carry: none, or the generic `JWT` (RFC 7519 §5.1). Any other
 * names another kind of token (`at+jwt`, `dpop+jwt`, a receipt), which is never an actor token
 * (RFC 8725 §3.11).
 */
function plainJwtType(typ: unknown): boolean {
  return typ === undefined || (typeof typ === 'string' && typ.toUpperCase() === 'JWT');
}

/**
 * Step 4: an `actor_token` (RFC 8693 §2.1) is a JWT the agent signed with one of its registered
 * keys (`iss` = `sub` = its client id, `aud` = Deputy, short-lived, single-use `jti`). It must
 * identify the authenticated client; the chain records the client either way. Returns its `jti`
 * as a single-use value for the issuing write.
 */
async function checkActorToken(deps: TokenExchangeDeps, agent: Agent, token: string): Promise<SingleUse> {
  let payload;
  let header: JWTHeaderParameters;
  try {
    ({ payload, protectedHeader: header } = await jwtVerify(token, agentKeys(agent), {
      algorithms: [...ACTOR_TOKEN_ALGS],
      issuer: agent.id,
      subject: agent.id,
      audience: deps.issuer,
      maxTokenAge: '5m',
      requiredClaims: ['exp', 'iat', 'jti'],
    }));
  } catch {
    throw new InvalidGrant('actor_token must be a JWT signed with the authenticated agent\'s key, with iss and sub = its client_id and aud = Deputy\'s issuer');
  }
  if (!plainJwtType(header.typ)) throw new InvalidGrant('actor_token must be a plain JWT (header typ absent or "JWT"), not another kind of token');
  const key = sha256Base64url(`${agent.id}\0${String(payload.jti)}`);
  const item: SingleUse = { once: { namespace: ACTOR_TOKEN_NAMESPACE, key, ttlSeconds: 600 }, replayed: () => new InvalidGrant('actor_token has already been used') };
  // Looked up now (a known replay is refused before any work), recorded with the token (step 8b)
  // or, when the exchange fails, by `exchange` itself: spent once whatever happens.
  if (await firstRecorded(deps.store, [item])) throw item.replayed();
  return item;
}

/** Where actor-token `jti`s are recorded (`oidc_models.model`). */
const ACTOR_TOKEN_NAMESPACE = 'ActorToken';

/**
 * Step 5: who may present this subject token. RFC 8693 §4.4 `may_act` names the party allowed
 * to act; when present in any subject token, the agent must be that party. A Deputy agent token
 * additionally needs one of: `may_act` naming the agent (a handoff), or a DPoP proof made with
 * the key the token is bound to (the holder itself). A leaked agent token alone is useless.
 */
export function checkMayAct(deps: Pick<TokenExchangeDeps, 'issuer'>, subject: Subject, agent: Agent, dpop: VerifiedProof): void {
  const named = mayActNames(subject.mayAct, agent.id, deps.issuer);
  if (subject.mayAct !== undefined && !named) {
    throw new InvalidGrant(`the subject token's may_act does not name agent "${agent.id}"`);
  }
  if (subject.kind === 'deputy' && !named && subject.record.cnfJkt !== dpop.jkt) {
    throw new InvalidGrant(
      'the subject token is bound to another key and its may_act does not name this agent: present it with a DPoP proof of its key, or have its holder hand it over (audience urn:deputy:agent:<id>)',
    );
  }
}

/**
 * Step 5b: an IdP subject token that is sender-constrained (`cnf`, RFC 7800 §3.1) may be
 * presented only with proof of its key: `cnf.jkt` (RFC 9449 §6.1) must be the key of this
 * request's DPoP proof. Other confirmation methods (mTLS `x5t#S256`, `jwk`, …) cannot be proven
 * at this endpoint, so such a token is refused rather than its binding dropped.
 */
export function checkConfirmation(subject: Subject, dpop: VerifiedProof): void {
  if (subject.kind !== 'federated' || subject.identity.claims.cnf === undefined) return;
  const { jkt } = subject.identity.claims.cnf as { jkt?: unknown };
  if (jkt !== dpop.jkt) {
    throw new InvalidGrant('the subject token is sender-constrained (cnf) to a key this request\'s DPoP proof does not prove possession of');
  }
}

/**
 * Step 6a: exactly one audience (RFC 8707 §2, RFC 8693 §2.1), defaulting to the agent's only one.
 * A stored default naming one of Deputy's own resources is refused like a requested one.
 */
function chooseAudience(targets: string[], agent: Agent, issuer: string): string {
  if (targets.length > 1) throw new InvalidTarget('request one resource or audience per token');
  const audience = targets[0] ?? (agent.audiences.length === 1 && !agent.audiences[0]!.endsWith('*') ? agent.audiences[0] : undefined);
  if (audience === undefined) throw new InvalidTarget('a "resource" or "audience" parameter is required (the agent has several allowed audiences)');
  refuseDeputyOwn({ targets: [audience], scopes: undefined }, issuer);
  return audience;
}

/**
 * Step 6b: the granted scopes. Requested scopes must all be allowed by the agent and by the
 * subject token (no silent escalation, shared notes P6); without `scope`, the intersection.
 */
function chooseScopes(requested: string[] | undefined, agent: Agent, subject: Subject): string[] {
  const allowedBySubject = (s: string) => subject.scopes === undefined || subject.scopes.includes(s);
  if (requested !== undefined) {
    const beyondSubject = requested.filter((s) => !allowedBySubject(s));
    if (beyondSubject.length > 0) throw new InvalidScope(`the subject token does not grant the scope "${beyondSubject.join(' ')}"${idTokenHint(subject)}`);
    return requested;
  }
  // Deputy's own scopes never reach an agent, even if a stored registration still lists them.
  const granted = agent.scopes.filter((s) => !isDeputyScope(s) && allowedBySubject(s));
  if (granted.length === 0) throw new InvalidScope(`no scope is allowed by both the agent and the subject token${idTokenHint(subject)}`);
  return granted;
}

/** An ID token delegates only what the operator granted its issuer's ID-token subjects: say where. */
function idTokenHint(subject: Subject): string {
  if (subject.kind !== 'federated' || subject.identity.tokenKind !== 'id_token') return '';
  return ` (an ID token delegates only the scopes trusted issuer "${subject.identity.issuerId}" grants in idToken.scopes)`;
}

/**
 * Step 7. Returns the receipt completed with the deciding policies. A refusal is a `delegate`
 * decision too: it gets a `deny` receipt (its only write) — unless one of the request's
 * single-use values (`spends`) was recorded already: a replayed request is refused as a replay
 * and writes nothing (the values are not looked up earlier on the way to a permit, ./oidc-provider/token-spends.ts).
 */
const authorize = tracedStep('token_exchange.authorize', async (deps: TokenExchangeDeps, decision: DelegateDecision): Promise<ReceiptInput> => {
  const { agent, subject, chain, audience, scopes, receipt } = decision;
  try {
    const permit = await deps.authorizer.authorize({ user: subject.user, agent, chain, audience, scopes });
    return permit ? { ...receipt, policies: permit.policies } : receipt;
  } catch (err) {
    if (err instanceof DelegationDenied) {
      const replay = await firstRecorded(deps.store, decision.spends);
      if (replay) throw replay.replayed();
      // The refusal stands whether or not its receipt could be written; a lost receipt is logged.
      // The reason quotes the refused audience or scopes (the caller's): reduced as they are.
      const deny: ReceiptInput = { ...receipt, decision: 'deny', reason: receiptText(err.description), policies: err.policies };
      await deps.receipts.append(deny).catch((e: unknown) => deps.logger.error({ err: unexpectedError(e) }, 'deny receipt not written'));
      throw denialError(err.error, err.description);
    }
    throw err;
  }
});

/** What step 7 decides: the agent acting for the subject along the chain, for one audience and these scopes; its receipt; the request's single-use values. */
interface DelegateDecision {
  agent: Agent;
  subject: Subject;
  chain: DelegationChain;
  audience: string;
  scopes: string[];
  receipt: ReceiptInput;
  spends: readonly SingleUse[];
}

/** A delegation refusal (delegation/denial.ts) as the member of the error family its code names. */
function denialError(code: DenialCode, description: string): DeputyError {
  switch (code) {
    case 'invalid_scope':
      return new InvalidScope(description);
    case 'invalid_target':
      return new InvalidTarget(description);
    case 'invalid_grant':
      return new InvalidGrant(description);
    case 'unauthorized_client':
      return new UnauthorizedClient(description);
  }
}

/**
 * What a grant's receipt digests (`requestDigest`): its grant type and parameters, the client and
 * the DPoP key and proof `jti` — whoever holds the request can match it; the receipt itself holds
 * no token (DESIGN invariant).
 */
export function grantRequestDigest(grantType: string, params: TokenExchangeParameters, names: readonly string[], clientId: string, dpop: VerifiedProof): string {
  const request: Record<string, DigestValue> = { grant_type: grantType, client_id: clientId, dpop_jkt: dpop.jkt, dpop_jti: dpop.jti };
  for (const name of names) {
    const v = params[name];
    if (v !== undefined && v !== null && v !== '') request[name] = typeof v === 'string' ? v : v.map(String);
  }
  return requestDigest(request);
}

/**
 * The issuing grant's receipt, `permit` until decided otherwise (a `delegate` decision). The
 * audience and scopes are reduced to fit a receipt ({@link receiptText}): a refused request's are
 * the caller's (up to `MAX_TARGET`, any scope token), and an agent may hold up to 100 scopes of
 * any length, granted together when the request names none.
 */
function grantReceipt(grant: DelegatedGrant, chain: DelegationChain, audience: string, scopes: string[]): ReceiptInput {
  return {
    agent: grant.agent.id,
    user: grant.subject.user.id,
    chain,
    event: grant.event,
    action: 'delegate',
    resource: receiptText(audience),
    decision: 'permit',
    ...(scopes.length > 0 ? { scope: receiptText(scopes.join(' ')) } : {}),
    requestDigest: grant.requestDigest,
    ...(grant.requestId !== undefined ? { requestId: grant.requestId } : {}),
  };
}

/** A handoff audience must name an active agent; the token then carries `may_act` for it. */
async function handoffMayAct(deps: TokenExchangeDeps, audience: string): Promise<Record<string, unknown> | undefined> {
  const target = handoffTarget(audience);
  if (target === undefined) return undefined;
  const next = await deps.agents.get(target);
  if (!next || next.status !== 'active') throw new InvalidTarget(`audience "${audience}" names no active agent`);
  return { sub: next.id, iss: deps.issuer };
}

/** What step 8 signs and records. */
interface Issuance {
  agent: Agent;
  subject: Subject;
  /** The federated subject token kept in the vault for the gateway; `undefined`: nothing kept. */
  subjectToken: string | undefined;
  chain: DelegationChain;
  audience: string;
  scopes: string[];
  dpop: VerifiedProof;
  mayAct: Record<string, unknown> | undefined;
  receipt: ReceiptInput;
  spends: readonly SingleUse[];
}

interface Issued {
  value: string;
  expiresIn: number;
}

/**
 * Step 8: sign, and record (one statement) once signed. The token's signature and the receipt's
 * run side by side (two WebCrypto operations on the thread pool instead of one after the other,
 * issue 16, sixth round): the receipt names the token's `jti`, chosen before signing, and the
 * issuing statement waits for the token's signature (`AttestedWrites.ready`), so a token that
 * failed to sign is never recorded, and a token is returned only once recorded, as before.
 */
const issue = tracedStep('token_exchange.issue', async (deps: ExchangeDeps, input: Issuance): Promise<Issued> => {
  const now = Math.floor(Date.now() / 1000);
  const expiresIn = Math.min(deps.accessTokenTTL, input.subject.expiresAt - now);
  if (expiresIn < 1) throw new InvalidGrant('the subject token has expired');
  const token = mint(deps.minter, input, expiresIn);
  const recorded = recordIssued(deps, input, token, now, expiresIn).catch((err: unknown) => {
    throw recordRefusal(err);
  });
  // Both awaited together: neither rejection is left unhandled, whichever settles first.
  const [value] = await Promise.all([token.value, recorded]);
  return { value, expiresIn };
});

/** Step 8a: the RFC 9068 JWT with `act` (and `may_act` for a handoff), bound to the proof key. */
function mint(minter: AccessTokenMinter, input: Issuance, expiresIn: number): MintedToken {
  const { agent, subject, chain, audience, scopes, dpop, mayAct } = input;
  return minter.mint({
    clientId: agent.id,
    accountId: subject.user.id,
    audience,
    scope: scopes.join(' '),
    expiresIn,
    jkt: dpop.jkt,
    gty: TOKEN_EXCHANGE_GTY,
    extra: { act: actFromChain(chain), ...(mayAct ? { may_act: mayAct } : {}) },
  });
}

/**
 * Step 8b: the writes the `permit` receipt attests — the proof and client assertion `jti`s, the
 * encrypted upstream token (federated subjects) and the token record (chained to its parent) —
 * and the receipt itself, all or nothing, before the token is returned: no receipt, no token; no
 * token record, no receipt claiming one; a replayed `jti` writes nothing.
 *
 * Written by the receipt service's per-agent group writer (`ReceiptAppender.appendWith`): the
 * exchanges of one agent arriving together share one statement and one commit, signed against
 * the chain head with no lock held, so they no longer queue on the head row inside transactions
 * of their own (issue 16). When that statement refuses (a replay, a disabled agent, a revoked
 * parent), each exchange of the group is decided alone in a transaction that throws its own
 * error. An appender without `appendWith` gets the one transaction of before.
 */
async function recordIssued(deps: ExchangeDeps, input: Issuance, token: MintedToken, now: number, expiresIn: number): Promise<void> {
  const { jti } = token;
  const capture = await captureUpstream(deps, input, now);
  const record = newRecord(input, jti, now, expiresIn, capture?.handle);
  const receipt = { ...input.receipt, tokenId: jti };
  // The rows only: the group writer records the single-use values itself, after the chain head.
  const inTransaction = async (tx: Queryable): Promise<void> => deps.records.insert(tx, record, capture && (await capture.row()));
  if (deps.receipts.appendWith) {
    const parts = [...(capture?.written ? [capture.written] : []), deps.records.insertPart(record, capture?.requires)];
    const spent = new Map(input.spends.map((s) => [s.once, s]));
    const replayed = (key: OnceKey): Error => spent.get(key)!.replayed();
    await deps.receipts.appendWith(receipt, { once: input.spends.map((s) => s.once), parts, inTransaction, replayed, ready: token.value });
  } else {
    await token.value;
    await deps.store.transaction(async (tx) => {
      // A request that lost the race for one of its single-use values writes nothing.
      const replay = await spendEach(tx, input.spends);
      if (replay) throw replay.replayed();
      await inTransaction(tx);
      await deps.receipts.append(receipt, tx);
    }, { retryConflicts: true });
  }
  capture?.committed();
}

/**
 * How step 8b keeps a federated subject token (else undefined: nothing kept): the vault row's
 * `handle`; for the group statement, the row to write (`written`) or, when this process already
 * committed one for this agent and token ({@link CapturedUpstreamTokens}), the condition that it
 * still exists (`requires`); for the locked path, `row()` — the row, written only if absent.
 * `committed()` is called once the token record is: the row is then remembered.
 */
interface UpstreamCapture {
  handle: string;
  written?: StatementPart;
  requires?: StatementCondition;
  row(): Promise<StatementPart>;
  committed(): void;
}

/**
 * Seconds after its row was written during which later exchanges of the same agent and IdP token
 * may reference it ({@link CapturedUpstreamTokens}); the row's `expires_at` is the token's `exp`,
 * or — for an IdP token that lives longer — this plus the access-token lifetime (the last record
 * that references it expires by then). Without it, a token with a far `exp` (a custom OIDC issuer,
 * a year) kept its row that long: past its token records' purge, so past the agent's deletion
 * too (`detachUpstream` finds rows through the records), and never purged.
 */
export const UPSTREAM_REUSE_SECONDS = 24 * 3600;

/**
 * Step 8b's vault row for a federated subject token: a new row (encrypted now), or the row this
 * process committed for the same agent and token ({@link CapturedUpstreamTokens}), referenced on
 * the condition that it still exists. `now` in epoch seconds. A row is referenced until `until`
 * (the token's `exp`, at most {@link UPSTREAM_REUSE_SECONDS} after it was written) and expires
 * once every record that can reference it has: no later than `until` plus the access-token lifetime.
 */
async function captureUpstream(deps: ExchangeDeps, input: Issuance, now: number): Promise<UpstreamCapture | undefined> {
  const { subject, subjectToken } = input;
  if (subject.kind !== 'federated' || subjectToken === undefined) return undefined;
  const memo = deps.capturedUpstream;
  const key = memo && CapturedUpstreamTokens.key(input.agent.id, subject.user.issuerId, subjectToken);
  const remembered = key === undefined ? undefined : memo!.entry(key, now);
  const until = remembered?.expiresAt ?? Math.min(subject.expiresAt, now + UPSTREAM_REUSE_SECONDS);
  const expiresAt = Math.min(subject.expiresAt, until + deps.accessTokenTTL);
  const secret = (handle: string) => ({ handle, kind: UPSTREAM_TOKEN_KIND, plaintext: subjectToken, expiresAt });
  // Remembered again no longer than first: a hit must not extend the row's use past its expiry.
  const committed = (handle: string) => () => {
    if (key !== undefined) memo!.remember(key, handle, until);
  };
  if (remembered !== undefined) {
    const { handle } = remembered;
    // The locked path (the statement refused: the row may be gone) writes the row again if absent.
    return { handle, requires: deps.vault.exists(handle), row: () => deps.vault.putPart(secret(handle), { ifAbsent: true }), committed: committed(handle) };
  }
  const handle = newHandle('upt');
  const written = await deps.vault.putPart(secret(handle));
  return { handle, written, row: async () => written, committed: committed(handle) };
}

/** The token record of step 8b (the upstream token's vault handle: the new one, else the parent's). */
function newRecord(input: Issuance, jti: string, now: number, expiresIn: number, upstream: string | undefined): NewTokenRecord {
  const { agent, subject, chain, audience, scopes, dpop, mayAct } = input;
  const parent = subject.kind === 'deputy' ? subject.record : undefined;
  return {
    jti,
    parentJti: parent?.jti,
    rootJti: parent?.rootJti ?? jti,
    agentId: agent.id,
    userId: subject.user.id,
    userAttrs: userAttributes(subject.user),
    issuerId: subject.user.issuerId,
    audience,
    scope: scopes.join(' '),
    chain,
    cnfJkt: dpop.jkt,
    mayAct,
    upstream: upstream ?? parent?.upstream,
    issuedAt: now,
    expiresAt: now + expiresIn,
  };
}

/** The user attributes a token record keeps for policy (src/oauth/token-records.ts `user_attrs`). */
export function userAttributes(user: DelegatingUser): UserAttributes {
  return { groups: user.groups, roles: user.roles, ...(user.email ? { email: user.email } : {}), ...(user.tenant ? { tenant: user.tenant } : {}) };
}

/**
 * Records an issued agent token inside `tx`: its token record (the agent's row share-locked and
 * checked active, the parent checked live) and its `permit` receipt naming the token's `jti`.
 * Every way Deputy issues an agent token — token exchange, the authorization code and refresh
 * grants (./oidc-provider/authorization-code.ts) — records through here, so introspection,
 * cascading revocation, the PDP's chain and the receipt chain see them all alike.
 *
 * `also`: a write of the same transaction run in the token record's statement (the upstream
 * token's vault row, `EnvelopeVault.putPart`).
 *
 * @throws AgentNotActive / ParentRevoked (./token-records.ts); store errors propagate
 */
export async function recordIssuedToken(deps: Pick<TokenExchangeDeps, 'records' | 'receipts'>, tx: Queryable, record: NewTokenRecord, receipt: ReceiptInput, also?: StatementPart): Promise<void> {
  await deps.records.insert(tx, record, also);
  // Last, so the agent's chain head is locked only for the end of this transaction.
  await deps.receipts.append({ ...receipt, tokenId: record.jti }, tx);
}

/** The races step 8b can lose, as protocol errors; anything else unchanged. */
function recordRefusal(err: unknown): unknown {
  if (err instanceof ParentRevoked) return new InvalidGrant('the subject token has been revoked');
  // Disabled while this exchange ran (the check in `exchange` read it still active).
  if (err instanceof AgentNotActive) return new UnauthorizedClient('only active registered agents may exchange tokens');
  return err;
}

/** Steps 3–5: the subject token verified, the actor token (its `jti`, unspent) and `may_act` / `cnf` checked. */
async function authenticateSubject(deps: ExchangeDeps, request: ExchangeRequest, agent: Agent, dpop: VerifiedProof): Promise<{ subject: Subject; actor: SingleUse | undefined }> {
  let subject: Subject;
  try {
    subject = await resolveSubject(deps, request.subjectToken, request.subjectKind);
  } catch (err) {
    if (err instanceof SubjectTokenError) {
      deps.logger.info({ client_id: agent.id, reason: err.description, cause: err.cause instanceof Error ? err.cause.message : undefined }, 'subject token refused');
    }
    throw err;
  }
  const actor = request.actorToken === undefined ? undefined : await checkActorToken(deps, agent, request.actorToken);
  checkMayAct(deps, subject, agent, dpop);
  checkConfirmation(subject, dpop);
  return { subject, actor };
}

/** The authenticated client must be an active registered agent. */
export async function activeAgent(deps: Pick<TokenExchangeDeps, 'agents'>, clientId: string): Promise<Agent> {
  const agent = await deps.agents.get(clientId);
  if (!agent || agent.status !== 'active') throw new UnauthorizedClient('only active registered agents may exchange tokens');
  return agent;
}

/**
 * RFC 8693 token exchange over plain values: runs steps 1–8 of the module documentation and
 * returns the RFC 8693 §2.2.1 response. No HTTP framework is involved; `deps.minter` signs.
 *
 * @throws DeputyError (`invalid_request`, `invalid_grant`, `invalid_scope`, `invalid_target`,
 *   `unauthorized_client`, `invalid_dpop_proof` — RFC 6749 §5.2, RFC 8707 §2, RFC 9449 §5), each
 *   naming the failed check; a store outage propagates (rendered as 503).
 */
export async function exchange(input: ExchangeInput, deps: ExchangeDeps): Promise<TokenExchangeResponse> {
  const request = readRequest(input.params);
  refuseDeputyOwn(request, deps.issuer);
  const agent = await traced('token_exchange.client', () => activeAgent(deps, input.clientId));
  const dpop = requireDpop(input.dpop);
  const { subject, actor } = await traced('token_exchange.subject', () => authenticateSubject(deps, request, agent, dpop));

  const issued = await issueDelegated(deps, {
    agent, subject, subjectToken: request.subjectToken, targets: request.targets, scopes: request.scopes, dpop,
    event: 'token_exchange',
    requestDigest: grantRequestDigest(TOKEN_EXCHANGE_GRANT, input.params, TOKEN_EXCHANGE_PARAMETERS, agent.id, dpop),
    ...(input.requestId !== undefined ? { requestId: input.requestId } : {}),
    spends: [...(input.spends ?? []), ...(actor ? [actor] : [])],
  }).catch(async (err: unknown) => {
    if (actor) await spendActorUnlessReplay(deps, input.spends ?? [], actor);
    throw err;
  });
  deps.logger.info({ client_id: agent.id, user: subject.user.id, chain: issued.chain, audience: issued.audience, scope: issued.scope, depth: issued.chain.length }, 'token exchanged');
  return { access_token: issued.value, issued_token_type: ACCESS_TOKEN_TYPE, token_type: 'DPoP', expires_in: issued.expiresIn, scope: issued.scope };
}

/**
 * After a failed exchange: the actor token was used, so it is spent even though no token was
 * issued (the issuing write did not run or rolled back) — unless the request was a replay of its
 * proof or client assertion (`spends`, looked up here: one read, on failures only). A replay was
 * refused before any grant work when the values were looked up first, so it never spent the
 * actor token it carried; the replay's own error is answered (./oidc-provider/token-dpop.ts).
 *
 * @throws the replayed value's `replayed()` error when one of `spends` was recorded already
 */
async function spendActorUnlessReplay(deps: Pick<ExchangeDeps, 'store' | 'logger'>, spends: readonly SingleUse[], actor: SingleUse): Promise<void> {
  // A look-up that fails spends the actor token: the safe side.
  const replay = await firstRecorded(deps.store, spends).catch(() => undefined);
  if (replay) throw replay.replayed();
  await recordOnce(deps.store, actor.once.namespace, actor.once.key, actor.once.ttlSeconds).catch((e: unknown) => deps.logger.error({ err: unexpectedError(e) }, 'actor_token jti not recorded'));
}

/** A verified subject and agent, ready for steps 6–8: what every agent-token grant hands over. */
export interface DelegatedGrant {
  /** The authenticated, active agent (the client): the chain's new last link. */
  agent: Agent;
  /** Who the token acts for, verified. */
  subject: Subject;
  /** The federated subject token to keep for the gateway (token exchange); `undefined`: none. */
  subjectToken: string | undefined;
  /** Requested RFC 8707 resources / RFC 8693 audiences (step 6a picks one). */
  targets: string[];
  /** Requested scopes; `undefined`: the intersection of the agent's and the subject's. */
  scopes: string[] | undefined;
  /** The request's verified proof: the token's `cnf.jkt`. */
  dpop: VerifiedProof;
  /** Receipt event of the grant. */
  event: ReceiptInput['event'];
  /** The receipt's `requestDigest` ({@link grantRequestDigest}). */
  requestDigest: string;
  requestId?: string;
  /** Recorded in the issuing transaction (see {@link ExchangeInput.spends}). */
  spends?: readonly SingleUse[];
}

/** An issued agent token and what it was issued for. */
export interface DelegatedToken {
  value: string;
  /** Seconds. */
  expiresIn: number;
  chain: DelegationChain;
  audience: string;
  /** Granted scopes, space-separated. */
  scope: string;
}

/**
 * Steps 6–8 for a verified subject and agent, shared by token exchange and the ID-JAG grant
 * (./identity-assertion.ts): the chain extended by the agent, one audience, scopes that only
 * narrow, the `delegate` decision (a `deny` receipt on refusal), then the DPoP-bound token signed,
 * recorded and receipted in one transaction.
 *
 * @throws InvalidTarget / InvalidScope / InvalidGrant / UnauthorizedClient naming the failed check
 */
export async function issueDelegated(deps: ExchangeDeps, grant: DelegatedGrant): Promise<DelegatedToken> {
  const { agent, subject, dpop } = grant;
  const chain = extendChain(subject.chain, agent.id);
  const audience = chooseAudience(grant.targets, agent, deps.issuer);
  const scopes = chooseScopes(grant.scopes, agent, subject);
  const spends = grant.spends ?? [];
  const receipt = await authorize(deps, { agent, subject, chain, audience, scopes, receipt: grantReceipt(grant, chain, audience, scopes), spends });
  const mayAct = await handoffMayAct(deps, audience);
  const issued = await issue(deps, { agent, subject, subjectToken: grant.subjectToken, chain, audience, scopes, dpop, mayAct, receipt, spends });
  return { ...issued, chain, audience, scope: scopes.join(' ') };
}
