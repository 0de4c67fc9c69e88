/**
 * The AuthZEN Authorization API 1.0 HTTPS binding (§10.1): `POST /access/v1/evaluation`,
 * `/access/v1/evaluations`, `/access/v1/search/{subject,resource,action}`, and the PDP metadata
 * at `GET /.well-known/authzen-configuration` (§9).
 *
 * - PEPs authenticate (§11.2 "the PDP SHOULD authenticate the calling PEP") with an access token
 *   Deputy issued for `<issuer>/access` with the `authzen:evaluate` scope, unless the deployment
 *   explicitly configured `pdp.auth: none`. A missing or bad token is a 401 with
 *   `WWW-Authenticate` (§11.3).
 * - A deny is `200 {"decision": false}`; a malformed request is a 400 with a message (§10.1.1, §10.1.2);
 *   the body must be `application/json` (§10.1), within the size limit, UTF-8, and not nested
 *   deeper than `pdp.maxJsonDepth` (§11.7).
 * - `X-Request-ID` is echoed (§10.1.3): the middleware echoes log-safe ids; any other printable id
 *   a PEP sends is echoed here as well, as the spec requires.
 *
 * @module
 */
import type { IncomingMessage } from 'node:http';
import Router from '@koa/router';
import type Koa from 'koa';
import type { DeputyConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import type { DelegatedSubject } from '../delegation/index.js';
import { receiptText, requestDigest, type AppendedReceipt, type DigestValue, type ReceiptAppender } from '../audit/index.js';
import { InvalidRequest, TemporarilyUnavailable } from '../errors/index.js';
import type { AuthenticatedRequest } from '../oauth/access-token.js';
import { AUTHZEN_SCOPE, deputyResources } from '../oauth/deputy-own.js';
import type { OperatorTokenRevocations } from '../oauth/operator-token-revocation.js';
import {
  checkDepth,
  decisionBody,
  itemErrorBody,
  parseEvaluation,
  parseEvaluations,
  parseSearch,
  requestMemo,
  type Decision,
  type EvaluationInput,
  type EvaluationsInput,
  type Explain,
  type PdpService,
  type PolicyDecisionPoint,
  type RequestMemo,
  type Search,
  type SearchKind,
} from '../pdp/index.js';
import { cachedDecisions, type CachedDecisions, type RequestListener } from './authzen-cached.js';
import { leanEvaluations } from './authzen-lean.js';
import { parseJson, readBody } from './json-body.js';
import { policyAdminRoutes } from './policies.js';
import type { Authenticate } from './util.js';
import { NO_STORE } from '../util/http.js';
import { SizeBoundedMap } from '../util/bounded-map.js';

export { AUTHZEN_SCOPE };

export interface AuthzenDeps {
  pdp: PolicyDecisionPoint;
  /** Where receipts go when a PEP asks for one (`Deputy-Receipt: request`). */
  receipts?: ReceiptAppender;
  search: Search;
  issuer: string;
  authenticate: Authenticate;
  /** The PDP's resource identifier (PEP token audience). */
  audience: string;
  auth: 'token' | 'none';
  adminReasons: boolean;
  bodyLimitBytes: number;
  maxBatch: number;
  maxJsonDepth: number;
  /** PEP tokens verified earlier (and their revocation state), shared with the cached path. */
  pepTokens: PepTokens;
}

/** Deputy's capability URNs in the metadata (§9.1.2): what this PDP adds to the base API. */
export const CAPABILITIES = ['urn:deputy:authzen:delegation-chain', 'urn:deputy:authzen:cedar'] as const;

/**
 * The AuthZEN routes (§10.1) and the PDP metadata (§9), as one router. Every `/access/v1` route
 * runs the same steps first: echo the request id, `no-store`, authenticate the PEP, read the
 * JSON body; then its own handler.
 *
 * @throws nothing itself; handlers throw typed DeputyErrors (InvalidRequest, PayloadTooLarge,
 *   TemporarilyUnavailable) that the error boundary renders.
 */
export function authzenRoutes(deps: AuthzenDeps): Router {
  const router = new Router();
  const explain = explainFor(deps.auth, deps.adminReasons);
  router.get('/.well-known/authzen-configuration', metadataHandler(deps.issuer));

  const api = new Router({ prefix: '/access/v1' });
  api.use(echoRequestId, noStore, authenticatePep(deps), jsonRequest(deps));
  api.post('/evaluation', evaluationHandler(deps, explain));
  api.post('/evaluations', evaluationsHandler(deps, explain));
  for (const kind of SEARCH_KINDS) api.post(`/search/${kind}`, searchHandler(deps, kind));

  router.use(api.routes(), api.allowedMethods());
  return router;
}

const SEARCH_KINDS = ['subject', 'resource', 'action'] as const satisfies readonly SearchKind[];

/** `GET /.well-known/authzen-configuration` (§9.1): every endpoint and Deputy's capabilities. */
function metadataHandler(issuer: string): Koa.Middleware {
  const base = issuer; // without its trailing slash: normalized once, in config
  return async function authzenMetadata(ctx) {
    ctx.set('Cache-Control', 'public, max-age=300');
    ctx.body = {
      policy_decision_point: base,
      access_evaluation_endpoint: `${base}/access/v1/evaluation`,
      access_evaluations_endpoint: `${base}/access/v1/evaluations`,
      search_subject_endpoint: `${base}/access/v1/search/subject`,
      search_resource_endpoint: `${base}/access/v1/search/resource`,
      search_action_endpoint: `${base}/access/v1/search/action`,
      capabilities: [...CAPABILITIES],
    };
  };
}

/**
 * How much a denial explains (`context.reason_admin` as well as `reason_user`): the admin reasons
 * only to authenticated PEPs, and only when configured (`pdp.adminReasons`).
 */
export function explainFor(auth: 'token' | 'none', adminReasons: boolean): Explain {
  return auth === 'token' && adminReasons ? 'admin' : 'user';
}

/** `POST /access/v1/evaluation` (§6): one decision, with a receipt when the PEP asks for one. */
function evaluationHandler(deps: AuthzenDeps, explain: Explain): Koa.Middleware {
  return async function evaluation(ctx) {
    const input = parseEvaluation(ctx.state.authzenBody);
    rethrowFailedAhead(ctx.req);
    ctx.body = receiptRequested(ctx) ? await evaluateWithReceipt(deps, ctx, input, explain) : await evaluationAnswer(deps.pdp, input, explain);
  };
}

/**
 * The answer body of `POST /access/v1/evaluation` without a receipt (§6.2): one decision. Shared
 * by the routes and the lean path (./authzen-lean.ts), so both answer alike.
 *
 * @param memo - the request's memo, when the lean path computed its basis with it first.
 * @throws what `PolicyDecisionPoint.evaluate` throws (a store away: the caller renders 503).
 */
export async function evaluationAnswer(pdp: PolicyDecisionPoint, input: EvaluationInput, explain: Explain, memo?: RequestMemo): Promise<Record<string, unknown>> {
  return decisionBody(await pdp.evaluate(input, memo), explain);
}

/**
 * One decision whose receipt the PEP asked for: only a delegated subject has a chain to
 * attribute it to. The receipt's id goes in {@link RECEIPT_ID_HEADER} and in the body's `context`.
 *
 * @throws InvalidRequest for a plain or malformed subject; TemporarilyUnavailable without receipts.
 */
async function evaluateWithReceipt(deps: AuthzenDeps, ctx: Koa.Context, input: EvaluationInput, explain: Explain): Promise<unknown> {
  const memo = requestMemo();
  const subject = await deps.pdp.prepareSubject(input.subject, memo.subjects);
  if (subject.kind === 'plain' || subject.kind === 'malformed') {
    throw new InvalidRequest('a receipt is written for a delegated subject only: pass the agent token in subject.properties.token');
  }
  const decision = await deps.pdp.evaluate(input, memo);
  // An invalid token or chain (revoked, expired, forged): denied, and there is no verified chain
  // to attribute a receipt to.
  if (subject.kind !== 'delegated') return decisionBody(decision, explain);
  const receipt = await writeEvaluationReceipt(deps, ctx, input, subject, decision);
  ctx.set(RECEIPT_ID_HEADER, receipt.claims.jti);
  const body = decisionBody(decision, explain) as { context?: Record<string, unknown> };
  return { ...body, context: { ...body.context, receipt: { id: receipt.claims.jti, agent: receipt.claims.agent, seq: receipt.claims.seq } } };
}

/** `POST /access/v1/evaluations` (§7): a batch, or a single evaluation in batch clothing. */
function evaluationsHandler(deps: AuthzenDeps, explain: Explain): Koa.Middleware {
  return async function evaluations(ctx) {
    const input = parseEvaluations(ctx.state.authzenBody, deps.maxBatch);
    rethrowFailedAhead(ctx.req);
    ctx.body = await evaluationsAnswer(deps.pdp, input, explain);
  };
}

/**
 * Evaluations that failed ahead of the routes (the lean path, ./authzen-lean.ts), by request
 * (dropped with it). The routes render that failure rather than evaluate again: one evaluation
 * per request, as without the lean path — a store that is away is waited for once (not twice,
 * its connection timeout included), and a batch's decisions made before the failure are counted
 * and traced once.
 */
const failedAhead = new WeakMap<IncomingMessage, { error: unknown }>();

/** Records that evaluating `req` ahead of the routes threw `error`: the routes rethrow it (see {@link failedAhead}). */
export function evaluationFailedAhead(req: IncomingMessage, error: unknown): void {
  failedAhead.set(req, { error });
}

/** Whether an evaluation made ahead of the routes failed for `req` (the routes will render that failure). */
export function failedAheadOf(req: IncomingMessage): boolean {
  return failedAhead.has(req);
}

/** Throws the failure of the evaluation made ahead of the routes for `req`, if one failed. */
function rethrowFailedAhead(req: IncomingMessage): void {
  const failed = failedAhead.get(req);
  if (failed) throw failed.error;
}

/**
 * The answer body of `POST /access/v1/evaluations` (§7.2): a single decision in batch clothing,
 * or one entry per item (an item's own error in place). Shared by the routes and the lean path.
 *
 * @throws what the PDP throws (a store away: the caller renders 503).
 */
export async function evaluationsAnswer(pdp: PolicyDecisionPoint, input: EvaluationsInput, explain: Explain, memo?: RequestMemo): Promise<Record<string, unknown>> {
  if (input.kind === 'single') return evaluationAnswer(pdp, input.evaluation, explain, memo);
  const results = await pdp.evaluateAll(input.items, input.semantic, memo);
  return { evaluations: results.map((r) => ('error' in r ? itemErrorBody(r.error) : decisionBody(r, explain))) };
}

/** `POST /access/v1/search/{subject,resource,action}` (§8). */
function searchHandler(deps: AuthzenDeps, kind: SearchKind): Koa.Middleware {
  return async function search(ctx) {
    ctx.body = await deps.search.run(parseSearch(kind, ctx.state.authzenBody));
  };
}

/**
 * PEPs call on every request of every agent, so a verified Bearer PEP token is remembered: its
 * signature, audience, scope and client are checked once, not per call. (A DPoP-bound token is
 * verified every time: each request carries a new proof.) A remembered token is used only while
 * it is unexpired **and** its "not revoked" answer is fresh in `revocations`
 * (src/oauth/operator-token-revocation.ts `knownLive`: at most 2 s old, dropped at once by a
 * revocation through this instance); otherwise the request is authenticated in full again,
 * revocation included, which refreshes it. So a revoked PEP token is refused within the
 * revocation bound, and a signing key leaving the JWKS within the verifier's key re-read, with no
 * store read on the remembered path. Shared by the routes and the cached path (./authzen-cached.ts).
 */
export class PepTokens {
  /** By the `Authorization` header's value; bounded by entries and bytes (a header may be 16 KiB and more). */
  readonly #verified: SizeBoundedMap<string, VerifiedPepToken>;
  readonly #revocations: Pick<OperatorTokenRevocations, 'knownLive'>;
  /**
   * The entry found last, with its header value. A PEP sends the same token on every call, and a
   * map look-up hashes the whole value each time (a new string per request: ~1 µs for a token of
   * 700 characters, on every cached decision) where comparing it with the last one's is a memory
   * comparison. The entry's checks (expiry, revocation) run all the same.
   */
  #last: { authorization: string; entry: VerifiedPepToken } | undefined;
  /** Bound on remembered tokens; a new one past it (or {@link BUDGET_BYTES}) evicts the ones remembered longest ago. */
  static readonly MAX_ENTRIES = 1000;
  /**
   * Bound on the bytes remembered tokens count ({@link pepTokenFootprint}): the key is the whole
   * header value, as long as the server's header limit allows — bounded by entries alone, the map
   * grew with entries × header size. Room for the entry bound's worth of 2 KiB headers.
   */
  static readonly BUDGET_BYTES = 2 * 1024 * 1024;

  /** `budgetBytes`, `maxEntries`: the bounds (defaults {@link BUDGET_BYTES}, {@link MAX_ENTRIES}). */
  constructor(revocations: Pick<OperatorTokenRevocations, 'knownLive'>, options: { budgetBytes?: number; maxEntries?: number } = {}) {
    this.#revocations = revocations;
    this.#verified = new SizeBoundedMap(options.budgetBytes ?? PepTokens.BUDGET_BYTES, options.maxEntries ?? PepTokens.MAX_ENTRIES);
  }

  /** Bytes the remembered tokens count; never more than the budget. */
  get bytes(): number {
    return this.#verified.bytes;
  }

  /** Tokens remembered now; never more than the entry bound. */
  get size(): number {
    return this.#verified.size;
  }

  /** The PEP (client id) whose token `authorization` (the header's value) is, when verified before, unexpired and known not revoked. */
  get(authorization: string, now = Date.now()): string | undefined {
    const hit = this.#find(authorization);
    return hit && hit.expiresAt > now && this.#revocations.knownLive(hit.jti, now) ? hit.pep : undefined;
  }

  /** Remembers a token just authenticated (revocation included) with the `authzen:evaluate` scope, if it is an unbound Bearer token with an expiry and a `jti`. */
  remember(authorization: string, auth: AuthenticatedRequest): void {
    if (auth.scheme !== 'Bearer' || auth.claims.cnf !== undefined || typeof auth.claims.exp !== 'number' || typeof auth.claims.jti !== 'string') return;
    // The map changes (an entry replaced or evicted): the last entry found may no longer be its entry.
    this.#last = undefined;
    const entry = { pep: auth.claims.client_id, jti: auth.claims.jti, expiresAt: auth.claims.exp * 1000 };
    this.#verified.set(authorization, { ...entry, size: pepTokenFootprint(authorization, entry) });
  }

  #find(authorization: string): VerifiedPepToken | undefined {
    const last = this.#last;
    if (last !== undefined && last.authorization === authorization) return last.entry;
    const entry = this.#verified.get(authorization);
    if (entry !== undefined) this.#last = { authorization, entry };
    return entry;
  }
}

/** A PEP token verified before: its client, `jti` and expiry (ms since the epoch), and the bytes it counts. */
interface VerifiedPepToken {
  pep: string;
  jti: string;
  expiresAt: number;
  size: number;
}

/** The heap a remembered PEP token costs besides its strings: the map slot, the entry. */
const PEP_TOKEN_OVERHEAD_BYTES = 256;

/**
 * What one remembered PEP token keeps: the header value (one byte a character: an HTTP header
 * is Latin-1), its client id and `jti` (two bytes a character, to be safe), the entry.
 */
function pepTokenFootprint(authorization: string, entry: { pep: string; jti: string }): number {
  return authorization.length + 2 * (entry.pep.length + entry.jti.length) + PEP_TOKEN_OVERHEAD_BYTES;
}

/** Authenticates the calling PEP (§11.2) with `authzen:evaluate`, through `deps.pepTokens`. */
function authenticatePep(deps: AuthzenDeps): Koa.Middleware {
  const tokens = deps.pepTokens;
  return async function authenticateCaller(ctx, next) {
    if (deps.auth === 'token') {
      const header = ctx.get('Authorization');
      const pep = tokens.get(header);
      if (pep !== undefined) {
        ctx.state.pep = pep;
      } else {
        const auth: AuthenticatedRequest = await deps.authenticate(ctx, deps.audience, AUTHZEN_SCOPE);
        ctx.state.pep = auth.claims.client_id;
        tokens.remember(header, auth);
      }
    }
    await next();
  };
}

/** Reads the body as JSON (§10.1, §10.1.1): 400 for a wrong content type, an empty body, bad UTF-8 or bad JSON. */
function jsonRequest(deps: AuthzenDeps): Koa.Middleware {
  return async function readJson(ctx, next) {
    if (ctx.method !== 'POST') return next();
    if (!ctx.request.length && !ctx.get('Transfer-Encoding')) throw new InvalidRequest('a JSON request body is required');
    if (!ctx.is('application/json')) throw new InvalidRequest('Content-Type must be application/json');
    const body = parseJson(await readBody(ctx, deps.bodyLimitBytes));
    checkDepth(body, deps.maxJsonDepth);
    ctx.state.authzenBody = body;
    await next();
  };
}

/** Printable ASCII (RFC 9110 field value without controls), short enough to be a header. */
const PRINTABLE_ID = /^[\x21-\x7E](?:[\x20-\x7E]{0,254}[\x21-\x7E])?$/;

async function echoRequestId(ctx: Koa.Context, next: Koa.Next): Promise<void> {
  const given = ctx.get('X-Request-ID');
  if (given && given !== ctx.state.requestId && PRINTABLE_ID.test(given)) ctx.set('X-Request-ID', given);
  await next();
}

async function noStore(ctx: Koa.Context, next: Koa.Next): Promise<void> {
  ctx.set('Cache-Control', NO_STORE);
  await next();
}

/** Request header with which a PEP asks for a receipt of a decision (value `request`). */
export const RECEIPT_REQUEST_HEADER = 'Deputy-Receipt';
/** Response header naming the receipt written. */
export const RECEIPT_ID_HEADER = 'Deputy-Receipt-Id';

function receiptRequested(ctx: Koa.Context): boolean {
  const value = ctx.get(RECEIPT_REQUEST_HEADER).trim().toLowerCase();
  if (value === '') return false;
  if (value !== 'request') throw new InvalidRequest(`${RECEIPT_REQUEST_HEADER} must be "request"`);
  return true;
}

/**
 * A PEP-requested receipt (DESIGN capability 4): the decision joins the acting agent's hash
 * chain. The request digest covers the whole evaluation, token included, so whoever holds the
 * request can match it; the receipt itself holds only identifiers.
 */
async function writeEvaluationReceipt(deps: AuthzenDeps, ctx: Koa.Context, input: EvaluationInput, subject: DelegatedSubject, decision: Decision): Promise<AppendedReceipt> {
  if (!deps.receipts) throw new TemporarilyUnavailable('receipts are not available on this instance');
  const requestId: unknown = ctx.state.requestId;
  const presented = subject.grants.at(-1);
  return deps.receipts.append({
    agent: subject.chain.at(-1)!,
    user: subject.user.id,
    chain: subject.chain,
    event: 'access_evaluation',
    action: receiptText(input.action.name, 256),
    resource: receiptText(`${input.resource.type}:${input.resource.id}`),
    decision: decision.decision ? 'permit' : 'deny',
    policies: decision.decision ? decision.policies : decision.denial.policies,
    ...(decision.decision ? {} : { reason: receiptText(decision.denial.admin) }),
    scope: subject.scopes.join(' ') || undefined,
    requestDigest: requestDigest(JSON.parse(JSON.stringify(input)) as { readonly [k: string]: DigestValue }),
    ...(typeof requestId === 'string' ? { requestId } : {}),
    ...(presented ? { tokenId: presented.jti } : {}),
  });
}

/** The PDP's HTTP surface for the app: the cached path, and the routers. */
export interface PdpSurface {
  /** The cached path (./authzen-cached.ts): its middleware, placed right after the request metrics. */
  cachedDecisions: CachedDecisions;
  /**
   * Wraps Koa's request listener with the paths answered before Koa: the cached path's listener
   * (hits), then the lean path (./authzen-lean.ts: misses, remembered for the cached path's hits).
   */
  listener<L extends RequestListener>(next: L): L;
  /** The AuthZEN API and metadata, and the policy admin routes. */
  routers: Router[];
}

/** Every PDP router for the app (the AuthZEN API and metadata, the policy admin routes) and the cached path in front of them. */
export function pdpSurface(deps: { config: DeputyConfig; issuer: string; pdp: PdpService; authenticate: Authenticate; operatorTokens: OperatorTokenRevocations; logger: Logger; receipts?: ReceiptAppender }): PdpSurface {
  const { config, issuer, pdp, authenticate } = deps;
  const resources = deputyResources(issuer);
  const pepTokens = new PepTokens(deps.operatorTokens);
  const limits = { bodyLimitBytes: config.server.bodyLimitBytes, maxBatch: config.pdp.maxBatch, maxJsonDepth: config.pdp.maxJsonDepth };
  const api = authzenRoutes({
    pdp: pdp.pdp,
    ...(deps.receipts ? { receipts: deps.receipts } : {}),
    search: pdp.search,
    issuer,
    authenticate,
    audience: resources.access,
    auth: config.pdp.auth,
    adminReasons: config.pdp.adminReasons,
    ...limits,
    pepTokens,
  });
  // Off with the decision cache: "cache off" then means every decision is evaluated.
  const budgetBytes = config.pdp.decisionCacheSize > 0 ? CACHED_ANSWER_BYTES : 0;
  const known = config.pdp.auth === 'token' ? pepTokens : undefined;
  const cached = cachedDecisions({ pdp: pdp.pdp, pepTokens: known, logger: deps.logger, budgetBytes, ...limits });
  const lean = { pdp: pdp.pdp, pepTokens: known, logger: deps.logger, explain: explainFor(config.pdp.auth, config.pdp.adminReasons), misses: cached.misses, ...limits };
  return {
    cachedDecisions: cached,
    listener: (next) => cached.listener(leanEvaluations(lean, next)),
    routers: [api, policyAdminRoutes({ pdp, authenticate, audience: resources.admin })],
  };
}

/** Bytes of requests and answers the cached path remembers (about 8 MiB: thousands of typical evaluations). */
const CACHED_ANSWER_BYTES = 8 * 1024 * 1024;
