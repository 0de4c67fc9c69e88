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
 * written as the routes wrote them (request id aside). While every cache that phase reads would
 * answer as it did (fresh, the same objects: `basisHolds`), the basis is known to hold without
 * running it, and the hit is written in the turn its body arrived, with nothing awaited.
 *
 * Anything else goes down the normal path unchanged: a request whose answer is not remembered or
 * whose basis changed, a PEP token not verified before (DPoP-bound, new, expired), an unusual
 * header (receipt requested, chunked or large body, content type other than plain JSON, a
 * request id the log-safe grammar refuses), and every error (a malformed body is never answered
 * here: only 200 answers are remembered). A body read here is handed to the routes
 * (./json-body.ts). The normal path's answers are remembered on the way out.
 *
 * Hits are answered by a request listener in front of Koa's (no Koa context, no middleware),
 * which records the request in `deputy_http_*` and its span as `observeRequests` would
 * (`observeAnswered`, ./metrics.ts); the middleware, placed after `observeRequests`, remembers
 * the normal path's answers. Hits count their decisions in `deputy_pdp_decisions_total`. The
 * path is off when the decision cache is (`pdp.decisionCacheSize: 0`).
 *
 * Most misses never reach the middleware: the lean path (./authzen-lean.ts) evaluates them ahead
 * of Koa too, and remembers their answers here through {@link MissAnswers} — the same key, the
 * basis computed before the evaluation as the middleware computes it, the same byte budget, the
 * head the routes wrote.
 *
 * @module
 */
import { randomInt, randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type Koa from 'koa';
import type { Logger } from '../log.js';
import { metrics } from '../observability/metrics.js';
import { basisHoldsNow, basisOrUndefined, checkDepth, decisionBasis, parseEvaluation, parseEvaluations, sameBasis, type DecisionBasis, type EvaluationInput, type EvaluationsInput, type PolicyDecisionPoint, requestMemo, type RequestMemo } from '../pdp/index.js';
import { failedAheadOf, RECEIPT_ID_HEADER, RECEIPT_REQUEST_HEADER, type PepTokens } from './authzen.js';
import { handBodyOn, parseJson, readBodyAhead, receiveBody, type BodyReceiver } from './json-body.js';
import { observeAnswered } from './metrics.js';
import { acceptedRequestId } from './middleware.js';

/** What the cached path needs: the routes' limits, the PDP, the PEP tokens the routes verified. */
export interface CachedDecisionsDeps {
  pdp: PolicyDecisionPoint;
  /** The routes' verified PEP tokens; undefined under `pdp.auth: none`. */
  pepTokens: PepTokens | undefined;
  logger: Logger;
  bodyLimitBytes: number;
  maxBatch: number;
  maxJsonDepth: number;
  /** Bytes of requests and answers remembered ({@link footprint}); past it the answers remembered longest ago are forgotten. 0: the path is off. */
  budgetBytes: number;
}

/** An answer the cached path keeps: what it was decided on, its bytes, the head to write, its decision counts. */
export interface Remembered {
  inputs: readonly EvaluationInput[];
  basis: DecisionBasis;
  body: Buffer;
  /**
   * Response headers to write (name, value, name, value…): `X-Request-ID` and a placeholder
   * value first, then the remembered ones without the per-request headers, `Content-Length` last.
   */
  head: readonly string[];
  permits: number;
  denies: number;
}

const PATHS = new Set(['/access/v1/evaluation', '/access/v1/evaluations']);
/** Content types taken here; any other goes down the normal path (which decides 400 or not). */
const JSON_TYPES = new Set(['application/json', 'application/json; charset=utf-8']);
/** Larger bodies go down the normal path: they are rarely repeated and would crowd the set. */
const MAX_BODY_BYTES = 16 * 1024;
/** Response headers that belong to one request, never replayed. */
export const PER_REQUEST_HEADERS = new Set(['x-request-id', 'content-length', 'dpop-nonce', 'deputy-receipt-id', 'set-cookie', 'connection']);

/** The cached path: a request listener in front of Koa's, and the middleware behind it. */
export interface CachedDecisions {
  /**
   * Koa middleware, placed right after the request metrics: remembers the normal path's 200
   * answers on the way out (and answers a remembered request that reached Koa after all).
   */
  middleware: Koa.Middleware;
  /**
   * Wraps Koa's request listener (`app.callback()`): a remembered answer whose basis holds is
   * written before Koa builds a context, with the request metrics and span recorded here
   * (`observeAnswered`, ./metrics.ts); any other request is handed to `next` unchanged (its body,
   * when read here, is handed on too: ./json-body.ts). `next` itself when the path is off.
   */
  listener<L extends RequestListener>(next: L): L;
  /** For the lean path: misses it answers are remembered here as the middleware remembers them. Undefined when the path is off. */
  misses: MissAnswers | undefined;
}

/** A miss being answered ahead of Koa: where its answer is remembered, and under what basis. */
export interface PendingAnswer {
  readonly path: string;
  /** The request's bytes (copied when remembered: they may share a larger buffer). */
  readonly raw: Buffer;
  readonly inputs: readonly EvaluationInput[];
  readonly basis: DecisionBasis;
}

/**
 * How the lean path (./authzen-lean.ts) remembers the answers to the misses it evaluates, exactly
 * as {@link CachedDecisions.middleware} remembers the routes' answers.
 */
export interface MissAnswers {
  /**
   * The memo for evaluating `req`: the one the listener sought its remembered answer's basis
   * with, when it did (a basis that changed or failed there), so that nothing it read — or
   * failed to read, a store away — is read again; else a new one.
   */
  memoFor(req: IncomingMessage): RequestMemo;
  /**
   * Before evaluating: the answer's key (path and request bytes) and its basis, computed as the
   * middleware computes it — before the evaluation — with the request's memo, so the evaluation
   * decides on the very subjects and agents the basis names. Undefined when the subject has no
   * basis (an invalid token or chain: such answers are not remembered).
   *
   * @throws what the asynchronous phase throws (a store away): the caller evaluates on the same
   *   memo without remembering (the failed read fails again only if the evaluation reaches it).
   */
  before(path: string, raw: Buffer, parsed: EvaluationsInput, memo: RequestMemo): Promise<PendingAnswer | undefined>;
  /**
   * After a 200 answer without a receipt was written: remembers it. `answer` is the body object,
   * `body` its bytes (`JSON.stringify`), `headers` the routes' head (name, value, …) in their
   * order without the per-request headers ({@link PER_REQUEST_HEADERS}).
   */
  remember(pending: PendingAnswer, answer: object, body: Buffer, headers: readonly string[]): void;
}

/** A Node request listener as Koa's `callback()` gives it (the HTTP server drops what it returns). */
export type RequestListener = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

/**
 * The cached path (see the module documentation). Never throws: whatever fails here leaves the
 * request to the normal path, which renders it.
 */
export function cachedDecisions(deps: CachedDecisionsDeps): CachedDecisions {
  const answers = new AnswerSet(deps.budgetBytes);
  // The listener's memo per request it handed on after seeking a basis (dropped with the request).
  const memos = new WeakMap<IncomingMessage, RequestMemo>();
  return {
    middleware: cachedDecisionMiddleware(deps, answers),
    listener: <L extends RequestListener>(next: L): L => (deps.budgetBytes > 0 ? (cachedDecisionListener(deps, answers, memos, next) as L) : next),
    misses: deps.budgetBytes > 0 ? missAnswers(deps.pdp, answers, memos) : undefined,
  };
}

/** {@link MissAnswers} over the cached path's answer set. */
function missAnswers(pdp: PolicyDecisionPoint, answers: AnswerSet, memos: WeakMap<IncomingMessage, RequestMemo>): MissAnswers {
  return {
    memoFor: (req) => memos.get(req) ?? requestMemo(),
    async before(path, raw, parsed, memo) {
      const inputs = inputsOf(parsed);
      const basis = await decisionBasis(pdp, inputs, memo);
      return basis && { path, raw, inputs, basis };
    },
    remember(pending, answer, body, headers) {
      answers.set(pending.path, pending.raw, remembered(pending.inputs, pending.basis, answer, body, headers));
    },
  };
}

function cachedDecisionMiddleware(deps: CachedDecisionsDeps, answers: AnswerSet): Koa.Middleware {
  return async function cachedDecision(ctx, next) {
    const requestId = deps.budgetBytes > 0 ? eligible(ctx.method, ctx.path, ctx.req.headers, deps) : undefined;
    // A request whose evaluation failed on the lean path: the routes render that failure, and
    // nothing is remembered; its basis is not sought a second time (a store away is waited for once).
    if (requestId === undefined || failedAheadOf(ctx.req)) return next();
    let raw: Buffer;
    try {
      raw = await readBodyAhead(ctx, deps.bodyLimitBytes);
    } catch {
      return next(); // the routes get the same rejection from readBody
    }
    const known = answers.get(ctx.path, raw);
    if (known && holdsNow(deps, known)) return answer(ctx, deps, known, requestId);
    const basis = known ? await basisOrUndefined(deps.pdp, known.inputs) : undefined;
    if (known && basis && sameBasis(basis, known.basis)) return answer(ctx, deps, known, requestId);
    const inputs = known ? known.inputs : parseInputs(ctx.path, raw, deps);
    // Computed before the normal path runs: an answer is never remembered under a basis newer than its own.
    const before = known ? basis : inputs && (await basisOrUndefined(deps.pdp, inputs));
    await next();
    if (inputs && before && rememberable(ctx)) answers.set(ctx.path, raw, remember(ctx, inputs, before));
  };
}

/**
 * The listener of {@link CachedDecisions.listener}: hits answered here, the rest to `next`. The
 * body is received without a promise or a closure per request ({@link receiveBody}), and a hit
 * whose basis holds is written in the turn its last chunk arrived.
 */
function cachedDecisionListener(deps: CachedDecisionsDeps, answers: AnswerSet, memos: WeakMap<IncomingMessage, RequestMemo>, next: RequestListener): RequestListener {
  const receiver = hitReceiver(deps, answers, memos, next);
  return function cachedDecisionFirst(req, res) {
    // The exact path only: a query string (which Koa's path would drop) goes to the middleware.
    const path = req.url ?? '';
    const requestId = req.method === 'POST' ? eligible('POST', path, req.headers, deps) : undefined;
    if (requestId === undefined) return next(req, res);
    receiveBody(req, res, deps.bodyLimitBytes, receiver, { requestId, path, start: process.hrtime.bigint() });
  };
}

/** An eligible request the listener is receiving: the id to answer with, its path, when it arrived. */
interface Arrival {
  readonly requestId: string;
  readonly path: string;
  /** `process.hrtime.bigint()` when the request arrived. */
  readonly start: bigint;
}

/** What the listener does with a received body: a hit answered, anything else handed to `next` with its body. */
function hitReceiver(deps: CachedDecisionsDeps, answers: AnswerSet, memos: WeakMap<IncomingMessage, RequestMemo>, next: RequestListener): BodyReceiver<Arrival> {
  const pass = (req: IncomingMessage, res: ServerResponse, outcome: Buffer | Error): void => {
    handBodyOn(req, outcome);
    void next(req, res);
  };
  return {
    received(req, res, raw, arrival) {
      const known = answers.get(arrival.path, raw);
      if (known === undefined) return pass(req, res, raw);
      // Mostly the caches alone tell that the basis holds: answered in this turn, nothing awaited.
      if (holdsNow(deps, known)) return void (answerFirst(req, res, { deps, known, arrival }) || pass(req, res, raw));
      // With a memo the lean path takes over should it be handed the request: what was read here
      // is not read again, and a read that failed here (a store away) is not waited for twice.
      const memo = requestMemo();
      memos.set(req, memo);
      void basisOrUndefined(deps.pdp, known.inputs, memo).then((basis) => {
        if (!(basis && sameBasis(basis, known.basis) && answerFirst(req, res, { deps, known, arrival }))) pass(req, res, raw);
      });
    },
    failed: (req, res, err) => pass(req, res, err),
  };
}

/** A remembered answer the listener writes, and what it writes it for. */
interface Hit {
  deps: CachedDecisionsDeps;
  known: Remembered;
  arrival: Arrival;
}

/**
 * Writes a hit before Koa, with what `observeRequests` and `accessLog` would record for it.
 * Never throws: nothing awaits the listener, so a throw here would be an uncaught exception, which
 * ends the process. Returns false when nothing was sent (the head failed): the caller hands the
 * request to the routes, which answer it; a failure after the head was sent cuts the response.
 */
function answerFirst(req: IncomingMessage, res: ServerResponse, hit: Hit): boolean {
  const { known, arrival } = hit;
  try {
    write(res, known, arrival.requestId);
    // Inside the server span, as `accessLog` writes it on the routes: the line carries its trace id.
    observeAnswered(req, arrival.path, 200, arrival.start, countAndLogHit, hit);
  } catch {
    if (!res.headersSent) return false;
    if (!res.writableEnded) res.destroy();
  }
  return true;
}

/** Whether a remembered answer's basis holds now, from the caches alone (`basisHoldsNow`, src/pdp). */
function holdsNow(deps: CachedDecisionsDeps, known: Remembered): boolean {
  return basisHoldsNow(deps.pdp, known.inputs, known.basis);
}

/**
 * The request id to answer with when the request may take the cached path, else undefined.
 * Checks only headers: method and path, content type and length, no receipt, the PEP's token.
 * Shared with the lean path (./authzen-lean.ts), which takes the same requests.
 */
export function eligible(method: string, path: string, headers: IncomingHttpHeaders, deps: Pick<CachedDecisionsDeps, 'pepTokens' | 'bodyLimitBytes'>): string | undefined {
  if (method !== 'POST' || !PATHS.has(path)) return undefined;
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
  return acceptedRequestId(given) ? given : undefined;
}

/** The evaluations a body asks for, or undefined when it is not a valid request (the normal path answers 400). */
function parseInputs(path: string, raw: Buffer, deps: CachedDecisionsDeps): readonly EvaluationInput[] | undefined {
  try {
    const body = parseJson(raw);
    checkDepth(body, deps.maxJsonDepth);
    return inputsOf(path.endsWith('/evaluation') ? { kind: 'single', evaluation: parseEvaluation(body) } : parseEvaluations(body, deps.maxBatch));
  } catch {
    return undefined;
  }
}

/** The evaluations a parsed request makes (a batch's valid items), whose basis its answer is remembered under. */
function inputsOf(parsed: EvaluationsInput): readonly EvaluationInput[] {
  return parsed.kind === 'single' ? [parsed.evaluation] : parsed.items.flatMap((item) => (item.ok ? [item.evaluation] : []));
}

/** Answers from Koa (a remembered request that reached the middleware): written as {@link write} does. */
function answer(ctx: Koa.Context, deps: CachedDecisionsDeps, known: Remembered, requestId: string): void {
  const start = process.hrtime.bigint();
  ctx.state.requestId = requestId;
  ctx.status = 200;
  ctx.respond = false;
  write(ctx.res, known, requestId);
  countAndLog(deps, known, ctx.method, { requestId, path: ctx.path, start });
}

/**
 * Writes a remembered answer with one `writeHead` (rather than Koa's per-header `set()`, which
 * showed in the profile): the request id first, as requestContext sets it, then the remembered
 * headers in their order; the array is built once per answer and copied per request.
 */
function write(res: ServerResponse, known: Remembered, requestId: string): void {
  const head = known.head.slice();
  head[1] = requestId;
  res.writeHead(200, head);
  res.end(known.body);
}

/** {@link countAndLog} for a hit answered by the listener. */
function countAndLogHit({ deps, known, arrival }: Hit): void {
  countAndLog(deps, known, 'POST', arrival);
}

/** Counts the answer's decisions in `deputy_pdp_decisions_total`, and logs it as accessLog (./middleware.ts) would, without a child logger. */
function countAndLog(deps: CachedDecisionsDeps, known: Remembered, method: string, request: Arrival): void {
  if (known.permits > 0) metrics.pdpDecisions.inc({ decision: 'permit', source: 'evaluation' }, known.permits);
  if (known.denies > 0) metrics.pdpDecisions.inc({ decision: 'deny', source: 'evaluation' }, known.denies);
  if (deps.logger.isLevelEnabled('info')) {
    const ms = Number(process.hrtime.bigint() - request.start) / 1e6;
    deps.logger.info({ reqId: request.requestId, method, path: request.path, status: 200, ms: Math.round(ms * 10) / 10 }, 'request');
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
  return remembered(inputs, basis, ctx.body as object, Buffer.from(JSON.stringify(ctx.body)), headers);
}

/** An answer to remember: the body object (for its decision counts), its bytes, the head without per-request headers. */
function remembered(inputs: readonly EvaluationInput[], basis: DecisionBasis, answer: object, body: Buffer, headers: readonly string[]): Remembered {
  const shaped = answer as { decision?: unknown; evaluations?: ReadonlyArray<{ decision?: unknown }> };
  const decisions = shaped.evaluations ?? [shaped];
  const permits = decisions.filter((d) => d.decision === true).length;
  const denies = decisions.filter((d) => d.decision === false).length;
  return { inputs, basis, body, head: ['X-Request-ID', '', ...headers, 'Content-Length', String(body.length)], permits, denies };
}

/**
 * What one remembered answer keeps on the heap, estimated: the request's bytes (its own copy)
 * and the parsed request it was decided on (its objects take about twice its JSON text) — four
 * bytes for each byte of path and request, as when the key was a string of them — the answer's
 * bytes and head, and a fixed share for the entry's own objects (the bucket, the entry and
 * `Remembered` records, their arrays, the copy's buffer object, its slot in the eviction order). Counting only the key and body
 * understated the set's memory about fivefold (the seventh round's red team: 4,000 small misses
 * counted 484 bytes each and grew the heap by ~10 MB), so the budget would not have bounded what
 * it says it bounds.
 */
export function footprint(path: string, raw: Buffer, value: Remembered): number {
  let head = 0;
  for (const field of value.head) head += 2 * field.length;
  return 4 * (path.length + 1 + raw.length) + value.body.length + head + ENTRY_OVERHEAD_BYTES + perEvaluationCopies(value.inputs);
}

/** The heap an entry costs besides its strings and buffer: map entry, record, arrays, object headers. */
const ENTRY_OVERHEAD_BYTES = 512;
/** The objects parsing builds for each evaluation (it, its subject, action and resource, their property records). */
const EVALUATION_OBJECTS_BYTES = 320;
/** One own property of a parsed entity's property record (V8's dictionary entry, measured ~64 bytes). */
const PROPERTY_SLOT_BYTES = 64;

/**
 * What the parsed request holds that its JSON text does not bound: a batch item that omits a
 * member gets the top-level default, and parsing builds each item's entities anew, property
 * record included (src/pdp/authzen.ts `parseEvaluations`). So `{}` items under a default
 * subject of 200 properties cost ~6 MB for 500 items while the key is 3.6 KB (red team, issue 16
 * seventh round): counted by the text alone, the budget bounded nothing. Values are shared, not
 * copied: only the records' own slots are counted.
 */
function perEvaluationCopies(inputs: readonly EvaluationInput[]): number {
  let slots = 0;
  for (const { subject, resource } of inputs) slots += Object.keys(subject.properties).length + Object.keys(resource.properties).length;
  return inputs.length * EVALUATION_OBJECTS_BYTES + slots * PROPERTY_SLOT_BYTES;
}

/** A remembered answer with the request it answers: the path and a copy of the request's bytes. */
interface AnswerEntry {
  readonly path: string;
  readonly raw: Buffer;
  readonly value: Remembered;
  readonly size: number;
  /** {@link requestHash} of `raw`: the bucket it is kept in. */
  readonly hash: number;
}

/** Entries kept under one hash of the request's bytes; past it, a colliding request is not remembered (it is evaluated, never answered wrongly). */
const MAX_BUCKET = 4;

/**
 * Remembered answers by path and request bytes, within a byte budget (sizes by {@link footprint}).
 * Looked up by a hash of the bytes ({@link requestHash}) and confirmed by comparing them whole, so
 * no string is built per request: the `latin1` string key of the request's bytes, hashed by V8 per
 * lookup, was ~1.8 µs of a hit against ~0.5 µs for this.
 *
 * A full set forgets the answers remembered longest ago, as few as make room for the new one
 * (as every other cache does: src/util/bounded-map.ts), rather than all of them: emptying it
 * dropped the hot answers with the cold, and every PEP's next request became a miss at once. The
 * counted bytes never pass the budget: an answer larger than the whole budget is not remembered.
 */
export class AnswerSet {
  readonly #buckets = new Map<number, AnswerEntry[]>();
  /** Every entry, in the order remembered (a replaced one counts as new): the first is evicted first. */
  readonly #order = new Set<AnswerEntry>();
  readonly #hash: (raw: Buffer) => number;
  #bytes = 0;

  /** `hash`: {@link requestHash}; another only in tests (collisions on demand). */
  constructor(readonly budgetBytes: number, hash: (raw: Buffer) => number = requestHash) {
    this.#hash = hash;
  }

  /** The bytes the remembered answers count ({@link footprint}), never more than `budgetBytes`. */
  get bytes(): number {
    return this.#bytes;
  }

  /** The answer remembered for exactly these bytes on this path. */
  get(path: string, raw: Buffer): Remembered | undefined {
    const bucket = this.#buckets.get(this.#hash(raw));
    if (bucket === undefined) return undefined;
    for (const entry of bucket) if (entry.path === path && entry.raw.equals(raw)) return entry.value;
    return undefined;
  }

  /**
   * Remembers `value` for these bytes on this path (a copy of them is kept), replacing an earlier
   * answer; the answers remembered longest ago make room for it. Not remembered: an answer whose
   * footprint alone passes the budget, a new request under a hash that holds {@link MAX_BUCKET}.
   */
  set(path: string, raw: Buffer, value: Remembered): void {
    const size = footprint(path, raw, value);
    if (size > this.budgetBytes) return;
    const hash = this.#hash(raw);
    const earlier = this.#buckets.get(hash)?.find((entry) => entry.path === path && entry.raw.equals(raw));
    if (earlier !== undefined) this.#delete(earlier);
    else if ((this.#buckets.get(hash)?.length ?? 0) >= MAX_BUCKET) return;
    for (const oldest of this.#order) {
      if (this.#bytes + size <= this.budgetBytes) break;
      this.#delete(oldest);
    }
    const entry: AnswerEntry = { path, raw: copyOf(raw), value, size, hash };
    const bucket = this.#buckets.get(hash);
    if (bucket === undefined) this.#buckets.set(hash, [entry]);
    else bucket.push(entry);
    this.#order.add(entry);
    this.#bytes += size;
  }

  /** Forgets one entry (its bucket too, when it was the last there). */
  #delete(entry: AnswerEntry): void {
    const bucket = this.#buckets.get(entry.hash)!;
    if (bucket.length === 1) this.#buckets.delete(entry.hash);
    else bucket.splice(bucket.indexOf(entry), 1);
    this.#order.delete(entry);
    this.#bytes -= entry.size;
  }
}

/** The bytes in a buffer of their own: a body read from a socket may be a slice of a larger one, which keeping it would retain. */
function copyOf(raw: Buffer): Buffer {
  const copy = Buffer.allocUnsafeSlow(raw.length);
  raw.copy(copy);
  return copy;
}

/** Per process: a request whose hash collides with another's cannot be crafted offline. */
const HASH_SEED = randomInt(0x7fffffff);

/**
 * A 32-bit hash of a request's bytes (FNV-1a style, four bytes a step, seeded per process). Not
 * a security boundary: equal hashes are confirmed byte for byte, and a bucket holds at most
 * {@link MAX_BUCKET} entries, so colliding requests cost a lookup a few comparisons at most.
 */
export function requestHash(raw: Buffer): number {
  let hash = HASH_SEED ^ raw.length;
  const words = raw.length - 3;
  let i = 0;
  for (; i < words; i += 4) hash = Math.imul(hash ^ (raw[i]! | (raw[i + 1]! << 8) | (raw[i + 2]! << 16) | (raw[i + 3]! << 24)), 0x01000193) ^ (hash >>> 15);
  for (; i < raw.length; i += 1) hash = Math.imul(hash ^ raw[i]!, 0x01000193);
  return hash >>> 0;
}
