/**
 * The context that flows through the enforcement steps, in two layers:
 *
 * - an {@link Admission} per HTTP request: who is calling — the DPoP-bound token, verified, its
 *   proof's replay key while unspent, and the live delegation chain behind it;
 * - an {@link ActionContext} per action decided (a gateway call, one MCP JSON-RPC message, one
 *   LLM request) pointing at its admission: one authentication serves every message of a batch.
 *
 * Each step's contract names the fields it reads and the ones it adds; the interfaces below
 * are those additions, so a PEP's context type is their intersection.
 *
 * @module
 */
import type { DeputyError } from '../errors/index.js';
import type { AuthenticatedRequest, ResourceRequest } from '../oauth/access-token.js';
import type { OnceKey } from '../oauth/adapter.js';
import type { TokenRecord } from '../oauth/token-records.js';
import type { DigestValue } from '../audit/digest.js';
import type { ReceiptEvent, ReceiptInput } from '../audit/receipt.js';
import type { Connection } from '../vault/connections/store.js';

/**
 * One request to a protected resource as a PEP hands it over: plain values, no framework.
 * `url` is the resource URL the DPoP proof's `htu` must match (RFC 9449 §4.3: no query).
 */
export interface PepRequest extends ResourceRequest {
  /** The token's required audience: the protected resource's identifier (RFC 8707). */
  audience: string;
  /** The request's `X-Request-ID` (logs, receipts, the upstream request). */
  requestId: string;
  /** Aborted when the agent goes away: upstream work is abandoned too. */
  signal?: AbortSignal;
}

/**
 * The DPoP proof's replay key (RFC 9449 §11.1) while nothing has spent it: the first receipt
 * spends it in its own transaction ({@link take}); a refusal before that spends it on its own
 * ({@link spendIfPending}). Spent exactly once either way.
 */
export class PendingProof {
  #key: OnceKey | undefined;
  readonly #spend: (key: OnceKey) => Promise<void>;
  /**
   * The spend {@link spendIfPending} started: a later caller waits for it (and gets its replay
   * error), so nothing proceeds as if the proof were spent before it is (the MCP gateway's
   * end-of-response spend racing a message's receipt step).
   */
  #spending: Promise<void> | undefined;
  readonly #verified: Promise<void>;

  /**
   * @param key - the unspent key (`AuthenticatedRequest.unspentProof`); undefined: spent already.
   * @param spend - records the key once across instances; throws the replay error when it was.
   * @param verified - the proof's signature check when it is still running
   *   (`AuthenticatedRequest.proofSignature`); rejects with the 401 the agent gets. Default: verified.
   */
  constructor(key: OnceKey | undefined, spend: (key: OnceKey) => Promise<void>, verified: Promise<void> = VERIFIED) {
    this.#key = key;
    this.#spend = spend;
    this.#verified = verified;
  }

  /**
   * Settles once the proof's signature verified (at once unless `authenticate` deferred it);
   * rejects with the agent's 401 when it did not. Nothing is written or forwarded for the
   * request before it resolved: the receipt's statement waits for it, and a refusal before the
   * receipt waits for it (its 401 then replaces the refusal, and a forged proof spends nothing).
   */
  get verified(): Promise<void> {
    return this.#verified;
  }

  /** Whether the proof is still unspent. */
  get pending(): boolean {
    return this.#key !== undefined;
  }

  /** The unspent key, left pending (a read-only replay check before the spend); undefined once taken. */
  get key(): OnceKey | undefined {
    return this.#key;
  }

  /** Hands the key to a transaction that spends it (a receipt's); later calls get undefined. */
  take(): OnceKey | undefined {
    const key = this.#key;
    this.#key = undefined;
    return key;
  }

  /**
   * Spends the key unless something did already; when another caller's spend (through this
   * method) is still running, waits for it.
   *
   * @throws the verifier's `invalid_dpop_proof` (with its DPoP challenge) for a replayed proof
   *   (every caller waiting on that spend gets it), or {@link verified}'s 401 for a proof whose
   *   signature did not verify (nothing spent).
   */
  async spendIfPending(): Promise<void> {
    // A proof that does not verify is refused as such and spends nothing (as if checked first).
    await this.#verified;
    const key = this.take();
    if (key) this.#spending = this.#spend(key);
    if (this.#spending) await this.#spending;
  }

  /**
   * Spends a key {@link take}n for a transaction that then failed (so did not spend it).
   *
   * @throws as {@link spendIfPending}.
   */
  async spendTaken(key: OnceKey): Promise<void> {
    await this.#spend(key);
  }
}

const VERIFIED: Promise<void> = Promise.resolve();

/** Added by `authenticate`: the verified DPoP-bound token and its proof's pending spend. */
export interface Authenticated {
  auth: AuthenticatedRequest;
  proof: PendingProof;
}

/**
 * Who is calling, from the token's live record: the user at the root of the chain and the
 * agents acting (structurally a vault `CallIdentity`, so credential sources take it as is).
 */
export interface Principal {
  userId: string;
  userAttrs: TokenRecord['userAttrs'];
  /** The agent presenting the token (the current actor). */
  agentId: string;
  /** Agents in delegation order, the current actor last. */
  chain: TokenRecord['chain'];
  scopes: ReadonlySet<string>;
  /** The verified agent token, for a PDP that evaluates the chain from it. */
  token: string;
  /** `jti` of the agent token. */
  tokenJti: string;
  /** Vault handle of the user's upstream IdP token captured at the chain's first exchange. */
  upstreamHandle: string | undefined;
}

/** Added by `liveChain`: the token's record (live: neither it nor its lineage revoked). */
export interface LiveChain {
  record: TokenRecord;
  principal: Principal;
}

/** An authenticated request with a live chain: what every per-action step starts from. */
export type Admission = PepRequest & Authenticated & LiveChain;

/** The per-action context's root: the admission it runs under (one for many MCP messages). */
export interface ActionContext {
  readonly admission: Admission;
}

/**
 * A PEP's decision on one action. A denial may carry the typed error the agent gets
 * (`refusal`, e.g. a budget's 402); without one it is 403 `access_denied` with `reason`.
 */
export type PepDecision =
  | { allowed: true; context?: Readonly<Record<string, unknown>>; policies?: readonly string[] }
  | { allowed: false; reason: string; refusal?: DeputyError; context?: Readonly<Record<string, unknown>>; policies?: readonly string[] };

/** Added by a decide step (and possibly replaced by `budget`). */
export interface Decided {
  decision: PepDecision;
}

/**
 * The action as receipts and logs name it, stated by the PEP's own resolve step (each PEP
 * names its actions and resources its way).
 */
export interface ActionDescription {
  event: ReceiptEvent;
  /** The action decided (route action or `http:{METHOD}`, MCP method or tool, model call). */
  name: string;
  /** What the action is on: a URL without query string, a tool, a model (never a secret; the receipt step makes it receipt text). */
  resource: string;
  /** The request's identifying parts, digested into the receipt's `requestDigest` (src/audit/digest.ts) only when receipts are on. */
  digest: Readonly<Record<string, DigestValue>>;
  /** Claims of the PEP's own receipt event, written as given (MCP: `mcp`, already receipt text). */
  claims?: Readonly<Pick<ReceiptInput, 'mcp'>>;
}

/** Added by the PEP's resolve step: how the action is receipted and logged. */
export interface Described {
  action: ActionDescription;
}

/** Added by a PEP's resolve step: the connection called (HTTP connection, MCP server, LLM provider). */
export interface Targeted {
  connection: Connection;
}
