/**
 * The vault rows this process wrote for captured upstream subject tokens, so that an agent that
 * exchanges the same user's IdP token again (per audience, per sub-agent, while the token lives)
 * references the row it already has instead of encrypting and writing the same token once more:
 * each such exchange then skips four random draws, an AES-256-GCM envelope and the key wrap (a
 * KMS call where one is plugged in), and one `vault_secrets` row with its two index entries
 * (~1.25 KB of PostgreSQL WAL of the exchange's ~4.6 KB; issue 16, seventh round).
 *
 * A hint, never trusted: the exchange's statement references a remembered row only if the row
 * still exists in that statement's snapshot (`EnvelopeVault.exists`), and otherwise refuses and
 * is decided again in a transaction that writes the row if absent. So a row deleted since (the
 * agent's deletion on any instance, a purge) is never referenced by a new token record.
 *
 * Rows are remembered per agent (and issuer and token): the upstream tokens an agent's exchanges
 * captured stay that agent's alone, so deleting an agent still deletes exactly the rows its own
 * exchanges captured (`TokenRecords.detachUpstream`). The key is a SHA-256 of agent, issuer and
 * token; no token is kept in memory.
 *
 * @module
 */
import { sha256Base64url } from '../util/sha256.js';

/** Remembered rows at most; past it the oldest is forgotten (and written again when next needed). */
export const MAX_CAPTURED = 10_000;

interface Entry {
  handle: string;
  /** Epoch seconds after which the entry is never used: the subject token's expiry, or sooner (src/oauth/token-exchange.ts `UPSTREAM_REUSE_SECONDS`). */
  expiresAt: number;
}

/** Which vault row holds an agent's captured upstream token, for the rows this process committed. */
export class CapturedUpstreamTokens {
  readonly #entries = new Map<string, Entry>();
  readonly #max: number;

  /** `max`: entries kept at most (default {@link MAX_CAPTURED}; 0 remembers nothing). */
  constructor(max = MAX_CAPTURED) {
    this.#max = max;
  }

  /** The memo key of `token` captured by `agentId`'s exchange, from issuer `issuerId`. */
  static key(agentId: string, issuerId: string, token: string): string {
    return sha256Base64url(`${agentId}\0${issuerId}\0${token}`);
  }

  /** The handle remembered for `key` while its token is unexpired at `now` (epoch seconds); undefined otherwise. */
  handle(key: string, now: number): string | undefined {
    return this.entry(key, now)?.handle;
  }

  /** {@link handle} with the epoch second until which it is remembered (to remember it again no longer). */
  entry(key: string, now: number): Readonly<Entry> | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= now) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry;
  }

  /** Remembers `handle` for `key` until `expiresAt` (epoch seconds). Call only once the row is committed. */
  remember(key: string, handle: string, expiresAt: number): void {
    if (this.#max <= 0) return;
    this.#entries.delete(key);
    this.#entries.set(key, { handle, expiresAt });
    if (this.#entries.size > this.#max) this.#entries.delete(this.#entries.keys().next().value!);
  }

  /** Forgets `key` (its row was found missing). */
  forget(key: string): void {
    this.#entries.delete(key);
  }

  /** How many rows are remembered (tests, metrics). */
  get size(): number {
    return this.#entries.size;
  }
}
