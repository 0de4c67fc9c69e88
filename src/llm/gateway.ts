/**
 * The LLM gateway (DESIGN capabilities 5 and 7): `/llm/{connection}/v1/…` for a connection of
 * kind `llm`, in the provider's own wire format, so the official OpenAI and Anthropic SDKs work
 * with only their `baseURL` and a DPoP-adding `fetch` changed.
 *
 * It is one composition of the enforcement pipeline (src/enforcement):
 *
 * 1. admission — `authenticate` (audience `{issuer}/llm/{connection}`, DPoP) and `liveChain`;
 * 2. `resolveModelRequest` — the connection (404), the endpoint (404), the body read and parsed
 *    (400: not JSON, no model, bad cap; 413 beyond the gateway's size limit), the model
 *    offered (400), the output cap (the request's, else the connection's `maxOutputTokens`,
 *    else 400), the prompt's estimated tokens (400 beyond `maxInputTokens`);
 * 3. `decide` — the connection's required scopes, then the PDP on the whole chain with Cedar
 *    action `complete` and `context.llm` = `{ model, max_tokens, tools, estimated_cost, stream }`;
 * 4. `budget` — the worst case reserved on every budget that applies (requests 1, input tokens
 *    estimated, output tokens = the cap, cost from the price table), all or none; a budget with
 *    less left still admits the call capped to what it has (at least one output token): the cap
 *    sent upstream and enforced on the stream is what was reserved. 402 otherwise;
 * 5. `receipt`, `refuseDenied`, `credential` (the provider key from the vault);
 * 6. forward — the provider called with the reserved cap (`stream_options.include_usage` for a
 *    Chat Completions stream), the stream metered and cut at the cap or the wall-clock deadline
 *    (./stream.ts); settle charges the provider's usage, or Deputy's count when the stream was
 *    cut or reported none (never zero), never more than was reserved. A provider error (or a
 *    refusal after the reservation) releases everything.
 *
 * @module
 */
import { Readable } from 'node:stream';
import type { ReceiptAppender } from '../audit/index.js';
import { BudgetExceeded, type Amounts, type Budgets, type Charge, type ModelPrice, type Reservation } from '../budgets/index.js';
import { costOf } from '../budgets/prices.js';
import { settlementReceipt } from '../budgets/budgeter.js';
import {
  authenticate, budget, credential, decide, liveChain, Pipeline, receipt, refuseDenied, spendProofOnRefusal, streamEnding,
  type ActionContext, type Admission, type Ending, type Budgeter, type BudgetHold, type Decided, type Described, type Outcome, type PepDecision, type PepRequest, type Targeted,
} from '../enforcement/index.js';
import type { Credentialed } from '../enforcement/steps/credential.js';
import { BadGateway, GatewayTimeout, InvalidRequest, NotFound, PayloadTooLarge } from '../errors/index.js';
import { iJsonProblem } from '../util/i-json.js';
import type { GatewayCall } from '../gateway/gateway.js';
import { unexpectedError, type Logger } from '../log.js';
import type { AccessTokenVerifier } from '../oauth/access-token.js';
import { LLM_PREFIX } from '../oauth/deputy-own.js';
import type { RevocationCache } from '../oauth/token-records.js';
import type { EvaluationInput } from '../pdp/authzen.js';
import type { Decision } from '../pdp/decision.js';
import type { Connection, ConnectionStore } from '../vault/connections/store.js';
import { LlmKeySource, type LlmSettings } from './credential.js';
import { meteredStream, newMeter, type Meter } from './stream.js';
import { countTokens } from './tokens.js';
import { endpointOf, outputTextOf, parseModelRequest, upstreamBody, usageOf, type Endpoint, type ModelRequest } from './wire.js';

export { LLM_PREFIX };

/** `{issuer}/llm/{connection}`: the audience (RFC 8707 resource) of an LLM connection (the issuer comes without a trailing slash). */
export function llmAudience(issuer: string, connectionId: string): string {
  return `${issuer}${LLM_PREFIX}/${connectionId}`;
}

/** One call as the HTTP layer hands it over: the HTTP gateway's shape (src/gateway). */
export type LlmCall = GatewayCall;

/** What the HTTP layer writes back. */
export interface LlmResponse {
  status: number;
  headers: Record<string, string>;
  body: Readable | undefined;
}

/** The PDP as the LLM gateway asks it (src/pdp/pdp.ts `PolicyDecisionPoint` fits). */
export interface LlmPdp {
  evaluate(input: EvaluationInput): Promise<Decision>;
  /** Whether the active policy set declares `action` (`complete`; `invoke` otherwise). */
  declaresAction(name: string): boolean;
}

export interface LlmGatewayDeps {
  issuer: string;
  verifier: AccessTokenVerifier;
  revocations: RevocationCache;
  connections: ConnectionStore;
  budgets: Budgets;
  logger: Logger;
  /** Absent: scopes only. */
  pdp?: LlmPdp;
  adminReasons: boolean;
  receipts?: ReceiptAppender;
  upstreamTimeoutMs: number;
  maxRequestBytes: number;
  /** Largest whole (non-streamed) provider response read (502 beyond). */
  maxResponseBytes: number;
  /** Called with every settled call (receipts of the charge, metrics). */
  onSettled?: (settled: SettledCall) => void | Promise<void>;
}

/** A settled call: what it was charged on which budgets. */
export interface SettledCall {
  admission: Admission;
  connection: Connection;
  model: string;
  usage: Amounts;
  charges: Charge[];
  cut: Meter['cut'];
}

/** Per-call plan: the output cap decided by the budget step, the meter filled by forward. */
interface Plan {
  /** Output tokens the call may produce (request's cap, lowered to what budgets hold). */
  cap: number;
  meter: Meter;
}

interface Resolved extends Targeted, Described {
  endpoint: Endpoint;
  /** undefined for `/v1/models`. */
  model: ModelRequest | undefined;
  plan: Plan;
}

type ActionIn = ActionContext & { call: LlmCall };
type Ctx = ActionIn & Resolved & Decided;

/** The ported headers an agent may send a provider (versions and betas), besides the body. */
const FORWARDED_REQUEST_HEADERS = ['anthropic-version', 'anthropic-beta', 'openai-beta', 'accept', 'content-type'];
/** Response headers passed back: the body's type, the provider's request id and limits. */
const FORWARDED_RESPONSE_HEADER = /^(content-type|x-request-id|request-id|openai-processing-ms|retry-after|x-ratelimit-.*|anthropic-ratelimit-.*)$/;

export class LlmGateway {
  readonly #d: LlmGatewayDeps;
  readonly #admit;
  readonly #act;
  readonly #keys: LlmKeySource;

  constructor(deps: LlmGatewayDeps) {
    this.#d = deps;
    this.#keys = new LlmKeySource(deps.connections);
    this.#admit = Pipeline.start<PepRequest>()
      // With receipts, the proof's signature verifies while the call is resolved, decided and its
      // receipt signed (as /gw): nothing is held, written or forwarded before it verified — the
      // budget's hold waits for it (`ready` below), the receipt and every refusal before it too.
      .then(authenticate({ verifier: deps.verifier, deferProofSpend: deps.receipts !== undefined, deferProofSignature: true }))
      .then(liveChain({ revocations: deps.revocations }));
    this.#act = Pipeline.start<ActionIn>()
      .then(spendProofOnRefusal())
      .then({ name: 'resolveModelRequest', run: (ctx: ActionIn) => this.#resolve(ctx) })
      .then(decide((ctx: ActionIn & Resolved) => this.#decide(ctx)))
      .then(budget<ActionIn & Resolved & Decided>(this.#budgeter()))
      .then(receipt({ receipts: deps.receipts, logger: deps.logger }))
      .then(refuseDenied({ logger: deps.logger, message: 'llm call denied' }))
      .then(credential(this.#keys))
      .then({ name: 'forward', run: (ctx: Ctx & Credentialed) => this.#forward(ctx) });
  }

  /** Serves one call. @throws the pipeline's typed refusals (rendered by the HTTP layer). */
  async handle(call: LlmCall): Promise<LlmResponse> {
    const declared = Number(call.headers['content-length'] ?? 0);
    if (declared > this.#d.maxRequestBytes) throw new PayloadTooLarge(this.#d.maxRequestBytes);
    const audience = llmAudience(this.#d.issuer, call.connectionId);
    const admission = await this.#admit.run({
      audience,
      url: `${audience}${call.path}`,
      method: call.method,
      authorization: header(call.headers.authorization),
      dpopProofs: proofsOf(call.headers.dpop),
      requestId: call.requestId,
      ...(call.signal ? { signal: call.signal } : {}),
    });
    const ctx = await this.#act.run({ admission, call }, {
      onSettleError: (err, step) => this.#d.logger.error({ err: unexpectedError(err), step, reqId: call.requestId }, 'llm call could not be settled'),
    });
    const res = ctx.response;
    if (admission.auth.dpopNonce !== undefined) res.headers['dpop-nonce'] = admission.auth.dpopNonce;
    return res;
  }

  // --- resolve ---------------------------------------------------------------------------------

  async #resolve(ctx: ActionIn): Promise<Resolved> {
    const { call } = ctx;
    const connection = await this.#d.connections.get(call.connectionId);
    if (!connection || connection.kind !== 'llm') throw new NotFound(`LLM connection "${call.connectionId}" does not exist`);
    const s = connection.settings as LlmSettings;
    const endpoint = endpointOf(s.provider, call.method, call.path);
    const base = { connection, endpoint, plan: { cap: 0, meter: newMeter() } };
    if (endpoint === 'models') {
      call.body?.resume();
      return { ...base, model: undefined, action: { event: 'gateway_call', name: 'read', resource: `${llmAudience(this.#d.issuer, connection.id)}${call.path}`, digest: { method: call.method, connection: connection.id, path: call.path } } };
    }
    const raw = await readJson(call.body, this.#d.maxRequestBytes);
    const model = parseModelRequest(endpoint, raw);
    if (s.models.length > 0 && !s.models.includes(model.model)) throw new InvalidRequest(`model "${model.model.slice(0, 100)}" is not offered by connection "${connection.id}"`);
    if (model.inputTokens > s.maxInputTokens) throw new InvalidRequest(`the prompt is about ${model.inputTokens} tokens; connection "${connection.id}" accepts at most ${s.maxInputTokens}`);
    if (endpoint !== 'embeddings' && model.maxTokens === undefined && s.maxOutputTokens === undefined) {
      throw new InvalidRequest(`${endpoint === 'responses' ? 'max_output_tokens' : 'max_tokens'} is required: connection "${connection.id}" has no maxOutputTokens cap`);
    }
    const cap = endpoint === 'embeddings' ? 0 : Math.min(model.maxTokens ?? Infinity, s.maxOutputTokens ?? Infinity);
    base.plan.cap = cap;
    return {
      ...base,
      model,
      action: {
        event: 'gateway_call',
        name: 'complete',
        resource: `${llmAudience(this.#d.issuer, connection.id)}${call.path}#${model.model.slice(0, 200)}`,
        digest: { method: call.method, connection: connection.id, path: call.path, model: model.model, max_tokens: cap, stream: model.stream, input_tokens: model.inputTokens },
      },
    };
  }

  // --- decide ----------------------------------------------------------------------------------

  async #decide(ctx: ActionIn & Resolved): Promise<PepDecision> {
    const { principal } = ctx.admission;
    const s = ctx.connection.settings as LlmSettings;
    const missing = s.requiredScopes.find((scope) => !principal.scopes.has(scope));
    if (missing) return { allowed: false, reason: `the agent token lacks the "${missing}" scope this connection requires` };
    const pdp = this.#d.pdp;
    if (!pdp) return { allowed: true };
    const complete = ctx.model !== undefined && pdp.declaresAction('complete');
    const m = ctx.model;
    const price = m ? this.#d.budgets.prices.price(m.model) : undefined;
    const input: EvaluationInput = {
      subject: { type: 'Agent', id: principal.agentId, properties: { token: principal.token } },
      action: { name: complete ? 'complete' : ctx.model ? 'invoke' : 'read', properties: {} },
      resource: {
        type: 'Resource',
        id: ctx.connection.id,
        properties: { audience: llmAudience(this.#d.issuer, ctx.connection.id), owner: principal.userId, ...(s.requiredScopes[0] ? { scope: s.requiredScopes[0] } : {}) },
      },
      context: complete && m
        ? { llm: { model: m.model, max_tokens: ctx.plan.cap, tools: m.tools, stream: m.stream, ...(price ? { estimated_cost: costOf(price, { inputTokens: m.inputTokens, outputTokens: ctx.plan.cap }) } : {}) } }
        : {},
    };
    const decision = await pdp.evaluate(input);
    if (decision.decision) return { allowed: true, context: { policies: decision.policies } };
    const d = decision.denial;
    return { allowed: false, reason: this.#d.adminReasons ? d.admin : d.user, context: { policies: d.policies, kind: d.kind } };
  }

  // --- budget ----------------------------------------------------------------------------------

  #budgeter(): Budgeter<ActionIn & Resolved & Decided> {
    const { ledger } = this.#d.budgets;
    return {
      reserve: async (ctx) => {
        const m = ctx.model;
        if (!m) return undefined;
        const { principal } = ctx.admission;
        // Read per call: the table may be replaced (a price change applies to later reservations).
        const price = this.#d.budgets.prices.price(m.model);
        const cap = ctx.plan.cap;
        const worst: Amounts = { requests: 1, input_tokens: m.inputTokens, output_tokens: cap, ...(price ? { cost: costOf(price, { inputTokens: m.inputTokens, outputTokens: cap }) } : {}) };
        const least: Amounts = { requests: 1, input_tokens: m.inputTokens, output_tokens: Math.min(1, cap), ...(price ? { cost: costOf(price, { inputTokens: m.inputTokens, outputTokens: Math.min(1, cap) }) } : {}) };
        let reservation: Reservation;
        try {
          reservation = await ledger.reserve(
            { agents: principal.chain, user: principal.userId, connection: ctx.connection.id, model: m.model },
            worst,
            {
              minimum: least,
              requestId: ctx.admission.requestId,
              ready: ctx.admission.proof.verified,
              unmeasured: (b) => new InvalidRequest(`model "${m.model.slice(0, 100)}" has no price (budgets.prices), and budget "${b.id}" counts cost`),
            },
          );
        } catch (err) {
          if (err instanceof BudgetExceeded) return { allowed: false, reason: err.description, refusal: err };
          throw err;
        }
        ctx.plan.cap = capFrom(reservation, cap, price, m.inputTokens);
        return this.#hold(ctx, reservation, price);
      },
    };
  }

  #hold(ctx: ActionIn & Resolved, reservation: Reservation, price: ModelPrice | undefined): BudgetHold {
    const { ledger } = this.#d.budgets;
    return {
      settle: async (outcome: Outcome) => {
        const meter = ctx.plan.meter;
        try {
          if (outcome.kind === 'refused' || meter.failed) {
            await ledger.release(reservation);
            return;
          }
          const usage = usedBy(ctx.model!, meter, price);
          const charges = await ledger.settle(reservation, usage);
          const uncharged = charges.filter((c) => c.uncharged > 0);
          if (uncharged.length) this.#d.logger.warn({ reqId: ctx.admission.requestId, connection: ctx.connection.id, uncharged }, 'llm call used more than its budgets allowed; the excess was not charged');
          await settlementReceipt(this.#d.receipts, ctx, charges);
          await this.#d.onSettled?.({ admission: ctx.admission, connection: ctx.connection, model: ctx.model!.model, usage, charges, cut: meter.cut });
        } catch (err) {
          this.#d.logger.error({ err: unexpectedError(err), reqId: ctx.admission.requestId }, 'budget reservation could not be settled; it is released when it expires');
        }
      },
    };
  }

  // --- forward ---------------------------------------------------------------------------------

  /**
   * Step `forward`: the provider called with the reserved cap; a stream metered and cut
   * (./stream.ts), a whole response read and metered. An error status marks the meter failed
   * (the budget hold then releases everything).
   */
  async #forward(ctx: Ctx & Credentialed): Promise<{ response: LlmResponse; ended: () => Promise<Ending> }> {
    const { plan } = ctx;
    // The wall-clock cap covers the whole call, streams included.
    const deadline = AbortSignal.timeout(((ctx.connection.settings as LlmSettings).maxCallSeconds ?? 300) * 1000);
    const { res, abortOn } = await this.#callProvider(ctx, deadline);
    const headers: Record<string, string> = {};
    res.headers.forEach((value, name) => {
      if (FORWARDED_RESPONSE_HEADER.test(name)) headers[name] = value;
    });
    plan.meter.failed = !res.ok;
    let body: Readable;
    if (ctx.model?.stream === true && res.ok && (res.headers.get('content-type') ?? '').includes('text/event-stream') && res.body) {
      // From here the stream ends itself cleanly at the deadline: the deadline must not abort the body under it.
      abortOn.delete(deadline);
      body = meteredStream({ req: ctx.model, upstream: res.body, cap: plan.cap, meter: plan.meter, deadline });
      headers['cache-control'] = 'no-cache';
    } else {
      const bytes = await readUpstream(res, this.#d.maxResponseBytes);
      if (res.ok && ctx.model) meterWhole(ctx.model, bytes, plan.meter);
      headers['content-length'] = String(bytes.length);
      body = Readable.from([bytes]);
    }
    const ended = () => streamEnding(body).finally(() => abortOn.clear());
    return { response: { status: res.status, headers, body }, ended };
  }

  /**
   * The upstream request: the agent's version headers, the provider key, the body with the
   * reserved cap. Aborted when the agent goes away or `deadline` passes (the signals in the
   * returned `abortOn`, which the caller may narrow); the headers must come within the
   * connection's (or the gateway's) upstream timeout.
   *
   * @throws GatewayTimeout (504), BadGateway (502: unreachable, or the key refused)
   */
  async #callProvider(ctx: Ctx & Credentialed, deadline: AbortSignal): Promise<{ res: Response; abortOn: Set<AbortSignal> }> {
    const { call, connection, credential: cred } = ctx;
    const s = connection.settings as LlmSettings;
    const headers = new Headers();
    for (const name of FORWARDED_REQUEST_HEADERS) {
      const v = header(call.headers[name]);
      if (v !== undefined) headers.set(name, v);
    }
    headers.set('accept-encoding', 'identity');
    headers.set('x-request-id', call.requestId);
    for (const [name, value] of cred.headers) headers.set(name, value);
    const abort = new AbortController();
    const abortOn = new Set([deadline, ...(call.signal ? [call.signal] : [])]);
    const onAbort = (e: Event) => {
      if (abortOn.has(e.target as AbortSignal)) abort.abort();
    };
    for (const sig of abortOn) sig.addEventListener('abort', onAbort, { once: true });
    const headersDeadline = AbortSignal.timeout((s.timeoutSeconds ?? 0) * 1000 || this.#d.upstreamTimeoutMs);
    let res: Response;
    try {
      res = await fetch(`${s.baseUrl.replace(/\/$/, '')}${call.path}${call.query ? `?${call.query}` : ''}`, {
        method: call.method,
        headers,
        signal: AbortSignal.any([abort.signal, headersDeadline]),
        ...(ctx.model ? { body: JSON.stringify(upstreamBody(ctx.model, ctx.plan.cap)) } : {}),
      });
    } catch (cause) {
      if (headersDeadline.aborted || deadline.aborted) throw new GatewayTimeout(`the provider of connection "${connection.id}" did not answer in time`, { cause });
      throw new BadGateway(`the provider of connection "${connection.id}" could not be reached`, { cause });
    }
    if (res.status === 401 || res.status === 403) {
      await res.body?.cancel().catch(() => {});
      this.#d.logger.warn({ reqId: call.requestId, connection: connection.id, status: res.status }, 'provider refused the injected key');
      throw new BadGateway(`the provider of connection "${connection.id}" refused Deputy's key for it`);
    }
    return { res, abortOn };
  }
}

/**
 * The output cap a reservation allows: the least of the request's cap, the output tokens held,
 * and what the cost held pays for (the largest n with `costOf(input, n) <= cost`, exactly: the
 * cost rounds up, so `(in × input + n × output) / 10⁶ <= cost − request`).
 */
function capFrom(r: Reservation, cap: number, price: ModelPrice | undefined, inputTokens: number): number {
  let allowed = Math.min(cap, r.held.output_tokens ?? cap);
  const cost = r.held.cost;
  if (price && cost !== undefined && price.output > 0) {
    allowed = Math.min(allowed, Math.floor(((cost - price.request) * 1_000_000 - inputTokens * price.input) / price.output));
  }
  return Math.max(0, allowed);
}

/**
 * What a call used: the provider's usage for a whole response or an uncut stream; Deputy's count
 * of what was delivered when the stream was cut or the provider reported no output usage (so a
 * streamed call is never charged zero for what it delivered).
 */
function usedBy(m: ModelRequest, meter: Meter, price: ModelPrice | undefined): Amounts {
  const output = meter.cut !== undefined || meter.usage.outputTokens === undefined ? meter.delivered : meter.usage.outputTokens;
  const input = meter.usage.inputTokens ?? m.inputTokens;
  return { requests: 1, input_tokens: input, output_tokens: output, ...(price ? { cost: costOf(price, { inputTokens: input, outputTokens: output }) } : {}) };
}

/** Meters a whole (non-streamed) response: its `usage`, or Deputy's count of its text. */
function meterWhole(m: ModelRequest, bytes: Buffer, meter: Meter): void {
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch {
    parsed = undefined;
  }
  const usage = usageOf(m.endpoint, parsed);
  if (usage) meter.usage = { ...usage };
  meter.delivered = countTokens(outputTextOf(m.endpoint, parsed));
}

async function readJson(body: Readable | undefined, limit: number): Promise<unknown> {
  if (!body) throw new InvalidRequest('the request body must be a JSON object');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new PayloadTooLarge(limit);
    chunks.push(chunk as Buffer);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new InvalidRequest('the request body is not valid JSON');
  }
  // Counting tokens and writing the upstream body recurse over it: nesting past the stack is refused here, by name.
  const problem = iJsonProblem(parsed, 'the request body', { depthOnly: true });
  if (problem) throw new InvalidRequest(problem);
  return parsed;
}

async function readUpstream(res: Response, limit: number): Promise<Buffer> {
  if (!res.body) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    size += chunk.length;
    if (size > limit) throw new BadGateway('the provider\'s response is too large');
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks);
}

function header(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function proofsOf(v: string | string[] | undefined): string[] {
  const values = v === undefined ? [] : Array.isArray(v) ? v : [v];
  return values.flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean);
}
