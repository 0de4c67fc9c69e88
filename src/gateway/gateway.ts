/**
 * The credential-injecting gateway (DESIGN capability 3, a PEP): `/gw/{connection}/{path…}`,
 * composed of the enforcement pipeline's steps (src/enforcement) and its own (./steps.ts).
 * Each call runs these steps in this order; nothing reaches the upstream before the last:
 *
 * Admission (per request):
 * 1. `refuseOversized` — a declared body over `gateway.maxRequestBytes` is refused (413).
 * 2. `authenticate` — the agent's Deputy token for the audience `{issuer}/gw/{connection}`
 *    (RFC 8707: one resource per connection, so a token for one connection is useless at
 *    another), DPoP-bound, with a proof for this exact method and URL, used once
 *    (RFC 9449 §4.3, §7.1; query and fragment excluded from `htu` by §4.3 step 9, URLs compared
 *    after RFC 3986 normalization). The proof's `jti` is spent whatever happens next (§11.1):
 *    with receipts, in the receipt's transaction (one commit for both); on a refusal before
 *    that, on its own first. With receipts, the proof's signature (a WebCrypto job on libuv's
 *    thread pool) verifies while the call is decided and its receipt signed; nothing is
 *    written, reserved or forwarded before it verified, and a refusal before the receipt waits
 *    for it, so a proof that does not verify gets its 401 on every path and spends nothing.
 *    Server nonces are those of `/token` (one per origin, §8).
 *    401 with a `WWW-Authenticate: DPoP` challenge otherwise.
 * 3. `liveChain` — the token and every token it was exchanged from must be live (the token's own
 *    record answers for the chain, read through the RevocationCache: 2-second bound across
 *    instances, at once for a revocation made here). 401.
 *
 * The call:
 * 1. `spendProofOnRefusal` — any refusal below, before the receipt, spends the proof first.
 * 2. `resolveCall` — the connection (404 when it does not exist), the path, the route's action.
 * 3. `decide` — the {@link GatewayAuthorizer} (scopes/routes, or the PDP) with the chain as subject.
 * 4. `budget` — one request and the route's `cost` (else the connection's `costPerCall`) reserved
 *    on every budget that applies (src/budgets/budgeter.ts `gatewayBudgeter`), once the proof's
 *    signature verified (a hold is a write; no wait when no budget applies); 402 when one cannot
 *    cover it; charged once the response was delivered, released on a refusal or failure.
 * 5. `receipt` — written for the decision (fail closed: no receipt, no call — 503).
 * 6. `refuseDenied` — 403 with the authorizer's reason.
 * 7. `credential` — from the vault (and the downstream AS): 424 with a connect link for a user
 *    who has not connected, 502/504 when a token endpoint fails.
 * 8. `forwardUpstream` — the agent's `Authorization` / `DPoP` and hop-by-hop headers stripped,
 *    the credential injected, bodies streamed both ways (./forward.ts). An upstream 401 means
 *    the credential was refused: cached tokens are dropped and the agent gets 502.
 *
 * @module
 */
import type { ReceiptAppender } from '../audit/index.js';
import {
  authenticate,
  budget,
  credential,
  decide,
  dpopChallenger,
  liveChain,
  Pipeline,
  receipt,
  refuseDenied,
  spendProofOnRefusal,
  type Admission,
  type ProofVerifier,
} from '../enforcement/index.js';
import { gatewayBudgeter, type BudgetLedger } from '../budgets/index.js';
import { unexpectedError, type Logger } from '../log.js';
import { GATEWAY_PREFIX } from '../oauth/deputy-own.js';
import type { RevocationCache } from '../oauth/token-records.js';
import type { CredentialSource } from '../vault/connections/credentials.js';
import type { ConnectionStore } from '../vault/connections/store.js';
import type { GatewayAuthorizer } from './authorizer.js';
import type { Forwarder, UpstreamResponse } from './forward.js';
import { askAuthorizer, forwardUpstream, refuseOversized, resolveCall, type GatewayAction, type GatewayCall, type GatewayRequest } from './steps.js';

/** The gateway's route prefix (defined with Deputy's own resources, src/oauth/deputy-own.ts). */
export { GATEWAY_PREFIX };
export { upstreamPath, type GatewayCall } from './steps.js';

/** A connection's gateway URL, also the audience of tokens for it (RFC 8707): `{issuer}/gw/{connection}` (the issuer without its trailing slash, as config gives it). */
export function gatewayAudience(issuer: string, connectionId: string): string {
  return `${issuer}${GATEWAY_PREFIX}/${connectionId}`;
}

/** What {@link Gateway} composes: the token verifier and records, connections, credential broker, authorizer, receipts and forwarder. */
export interface GatewayDeps {
  issuer: string;
  verifier: ProofVerifier;
  /** Liveness of the token and its lineage, with the token's record (one cached read). */
  revocations: Pick<RevocationCache, 'liveRecord'>;
  connections: ConnectionStore;
  credentials: CredentialSource;
  authorizer: GatewayAuthorizer;
  forwarder: Forwarder;
  logger: Logger;
  /** Receipts (issue 6), one per authorization decision; absent: none written. */
  receipts?: ReceiptAppender;
  upstreamTimeoutMs: number;
  maxRequestBytes: number;
  /** Budgets (src/budgets): one request and the route's cost per call; absent: the empty slot. */
  budgets?: BudgetLedger;
}

/** The HTTP gateway's pipelines: built once, run per call. */
function pipelines(d: GatewayDeps, audienceOf: (connectionId: string) => string) {
  const challenge = dpopChallenger();
  const admit = Pipeline.start<GatewayRequest>()
    .then(refuseOversized(d.maxRequestBytes))
    // With receipts, the proof's signature verifies while the call is decided and its receipt
    // signed (two thread-pool jobs at once, not one after the other): nothing is written or
    // forwarded before it verified (`receipt`, `spendProofOnRefusal`, the budget's hold).
    .then(authenticate({ verifier: d.verifier, deferProofSpend: d.receipts !== undefined, deferProofSignature: true, challenge }))
    .then(liveChain({ revocations: d.revocations, challenge }));
  const call = Pipeline.start<GatewayAction>()
    .then(spendProofOnRefusal({ challenge }))
    .then(resolveCall(d.connections, audienceOf))
    .then(decide(askAuthorizer(d.authorizer)))
    .then(budget(d.budgets ? gatewayBudgeter({ ledger: d.budgets, logger: d.logger, receipts: d.receipts }) : undefined))
    .then(receipt({ receipts: d.receipts, logger: d.logger, challenge }))
    .then(refuseDenied({ logger: d.logger, message: 'gateway call denied' }))
    .then(credential(d.credentials))
    .then(forwardUpstream({ forwarder: d.forwarder, logger: d.logger, upstreamTimeoutMs: d.upstreamTimeoutMs, maxRequestBytes: d.maxRequestBytes, audienceOf }));
  return { admit, call };
}

/** The HTTP gateway: one call in, the upstream's shaped response out (see the module doc). */
export class Gateway {
  readonly #base: string;
  readonly #admit: ReturnType<typeof pipelines>['admit'];
  readonly #call: ReturnType<typeof pipelines>['call'];
  readonly #logger: Logger;

  constructor(deps: GatewayDeps) {
    this.#base = deps.issuer;
    this.#logger = deps.logger;
    ({ admit: this.#admit, call: this.#call } = pipelines(deps, (id) => gatewayAudience(this.#base, id)));
  }

  /** The steps' names in order, admission then call (documentation, tests). */
  get steps(): { admission: string[]; call: string[] } {
    return { admission: this.#admit.names(), call: this.#call.names() };
  }

  /**
   * Runs one call through the steps.
   *
   * @returns the upstream's response, headers shaped and body streaming (redacted, size-limited).
   * @throws DeputyError — 401 (with a DPoP challenge), 403, 404, 413, 424, 502, 503, 504.
   */
  async handle(call: GatewayCall): Promise<UpstreamResponse> {
    const audience = gatewayAudience(this.#base, call.connectionId);
    const admission: Admission = await this.#admit.run({
      audience,
      url: `${audience}${call.path}`,
      method: call.method,
      authorization: headerValue(call.headers.authorization),
      dpopProofs: proofsOf(call.headers.dpop),
      requestId: call.requestId,
      call,
    });
    const done = await this.#call.run({ admission, call }, { onSettleError: this.#settleError });
    return done.response;
  }

  readonly #settleError = (err: unknown, step: string): void => {
    this.#logger.error({ err: unexpectedError(err), step }, 'gateway step could not settle');
  };
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function proofsOf(v: string | string[] | undefined): string[] {
  const values = v === undefined ? [] : Array.isArray(v) ? v : [v];
  return values.flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean);
}
