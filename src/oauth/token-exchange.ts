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
 * 2. `requireDpop` — the request's DPoP proof (RFC 9449 §4.3, §5), verified and its `jti` spent
 *    before the client was authenticated (./token-dpop.ts): the issued token is bound to its key.
 * 3. `resolveSubject` — the subject token verified (federation, or Deputy's own keys + record).
 * 4. `checkActorToken` — when sent, `actor_token` must identify the authenticated agent.
 * 5. `checkMayAct` — whoever holds a Deputy agent token may exchange it only if its `may_act`
 *    names them or they prove possession of its key; a `may_act` in any subject token binds;
 *    `checkConfirmation` — a sender-constrained IdP token (`cnf`) needs a proof of its key.
 * 6. `chooseAudience` / `chooseScopes` — one audience (RFC 8707), scopes never wider than the
 *    request, the agent, and the subject token, and never Deputy's own — also when they come
 *    from an agent's stored defaults (rows written before registration refused them).
 * 7. `authorizer.authorize` — policy (registry rules; Cedar `delegate` once the PDP is on).
 * 8. `issue` — sign the RFC 9068 JWT, then record it (and the encrypted upstream token) and its
 *    `permit` receipt (src/audit) in one transaction. A failed exchange writes nothing but the
 *    proof's replay entry (a verified proof is spent whatever happens next, RFC 9449 §11.1) and,
 *    when policy refused it at step 7, a `deny` receipt.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import { createLocalJWKSet, jwtVerify, type JWTHeaderParameters, type JWTVerifyGetKey } from 'jose';
import { CachedJwks } from '../federation/jwks.js';
import { errors, type KoaContextWithOIDC, type ResourceServer } from 'oidc-provider';
import type { Agent, AgentRegistry } from '../agents/registry.js';
import { requestDigest, type DigestValue } from '../audit/digest.js';
import type { ReceiptInput } from '../audit/receipt.js';
import type { ReceiptAppender } from '../audit/receipts.js';
import type { FederationVerifier } from '../federation/verify.js';
import type { KeyStore } from '../keys/keystore.js';
import type { Logger } from '../log.js';
import type { Store } from '../store/index.js';
import { newHandle, type EnvelopeVault } from '../vault/envelope.js';
import type { AccessTokenVerifier } from './access-token.js';
import { recordOnce } from './adapter.js';
import { isDeputyResource, isDeputyScope } from './deputy-own.js';
import { actFromChain, DelegationDenied, extendChain, handoffTarget, mayActNames, type DelegationAuthorizer, type DelegationChain } from '../delegation/index.js';
import type { GrantRegistration } from './provider.js';
import { CLIENT_AUTH_ALGS, TOKEN_EXCHANGE_GRANT } from './provider.js';
import { resolveSubject, subjectTokenKind, SubjectTokenError, TOKEN_TYPES, type Subject } from './subject-token.js';
import { verifiedTokenProof } from './token-dpop.js';
import { AgentNotActive, ParentRevoked, type TokenRecords } from './token-records.js';

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
const GTY = 'token_exchange';
/** Vault `kind` of an upstream subject token. */
export const UPSTREAM_TOKEN_KIND = 'upstream_subject_token';
/** Parameter sizes beyond which the request is refused before any parsing. */
const MAX_TOKEN_PARAM = 16 * 1024;
const MAX_TARGET = 2048;

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
  keys: KeyStore;
  /** Lifetime of issued tokens, in seconds (capped by the subject token's expiry). */
  accessTokenTTL: number;
  logger: Logger;
}

/** An OAuth error (RFC 6749 §5.2) with a description naming the failed check. */
function oauthError(error: string, description: string, status = 400): Error {
  const err = new errors.CustomOIDCProviderError(error, description);
  if (status !== 400) Object.assign(err, { status, statusCode: status });
  return err;
}

interface ExchangeRequest {
  subjectToken: string;
  subjectKind: ReturnType<typeof subjectTokenKind>;
  actorToken: string | undefined;
  targets: string[];
  scopes: string[] | undefined;
}

function single(ctx: KoaContextWithOIDC, name: string): string | undefined {
  const value = (ctx.oidc.params as Record<string, unknown> | undefined)?.[name];
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string') throw oauthError('invalid_request', `"${name}" must be given once`);
  return value;
}

function many(ctx: KoaContextWithOIDC, name: string): string[] {
  const value = (ctx.oidc.params as Record<string, unknown> | undefined)?.[name];
  if (value === undefined || value === null || value === '') return [];
  return (Array.isArray(value) ? value : [value]).map(String);
}

/** Step 1: RFC 8693 §2.1 parameters. */
export function readRequest(ctx: KoaContextWithOIDC): ExchangeRequest {
  const subjectToken = single(ctx, 'subject_token');
  const subjectType = single(ctx, 'subject_token_type');
  if (subjectToken === undefined) throw oauthError('invalid_request', 'missing required parameter "subject_token"');
  if (subjectType === undefined) throw oauthError('invalid_request', 'missing required parameter "subject_token_type"');
  if (subjectToken.length > MAX_TOKEN_PARAM) throw oauthError('invalid_request', 'subject_token is too large');
  const actorToken = single(ctx, 'actor_token');
  const actorType = single(ctx, 'actor_token_type');
  if (actorToken !== undefined && actorType === undefined) throw oauthError('invalid_request', '"actor_token_type" is required with "actor_token" (RFC 8693 §2.1)');
  if (actorToken === undefined && actorType !== undefined) throw oauthError('invalid_request', '"actor_token_type" was sent without "actor_token"');
  if (actorType !== undefined && actorType !== TOKEN_TYPES.jwt) throw oauthError('invalid_request', `actor_token_type must be ${TOKEN_TYPES.jwt}`);
  if (actorToken !== undefined && actorToken.length > MAX_TOKEN_PARAM) throw oauthError('invalid_request', 'actor_token is too large');
  const requested = single(ctx, 'requested_token_type');
  if (requested !== undefined && requested !== ACCESS_TOKEN_TYPE) {
    throw oauthError('invalid_request', `requested_token_type "${requested.slice(0, 100)}" is not supported; Deputy issues ${ACCESS_TOKEN_TYPE}`);
  }
  const targets = [...new Set([...many(ctx, 'resource'), ...many(ctx, 'audience')])];
  if (targets.some((t) => t.length > MAX_TARGET)) throw oauthError('invalid_target', 'a resource or audience value is too long');
  const scope = single(ctx, 'scope');
  let subjectKind;
  try {
    subjectKind = subjectTokenKind(subjectType);
  } catch (err) {
    if (err instanceof SubjectTokenError) throw oauthError(err.error, err.description);
    throw err;
  }
  return { subjectToken, subjectKind, actorToken, targets, scopes: scope === undefined ? undefined : [...new Set(scope.split(' ').filter(Boolean))] };
}

/**
 * Step 1b: Deputy's own scopes (`invalid_scope`, RFC 6749 §5.2) and resources (`invalid_target`,
 * RFC 8707 §2 / RFC 8693 §2.2.2) are never issued to an agent, whatever its registration says.
 */
export function refuseDeputyOwn(request: Pick<ExchangeRequest, 'targets' | 'scopes'>, issuer: string): void {
  const scope = request.scopes?.find(isDeputyScope);
  if (scope !== undefined) throw oauthError('invalid_scope', `the scope "${scope.slice(0, 100)}" is one of Deputy's own scopes and is never granted to an agent`);
  const target = request.targets.find((t) => isDeputyResource(t, issuer));
  if (target !== undefined) throw oauthError('invalid_target', `"${target.slice(0, 200)}" is one of Deputy's own resources and is never granted to an agent (agents may target ${issuer.replace(/\/$/, '')}/gw/{connection})`);
}

/** The verified proof of an exchange: the key the issued token is bound to. */
interface DpopResult {
  /** RFC 7638 thumbprint of the proof key (`cnf.jkt`). */
  thumbprint: string;
  jti: string;
}

/** Step 2: the proof was verified, and its `jti` spent, ahead of the grant (./token-dpop.ts). */
function requireDpop(ctx: KoaContextWithOIDC): DpopResult {
  const proof = verifiedTokenProof(ctx);
  if (proof === undefined) {
    throw oauthError('invalid_dpop_proof', 'a DPoP proof is required: agent tokens are always bound to the agent\'s key (RFC 9449)');
  }
  return { thumbprint: proof.jkt, jti: proof.jti };
}

/**
 * Agents' published key sets (`jwks_uri`), one per URI: refetched at once when an actor token
 * names a `kid` not seen yet (key rotation needs no wait), at most once per cooldown otherwise.
 */
const remoteKeySets = new Map<string, JWTVerifyGetKey>();
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
 * identify the authenticated client; the chain records the client either way.
 */
async function checkActorToken(deps: TokenExchangeDeps, agent: Agent, token: string): Promise<void> {
  let payload;
  let header: JWTHeaderParameters;
  try {
    ({ payload, protectedHeader: header } = await jwtVerify(token, agentKeys(agent), {
      algorithms: [...CLIENT_AUTH_ALGS],
      issuer: agent.id,
      subject: agent.id,
      audience: deps.issuer,
      maxTokenAge: '5m',
      requiredClaims: ['exp', 'iat', 'jti'],
    }));
  } catch {
    throw oauthError('invalid_grant', 'actor_token must be a JWT signed with the authenticated agent\'s key, with iss and sub = its client_id and aud = Deputy\'s issuer');
  }
  if (!plainJwtType(header.typ)) throw oauthError('invalid_grant', 'actor_token must be a plain JWT (header typ absent or "JWT"), not another kind of token');
  const key = createHash('sha256').update(`${agent.id}\0${String(payload.jti)}`).digest('base64url');
  if (!(await recordOnce(deps.store, 'ActorToken', key, 600))) {
    throw oauthError('invalid_grant', 'actor_token has already been used');
  }
}

/**
 * Step 5: who may present this subject token. RFC 8693 §4.4 `may_act` names the party allowed
 * to act; when present in any subject token, the agent must be that party. A Deputy agent token
 * additionally needs one of: `may_act` naming the agent (a handoff), or a DPoP proof made with
 * the key the token is bound to (the holder itself). A leaked agent token alone is useless.
 */
function checkMayAct(deps: TokenExchangeDeps, subject: Subject, agent: Agent, dpop: DpopResult): void {
  const named = mayActNames(subject.mayAct, agent.id, deps.issuer);
  if (subject.mayAct !== undefined && !named) {
    throw oauthError('invalid_grant', `the subject token's may_act does not name agent "${agent.id}"`);
  }
  if (subject.kind === 'deputy' && !named && subject.record.cnfJkt !== dpop.thumbprint) {
    throw oauthError(
      'invalid_grant',
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
function checkConfirmation(subject: Subject, dpop: DpopResult): void {
  if (subject.kind !== 'federated' || subject.identity.claims.cnf === undefined) return;
  const { jkt } = subject.identity.claims.cnf as { jkt?: unknown };
  if (jkt !== dpop.thumbprint) {
    throw oauthError('invalid_grant', 'the subject token is sender-constrained (cnf) to a key this request\'s DPoP proof does not prove possession of');
  }
}

/**
 * Step 6a: exactly one audience (RFC 8707 §2, RFC 8693 §2.1), defaulting to the agent's only one.
 * A stored default naming one of Deputy's own resources is refused like a requested one.
 */
function chooseAudience(targets: string[], agent: Agent, issuer: string): string {
  if (targets.length > 1) throw oauthError('invalid_target', 'request one resource or audience per token');
  const audience = targets[0] ?? (agent.audiences.length === 1 && !agent.audiences[0]!.endsWith('*') ? agent.audiences[0] : undefined);
  if (audience === undefined) throw oauthError('invalid_target', 'a "resource" or "audience" parameter is required (the agent has several allowed audiences)');
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
    if (beyondSubject.length > 0) throw oauthError('invalid_scope', `the subject token does not grant the scope "${beyondSubject.join(' ')}"${idTokenHint(subject)}`);
    return requested;
  }
  // Deputy's own scopes never reach an agent, even if a stored registration still lists them.
  const granted = agent.scopes.filter((s) => !isDeputyScope(s) && allowedBySubject(s));
  if (granted.length === 0) throw oauthError('invalid_scope', `no scope is allowed by both the agent and the subject token${idTokenHint(subject)}`);
  return granted;
}

/** An ID token delegates only what the operator granted its issuer's ID-token subjects: say where. */
function idTokenHint(subject: Subject): string {
  if (subject.kind !== 'federated' || subject.identity.tokenKind !== 'id_token') return '';
  return ` (an ID token delegates only the scopes trusted issuer "${subject.identity.issuerId}" grants in idToken.scopes)`;
}

/**
 * Step 7. Returns the receipt completed with the deciding policies. A refusal is a `delegate`
 * decision too: it gets a `deny` receipt (its only write).
 */
async function authorize(deps: TokenExchangeDeps, agent: Agent, subject: Subject, chain: DelegationChain, audience: string, scopes: string[], receipt: ReceiptInput): Promise<ReceiptInput> {
  try {
    const permit = await deps.authorizer.authorize({ user: subject.user, agent, chain, audience, scopes });
    return permit ? { ...receipt, policies: permit.policies } : receipt;
  } catch (err) {
    if (err instanceof DelegationDenied) {
      // The refusal stands whether or not its receipt could be written; a lost receipt is logged.
      const deny: ReceiptInput = { ...receipt, decision: 'deny', reason: err.description, policies: err.policies };
      await deps.receipts.append(deny).catch((e: unknown) => deps.logger.error({ err: e }, 'deny receipt not written'));
      throw oauthError(err.error, err.description);
    }
    throw err;
  }
}

/**
 * The exchange's receipt, `permit` until decided otherwise. `requestDigest` covers the RFC 8693
 * parameters, the client and the DPoP key and proof `jti`: whoever holds the request can match
 * it; the receipt itself holds no token (DESIGN invariant).
 */
function exchangeReceipt(ctx: KoaContextWithOIDC, agent: Agent, subject: Subject, chain: DelegationChain, audience: string, scopes: string[], dpop: DpopResult): ReceiptInput {
  const params = (ctx.oidc.params ?? {}) as Record<string, unknown>;
  const request: Record<string, DigestValue> = { grant_type: TOKEN_EXCHANGE_GRANT, client_id: agent.id, dpop_jkt: dpop.thumbprint, dpop_jti: dpop.jti };
  for (const name of TOKEN_EXCHANGE_PARAMETERS) {
    const v = params[name];
    if (v !== undefined && v !== null && v !== '') request[name] = Array.isArray(v) ? v.map(String) : String(v);
  }
  const requestId = (ctx.state as { requestId?: unknown }).requestId;
  return {
    agent: agent.id,
    user: subject.user.id,
    chain,
    event: 'token_exchange',
    action: 'delegate',
    resource: audience,
    decision: 'permit',
    scope: scopes.join(' '),
    requestDigest: requestDigest(request),
    ...(typeof requestId === 'string' ? { requestId } : {}),
  };
}

/** A handoff audience must name an active agent; the token then carries `may_act` for it. */
async function handoffMayAct(deps: TokenExchangeDeps, audience: string): Promise<Record<string, unknown> | undefined> {
  const target = handoffTarget(audience);
  if (target === undefined) return undefined;
  const next = await deps.agents.get(target);
  if (!next || next.status !== 'active') throw oauthError('invalid_target', `audience "${audience}" names no active agent`);
  return { sub: next.id, iss: deps.issuer };
}

interface Issued {
  value: string;
  expiresIn: number;
}

/** Step 9: sign, then record (one transaction). */
async function issue(
  ctx: KoaContextWithOIDC,
  deps: TokenExchangeDeps,
  input: { agent: Agent; subject: Subject; subjectToken: string; chain: DelegationChain; audience: string; scopes: string[]; dpop: DpopResult; mayAct: Record<string, unknown> | undefined; receipt: ReceiptInput },
): Promise<Issued> {
  const { agent, subject, chain, audience, scopes, dpop, mayAct } = input;
  const now = Math.floor(Date.now() / 1000);
  const expiresIn = Math.min(deps.accessTokenTTL, subject.expiresAt - now);
  if (expiresIn < 1) throw oauthError('invalid_grant', 'the subject token has expired');
  const provider = ctx.oidc.provider;
  const signing = deps.keys.activeSigningKey.jwk;
  const info: ResourceServer = {
    scope: scopes.join(' '),
    audience,
    accessTokenTTL: expiresIn,
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: signing.alg, kid: signing.kid } },
  };
  // No Grant model backs an exchanged token (nothing to consent to interactively); the typings
  // require `grantId`, the JWT format does not.
  const at = new provider.AccessToken({
    grantId: undefined as unknown as string,
    accountId: subject.user.id,
    client: ctx.oidc.client!,
    scope: scopes.join(' '),
    gty: GTY,
    expiresIn,
    extra: { act: actFromChain(chain), ...(mayAct ? { may_act: mayAct } : {}) },
  });
  at.resourceServer = new provider.ResourceServer(audience, info);
  at.setThumbprint('jkt', dpop.thumbprint);
  ctx.oidc.entity('AccessToken', at);
  const value = await at.save();
  const jti = at.jti;
  const parent = subject.kind === 'deputy' ? subject.record : undefined;
  const { vault } = deps;
  try {
    await deps.store.transaction(async (tx) => {
      let upstream: string | undefined;
      if (subject.kind === 'federated') {
        upstream = newHandle('upt');
        await vault.put(tx, { handle: upstream, kind: UPSTREAM_TOKEN_KIND, plaintext: input.subjectToken, expiresAt: subject.expiresAt });
      }
      await deps.records.insert(tx, {
        jti,
        parentJti: parent?.jti,
        rootJti: parent?.rootJti ?? jti,
        agentId: agent.id,
        userId: subject.user.id,
        userAttrs: { groups: subject.user.groups, roles: subject.user.roles, ...(subject.user.email ? { email: subject.user.email } : {}), ...(subject.user.tenant ? { tenant: subject.user.tenant } : {}) },
        issuerId: subject.user.issuerId,
        audience,
        scope: scopes.join(' '),
        chain,
        cnfJkt: dpop.thumbprint,
        mayAct,
        upstream: upstream ?? parent?.upstream,
        issuedAt: now,
        expiresAt: now + expiresIn,
      });
      // Last, so the agent's chain head is locked only for the end of this transaction.
      await deps.receipts.append({ ...input.receipt, tokenId: jti }, tx);
    });
  } catch (err) {
    if (err instanceof ParentRevoked) throw oauthError('invalid_grant', 'the subject token has been revoked');
    // Disabled while this exchange ran (the check in `exchange` read it still active).
    if (err instanceof AgentNotActive) throw oauthError('unauthorized_client', 'only active registered agents may exchange tokens');
    throw err;
  }
  return { value, expiresIn };
}

async function exchange(ctx: KoaContextWithOIDC, deps: TokenExchangeDeps): Promise<void> {
  const request = readRequest(ctx);
  refuseDeputyOwn(request, deps.issuer);
  const clientId = ctx.oidc.client!.clientId;
  const agent = await deps.agents.get(clientId);
  if (!agent || agent.status !== 'active') throw oauthError('unauthorized_client', 'only active registered agents may exchange tokens');

  const dpop = requireDpop(ctx);
  let subject: Subject;
  try {
    subject = await resolveSubject(deps, request.subjectToken, request.subjectKind);
  } catch (err) {
    if (err instanceof SubjectTokenError) {
      deps.logger.info({ client_id: clientId, reason: err.description, cause: err.cause instanceof Error ? err.cause.message : undefined }, 'subject token refused');
      throw oauthError(err.error, err.description);
    }
    throw err;
  }
  if (request.actorToken !== undefined) await checkActorToken(deps, agent, request.actorToken);
  checkMayAct(deps, subject, agent, dpop);
  checkConfirmation(subject, dpop);

  const chain = extendChain(subject.chain, agent.id);
  const audience = chooseAudience(request.targets, agent, deps.issuer);
  const scopes = chooseScopes(request.scopes, agent, subject);
  const receipt = await authorize(deps, agent, subject, chain, audience, scopes, exchangeReceipt(ctx, agent, subject, chain, audience, scopes, dpop));
  const mayAct = await handoffMayAct(deps, audience);

  const issued = await issue(ctx, deps, { agent, subject, subjectToken: request.subjectToken, chain, audience, scopes, dpop, mayAct, receipt });

  ctx.body = {
    access_token: issued.value,
    issued_token_type: ACCESS_TOKEN_TYPE,
    token_type: 'DPoP',
    expires_in: issued.expiresIn,
    scope: scopes.join(' '),
  };
  deps.logger.info({ client_id: clientId, user: subject.user.id, chain, audience, scope: scopes.join(' '), depth: chain.length }, 'token exchanged');
}

/** The grant registration for `createProvider({ grants })`. */
export function tokenExchangeGrant(deps: TokenExchangeDeps): GrantRegistration {
  return {
    grantType: TOKEN_EXCHANGE_GRANT,
    parameters: TOKEN_EXCHANGE_PARAMETERS,
    allowedDuplicateParameters: ['resource', 'audience'],
    handler: async (ctx) => {
      await exchange(ctx as unknown as KoaContextWithOIDC, deps);
    },
  };
}
