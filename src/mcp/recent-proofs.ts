/**
 * A bounded, process-local memory of DPoP proof replay keys (RFC 9449 §11.1) this instance has
 * admitted or spent recently: the MCP gateway's cheapest early refusal of a replayed
 * `tools/call` proof, before the SDK writes its 200 head (so the replay gets the HTTP 401
 * `invalid_dpop_proof` of RFC 9449 §7.1 rather than an in-band JSON-RPC error).
 *
 * Never the authority: the store's insert-or-fail (the decision receipt's statement, or a spend
 * of its own) alone decides whether a proof is fresh. Forgetting a key (eviction, restart,
 * another instance) only moves a replay's refusal to the store read or, for a replay racing its
 * uncommitted original on another instance, in-band to the receipt statement.
 *
 * @module
 */
import { onceKeyId, type OnceKey } from '../oauth/adapter.js';

/** Keys remembered at most (each: a ~60-byte id and a number). */
const MAX_KEYS = 10_000;

export class RecentProofs {
  /** Replay key id → when the memory of it lapses (ms since the epoch); insertion order = age. */
  readonly #keys = new Map<string, number>();
  readonly #max: number;

  constructor(max = MAX_KEYS) {
    this.#max = max;
  }

  /**
   * Whether `key` was remembered and its proof's acceptance window (the key's TTL) has not
   * passed. A clock that went back keeps a key longer, never shorter.
   */
  has(key: OnceKey, now = Date.now()): boolean {
    const id = onceKeyId(key.namespace, key.key);
    const until = this.#keys.get(id);
    if (until === undefined) return false;
    if (until > now) return true;
    this.#keys.delete(id);
    return false;
  }

  /** Remembers `key` for its TTL; the oldest key goes first when the memory is full. */
  remember(key: OnceKey, now = Date.now()): void {
    const id = onceKeyId(key.namespace, key.key);
    this.#keys.delete(id);
    while (this.#keys.size >= this.#max) {
      const oldest = this.#keys.keys().next().value as string;
      this.#keys.delete(oldest);
    }
    this.#keys.set(id, now + key.ttlSeconds * 1000);
  }

  /** Keys remembered (tests). */
  get size(): number {
    return this.#keys.size;
  }
}
