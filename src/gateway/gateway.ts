/**
 * The credential-injecting gateway (DESIGN capability 3, a PEP): `/gw/{connection}/{path…}`.
 * Each call runs these steps in this order; nothing reaches the upstream before step 7:
 *
 * 1. limits — a declared body over `gateway.maxRequestBytes` is refused (413).
 * 2. authenticate — the agent's Deputy token for the audience `{issuer}/gw/{connection}`
 *    (RFC 8707: one resource per connection, so a token for one connection is useless at
 *    another), DPoP-bound, with a proof for this exact method and URL, used once
 *    (RFC 9449 §4.3, §7.1; query and fragment excluded from `htu` by §4.3 step 9, URLs compared
 *    after RFC 3986 normalization). The proof's `jti` is spent whatever happens next (§11.1):
 *    with receipts, in the receipt's transaction (step 5: one commit for both); on a refusal
 *    before that, on its own first. Server nonces are those of `/token` (one per origin, §8).
 *    401 with a `WWW-Authenticate: DPoP` challenge otherwise.
 * 3. revocation — the token and every token it was exchanged from must be live (the token's own
 *    record answers for the chain, read through the RevocationCache: 2-second bound across
 *    instances, at once for a revocation made here). 401.
 * 4. connection — 404 when it does not exist.
 * 5. authorize — the {@link GatewayAuthorizer} (scopes/routes, or the PDP) with the chain as
 *    subject; 403 with its reason. A receipt is written for the decision (fail closed: no
 *    receipt, no call).
 * 6. credential — from the vault (and the downstream AS): 424 with a connect link for a user who
 *    has not connected, 502/504 when a token endpoint fails.
 * 7. forward — the agent's `Authorization` / `DPoP` and hop-by-hop headers stripped, the
 *    credential injected, bodies streamed both ways (./forward.ts). An upstream 401 means the
 *    credential was refused: cached tokens are dropped and the agent gets 502 (the upstream's
 *    challenge is about Deputy's credential, not the agent's).
 *
 * @module
 */
import type { IncomingHttpHeaders } from 'node:http';
import { PassThrough, pipeline, type Readable } from 'node:stream';
import type { ReceiptAppender } from '../audit/index.js';
import { AlreadyRecorded, receiptText, requestDigest } from '../audit/index.js';
import { AccessDenied, BadGateway, DeputyError, InvalidRequest, InvalidToken, NotFound, PayloadTooLarge, TemporarilyUnavailable } from '../errors/index.js';
import type { Logger } from '../log.js';
import { dpopOnlyChallenge, type AccessTokenVerifier, type AuthenticatedRequest } from '../oauth/access-token.js';
import type { OnceKey } from '../oauth/adapter.js';
import { dpopReplayed } from '../oauth/dpop.js';
import { GATEWAY_PREFIX } from '../oauth/deputy-own.js';
import type { RevocationCache, TokenRecord } from '../oauth/token-records.js';
import type { CallIdentity, CredentialSource } from '../vault/connections/credentials.js';
import type { Connection, ConnectionStore } from '../vault/connections/store.js';
import { actionFor, type GatewayAuthorizer, type GatewayDecision } from './authorizer.js';
import { RequestBodyLimit, upstreamHeaders, type Forwarder, type UpstreamResponse } from './forward.js';

/** The gateway's route prefix (defined with Deputy's own resources, src/oauth/deputy-own.ts). */
export { GATEWAY_PREFIX };

export function gatewayAudience(issuer: string, connectionId: string): string {
  return `${issuer}${GATEWAY_PREFIX}/${connectionId}`;
}

/** One call as the HTTP layer hands it over: plain values and the raw body stream. */
export interface GatewayCall {
  connectionId: string;
  /** The raw (still percent-encoded) path after `/gw/{connection}`: `''` or starting with `/`. */
  path: string;
  /** The raw query string without `?` (may be empty). */
  query: string;
  method: string;
  headers: IncomingHttpHeaders;
  body: Readable | undefined;
  requestId: string;
  /** Aborted when the agent goes away: the upstream request is abandoned too. */
  signal?: AbortSignal;
}

export interface GatewayDeps {
  issuer: string;
  verifier: AccessTokenVerifier;
  /** Liveness of the token and its lineage, with the token's record (one cached read). */
  revocations: RevocationCache;
  connections: ConnectionStore;
  credentials: CredentialSource;
  authorizer: GatewayAuthorizer;
  forwarder: Forwarder;
  logger: Logger;
  /** Receipts (issue 6), one per authorization decision; absent: none written. */
  receipts?: ReceiptAppender;
  upstreamTimeoutMs: number;
  maxRequestBytes: number;
}

const BODYLESS = new Set(['GET', 'HEAD', 'OPTIONS', 'DELETE']);

export class Gateway {
  readonly #d: GatewayDeps;
  readonly #base: string;

  constructor(deps: GatewayDeps) {
    this.#d = deps;
    this.#base = deps.issuer;
  }

  async handle(call: GatewayCall): Promise<UpstreamResponse> {
    const declared = Number(call.headers['content-length'] ?? 0);
    if (declared > this.#d.maxRequestBytes) throw new PayloadTooLarge(this.#d.maxRequestBytes);

    const auth = await this.#authenticate(call);
    const { connection, path, who, action, decision } = await this.#decideSpending(call, auth);
    if (!decision.allowed) {
      this.#d.logger.info({ reqId: call.requestId, connection: connection.id, agent: who.agentId, user: who.userId, action, reason: decision.reason }, 'gateway call denied');
      throw new AccessDenied(decision.reason);
    }

    const credential = await this.#d.credentials.credential(connection, who);
    const url = this.#upstreamUrl(connection, path, call.query, credential.query);
    // pipeline(), not pipe(): an agent that aborts its upload must abort the upstream request too
    // (undestroyed() passes the abort on, but a refused upload leaves the agent's request intact).
    const body = call.body && (!BODYLESS.has(call.method) || declared > 0 || call.headers['transfer-encoding'] !== undefined)
      ? pipeline(undestroyed(call.body), new RequestBodyLimit(this.#d.maxRequestBytes), () => {})
      : undefined;
    if (call.body && !body) call.body.resume();
    const headers = upstreamHeaders(call.headers, credential.headers, {
      'x-request-id': call.requestId,
      ...(declared > 0 ? { 'content-length': String(declared) } : {}),
    });
    const timeoutMs = (connection.settings.timeoutSeconds ?? 0) * 1000 || this.#d.upstreamTimeoutMs;
    const res = await this.#d.forwarder.send({ method: call.method, url, headers, body, headersTimeoutMs: timeoutMs, ...(call.signal ? { signal: call.signal } : {}) });
    if (res.status === 401) {
      res.body?.resume();
      await credential.rejected();
      this.#d.logger.warn({ reqId: call.requestId, connection: connection.id }, 'upstream refused the injected credential');
      throw new BadGateway(`the upstream of connection "${connection.id}" refused Deputy's credential for it`);
    }
    this.#d.logger.info(
      { reqId: call.requestId, connection: connection.id, agent: who.agentId, user: who.userId, chain: who.chain, action, method: call.method, upstreamStatus: res.status },
      'gateway call',
    );
    const base = new URL(connection.settings.baseUrl);
    const gatewayBase = `${gatewayAudience(this.#base, connection.id)}`;
    const shaped = this.#d.forwarder.shape(res, {
      // The header value too (`Bearer <token>`): its encodings differ from the bare secret's.
      secrets: [...credential.secrets, ...credential.headers.map(([, value]) => value)],
      credentialHeaders: credential.headers.map(([n]) => n),
      method: call.method,
      rewriteLocation: (location) => {
        try {
          const target = new URL(location, url);
          const prefix = base.pathname.replace(/\/$/, '');
          if (target.origin !== base.origin || !(target.pathname === prefix || target.pathname.startsWith(`${prefix}/`))) return undefined;
          return `${gatewayBase}${target.pathname.slice(prefix.length)}${target.search}`;
        } catch {
          return undefined;
        }
      },
    });
    // DPoP-Nonce is about Deputy's origin, where the agent's client keeps one nonce (RFC 9449 §8.2,
    // §9): an upstream's own nonce must not reach it; Deputy's fresher one does.
    delete shaped.headers['dpop-nonce'];
    if (auth.dpopNonce !== undefined) shaped.headers['dpop-nonce'] = auth.dpopNonce;
    return shaped;
  }

  async #authenticate(call: GatewayCall): Promise<AuthenticatedRequest> {
    const audience = gatewayAudience(this.#base, call.connectionId);
    const request = {
      authorization: headerValue(call.headers.authorization),
      dpopProofs: proofsOf(call.headers.dpop),
      method: call.method,
      url: `${audience}${call.path}`,
    };
    // With receipts, the proof's jti is spent in the receipt's transaction (#decideSpending).
    const auth = await this.#d.verifier
      .authenticate(request, audience, { deferProofSpend: this.#d.receipts !== undefined })
      .catch((err: unknown) => {
        // The gateway takes DPoP only: its challenge is always DPoP (RFC 9449 §7.1), also when
        // the agent tried the Bearer scheme.
        throw err instanceof DeputyError && err.status === 401 ? challenge(err) : err;
      });
    // Every token Deputy issues to an agent is DPoP-bound; a Bearer token here is not an agent's.
    if (auth.scheme !== 'DPoP') throw challenge(new InvalidToken('the gateway accepts DPoP-bound agent tokens only'));
    return auth;
  }

  /**
   * Steps 3-5 (revocation, connection, authorization, receipt) with the proof's `jti` spent on
   * every path (RFC 9449 §11.1; README "DPoP"): when receipts are written, the spend shares the
   * receipt's transaction — one commit for both, and a replayed proof leaves no receipt;
   * a refusal before the receipt spends it on its own first. Either way a replay is refused as
   * one (401 `invalid_dpop_proof`), whatever else was wrong with the request, as when the
   * proof was spent before anything else was looked at.
   */
  async #decideSpending(call: GatewayCall, auth: AuthenticatedRequest): Promise<{ connection: Connection; path: string; who: CallIdentity; action: string; decision: GatewayDecision }> {
    const unspent = auth.unspentProof;
    let pending = unspent;
    try {
      const record = await this.#liveRecord(auth);
      const connection = await this.#d.connections.get(call.connectionId);
      if (!connection) throw new NotFound(`connection "${call.connectionId}" does not exist`);
      const path = upstreamPath(call.path);
      const who: CallIdentity = {
        userId: record.userId,
        agentId: auth.claims.client_id,
        chain: record.chain,
        tokenJti: record.jti,
        upstreamHandle: record.upstream,
      };
      const action = actionFor(connection, call.method, path);
      const decision = await this.#d.authorizer.authorize({
        subject: { userId: record.userId, userAttrs: record.userAttrs, chain: record.chain, agentId: who.agentId, scopes: auth.scopes, token: auth.token, jti: record.jti },
        action: { name: action.name, method: call.method, path, route: action.route },
        resource: { type: 'connection', id: connection.id, kind: connection.kind, connection },
      });
      pending = undefined; // from here on the receipt's transaction spends it, or nothing does
      await this.#receipt(call, connection, who, action.name, path, auth, decision, unspent);
      return { connection, path, who, action: action.name, decision };
    } catch (err) {
      if (pending) await this.#d.verifier.spendProof(pending).catch((spendErr: unknown) => {
        throw spendErr instanceof DeputyError && spendErr.status === 401 ? challenge(spendErr) : spendErr;
      });
      throw err;
    }
  }

  /**
   * The token's record, live: the revocation cache's answer (a revocation through this instance
   * at once, through another within its 2-second bound; README "Configuration").
   */
  async #liveRecord(auth: AuthenticatedRequest): Promise<TokenRecord> {
    const record = await this.#d.revocations.liveRecord(auth.claims.jti!);
    if (!record) throw challenge(new InvalidToken('the access token, or a token it was delegated from, has been revoked'));
    return record;
  }

  /** `{baseUrl}{path}?{agent's query minus injected names}&{injected}`. */
  #upstreamUrl(connection: Connection, path: string, query: string, inject: ReadonlyArray<readonly [string, string]>): URL {
    const base = new URL(connection.settings.baseUrl);
    const url = new URL(base.href);
    url.pathname = `${base.pathname.replace(/\/$/, '')}${path}`;
    const params = new URLSearchParams(query);
    for (const [name] of inject) params.delete(name);
    for (const [name, value] of inject) params.append(name, value);
    const search = params.toString();
    url.search = search ? `?${search}` : '';
    // Belt and braces after upstreamPath(): the result must stay under the base.
    if (url.origin !== base.origin || !url.pathname.startsWith(base.pathname.replace(/\/$/, ''))) throw new InvalidRequest('the path leaves the connection\'s base URL');
    return url;
  }

  /**
   * The decision's receipt, written before anything reaches the upstream (fail closed: no
   * receipt, no call — 503). With `unspent`, the proof's `jti` is recorded in the same
   * transaction; a replay writes nothing and is 401 `invalid_dpop_proof`.
   */
  async #receipt(call: GatewayCall, connection: Connection, who: CallIdentity, action: string, path: string, auth: AuthenticatedRequest, decision: GatewayDecision, unspent: OnceKey | undefined): Promise<void> {
    const receipts = this.#d.receipts;
    if (!receipts) return;
    const input = {
      agent: who.agentId,
      user: who.userId,
      chain: who.chain,
      event: 'gateway_call' as const,
      action,
      resource: receiptText(`${gatewayAudience(this.#base, connection.id)}${path}`),
      decision: decision.allowed ? ('permit' as const) : ('deny' as const),
      ...(decision.allowed ? {} : { reason: decision.reason }),
      scope: [...auth.scopes].join(' '),
      requestId: call.requestId,
      requestDigest: requestDigest({ method: call.method, connection: connection.id, path, query: call.query }),
      tokenId: who.tokenJti,
    };
    try {
      if (unspent && receipts.appendOnce) {
        await receipts.appendOnce(input, unspent);
      } else {
        if (unspent) await this.#d.verifier.spendProof(unspent);
        await receipts.append(input);
      }
    } catch (cause) {
      if (cause instanceof AlreadyRecorded || (cause instanceof DeputyError && cause.code === 'invalid_dpop_proof')) throw challenge(dpopReplayed());
      this.#d.logger.error({ err: cause, reqId: call.requestId }, 'gateway receipt could not be written');
      // Not written, so not spent either: spend the proof on its own if the store lets us.
      if (unspent) await this.#d.verifier.spendProof(unspent).catch(() => {});
      throw new TemporarilyUnavailable('the call could not be recorded; it was not forwarded', { cause });
    }
  }
}

/**
 * The path below the base: `''` → `/`; dot segments (also percent-encoded) and backslashes are
 * refused rather than resolved, so no spelling of `..` can leave the base path (RFC 3986 §5.2.4
 * would resolve them upstream, after Deputy's policy decision).
 */
export function upstreamPath(raw: string): string {
  const path = raw === '' ? '/' : raw;
  if (!path.startsWith('/')) throw new InvalidRequest('malformed gateway path');
  if (/\\|%5c|%00/i.test(path)) throw new InvalidRequest('backslashes and NUL are not allowed in gateway paths');
  let decoded: string;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    throw new InvalidRequest('malformed percent-encoding in the gateway path');
  }
  // Checked on the decoded path: an upstream that decodes `%2F` before resolving must not be
  // able to turn `..%2F` into a step up. Encoded slashes themselves stay allowed (GitLab ids).
  if (decoded.split(/[/\\]/).some((s) => s === '.' || s === '..')) throw new InvalidRequest('dot segments are not allowed in gateway paths');
  return path;
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function proofsOf(v: string | string[] | undefined): string[] {
  const values = v === undefined ? [] : Array.isArray(v) ? v : [v];
  return values.flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean);
}

/** RFC 9449 §7.1: 401s carry a DPoP challenge, naming the error when credentials were sent. */
const challenge = dpopOnlyChallenge;

/**
 * `body` as a stream pipeline() may destroy without destroying `body` itself: an upload refused
 * part-way (413) or an upstream that fails must not destroy the agent's request, whose socket
 * still has to carry the error response (the rest of the body is drained by the HTTP layer).
 * An agent that aborts its upload still errors the stream, so the upstream request is aborted.
 */
function undestroyed(body: Readable): Readable {
  const copy = new PassThrough();
  body.pipe(copy); // pipe(), not pipeline(): destroying `copy` only unpipes `body`
  const abort = () => {
    if (!body.readableEnded) copy.destroy(new Error('the agent aborted its upload'));
  };
  body.once('error', abort);
  body.once('close', abort);
  copy.once('close', () => {
    body.off('error', abort);
    body.off('close', abort);
  });
  return copy;
}
