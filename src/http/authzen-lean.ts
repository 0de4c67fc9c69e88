/**
 * The PDP's lean path: `POST /access/v1/evaluation` and `/access/v1/evaluations` evaluated and
 * answered ahead of Koa (no context, no middleware, no router) when the answer can be written
 * exactly as the routes would write it. It serves what the cached path (./authzen-cached.ts)
 * does not answer: its misses, and with the decision cache off (`pdp.decisionCacheSize: 0`)
 * every decision. The routes' share of a miss (context, middleware, routing, body parsing,
 * response assembly) was about a third of its CPU.
 *
 * It takes the requests the cached path takes (the same `eligible` check on headers: a PEP token
 * verified before, plain JSON within 16 KiB, no receipt, a log-safe or absent request id), and
 * evaluates them with the routes' own functions (`evaluationAnswer`, `evaluationsAnswer`,
 * ./authzen.ts). The response head is not written from knowledge of the middleware: it is the
 * head the routes wrote for an earlier 200 answer on the same path, learned when that answer was
 * sent, with this request's id and length in place — so status, header names, values and order
 * are the routes' by construction (Node adds `Date` and `Connection` to both alike). Until such an
 * answer was seen, the request goes to Koa.
 *
 * Everything else goes to Koa unchanged, its body handed on (./json-body.ts): a body that does
 * not parse or is not a valid request (the routes render the 400), a body over the limit (413),
 * and an evaluation that throws (a store away: the routes render that error without evaluating
 * again, `evaluationFailedAhead` in ./authzen.ts; the abandoned server span is closed, marked
 * `deputy.handed_to_routes`). Hence no error is ever
 * rendered here. Requests, decisions and spans are counted as on the routes
 * (`observeAnswering`, ./metrics.ts; `pdp.evaluate` counts its decisions itself) and the access
 * log line is written as `accessLog` writes it.
 *
 * With the cached path on, a miss answered here is remembered for the next hit as the cached
 * path's middleware would remember the routes' answer (`MissAnswers`, ./authzen-cached.ts): the
 * same key (path and request bytes), the basis computed before the evaluation — here with the
 * request's memo, so the evaluation decides on the very subjects and agents the basis names and
 * repeats none of its reads — the same byte budget, and the routes' head. A basis that cannot be
 * computed (a store away) leaves the answer unremembered; the evaluation then fails (the routes
 * render it) only if it reaches the failed read, which it does not make again.
 *
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../log.js';
import { checkDepth, parseEvaluation, parseEvaluations, type EvaluationsInput, type Explain, type PolicyDecisionPoint } from '../pdp/index.js';
import { eligible, PER_REQUEST_HEADERS, type MissAnswers, type PendingAnswer, type RequestListener } from './authzen-cached.js';
import { evaluationAnswer, evaluationFailedAhead, evaluationsAnswer, RECEIPT_ID_HEADER, type PepTokens } from './authzen.js';
import { parseJson, readRequestAhead } from './json-body.js';
import { observeAnswering } from './metrics.js';

/** What the lean path needs: the routes' limits and explanation level, the PDP, the PEP tokens the routes verified. */
export interface LeanEvaluationsDeps {
  pdp: PolicyDecisionPoint;
  /** The routes' verified PEP tokens; undefined under `pdp.auth: none`. */
  pepTokens: PepTokens | undefined;
  logger: Logger;
  /** As the routes explain a denial (`explainFor`, ./authzen.ts). */
  explain: Explain;
  bodyLimitBytes: number;
  maxBatch: number;
  maxJsonDepth: number;
  /** Where answers are remembered for the cached path's hits; undefined while it is off (`pdp.decisionCacheSize: 0`). */
  misses: MissAnswers | undefined;
}

/**
 * A response head the routes wrote for a 200 answer: name, value, name, value… in their order,
 * with the positions of the two per-request values (`X-Request-ID`, `Content-Length`).
 */
interface LearnedHead {
  readonly fields: readonly string[];
  readonly requestIdAt: number;
  readonly lengthAt: number;
  /** `fields` without the two per-request pairs: what the cached path remembers (`MissAnswers.remember`). */
  readonly others: readonly string[];
}

/**
 * Wraps Koa's request listener (`app.callback()`, or the cached path's listener around it): an
 * evaluation request the lean path can answer is evaluated and written here; any other request
 * is handed to `next` unchanged (its body too, when read here). `next` itself when disabled.
 * Never throws on its own account: whatever fails before the answer is written leaves the request
 * to Koa, which renders it.
 */
export function leanEvaluations<L extends RequestListener>(deps: LeanEvaluationsDeps, next: L): L {
  const heads = new Map<string, LearnedHead>();
  const listener: RequestListener = function leanFirst(req, res) {
    // The exact path only (as the cached path): a query string goes to Koa.
    const path = req.url ?? '';
    const requestId = req.method === 'POST' ? eligible('POST', path, req.headers, deps) : undefined;
    if (requestId === undefined) return next(req, res);
    const head = heads.get(path);
    if (head === undefined) {
      learnHead(res, path, heads);
      return next(req, res);
    }
    // A failure after the answer was written (recording it) must not hand the request to Koa,
    // which would evaluate and answer it a second time on a finished response.
    return answerLean(req, res, deps, { path, head, requestId }).then(
      (answered) => (answered ? undefined : next(req, res)),
      () => (res.headersSent ? undefined : next(req, res)),
    );
  };
  return listener as L;
}

/** Reads, parses, evaluates and writes; false (nothing written, nothing recorded) when the request is left to Koa. */
async function answerLean(req: IncomingMessage, res: ServerResponse, deps: LeanEvaluationsDeps, request: { path: string; head: LearnedHead; requestId: string }): Promise<boolean> {
  const start = process.hrtime.bigint();
  const raw = await readRequestAhead(req, res, deps.bodyLimitBytes);
  const input = parseRequest(request.path, raw, deps);
  if (input === undefined) return false;
  const observed = observeAnswering(req, request.path);
  let evaluated: { answer: Record<string, unknown>; pending: PendingAnswer | undefined };
  try {
    evaluated = await observed.run(() => evaluate(deps, req, { path: request.path, raw, input }));
  } catch (err) {
    // The routes render this failure without evaluating again (`evaluationFailedAhead`, ./authzen.ts).
    evaluationFailedAhead(req, err);
    observed.abandoned();
    return false;
  }
  // Koa writes an object body as `JSON.stringify` of it (koa/lib/application.js `respond`).
  const body = Buffer.from(JSON.stringify(evaluated.answer));
  write(res, request.head, request.requestId, body);
  if (evaluated.pending) deps.misses?.remember(evaluated.pending, evaluated.answer, body, request.head.others);
  // Inside the server span, as `accessLog` writes it on the routes: the line carries its trace id.
  observed.run(() => logAnswered(deps.logger, request.requestId, request.path, start));
  observed.answered(200);
  return true;
}

/**
 * The answer, as the routes compute it; with the cached path on, the basis it is remembered
 * under, computed first with the request's memo (the cached path's listener's, when it sought a
 * basis there first: `MissAnswers.memoFor`), as the middleware computes it before the routes run.
 * Throws what the evaluation throws (a store away).
 */
async function evaluate(deps: LeanEvaluationsDeps, req: IncomingMessage, { path, raw, input }: { path: string; raw: Buffer; input: EvaluationsInput }): Promise<{ answer: Record<string, unknown>; pending: PendingAnswer | undefined }> {
  const memo = deps.misses?.memoFor(req);
  let pending: PendingAnswer | undefined;
  try {
    pending = memo && (await deps.misses!.before(path, raw, input, memo));
  } catch {
    // The basis covers every item, the evaluation stops at a batch's short-circuit: a failure
    // past it is no failure of the answer (the routes answer 200). On the same memo the failed
    // read is not made again: it fails the evaluation only if the evaluation reaches it. Without
    // a basis, nothing is remembered.
    pending = undefined;
  }
  const answer = input.kind === 'single' ? await evaluationAnswer(deps.pdp, input.evaluation, deps.explain, memo) : await evaluationsAnswer(deps.pdp, input, deps.explain, memo);
  return { answer, pending };
}

/**
 * The evaluations a body asks for, as the routes parse it (`jsonRequest`, `evaluationHandler`,
 * `evaluationsHandler` in ./authzen.ts); undefined when the routes would answer 400.
 */
function parseRequest(path: string, raw: Buffer, deps: LeanEvaluationsDeps): EvaluationsInput | undefined {
  try {
    const body = parseJson(raw);
    checkDepth(body, deps.maxJsonDepth);
    return path.endsWith('/evaluation') ? { kind: 'single', evaluation: parseEvaluation(body) } : parseEvaluations(body, deps.maxBatch);
  } catch {
    return undefined;
  }
}

/**
 * Learns the head of the routes' answer to this (eligible) request once it is sent, if it is a
 * plain 200 without a receipt: from then on the lean path answers on `path`.
 */
function learnHead(res: ServerResponse, path: string, heads: Map<string, LearnedHead>): void {
  res.once('finish', () => {
    if (res.statusCode !== 200 || res.hasHeader(RECEIPT_ID_HEADER) || heads.has(path)) return;
    const fields: string[] = [];
    let requestIdAt = -1;
    let lengthAt = -1;
    // Names as the routes spelled them (Node writes them so), in the order they were set.
    for (const name of (res as ServerResponse & { getRawHeaderNames(): string[] }).getRawHeaderNames()) {
      const lower = name.toLowerCase();
      const value = res.getHeader(name);
      if (lower === 'x-request-id') requestIdAt = fields.push(name, '') - 1;
      else if (lower === 'content-length') lengthAt = fields.push(name, '') - 1;
      else if (value !== undefined && !PER_REQUEST_HEADERS.has(lower)) for (const v of Array.isArray(value) ? value : [String(value)]) fields.push(name, v);
    }
    // Both are always set on the routes' answer (requestContext, Koa's respond); a head without them is not learned.
    if (requestIdAt > 0 && lengthAt > 0) heads.set(path, { fields, requestIdAt, lengthAt, others: fields.filter((_, i) => i !== requestIdAt - 1 && i !== requestIdAt && i !== lengthAt - 1 && i !== lengthAt) });
  });
}

/** Writes the answer with the learned head (one `writeHead`, as the cached path does), this request's id and length in place. */
function write(res: ServerResponse, head: LearnedHead, requestId: string, body: Buffer): void {
  const fields = head.fields.slice();
  fields[head.requestIdAt] = requestId;
  fields[head.lengthAt] = String(body.length);
  res.writeHead(200, fields);
  res.end(body);
}

/** The access log line `accessLog` (./middleware.ts) writes through the request's child logger, without building one. */
function logAnswered(logger: Logger, requestId: string, path: string, start: bigint): void {
  if (!logger.isLevelEnabled('info')) return;
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  logger.info({ reqId: requestId, method: 'POST', path, status: 200, ms: Math.round(ms * 10) / 10 }, 'request');
}
