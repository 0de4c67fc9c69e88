/**
 * A receipt: one signed statement of something Deputy decided or did for an agent (a token
 * exchange, a PDP decision, a gateway call), linked into that agent's hash chain.
 *
 * Wire format: a JWS Compact Serialization (RFC 7515 §7.1) with protected header
 * `{ "alg": "ES256" | "EdDSA", "kid", "typ": "deputy-receipt+jwt" }` and a JSON payload of
 * {@link ReceiptClaims}. The explicit `typ` (RFC 8725 §3.11) keeps a receipt from ever being
 * accepted as a token and vice versa; receipt keys are separate from token keys for the same
 * reason.
 *
 * Chain: `seq` counts this agent's receipts from 1; `prev` is {@link receiptHash} of the
 * agent's previous receipt, or {@link genesisHash} of the agent for `seq` 1. Hashing the exact
 * compact serialization (not re-encoded claims) means a verifier needs no canonical JSON: what
 * it hashes is byte for byte what was signed and stored.
 *
 * Receipts never carry a token, a secret or a raw request body: only identifiers, the decision,
 * and a digest of the request ({@link requestDigest} in `./digest.ts`).
 *
 * @module
 */
import { CompactSign, importJWK, type CryptoKey, type JWK } from 'jose';
import { RECEIPT_ALGS, type ReceiptAlg } from '../util/algorithms.js';
import { sha256Base64url } from '../util/sha256.js';
import { JWS_SHAPE, looksLikeToken } from '../util/token-shape.js';

/** RFC 8725 §3.11 explicit typing: the `typ` header of every receipt. */
export const RECEIPT_TYP = 'deputy-receipt+jwt';
/** Receipt signature algorithms (RFC 7518 §3.4 ES256, RFC 8037 EdDSA): src/util/algorithms.ts. */
export const RECEIPT_ALGORITHMS = RECEIPT_ALGS;
/** A JWS algorithm receipts may be signed with (RFC 7518 §3; the list is src/util/algorithms.ts). */
export type ReceiptAlgorithm = ReceiptAlg;
/** Domain-separation prefix of the genesis value (versioned so the format can evolve). */
export const GENESIS_PREFIX = 'deputy-receipt-chain/v1/genesis\n';

/**
 * What produced the receipt. `agent_deleted` closes a deleted agent's chain (src/services.ts:
 * written in the deletion's transaction), so an auditor sees where and why it ends.
 */
export const RECEIPT_EVENTS = ['token_exchange', 'authorization_code', 'jwt_bearer', 'access_evaluation', 'gateway_call', 'mcp_message', 'budget_settlement', 'agent_deleted'] as const;
/** What a receipt records: one of {@link RECEIPT_EVENTS}. */
export type ReceiptEvent = (typeof RECEIPT_EVENTS)[number];
/** The PDP decision a receipt records. */
export type ReceiptDecision = 'permit' | 'deny';

/**
 * What a caller (token exchange, PDP, gateway) states in a receipt. Identifiers and outcomes
 * only: never a token, a credential or a request body (pass {@link ReceiptInput.requestDigest}).
 */
export interface ReceiptInput {
  /** The agent whose chain this receipt joins (the acting agent, last element of `chain`). */
  agent: string;
  /** The user the chain acts for (`okta:…`, `entra:…`, `{iss}#{sub}`), when known. */
  user?: string;
  /** The delegation chain, first agent first (subjects only, RFC 8693 §4.1 order reversed). */
  chain: readonly string[];
  event: ReceiptEvent;
  /** The action decided: `delegate` for an exchange, the Cedar / AuthZEN action otherwise. */
  action: string;
  /** What the action is on: an audience, a resource id or a URL (without query string). */
  resource: string;
  decision: ReceiptDecision;
  /** Ids of the policies that decided (Cedar policy ids); empty when rules, not policies, did. */
  policies?: readonly string[];
  /** Why, for a deny: the failed check, as the client was told (never a secret). */
  reason?: string;
  /** Scopes granted (exchange) or requested. */
  scope?: string;
  /** The `X-Request-ID` of the request that caused it. */
  requestId?: string;
  /** `sha-256:` + base64url digest of the request (see `./digest.ts`). */
  requestDigest?: string;
  /** The `jti` of a token issued by this action (an identifier, not the token). */
  tokenId?: string;
  /**
   * `budget_settlement`: what the settled call was charged on each budget it hit (src/budgets),
   * in the budget's unit (cost in micro-units of `budgets.currency`).
   */
  charges?: ReadonlyArray<ReceiptCharge>;
  /** An MCP gateway message (event `mcp_message`, src/mcp): digests and outcome, never the arguments. */
  mcp?: McpReceiptDetail;
}

/** What an `mcp_message` receipt states about the message (claim `mcp`). */
export interface McpReceiptDetail {
  server: string;
  /** The JSON-RPC method (`tools/call`, `tools/list`, …). */
  method: string;
  tool?: string;
  /** `sha-256:` digest of the RFC 8785 JSON of the call's arguments. */
  arguments_digest?: string;
  /** The tool's definition digest when checked against its pin (the live one on a mismatch). */
  pin_digest?: string;
  /** `pinned`, `changed`, `unpinned`, `invalid`. */
  pin?: string;
  /** The upstream's answer: `ok`, `tool_error`, `error:<code>`, `timeout`, `unreachable` (outcome receipts). */
  outcome?: string;
}

/** One budget's charge in a `budget_settlement` receipt. */
export interface ReceiptCharge {
  budget: string;
  unit: string;
  amount: number;
}

/** The signed payload. Registered claim names follow RFC 7519 §4.1. */
export interface ReceiptClaims {
  /** Deputy's issuer. */
  iss: string;
  /** Receipt id (RFC 7519 §4.1.7). */
  jti: string;
  /** Seconds since the epoch (RFC 7519 §4.1.6). */
  iat: number;
  seq: number;
  prev: string;
  agent: string;
  user?: string;
  chain: string[];
  event: ReceiptEvent;
  action: string;
  resource: string;
  decision: ReceiptDecision;
  policies: string[];
  reason?: string;
  scope?: string;
  request_id?: string;
  request_digest?: string;
  token_id?: string;
  mcp?: McpReceiptDetail;
  charges?: ReceiptCharge[];
}

/** A receipt as stored and exported. */
export interface SignedReceipt {
  id: string;
  agent: string;
  seq: number;
  /** {@link receiptHash} of `jws`. */
  hash: string;
  prev: string;
  jws: string;
}

/** The receipt-signing key: a private JWK with `kid` and `alg`. */
export interface ReceiptSigningKey {
  jwk: JWK & { kid: string; alg: string };
}

/** SHA-256 (FIPS 180-4) of the receipt's compact serialization, base64url (RFC 4648 §5). */
export function receiptHash(jws: string): string {
  return sha256Base64url(jws);
}

/**
 * `prev` of an agent's first receipt: SHA-256 of a fixed prefix and the agent id. Bound to the
 * agent so the first receipt of one chain cannot start another.
 */
export function genesisHash(agent: string): string {
  return sha256Base64url(GENESIS_PREFIX + agent);
}

const LIMITS = { id: 256, text: 2048, chain: 64, policies: 64 } as const;
/**
 * Whether text holds a run shaped like a JWS / JWT (src/util/token-shape.ts) — what a receipt field
 * never holds ({@link assertReceiptInput} refuses it): callers decide with it before caller-supplied
 * text reaches a receipt as it is (the request id: src/http/middleware.ts).
 */
export { looksLikeToken };

/** {@link JWS_SHAPE}, every match: built once (`replace` restarts a global pattern at 0 each call). */
const JWS_SHAPES = new RegExp(JWS_SHAPE.source, 'g');

/** {@link receiptText} of the empty string: a receipt's text fields hold at least one character. */
export const EMPTY_TEXT = '[empty]';

/**
 * Makes caller-derived text (a gateway path, a resource id, an MCP tool's name) fit a receipt
 * field: token-shaped runs become `[token]`, the empty string becomes {@link EMPTY_TEXT} (an MCP
 * agent may name a tool `""`: refused by {@link assertReceiptInput}, its receipt was not written
 * and the call answered as a store outage), and text longer than `max` keeps its start plus a
 * SHA-256 of the whole, so the receipt still identifies it exactly without carrying it.
 */
export function receiptText(value: string, max: number = LIMITS.text): string {
  if (value.length === 0) return EMPTY_TEXT;
  const cleaned = value.replace(JWS_SHAPES, '[token]');
  if (cleaned.length <= max) return cleaned;
  const digest = `…#sha256:${sha256Base64url(value)}`;
  return cleaned.slice(0, max - digest.length) + digest;
}

/**
 * Checks a caller's input. Mistakes here are programming errors (a `TypeError`, STYLE habit 3),
 * not client errors: callers build the input from values they already validated. Any field that
 * looks like a JWS is refused outright, a last defence for "receipts never contain a token".
 */
export function assertReceiptInput(input: ReceiptInput): void {
  // Module-level checks, not closures made per call: every receipt (each gateway call) runs this
  // (issue 16, twelfth round).
  assertText('agent', input.agent, LIMITS.id);
  assertText('user', input.user, LIMITS.text, true);
  assertList('chain', input.chain, LIMITS.chain);
  if (!(RECEIPT_EVENTS as readonly string[]).includes(input.event)) throw new TypeError(`receipt event must be one of ${RECEIPT_EVENTS.join(', ')}`);
  assertText('action', input.action, LIMITS.id);
  assertText('resource', input.resource, LIMITS.text);
  if (input.decision !== 'permit' && input.decision !== 'deny') throw new TypeError('receipt decision must be "permit" or "deny"');
  if (input.policies !== undefined) assertList('policies', input.policies, LIMITS.policies);
  assertText('reason', input.reason, LIMITS.text, true);
  assertText('scope', input.scope, LIMITS.text, true);
  assertText('requestId', input.requestId, LIMITS.id, true);
  assertText('requestDigest', input.requestDigest, LIMITS.id, true);
  assertText('tokenId', input.tokenId, LIMITS.id, true);
  if (input.mcp !== undefined) {
    for (const [k, v] of Object.entries(input.mcp)) assertText(`mcp.${k}`, v, LIMITS.text, true);
  }
  if (input.charges !== undefined) assertCharges(input.charges);
}

/** A receipt text field: 1 to `max` characters, not shaped like a JWS. @throws TypeError */
function assertText(name: string, v: unknown, max: number, optional = false): void {
  if (v === undefined && optional) return;
  if (typeof v !== 'string' || v.length === 0 || v.length > max) throw new TypeError(`receipt ${name} must be a string of 1 to ${max} characters`);
  if (JWS_SHAPE.test(v)) throw new TypeError(`receipt ${name} looks like a token; receipts never carry tokens`);
}

/**
 * The receipt's charges: at most {@link LIMITS}`.policies` objects, each with a budget, a unit and
 * a non-negative integer amount. Walked by index, as {@link assertList}: a hole is refused by
 * name (`forEach` skipped it, and `receiptClaims` then signed it as `null`). @throws TypeError
 */
function assertCharges(charges: unknown): void {
  if (!Array.isArray(charges) || charges.length > LIMITS.policies) throw new TypeError(`receipt charges must be an array of at most ${LIMITS.policies}`);
  for (let i = 0; i < charges.length; i++) {
    const c: unknown = charges[i];
    if (typeof c !== 'object' || c === null) throw new TypeError(`receipt charges[${i}] must be an object`);
    const { budget, unit, amount } = c as Partial<ReceiptCharge>;
    assertText(`charges[${i}].budget`, budget, LIMITS.id);
    assertText(`charges[${i}].unit`, unit, LIMITS.id);
    if (!Number.isSafeInteger(amount) || (amount as number) < 0) throw new TypeError(`receipt charges[${i}].amount must be a non-negative integer`);
  }
}

/** A receipt list field: at most `max` identifiers. @throws TypeError */
function assertList(name: string, v: unknown, max: number): void {
  if (!Array.isArray(v) || v.length > max) throw new TypeError(`receipt ${name} must be an array of at most ${max} strings`);
  for (let i = 0; i < v.length; i++) {
    const item: unknown = v[i];
    // The element's name is built only for the error (not once per element of every receipt).
    if (typeof item !== 'string' || item.length === 0 || item.length > LIMITS.id || JWS_SHAPE.test(item)) assertText(`${name}[${i}]`, item, LIMITS.id);
  }
}

/** The claims of the receipt at `seq` after `prev`. Optional members are left out when absent. */
export function receiptClaims(input: ReceiptInput, at: { iss: string; jti: string; iat: number; seq: number; prev: string }): ReceiptClaims {
  const claims: ReceiptClaims = {
    iss: at.iss,
    jti: at.jti,
    iat: at.iat,
    seq: at.seq,
    prev: at.prev,
    agent: input.agent,
    chain: [...input.chain],
    event: input.event,
    action: input.action,
    resource: input.resource,
    decision: input.decision,
    // Distinct ids; a Set only when there can be a repeat (a gateway call's decision names one policy or none).
    policies: input.policies === undefined ? [] : input.policies.length < 2 ? [...input.policies] : [...new Set(input.policies)],
  };
  // Set one by one, in this order (the payload's key order), only when present: no intermediate
  // objects or entry arrays per receipt (issue 16, eighth round: allocation per call).
  if (input.charges) claims.charges = input.charges.map((c) => ({ budget: c.budget, unit: c.unit, amount: c.amount }));
  if (input.user !== undefined) claims.user = input.user;
  if (input.reason !== undefined) claims.reason = input.reason;
  if (input.scope !== undefined) claims.scope = input.scope;
  if (input.requestId !== undefined) claims.request_id = input.requestId;
  if (input.requestDigest !== undefined) claims.request_digest = input.requestDigest;
  if (input.tokenId !== undefined) claims.token_id = input.tokenId;
  if (input.mcp !== undefined) claims.mcp = { ...input.mcp };
  return claims;
}

/**
 * Signs receipts with one key. The private key is imported once: signing is then a single
 * ECDSA / Ed25519 operation (tens of microseconds), cheap enough to do while the chain head is
 * locked.
 */
export class ReceiptSigner {
  readonly kid: string;
  readonly alg: ReceiptAlgorithm;
  readonly #key: Promise<CryptoKey>;
  /** The imported key once {@link #key} resolved: later signatures use it without awaiting the import again. */
  #imported: CryptoKey | undefined;

  constructor(key: ReceiptSigningKey) {
    if (!(RECEIPT_ALGORITHMS as readonly string[]).includes(key.jwk.alg)) throw new TypeError('receipt keys must be ES256 or EdDSA');
    this.kid = key.jwk.kid;
    this.alg = key.jwk.alg as ReceiptAlgorithm;
    this.#key = importJWK(key.jwk, this.alg) as Promise<CryptoKey>;
    this.#key.then((imported) => (this.#imported = imported), () => {}); // a failed import is reported by sign(); no unhandled rejection before first use
  }

  /**
   * RFC 7515 §7.1 compact serialization of `claims`. Not `async`: once the key is imported, jose's
   * promise is handed back as it is — an `async` wrapper and its `await` cost every receipt two
   * promises (each one a promise-hook call under Node 22's `AsyncLocalStorage`; issue 16, twelfth round).
   *
   * @throws (rejects) what jose throws, or the key import's error
   */
  sign(claims: ReceiptClaims): Promise<string> {
    const key = this.#imported;
    if (key === undefined) return this.#key.then((imported) => this.#signWith(claims, imported));
    try {
      return this.#signWith(claims, key);
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  #signWith(claims: ReceiptClaims, key: CryptoKey): Promise<string> {
    return new CompactSign(UTF8.encode(JSON.stringify(claims))).setProtectedHeader({ alg: this.alg, kid: this.kid, typ: RECEIPT_TYP }).sign(key);
  }
}

/** One encoder for every receipt's payload (stateless). */
const UTF8 = new TextEncoder();
