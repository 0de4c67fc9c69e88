/**
 * Revocation (RFC 7009) of the access tokens Deputy issues by `client_credentials` to its
 * operator clients (`admin.clients`): PEP tokens (`authzen:evaluate`, `<issuer>/access`) and admin
 * tokens (`deputy:admin`, `<issuer>/admin`).
 *
 * These tokens are not recorded when issued (the grant writes nothing: one statement fewer per
 * grant, issue 16), so a revocation is recorded instead: the token's `jti` in the shared
 * once-store (`oidc_models`, namespace {@link REVOKED_NAMESPACE}) until the token's own `exp`,
 * after which the token is refused for having expired anyway. Every instance reads that row.
 *
 * Staleness bound, as for agent tokens (src/oauth/token-records.ts `RevocationCache`): a
 * revocation made through this instance is seen at once ({@link revoke} drops every cached
 * "not revoked" answer); one made through another instance within `activeTtlMs` (default 2 s),
 * the longest a "not revoked" answer is cached. "Revoked" is final and cached until the token's
 * expiry. So a caller that checks per request reads the store at most once per token per
 * `activeTtlMs`, and callers that remember a verified token (the PDP's `PepTokens`,
 * src/http/authzen.ts) consult {@link knownLive}, a synchronous look at that cache, so that a
 * remembered token lasts no longer than its "not revoked" answer.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc7009#section-2 RFC 7009 §2}
 * @module
 */
import type { Store } from '../store/index.js';
import { findRecorded, recordOnce } from './adapter.js';
import { setBounded } from '../util/bounded-map.js';
import { withinBound } from '../util/fresh.js';

/** Where revoked operator-token `jti`s are recorded (`oidc_models.model`). */
export const REVOKED_NAMESPACE = 'RevokedAccessToken';

/**
 * Revoked operator tokens: recorded in the store, read through a cache with the bound of the
 * module documentation.
 */
export class OperatorTokenRevocations {
  readonly #store: Store;
  readonly #activeTtlMs: number;
  /**
   * By `jti`: the answer, and `at` — for a revocation, when the token expires (ms since the epoch;
   * revoked stays revoked whatever the clock does); for "not revoked", when its look-up began
   * (reused only within the bound after it: {@link withinBound}).
   */
  readonly #entries = new Map<string, { revoked: boolean; at: number }>();
  /** Bumped by {@link revoke}: a lookup that started before a local revocation caches nothing. */
  #generation = 0;
  readonly #maxEntries: number;
  static readonly MAX_ENTRIES = 10_000;

  /**
   * `activeTtlMs`: how long a "not revoked" answer is reused, in milliseconds (default 2000);
   * `maxEntries`: the most answers cached (default {@link MAX_ENTRIES}; the oldest go first).
   */
  constructor(store: Store, options: { activeTtlMs?: number; maxEntries?: number } = {}) {
    this.#store = store;
    this.#activeTtlMs = options.activeTtlMs ?? 2000;
    this.#maxEntries = options.maxEntries ?? OperatorTokenRevocations.MAX_ENTRIES;
  }

  /**
   * Records the revocation of the token `jti`, expiring (epoch seconds) at `expiresAt`, and
   * makes this instance see it at once. Idempotent: revoking a revoked token changes nothing.
   * @throws store errors (nothing is cached then)
   */
  async revoke(jti: string, expiresAt: number, now = Date.now()): Promise<void> {
    await recordOnce(this.#store, REVOKED_NAMESPACE, jti, expiresAt - Math.floor(now / 1000));
    this.#generation++;
    for (const [key, entry] of this.#entries) if (!entry.revoked) this.#entries.delete(key);
    // Bounded here too, not only at the next lookup: revocations alone (an admin revoking in
    // bulk, no lookups between) grew the map past its bound.
    setBounded(this.#entries, jti, { revoked: true, at: expiresAt * 1000 }, this.#maxEntries);
  }

  /**
   * True when the token `jti` (expiring at `expiresAt`, epoch seconds) was revoked, as seen
   * within the staleness bound; reads the store when no fresh answer is cached.
   * @throws store errors (the caller fails closed)
   */
  async isRevoked(jti: string, expiresAt: number, now = Date.now()): Promise<boolean> {
    const hit = this.#entries.get(jti);
    if (hit && this.#stands(hit, now)) return hit.revoked;
    const generation = this.#generation;
    const found = await findRecorded(this.#store, [{ namespace: REVOKED_NAMESPACE, key: jti, ttlSeconds: 0 }]);
    const revoked = found.size > 0;
    if (!revoked && generation !== this.#generation) return revoked;
    setBounded(this.#entries, jti, { revoked, at: revoked ? expiresAt * 1000 : now }, this.#maxEntries);
    return revoked;
  }

  /**
   * True only when a fresh "not revoked" answer for `jti` is cached: what a caller remembering a
   * verified token may rely on without asking the store. False means "ask {@link isRevoked}".
   */
  knownLive(jti: string, now = Date.now()): boolean {
    const hit = this.#entries.get(jti);
    return hit !== undefined && !hit.revoked && this.#stands(hit, now);
  }

  /** A revocation stands until the token expires; "not revoked" only while the clock reads within the bound after its look-up began. */
  #stands(hit: { revoked: boolean; at: number }, now: number): boolean {
    return hit.revoked ? hit.at > now : withinBound(hit.at, now, this.#activeTtlMs);
  }
}
