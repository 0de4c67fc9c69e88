/**
 * `DeputyAgent`: an AI agent's client of Deputy, built on openid-client (discovery,
 * `private_key_jwt`, the token endpoint, DPoP proofs and nonces, revocation) and jose (keys,
 * actor tokens). It does what the README's token-exchange section shows step by step:
 *
 * - RFC 8693 token exchange of a user's token (any subject token type) for a DPoP-bound agent
 *   token (RFC 9449), with a DPoP key the agent generates (non-extractable) or is given;
 * - handoff to a sub-agent (`audience=urn:deputy:agent:{id}`, `may_act`, RFC 8693 §4.4) and the
 *   sub-agent's exchange of what it was handed;
 * - re-exchange before a token expires (configurable skew), so callers never see an expired one;
 * - `fetch`: a WHATWG `fetch` that sends `Authorization: DPoP` and a fresh proof (`htm`, `htu`,
 *   `ath`), answering a `use_dpop_nonce` challenge once (RFC 9449 §8, §9) — the request body is
 *   buffered first so it can be sent again;
 * - `dispose()`: revokes every token it obtained (RFC 7009; Deputy cascades to what was
 *   delegated from them).
 *
 * @module
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import { calculateJwkThumbprint, decodeJwt, SignJWT } from 'jose';
import * as client from 'openid-client';
import { BoundedReadCache } from '../util/single-flight.js';
import { DeputyAgentError, deputyErrorFromResponse, fromOpenIdClientError, type DeputyProtocolError } from './errors.js';
import { dpopKeyPair, importPrivateKey, publicJwkOf, type DpopKeyInput, type ImportedKey, type PrivateKeyInput, type SigningAlgorithm } from './keys.js';

/** RFC 8693 §2.1 grant type. */
export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
/** RFC 8693 §3 token type URNs are `TOKEN_TYPE_PREFIX` + `access_token`, `id_token`, `jwt`, … */
export const TOKEN_TYPE_PREFIX = 'urn:ietf:params:oauth:token-type:';
const ACCESS_TOKEN_TYPE = `${TOKEN_TYPE_PREFIX}access_token`;

/** Options of {@link DeputyAgent.create}. */
export interface DeputyAgentOptions {
  /** Deputy's issuer URL (discovery: `<issuer>/.well-known/openid-configuration`). */
  issuer: string | URL;
  /** The agent's registered client id. */
  clientId: string;
  /** The agent's registered private key (JWK, `KeyObject` or `CryptoKey`), for `private_key_jwt`. */
  privateKey: PrivateKeyInput;
  /** Algorithm of `privateKey` when it cannot be told from the key (RSA: `RS256` or `PS256`). */
  algorithm?: SigningAlgorithm;
  /** `kid` of `privateKey` in the agent's registered JWKS (default: the JWK's `kid`, if any). */
  kid?: string;
  /**
   * Client authentication at `/token` and `/revoke`: `private_key_jwt` (RFC 7523 §2.2; the
   * default, and the only method Deputy accepts) or any openid-client `ClientAuth`.
   */
  clientAuth?: 'private_key_jwt' | client.ClientAuth;
  /** The DPoP key: a WebCrypto key pair or a private JWK. Default: a fresh non-extractable ES256 key. */
  dpopKey?: DpopKeyInput;
  /** Algorithm of a generated DPoP key. Default `ES256`. */
  dpopAlgorithm?: SigningAlgorithm;
  /** Re-exchange a token this many seconds before it expires. Default 30 (at most half a token's lifetime). */
  refreshSkewSeconds?: number;
  /**
   * Buffered request bodies larger than this (bytes) are refused with
   * `ERR_DEPUTY_BODY_TOO_LARGE`. A body is buffered so that a `use_dpop_nonce` challenge can be
   * answered by sending it again. Default 16 MiB.
   */
  maxBufferedBodyBytes?: number;
  /** Timeout of requests to Deputy's own endpoints (`/token`, `/revoke`, discovery), seconds. Default 30. */
  timeoutSeconds?: number;
  /** `fetch` used for every request (default: the global one). */
  fetch?: typeof fetch;
  /** Allow `http:` URLs. For local development and tests only. */
  allowInsecureRequests?: boolean;
  /**
   * Called with the typed error whenever a gateway answers {@link DeputyAgent.fetch} with one of
   * Deputy's refusals (401, 402, 403, 424; see `deputyErrorOf`). SDKs that wrap `fetch` keep
   * only part of an error body (`openai`'s `APIError.error` is the body's `error` member alone,
   * so a 402 problem's details are lost): this sees all of it.
   */
  onDeputyError?: (error: DeputyProtocolError, request: Request) => void;
}

/**
 * A subject token: the value, or a function returning a current one (called again at every
 * re-exchange, e.g. to read the user's latest token from the session).
 */
export type SubjectTokenSource = string | (() => string | Promise<string>);

/** What a sub-agent needs to exchange a handoff: JSON-serialisable, passed to it by any means. */
export interface DeputyHandoff {
  /** Deputy's issuer. */
  issuer: string;
  /** The agent that handed off. */
  from: string;
  /** The agent that may exchange it (`may_act.sub`). */
  to: string;
  /** The handoff token (bound to `from`'s DPoP key, `aud = urn:deputy:agent:{to}`). */
  subject_token: string;
  /** Always the access-token URN (RFC 8693 §3). */
  subject_token_type: string;
  /** Expiry, seconds since the epoch: the sub-agent must exchange it before then. */
  expires_at: number;
}

/** Parameters of a token exchange (RFC 8693 §2.1). */
export interface ExchangeRequest {
  /** The user's token (IdP access or ID token, or a Deputy agent token), or a source of current ones. */
  subjectToken?: SubjectTokenSource;
  /**
   * Its type: a full URN, or its last part (`access_token`, `id_token`, `jwt`, …).
   * Default `access_token`.
   */
  subjectTokenType?: string;
  /** A handoff from another agent (instead of `subjectToken`), or a function returning a current one. */
  handoff?: DeputyHandoff | (() => DeputyHandoff | Promise<DeputyHandoff>);
  /** RFC 8707 resource, e.g. a gateway connection `<issuer>/gw/{connection}`. */
  resource?: string;
  /** RFC 8693 logical audience (e.g. `urn:deputy:agent:{id}`). */
  audience?: string;
  /** Requested scopes (space-separated or a list); Deputy only ever narrows them. */
  scope?: string | readonly string[];
  /** Also send an `actor_token`: a short-lived JWT signed with the client key (Deputy's RFC 8693 actor form). */
  actorToken?: boolean;
}

interface IssuedToken {
  value: string;
  /** Milliseconds since the epoch. */
  expiresAt: number;
}

/** A token a {@link DelegatedToken} holds, and when to re-exchange it (epoch ms). */
type Issued = IssuedToken & { scope: string[]; audience: string; refreshAt: number };

/** What a {@link DelegatedToken} needs from its agent (kept off the agent's public API). */
interface AgentSession {
  readonly issuer: string;
  readonly clientId: string;
  /** One token-endpoint exchange; the issued token is remembered for `dispose()`. */
  grant(params: URLSearchParams, actorToken: boolean): Promise<IssuedToken & { scope: string[]; audience: string }>;
  /** A resource request with the token's DPoP proof; a 401 challenge is returned as its response. */
  protectedRequest(token: string, request: Request): Promise<Response>;
}

/** Context of one resource request, read by the resource configuration's fetch. */
const callContext = new AsyncLocalStorage<{ signal: AbortSignal | null }>();

/**
 * An agent's client of Deputy. Create with {@link DeputyAgent.create}; every method is safe to
 * call concurrently. `fetch` and `request` are bound: pass them as they are.
 *
 * @example
 * ```ts
 * const agent = await DeputyAgent.create({ issuer, clientId: 'travel-agent', privateKey: jwk });
 * await agent.exchange({ subjectToken: userToken, resource: `${issuer}/gw/crm`, scope: 'crm.read' });
 * const res = await agent.fetch(`${issuer}/gw/crm/customers/42`);
 * ```
 */
export class DeputyAgent {
  readonly #config: client.Configuration;
  readonly #resourceConfig: client.Configuration;
  readonly #dpop: client.DPoPHandle;
  readonly #clientKey: ImportedKey;
  readonly #skewMs: number;
  readonly #maxBody: number;
  readonly #onDeputyError: ((error: DeputyProtocolError, request: Request) => void) | undefined;
  readonly #tokens: DelegatedToken[] = [];
  readonly #issued: IssuedToken[] = [];
  readonly #session: AgentSession;
  #disposed = false;

  private constructor(
    /** Deputy's issuer, as discovered. */
    readonly issuer: string,
    /** The agent's client id. */
    readonly clientId: string,
    /** RFC 7638 thumbprint of the DPoP public key: every token's `cnf.jkt`. */
    readonly dpopThumbprint: string,
    parts: {
      config: client.Configuration;
      resourceConfig: client.Configuration;
      dpop: client.DPoPHandle;
      clientKey: ImportedKey;
      skewMs: number;
      maxBody: number;
      onDeputyError: ((error: DeputyProtocolError, request: Request) => void) | undefined;
    },
  ) {
    this.#config = parts.config;
    this.#resourceConfig = parts.resourceConfig;
    this.#dpop = parts.dpop;
    this.#clientKey = parts.clientKey;
    this.#skewMs = parts.skewMs;
    this.#maxBody = parts.maxBody;
    this.#onDeputyError = parts.onDeputyError;
    this.#session = {
      issuer,
      clientId,
      grant: (params, actorToken) => this.#grant(params, actorToken),
      protectedRequest: (token, request) => this.#protectedRequest(token, request),
    };
  }

  /**
   * Discovers Deputy, imports the keys and returns a ready agent (no token yet).
   *
   * @throws DeputyAgentError `ERR_DEPUTY_INVALID_KEY` for an unusable key; openid-client's
   *   errors (and the platform's `TypeError`) when discovery fails.
   */
  static async create(options: DeputyAgentOptions): Promise<DeputyAgent> {
    const clientKey = await importPrivateKey(options.privateKey, options.algorithm);
    const kid = options.kid ?? clientKey.kid;
    if (kid) clientKey.kid = kid;
    const auth = options.clientAuth === undefined || options.clientAuth === 'private_key_jwt' ? client.PrivateKeyJwt({ key: clientKey.key, ...(kid ? { kid } : {}) }) : options.clientAuth;
    const baseFetch = options.fetch ?? fetch;
    const execute = options.allowInsecureRequests ? [client.allowInsecureRequests] : [];
    const config = await client.discovery(new URL(options.issuer), options.clientId, {}, auth, {
      execute,
      [client.customFetch]: (url: string, init: client.CustomFetchOptions) => baseFetch(url, init as RequestInit),
      ...(options.timeoutSeconds !== undefined ? { timeout: options.timeoutSeconds } : {}),
    });
    // Resource requests get their own configuration: openid-client would bound them by its
    // request timeout, but a gateway call (an LLM stream) lasts as long as the caller's signal says.
    const resourceConfig = new client.Configuration(config.serverMetadata(), options.clientId, {}, auth);
    for (const e of execute) e(resourceConfig);
    resourceConfig[client.customFetch] = (url, init) => baseFetch(url, { ...(init as RequestInit), signal: callContext.getStore()?.signal ?? null });
    const keys = await dpopKeyPair(options.dpopKey, options.dpopAlgorithm);
    const dpop = client.getDPoPHandle(config, keys);
    const jkt = await calculateJwkThumbprint(await publicJwkOf(keys));
    const skewMs = Math.max(0, options.refreshSkewSeconds ?? 30) * 1000;
    const maxBody = options.maxBufferedBodyBytes ?? 16 * 1024 * 1024;
    return new DeputyAgent(config.serverMetadata().issuer, options.clientId, jkt, { config, resourceConfig, dpop, clientKey, skewMs, maxBody, onDeputyError: options.onDeputyError });
  }

  /** The tokens this agent holds (the newest per audience), most recent first. */
  get tokens(): readonly DelegatedToken[] {
    return [...this.#tokens].reverse();
  }

  /**
   * Exchanges a user's token (or a handoff) for a DPoP-bound agent token (RFC 8693 §2), and keeps
   * it: {@link fetch} uses it for URLs under its audience, and it is re-exchanged before it expires.
   *
   * @throws DeputyProtocolError with Deputy's code: `invalid_grant` (expired, revoked or
   *   foreign subject token), `invalid_client` (unknown agent or wrong key), `invalid_target`,
   *   `invalid_scope`, `unauthorized_client` (policy refused the delegation), …
   * @throws DeputyAgentError `ERR_DEPUTY_DISPOSED` after {@link dispose}.
   */
  async exchange(request: ExchangeRequest): Promise<DelegatedToken> {
    this.#assertLive();
    if ((request.subjectToken === undefined) === (request.handoff === undefined)) {
      throw new TypeError('exchange needs exactly one of "subjectToken" and "handoff"');
    }
    const token = new DelegatedToken(this.#session, request, this.#skewMs);
    await token.accessToken();
    // fetch() uses the newest token of an audience: an older one stays usable through the
    // DelegatedToken its caller holds, and revocable by dispose(), but the agent lets go of it.
    const kept = this.#tokens.filter((t) => t.audience !== token.audience);
    this.#tokens.splice(0, this.#tokens.length, ...kept, token);
    return token;
  }

  /**
   * The held token for a URL: the one whose audience is the URL or a path prefix of it (the
   * most specific; the most recent among equals).
   *
   * @throws DeputyAgentError `ERR_DEPUTY_NO_TOKEN` when none is.
   */
  tokenFor(url: string | URL): DelegatedToken {
    const target = new URL(url);
    const href = `${target.origin}${target.pathname}`;
    let best: DelegatedToken | undefined;
    for (const t of this.#tokens) {
      const aud = t.audience.replace(/\/+$/, '');
      const matches = href === aud || href.startsWith(`${aud}/`);
      if (matches && (!best || aud.length >= best.audience.replace(/\/+$/, '').length)) best = t;
    }
    if (!best) throw new DeputyAgentError('ERR_DEPUTY_NO_TOKEN', `no token for ${target.origin}${target.pathname}: exchange one with resource set to its gateway connection`);
    return best;
  }

  /**
   * A WHATWG `fetch` for Deputy's gateways: adds `Authorization: DPoP <token>` and a fresh DPoP
   * proof for the token held for the URL ({@link tokenFor}), re-exchanging it first if it is
   * about to expire. HTTP errors are responses, as with `fetch`; see {@link request} for typed
   * errors. Redirects are not followed (each URL needs its own proof).
   *
   * @throws DeputyAgentError `ERR_DEPUTY_NO_TOKEN`, `ERR_DEPUTY_BODY_TOO_LARGE`, `ERR_DEPUTY_DISPOSED`
   * @throws DeputyProtocolError when a needed re-exchange is refused.
   */
  readonly fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    this.#assertLive();
    const request = toRequest(input, init);
    return this.tokenFor(request.url).send(request);
  };

  /**
   * {@link fetch}, throwing Deputy's refusals as typed errors (see `deputyErrorOf`): 401 →
   * `DeputyProtocolError` (`invalid_token`, …), 402 → `BudgetExceededError`, 403 →
   * `PolicyDeniedError`, 424 → `DeputyProtocolError` (`connection_required`). Upstream errors
   * are returned as responses.
   */
  readonly request = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const res = await this.fetch(input, init);
    const err = await deputyErrorFromResponse(res);
    if (err) {
      await res.body?.cancel();
      throw err;
    }
    return res;
  };

  /**
   * A handoff to another agent from the token held for `from` (or the only token held).
   * See {@link DelegatedToken.handoff}.
   */
  async handoff(to: string, options: { from?: string | URL; scope?: string | readonly string[] } = {}): Promise<DeputyHandoff> {
    this.#assertLive();
    const from = options.from !== undefined ? this.tokenFor(options.from) : this.#only();
    return from.handoff(to, options);
  }

  /**
   * The current access token for `resource` (or the only one held), re-exchanged if due. For
   * PEPs that take the token itself, such as `DeputyPolicyBackend`.
   */
  async token(resource?: string | URL): Promise<string> {
    this.#assertLive();
    return (resource !== undefined ? this.tokenFor(resource) : this.#only()).accessToken();
  }

  /**
   * Revokes every token this agent obtained that has not expired (RFC 7009) — Deputy cascades
   * to everything delegated from them, handoffs included — and refuses further use.
   *
   * @throws AggregateError of the revocations that failed (after trying all).
   */
  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    const now = Date.now();
    const live = this.#issued.filter((t) => t.expiresAt > now);
    const results = await Promise.allSettled(live.map((t) => this.#revoke(t.value)));
    const failed = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    if (failed.length > 0) throw new AggregateError(failed, `${failed.length} of ${live.length} tokens could not be revoked`);
  }

  /** Revokes one token (RFC 7009). @internal */
  async #revoke(token: string): Promise<void> {
    try {
      await client.tokenRevocation(this.#config, token);
    } catch (err) {
      throw fromOpenIdClientError(err);
    }
  }

  #only(): DelegatedToken {
    const distinct = new Set(this.#tokens.map((t) => t.audience));
    if (distinct.size !== 1) throw new DeputyAgentError('ERR_DEPUTY_NO_TOKEN', distinct.size === 0 ? 'no token: call exchange() first' : 'several tokens are held: name the resource');
    return this.#tokens.at(-1)!;
  }

  #assertLive(): void {
    if (this.#disposed) throw new DeputyAgentError('ERR_DEPUTY_DISPOSED', 'this agent was disposed');
  }

  /**
   * One token-endpoint exchange with the agent's client authentication and DPoP handle
   * (openid-client retries once on `use_dpop_nonce`).
   */
  async #grant(params: URLSearchParams, actorToken: boolean): Promise<IssuedToken & { scope: string[]; audience: string }> {
    this.#assertLive();
    if (actorToken) {
      params.set('actor_token', await this.#actorToken());
      params.set('actor_token_type', `${TOKEN_TYPE_PREFIX}jwt`);
    }
    let res: client.TokenEndpointResponse;
    try {
      res = await client.genericGrantRequest(this.#config, TOKEN_EXCHANGE_GRANT, params, { DPoP: this.#dpop });
    } catch (err) {
      throw fromOpenIdClientError(err);
    }
    const claims = decodeJwt(res.access_token);
    const expiresAt = typeof claims.exp === 'number' ? claims.exp * 1000 : Date.now() + (res.expires_in ?? 60) * 1000;
    const audience = Array.isArray(claims.aud) ? claims.aud[0] : claims.aud;
    if (typeof audience !== 'string') throw new DeputyAgentError('ERR_DEPUTY_INVALID_RESPONSE', 'the issued token names no audience');
    const issued = { value: res.access_token, expiresAt };
    if (this.#disposed) {
      // dispose() ran while this exchange was in flight: the new token must not outlive it.
      await this.#revoke(issued.value).catch(() => undefined);
      throw new DeputyAgentError('ERR_DEPUTY_DISPOSED', 'this agent was disposed');
    }
    // Expired tokens need no revocation: forget them, so a long-lived agent's list stays short.
    const now = Date.now();
    const live = this.#issued.filter((t) => t.expiresAt > now);
    this.#issued.splice(0, this.#issued.length, ...live, issued);
    return { ...issued, audience, scope: (res.scope ?? '').split(' ').filter(Boolean) };
  }

  /** A resource request with the token's DPoP proof; a challenge is returned as its response. */
  async #protectedRequest(token: string, request: Request): Promise<Response> {
    const body = request.body ? await readBody(request.body, this.#maxBody) : null;
    const headers = new Headers(request.headers);
    headers.delete('authorization');
    headers.delete('dpop');
    const res = await callContext.run({ signal: request.signal }, async () => {
      try {
        return await client.fetchProtectedResource(this.#resourceConfig, token, new URL(request.url), request.method, body, headers, { DPoP: this.#dpop });
      } catch (err) {
        // openid-client throws on a 401 challenge (after answering use_dpop_nonce once): give the
        // caller the response, as fetch would.
        if (err instanceof client.WWWAuthenticateChallengeError) return err.response;
        throw err;
      }
    });
    if (this.#onDeputyError) {
      const refusal = await deputyErrorFromResponse(res);
      if (refusal) this.#onDeputyError(refusal, request);
    }
    return res;
  }

  /** Deputy's actor token: `iss` = `sub` = the client id, `aud` = the issuer, single use, 60 s. */
  #actorToken(): Promise<string> {
    const { key, alg, kid } = this.#clientKey;
    return new SignJWT({ jti: randomUUID() })
      .setProtectedHeader({ alg, ...(kid ? { kid } : {}) })
      .setIssuer(this.clientId)
      .setSubject(this.clientId)
      .setAudience(this.issuer)
      .setIssuedAt()
      .setExpirationTime('60s')
      .sign(key);
  }
}

/**
 * One delegated token the agent holds: for one audience, re-exchanged from its subject (the
 * user's token or a handoff) before it expires.
 */
export class DelegatedToken {
  /** The latest token issued (its audience, scope and expiry stay readable once it is due). */
  #current: Issued | undefined;
  /**
   * The token in use, on the one single-flight cache (src/util/single-flight.ts): concurrent
   * callers share one re-exchange, a failed one is not kept (the next call exchanges again), and
   * a wall clock stepped back to before the exchange began re-exchanges rather than keeping the
   * token until Deputy refuses it (its refresh time was reckoned with the clock of then).
   */
  readonly #token: BoundedReadCache<'token', Issued>;

  /** @internal use {@link DeputyAgent.exchange} */
  constructor(
    private readonly agent: AgentSession,
    readonly request: Readonly<ExchangeRequest>,
    readonly skewMs: number,
  ) {
    this.#token = new BoundedReadCache<'token', Issued>(() => this.#exchange(), {
      ttlMs: Number.POSITIVE_INFINITY,
      maxEntries: 1,
      lifetime: (issued) => ({ until: issued.refreshAt, final: false }),
    });
  }

  /** The token's audience (`aud`): the gateway connection URL or other resource. */
  get audience(): string {
    return this.#current?.audience ?? '';
  }

  /** Scopes granted (never more than requested). */
  get scope(): readonly string[] {
    return this.#current?.scope ?? [];
  }

  /** When the current token expires. */
  get expiresAt(): Date {
    return new Date(this.#current?.expiresAt ?? 0);
  }

  /**
   * The current access token, re-exchanged first when it expires within the skew (at most half
   * its lifetime). Concurrent callers share one re-exchange.
   *
   * @throws DeputyProtocolError when the re-exchange is refused (e.g. `invalid_grant`: the
   *   user's token or the handoff expired, or something up the chain was revoked).
   */
  async accessToken(): Promise<string> {
    return (await this.#token.get('token')).value;
  }

  /** {@link DeputyAgent.fetch} with this token, whatever the URL. */
  readonly fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => this.send(toRequest(input, init));

  /** Sends a request with this token (what {@link DeputyAgent.fetch} does once it has chosen the token). */
  async send(request: Request): Promise<Response> {
    return this.agent.protectedRequest(await this.accessToken(), request);
  }

  /**
   * Hands off to another agent (Deputy's handoff pattern, README "Sub-delegation"): exchanges
   * this token for one with `audience=urn:deputy:agent:{to}`, bound to this agent's DPoP key and
   * carrying `may_act: {sub: to}`, which only `to` can exchange. The holder must list that
   * audience (or `urn:deputy:agent:*`) among its allowed audiences.
   *
   * @param options.scope what to pass on (default: what Deputy allows, never more than this token).
   * @throws DeputyProtocolError (`invalid_target` when the audience is not allowed, …)
   */
  async handoff(to: string, options: { scope?: string | readonly string[] } = {}): Promise<DeputyHandoff> {
    const params = exchangeParams({ subject_token: await this.accessToken(), subject_token_type: ACCESS_TOKEN_TYPE, audience: `urn:deputy:agent:${to}`, scope: options.scope });
    const issued = await this.agent.grant(params, false);
    return { issuer: this.agent.issuer, from: this.agent.clientId, to, subject_token: issued.value, subject_token_type: ACCESS_TOKEN_TYPE, expires_at: Math.floor(issued.expiresAt / 1000) };
  }

  async #exchange(): Promise<Issued> {
    const r = this.request;
    let subject: string;
    let type: string;
    if (r.handoff !== undefined) {
      const h = typeof r.handoff === 'function' ? await r.handoff() : r.handoff;
      subject = h.subject_token;
      type = h.subject_token_type;
    } else {
      subject = typeof r.subjectToken === 'function' ? await r.subjectToken() : r.subjectToken!;
      type = tokenTypeUrn(r.subjectTokenType ?? 'access_token');
    }
    const params = exchangeParams({ subject_token: subject, subject_token_type: type, resource: r.resource, audience: r.audience, scope: r.scope });
    const issued = await this.agent.grant(params, r.actorToken === true);
    // The skew is at most half the lifetime, so a short-lived token is not re-exchanged on every use.
    const lifetime = issued.expiresAt - Date.now();
    this.#current = { ...issued, refreshAt: issued.expiresAt - Math.min(this.skewMs, lifetime / 2) };
    return this.#current;
  }
}

/** A token type URN (RFC 8693 §3) from its URN or its last part. */
function tokenTypeUrn(type: string): string {
  return type.includes(':') ? type : `${TOKEN_TYPE_PREFIX}${type}`;
}

function exchangeParams(p: { subject_token: string; subject_token_type: string; resource?: string | undefined; audience?: string | undefined; scope?: string | readonly string[] | undefined }): URLSearchParams {
  const params = new URLSearchParams({ subject_token: p.subject_token, subject_token_type: p.subject_token_type });
  if (p.resource) params.set('resource', p.resource);
  if (p.audience) params.set('audience', p.audience);
  const scope = typeof p.scope === 'string' ? p.scope : p.scope?.join(' ');
  if (scope) params.set('scope', scope);
  return params;
}

/** A `Request` from `fetch`'s arguments; a stream body gets `duplex: 'half'` as undici requires. */
function toRequest(input: string | URL | Request, init?: RequestInit): Request {
  const streamed = init?.body instanceof ReadableStream;
  return new Request(input, streamed ? ({ ...init, duplex: 'half' } as RequestInit) : init);
}

/** Reads a body to the end, refusing more than `limit` bytes. */
async function readBody(stream: ReadableStream<Uint8Array>, limit: number): Promise<Uint8Array> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limit) {
      await reader.cancel();
      throw new DeputyAgentError('ERR_DEPUTY_BODY_TOO_LARGE', `request body over ${limit} bytes: it is buffered to answer a DPoP nonce challenge; raise maxBufferedBodyBytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}
