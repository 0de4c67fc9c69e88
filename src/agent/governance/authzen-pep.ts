/**
 * An in-process AuthZEN PEP (OpenID AuthZEN Authorization API 1.0 §6, §10.1) for Deputy's PDP:
 * one evaluation per request at `<issuer>/access/v1/evaluation`, authenticated as a PEP client
 * (`authzen:evaluate`), failing closed — any error, timeout or malformed answer is a deny that
 * says why — with a short decision cache keyed as the PDP's own cache is keyed (the complete
 * request, in RFC 8785 canonical JSON).
 *
 * Frameworks other than the Agent Governance Toolkit build on this directly; `DeputyPolicyBackend`
 * is the toolkit's adapter around it.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';
import * as client from 'openid-client';
import { fromOpenIdClientError } from '../errors.js';
import { importPrivateKey, type PrivateKeyInput, type SigningAlgorithm } from '../keys.js';
import { BoundedReadCache } from '../../util/single-flight.js';

/** An AuthZEN subject or resource (§5.1, §5.2). */
export interface AuthZenEntity {
  type: string;
  id: string;
  properties?: Record<string, unknown>;
}

/** An AuthZEN action (§5.3). */
export interface AuthZenAction {
  name: string;
  properties?: Record<string, unknown>;
}

/** An AuthZEN evaluation request (§6.1). */
export interface AuthZenEvaluation {
  subject: AuthZenEntity;
  action: AuthZenAction;
  resource: AuthZenEntity;
  context?: Record<string, unknown>;
}

/** A PEP's answer: the PDP's decision, or a deny with `error` when none could be had (fail closed). */
export interface PepDecision {
  decision: boolean;
  /** Why not: the PDP's reason (`reason_admin`, else `reason_user`), or what failed. */
  reason?: string;
  /** The PDP's response `context` (§6.2): `id`, `link`, … */
  context?: Record<string, unknown>;
  /** The receipt Deputy wrote, when one was requested. */
  receipt?: { id: string; agent: string; seq: number };
  /** Set when no decision could be had (network, timeout, HTTP error, malformed answer). */
  error?: string;
  /** Whether the answer came from the cache. */
  cached: boolean;
}

/**
 * How the PEP authenticates to Deputy's PDP (`pdp.auth: token`, the default): as an
 * `admin.clients` client with the `authzen:evaluate` scope (client credentials with
 * `private_key_jwt`), or with a token obtained elsewhere; `'none'` for `pdp.auth: none`.
 */
export type PepCredentials =
  | { clientId: string; privateKey: PrivateKeyInput; algorithm?: SigningAlgorithm; kid?: string }
  | { token: string | (() => string | Promise<string>) }
  | 'none';

/** Options of {@link AuthZenPep}. */
export interface AuthZenPepOptions {
  /** Deputy's issuer URL (the PDP is `<issuer>/access/v1/evaluation`). */
  issuer: string | URL;
  /** The PEP's credentials. */
  pep: PepCredentials;
  /** A whole evaluation (PEP token included) must finish within this, or it is a deny. Milliseconds; default 2000. */
  timeoutMs?: number;
  /**
   * How long a decision is reused, milliseconds; default 2000 — the bound within which Deputy
   * itself applies a revocation made on another instance. 0 disables the cache.
   */
  cacheTtlMs?: number;
  /** Most decisions kept (0: none; concurrent identical evaluations still share one request). Default 1000. */
  cacheSize?: number;
  /**
   * Ask Deputy for a receipt of each decision (`Deputy-Receipt: request`): the decision joins
   * the acting agent's signed hash chain. Such evaluations bypass the cache (each is evidence).
   */
  receipts?: boolean;
  /** `fetch` for every request (default: the global one). */
  fetch?: typeof fetch;
  /** Allow `http:` URLs. For local development and tests only. */
  allowInsecureRequests?: boolean;
}

const AUTHZEN_SCOPE = 'authzen:evaluate';

/**
 * An AuthZEN PEP for Deputy. {@link AuthZenPep.evaluate} never throws: a PDP that cannot be
 * asked is a deny (fail closed).
 */
export class AuthZenPep {
  readonly #endpoint: string;
  readonly #options: AuthZenPepOptions;
  readonly #fetch: typeof fetch;
  /** Decisions by {@link cacheKey} ({@link decisionCache}); undefined when caching is off. */
  readonly #decisions: BoundedReadCache<string, Omit<PepDecision, 'cached'>> | undefined;
  /** The PEP's client-credentials token ({@link pepTokenCache}). */
  readonly #pepToken: BoundedReadCache<'pep', PepToken>;
  #pepConfig: Promise<client.Configuration> | undefined;

  constructor(options: AuthZenPepOptions) {
    this.#options = options;
    this.#endpoint = `${String(options.issuer).replace(/\/+$/, '')}/access/v1/evaluation`;
    this.#fetch = options.fetch ?? fetch;
    this.#pepToken = pepTokenCache(options.timeoutMs ?? 2000);
    this.#decisions = decisionCache(options);
  }

  /**
   * Asks the PDP (or the cache). Deputy evaluates the whole delegation chain when the subject
   * carries an agent token in `properties.token` (README "Delegation chain semantics").
   */
  async evaluate(request: AuthZenEvaluation): Promise<PepDecision> {
    const key = this.#decisions ? cacheKey(request) : '';
    const hit = this.#decisions?.peek(key, Date.now());
    if (hit) return { ...hit.value, cached: true };
    const timeoutMs = this.#options.timeoutMs ?? 2000;
    const signal = AbortSignal.timeout(timeoutMs);
    let decision: Omit<PepDecision, 'cached'>;
    try {
      decision = await abortable(this.#decisions ? this.#shared(key, request, signal) : this.#ask(request, signal), signal);
    } catch (err) {
      const error = signal.aborted ? `no answer from Deputy's PDP within ${timeoutMs} ms` : describe(err);
      return { decision: false, reason: `Deputy's PDP could not be asked: ${error}`, error, cached: false };
    }
    return { ...decision, cached: false };
  }

  /**
   * The decision for `key` through the cache: an identical evaluation's request in flight is
   * joined. That request runs under its initiator's deadline, not this caller's: when it dies of
   * that deadline (its initiator gave up) while this caller still has time, this caller asks on
   * its own — one evaluation's timeout never denies another that could still be answered.
   */
  async #shared(key: string, request: AuthZenEvaluation, signal: AbortSignal): Promise<Omit<PepDecision, 'cached'>> {
    let initiated = false;
    const read = () => {
      initiated = true;
      return this.#ask(request, signal);
    };
    try {
      return await this.#decisions!.get(key, Date.now(), read);
    } catch (err) {
      if (initiated || signal.aborted || !isAbortError(err)) throw err;
      return this.#ask(request, signal);
    }
  }

  async #ask(request: AuthZenEvaluation, signal: AbortSignal, retried = false): Promise<Omit<PepDecision, 'cached'>> {
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
    const token = await this.#token();
    if (token) headers.authorization = `Bearer ${token}`;
    if (this.#options.receipts) headers['deputy-receipt'] = 'request';
    const res = await this.#fetch(this.#endpoint, { method: 'POST', headers, body: JSON.stringify(request), signal });
    const pep = this.#options.pep;
    if (res.status === 401 && !retried && typeof pep === 'object' && 'clientId' in pep) {
      // The PEP token expired or the keys rotated: one fresh token.
      await res.body?.cancel();
      this.#refused(token);
      return this.#ask(request, signal, true);
    }
    const body = await readJson(res);
    if (res.status !== 200) {
      const code = typeof body?.error === 'string' ? `: ${body.error}${typeof body.error_description === 'string' ? ` (${body.error_description})` : ''}` : '';
      throw new Error(`HTTP ${res.status}${code}`);
    }
    if (typeof body?.decision !== 'boolean') throw new Error('the PDP answered without a boolean "decision"');
    return toDecision(body.decision, body.context);
  }

  /**
   * Forgets the PEP token the PDP refused — only if it is still the one cached: when concurrent
   * evaluations are refused together, the first one's fresh token request is shared by the others
   * (forgetting again would detach it, one token request per refused evaluation).
   */
  #refused(token: string | undefined): void {
    // None cached: the next evaluation requests one anyway (or joins the request under way, begun after the drop).
    if (this.#pepToken.peek('pep', Date.now())?.value.value === token) this.#pepToken.invalidate();
  }

  /** The PEP's bearer token: configured, or client credentials (cached until 30 s before expiry; concurrent evaluations share one request). */
  async #token(): Promise<string | undefined> {
    const pep = this.#options.pep;
    if (pep === 'none') return undefined;
    if ('token' in pep) return typeof pep.token === 'function' ? pep.token() : pep.token;
    return (await this.#pepToken.get('pep', Date.now(), () => this.#clientCredentials(pep))).value;
  }

  async #clientCredentials(pep: { clientId: string; privateKey: PrivateKeyInput; algorithm?: SigningAlgorithm; kid?: string }): Promise<PepToken> {
    this.#pepConfig ??= this.#discover(pep).catch((err: unknown) => {
      this.#pepConfig = undefined;
      throw err;
    });
    try {
      const res = await client.clientCredentialsGrant(await this.#pepConfig, { scope: AUTHZEN_SCOPE });
      return { value: res.access_token, expiresIn: res.expires_in ?? 60 };
    } catch (err) {
      throw fromOpenIdClientError(err);
    }
  }

  async #discover(pep: { clientId: string; privateKey: PrivateKeyInput; algorithm?: SigningAlgorithm; kid?: string }): Promise<client.Configuration> {
    const key = await importPrivateKey(pep.privateKey, pep.algorithm);
    const kid = pep.kid ?? key.kid;
    const f = this.#fetch;
    return client.discovery(new URL(this.#options.issuer), pep.clientId, {}, client.PrivateKeyJwt({ key: key.key, ...(kid ? { kid } : {}) }), {
      execute: this.#options.allowInsecureRequests ? [client.allowInsecureRequests] : [],
      [client.customFetch]: (url: string, init: client.CustomFetchOptions) => f(url, init as RequestInit),
      timeout: Math.max(1, Math.ceil((this.#options.timeoutMs ?? 2000) / 1000)),
    });
  }

}

/** A PEP token and its `expires_in` (seconds, RFC 6749 §5.1; 60 when the AS gave none). */
interface PepToken {
  value: string;
  expiresIn: number;
}

/**
 * The PEP token's cache, on the shared single-flight cache (src/util/single-flight.ts): used
 * until 30 s before it expires, counted from the start of its request; dropped when the wall
 * clock steps back to before that start; a failed request is not kept; a request stalled longer
 * than the evaluation timeout (`timeoutMs`: its own callers have given up) is not joined; never
 * used more than an hour.
 */
function pepTokenCache(timeoutMs: number): BoundedReadCache<'pep', PepToken> {
  return new BoundedReadCache<'pep', PepToken>(() => Promise.reject(new TypeError('no PEP credentials')), {
    ttlMs: 3600 * 1000,
    joinWithinMs: timeoutMs,
    maxEntries: 1,
    lifetime: (token, startedAt) => ({ until: startedAt + Math.max(0, token.expiresIn - 30) * 1000, final: false }),
  });
}

/**
 * The PEP's decision cache, on the shared single-flight cache: a decision is reused for
 * `cacheTtlMs` from the start of the request that got it (not its arrival), dropped when the wall
 * clock steps back to before that start; concurrent identical evaluations share one request
 * (joined within `cacheTtlMs`); an error is never kept; at most `cacheSize` decisions (a new one
 * for a full cache evicts the one fetched longest ago; a hit does not make it newer). Off (undefined) when `cacheTtlMs` is 0 or receipts are requested.
 */
function decisionCache(options: AuthZenPepOptions): BoundedReadCache<string, Omit<PepDecision, 'cached'>> | undefined {
  const ttlMs = options.cacheTtlMs ?? 2000;
  if (ttlMs <= 0 || options.receipts) return undefined;
  return new BoundedReadCache<string, Omit<PepDecision, 'cached'>>(() => Promise.reject(new TypeError('no request given')), { ttlMs, maxEntries: options.cacheSize ?? 1000 });
}

/** The PDP's cache key, client side: SHA-256 of the RFC 8785 canonical JSON of the whole request. */
export function cacheKey(request: AuthZenEvaluation): string {
  return createHash('sha256').update(canonicalize(request) ?? '').digest('base64url');
}

function toDecision(decision: boolean, context: unknown): Omit<PepDecision, 'cached'> {
  const ctx = isObject(context) ? context : undefined;
  const receipt = isObject(ctx?.receipt) ? (ctx.receipt as PepDecision['receipt']) : undefined;
  if (decision) return { decision, ...(ctx ? { context: ctx } : {}), ...(receipt ? { receipt } : {}) };
  const reason = textOf(ctx?.reason_admin) ?? textOf(ctx?.reason_user) ?? (typeof ctx?.id === 'string' ? ctx.id : 'denied by policy');
  return { decision, reason, ...(ctx ? { context: ctx } : {}), ...(receipt ? { receipt } : {}) };
}

/** An AuthZEN reason object (`{"en": "…"}`, §6.2.1) as text: English, else the first language. */
function textOf(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (!isObject(v)) return undefined;
  const en = v.en;
  if (typeof en === 'string') return en;
  const first = Object.values(v).find((x) => typeof x === 'string');
  return first as string | undefined;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

async function readJson(res: Response): Promise<Record<string, unknown> | undefined> {
  try {
    const v: unknown = await res.json();
    return isObject(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/** An abort or timeout of a fetch or signal (DOM `AbortError` / `TimeoutError`), whoever's signal it was. */
function isAbortError(err: unknown): boolean {
  const name = (err as { name?: unknown } | null)?.name;
  return name === 'AbortError' || name === 'TimeoutError';
}

/** Settles with `promise`, or rejects when `signal` aborts first (a PEP token request has no signal of its own). */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

/** A short description of a failure, never a token (errors of fetch and openid-client hold none). */
function describe(err: unknown): string {
  if (err instanceof Error) {
    const cause = err.cause instanceof Error ? ` (${err.cause.message})` : '';
    return `${err.message}${cause}`.slice(0, 300);
  }
  return 'unknown error';
}
