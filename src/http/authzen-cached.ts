/**
 * The PDP's cached path: `POST /access/v1/evaluation` and `/access/v1/evaluations` answered
 * ahead of the general middleware and the routers when the same request bytes were answered
 * before and nothing the decision depends on has changed since.
 *
 * Per request it still does what must be done every time: authenticate the PEP (its Bearer
 * token, verified earlier with `authzen:evaluate` and unexpired: {@link PepTokens}), and run the
 * PDP's asynchronous phase for every subject and resource (`decisionBasis`, src/pdp/decision-basis.ts):
 * token expiry, revocation through the shared revocation cache (2 s across instances), the
 * registry's agents and rules. The decision is reused only when that basis — policy generation,
 * the subject's issuance records and agents, the resource's agent, all compared by identity — is
 * the one the remembered answer was computed under; the answer's bytes and headers are then
 * written as the routes wrote them (request id aside).
 *
 * Anything else goes down the normal path unchanged: a request whose answer is not remembered or
 * whose basis changed, a PEP token not verified before (DPoP-bound, new, expired), an unusual
 * header (receipt requested, chunked or large body, content type other than plain JSON, a
 * request id the log-safe grammar refuses), and every error (a malformed body is never answered
 * here: only 200 answers are remembered). A body read here is handed to the routes
 * (./json-body.ts). The normal path's answers are remembered on the way out.
 *
 * Placed after `observeRequests` (./metrics.ts), so a cached answer is still a request in
 * `deputy_http_*` and its span; it counts its decisions in `deputy_pdp_decisions_total`. It is
 * off when the decision cache is (`pdp.decisionCacheSize: 0`).
 *
 * @module
 */
import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type Koa from 'koa';
import type { Logger } from '../log.js';
import { metrics } from '../observability/metrics.js';
import { checkDepth, decisionBasis, parseEvaluation, parseEvaluations, sameBasis, type DecisionBasis, type EvaluationInput, type PolicyDecisionPoint } from '../pdp/index.js';
import { RECEIPT_ID_HEADER, RECEIPT_REQUEST_HEADER, type PepTokens } from './authzen.js';
import { parseJson, readBodyAhead } from './json-body.js';
import { REQUEST_ID } from './middleware.js';

/** What the cached path needs: the routes' limits, the PDP, the PEP tokens the routes verified. */
export interface CachedDecisionsDeps {
  pdp: PolicyDecisionPoint;
  /** The routes' verified PEP tokens; undefined under `pdp.auth: none`. */
  pepTokens: PepTokens | undefined;
  logger: Logger;
  bodyLimitBytes: number;
  maxBatch: number;
  maxJsonDepth: number;
  /** Bytes of requests and answers remembered (keys and bodies); past it the set is emptied. 0: the path is off. */
  budgetBytes: number;
}

/** An answer of the normal path, and what it was computed under. */
interface Remembered {
  inputs: readonly EvaluationInput[];
  basis: DecisionBasis;
  body: Buffer;
  /** Response headers as written (name, value, name, value…), without the per-request ones. */
  headers: readonly string[];
  permits: number;
  denies: number;
}

const PATHS = new Set(['/access/v1/evaluation', '/access/v1/evaluations']);
/** Content types taken here; any other goes down the normal path (which decides 400 or not). */
const JSON_TYPES = new Set(['application/json', 'application/json; charset=utf-8']);
/** Larger bodies go down the normal path: they are rarely repeated and would crowd the set. */
const MAX_BODY_BYTES = 16 * 1024;
/** Response headers that belong to one request, never replayed. */
const PER_REQUEST_HEADERS = new Set(['x-request-id', 'content-length', 'dpop-nonce', 'deputy-receipt-id', 'set-cookie', 'connection']);

/**
 * The cached path as Koa middleware (see the module documentation). Never throws: whatever
 * fails here leaves the request to the normal path, which renders it.
 */
export function cachedDecisions(deps: CachedDecisionsDeps): Koa.Middleware {
  const answers = new AnswerSet(deps.budgetBytes);
  return async function cachedDecision(ctx, next) {
    const requestId = deps.budgetBytes > 0 ? eligible(ctx, deps) : undefined;
    if (requestId === undefined) return next();
    let raw: Buffer;
    try {
      raw = await readBodyAhead(ctx, deps.bodyLimitBytes);
    } catch {
      return next(); // the routes get the same rejection from readBody
    }
    const key = `${ctx.path}\n${raw.toString('latin1')}`;
    const known = answers.get(key);
    const basis = known ? await basisOrUndefined(deps.pdp, known.inputs) : undefined;
    if (known && basis && sameBasis(basis, known.basis)) return answer(ctx, deps, known, requestId);
    const inputs = known ? known.inputs : parseInputs(ctx.path, raw, deps);
    // Computed before the normal path runs: an answer is never remembered under a basis newer than its own.
    const before = known ? basis : inputs && (await basisOrUndefined(deps.pdp, inputs));
    await next();
    if (inputs && before && rememberable(ctx)) answers.set(key, remember(ctx, inputs, before));
  };
}

/**
 * The request id to answer with when the request may take the cached path, else undefined.
 * Checks only headers: method and path, content type and length, no receipt, the PEP's token.
 */
function eligible(ctx: Koa.Context, deps: CachedDecisionsDeps): string | undefined {
  if (ctx.method !== 'POST' || !PATHS.has(ctx.path)) return undefined;
  const headers = ctx.req.headers;
  if (headers['transfer-encoding'] !== undefined || headers[RECEIPT_REQUEST_HEADER.toLowerCase()] !== undefined) return undefined;
  const type = headers['content-type'];
  if (type === undefined || !JSON_TYPES.has(type.toLowerCase())) return undefined;
  const length = Number(headers['content-length']);
  if (!(length > 0 && length <= Math.min(MAX_BODY_BYTES, deps.bodyLimitBytes))) return undefined;
  if (deps.pepTokens && deps.pepTokens.get(headers.authorization ?? '') === undefined) return undefined;
  // As requestContext (./middleware.ts): a log-safe id is echoed, none gets a new one; any other
  // id is echoed by the routes (./authzen.ts echoRequestId): left to them.
  const given = headers['x-request-id'];
  if (given === undefined || given === '') return randomUUID();
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : undefined;
}

/** The evaluations a body asks for, or undefined when it is not a valid request (the normal path answers 400). */
function parseInputs(path: string, raw: Buffer, deps: CachedDecisionsDeps): readonly EvaluationInput[] | undefined {
  try {
    const body = parseJson(raw);
    checkDepth(body, deps.maxJsonDepth);
    if (path.endsWith('/evaluation')) return [parseEvaluation(body)];
    const parsed = parseEvaluations(body, deps.maxBatch);
    return parsed.kind === 'single' ? [parsed.evaluation] : parsed.items.flatMap((item) => (item.ok ? [item.evaluation] : []));
  } catch {
    return undefined;
  }
}

/** {@link decisionBasis}, or undefined when it cannot be had (the normal path then decides, or fails closed). */
async function basisOrUndefined(pdp: PolicyDecisionPoint, inputs: readonly EvaluationInput[]): Promise<DecisionBasis | undefined> {
  try {
    return await decisionBasis(pdp, inputs);
  } catch {
    return undefined;
  }
}

/** Writes a remembered answer: its headers (the request id first, as requestContext sets it), its bytes. */
function answer(ctx: Koa.Context, deps: CachedDecisionsDeps, known: Remembered, requestId: string): void {
  const start = process.hrtime.bigint();
  ctx.state.requestId = requestId;
  ctx.status = 200;
  // Written here rather than by Koa's respond (whose per-header set() showed in the profile): the
  // request id first, as requestContext sets it, then the remembered headers in their order.
  ctx.respond = false;
  ctx.res.writeHead(200, ['X-Request-ID', requestId, ...known.headers, 'Content-Length', String(known.body.length)]);
  ctx.res.end(known.body);
  if (known.permits > 0) metrics.pdpDecisions.inc({ decision: 'permit', source: 'evaluation' }, known.permits);
  if (known.denies > 0) metrics.pdpDecisions.inc({ decision: 'deny', source: 'evaluation' }, known.denies);
  // As accessLog (./middleware.ts), without a child logger per request.
  if (deps.logger.isLevelEnabled('info')) {
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    deps.logger.info({ reqId: requestId, method: ctx.method, path: ctx.path, status: ctx.status, ms: Math.round(ms * 10) / 10 }, 'request');
  }
}

/** Only a plain 200 JSON answer without a receipt is remembered. */
function rememberable(ctx: Koa.Context): boolean {
  const body: unknown = ctx.body;
  return ctx.status === 200 && body !== null && typeof body === 'object' && !Buffer.isBuffer(body) && !('pipe' in body) && !ctx.res.hasHeader(RECEIPT_ID_HEADER);
}

/** The normal path's answer as it will be written (Koa serialises an object body with `JSON.stringify`). */
function remember(ctx: Koa.Context, inputs: readonly EvaluationInput[], basis: DecisionBasis): Remembered {
  const headers: string[] = [];
  // Names as the routes spelled them (Node writes them so), in the order they were set.
  for (const name of (ctx.res as ServerResponse & { getRawHeaderNames(): string[] }).getRawHeaderNames()) {
    const value = ctx.res.getHeader(name);
    if (value === undefined || PER_REQUEST_HEADERS.has(name.toLowerCase())) continue;
    for (const v of Array.isArray(value) ? value : [String(value)]) headers.push(name, v);
  }
  const body = ctx.body as { decision?: unknown; evaluations?: ReadonlyArray<{ decision?: unknown }> };
  const decisions = body.evaluations ?? [body];
  const permits = decisions.filter((d) => d.decision === true).length;
  const denies = decisions.filter((d) => d.decision === false).length;
  return { inputs, basis, body: Buffer.from(JSON.stringify(ctx.body)), headers, permits, denies };
}

/** Remembered answers by path and request bytes, within a byte budget (emptied when it is reached). */
class AnswerSet {
  readonly #answers = new Map<string, Remembered>();
  #bytes = 0;

  constructor(readonly budgetBytes: number) {}

  get(key: string): Remembered | undefined {
    return this.#answers.get(key);
  }

  set(key: string, value: Remembered): void {
    const size = key.length + value.body.length;
    if (this.#bytes + size > this.budgetBytes) {
      this.#answers.clear();
      this.#bytes = 0;
    }
    const previous = this.#answers.get(key);
    if (previous) this.#bytes -= key.length + previous.body.length;
    this.#answers.set(key, value);
    this.#bytes += size;
  }
}
