/**
 * A remote JWK Set (RFC 7517 §5) cached for verification, refetched once when a token names an
 * unknown `kid` — so a key the issuer has just published verifies at once (key rotation without a
 * wait or a restart, OpenID Connect Core 1.0 §10.1.1).
 *
 * Why not jose's `createRemoteJWKSet` alone: its `cooldownDuration` counts from the last fetch of
 * any kind, so right after a routine fetch (first use, cache expiry) a token signed with a newly
 * published key is refused for the whole cooldown. Here the cooldown only limits refetches that
 * an unknown `kid` triggered (a flood of tokens with made-up `kid`s costs at most one fetch per
 * cooldown); jose still imports and selects the keys (`createLocalJWKSet`).
 *
 * @module
 */
import { createLocalJWKSet, errors, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import { metrics } from '../observability/metrics.js';

/** Cache tuning of {@link CachedJwks}, in milliseconds: cache age, cooldown between refetches for an unknown `kid`, fetch timeout. */
export interface CachedJwksOptions {
  /** How long a fetched JWK Set is used before it is fetched again (ms). */
  cacheMaxAgeMs: number;
  /** Minimum time between two refetches triggered by an unknown `kid` (ms); 0: no limit. */
  unknownKidCooldownMs: number;
  /** Timeout of one fetch (ms). */
  timeoutMs: number;
}

interface Fetched {
  readonly keys: ReturnType<typeof createLocalJWKSet>;
  /** `Date.now()` when the set arrived. */
  readonly at: number;
}

/**
 * The cached JWK Set of one `jwks_uri`. {@link CachedJwks.getKey} is a jose key resolver
 * (`jwtVerify(token, jwks.getKey, …)`). Concurrent callers share one fetch.
 *
 * Errors: jose's `JWKSNoMatchingKey` (no key for the `kid`/`alg`, after the refetch the rules
 * allow), `JWKSMultipleMatchingKeys`, `JWKSTimeout` (fetch timeout), `JWKSInvalid` (not a JWK
 * Set), `JOSEError` (status other than 200, not JSON), or a network error.
 */
export class CachedJwks {
  readonly #url: URL;
  readonly #o: CachedJwksOptions;
  #current: Fetched | undefined;
  #pending: Promise<Fetched> | undefined;
  /** When the last refetch for an unknown `kid` started. */
  #unknownKidRefetchAt = Number.NEGATIVE_INFINITY;

  constructor(url: URL, options: CachedJwksOptions) {
    this.#url = url;
    this.#o = options;
  }

  /** The verification key for a JWS header (jose `JWTVerifyGetKey`). */
  readonly getKey: JWTVerifyGetKey = async (header, token) => {
    let used = this.#current;
    let fetchedForThisCall = false;
    if (used === undefined || !within(Date.now() - used.at, this.#o.cacheMaxAgeMs)) {
      used = await this.#fetch();
      fetchedForThisCall = true;
    }
    try {
      return await used.keys(header, token);
    } catch (error) {
      // A set fetched for this very call is as new as a refetch would be.
      if (!(error instanceof errors.JWKSNoMatchingKey) || fetchedForThisCall) throw error;
      const next = await this.#refetchForUnknownKid(used);
      if (next === undefined) throw error;
      return next.keys(header, token);
    }
  };

  /**
   * A newer set than `used`: one fetched meanwhile by another call, the fetch under way, or a new
   * fetch unless another unknown `kid` caused one within the cooldown (then undefined).
   */
  async #refetchForUnknownKid(used: Fetched): Promise<Fetched | undefined> {
    if (this.#current !== undefined && this.#current !== used) return this.#current;
    if (this.#pending !== undefined) return this.#pending;
    const now = Date.now();
    if (within(now - this.#unknownKidRefetchAt, this.#o.unknownKidCooldownMs)) return undefined;
    this.#unknownKidRefetchAt = now;
    return this.#fetch();
  }

  /** Fetches the set (one request at a time) and makes it current. */
  #fetch(): Promise<Fetched> {
    this.#pending ??= fetchJwks(this.#url, this.#o.timeoutMs)
      .then((jwks) => {
        const fetched = { keys: createLocalJWKSet(jwks), at: Date.now() };
        this.#current = fetched;
        return fetched;
      })
      .catch((error: unknown) => {
        metrics.federationJwksFetchFailures.inc();
        throw error;
      })
      .finally(() => {
        this.#pending = undefined;
      });
    return this.#pending;
  }
}

/**
 * Whether an age (ms, now minus a past instant) is under `limit`. A negative age — the wall clock
 * stepped back past that instant — is not: a clock step never stretches a cached set's life or a
 * cooldown (issue 16, eighth round: the bounds of src/util/single-flight.ts).
 */
export function within(age: number, limit: number): boolean {
  return age >= 0 && age < limit;
}

/** GET the JWK Set: 200 and JSON required, no redirects (as jose's remote set does). */
async function fetchJwks(url: URL, timeoutMs: number): Promise<JSONWebKeySet> {
  const signal = AbortSignal.timeout(timeoutMs);
  const response = await fetch(url, { method: 'GET', redirect: 'manual', signal, headers: { accept: 'application/json, application/jwk-set+json' } }).catch((cause: unknown) => {
    throw (cause as { name?: unknown })?.name === 'TimeoutError' ? new errors.JWKSTimeout(undefined, { cause }) : cause;
  });
  if (response.status !== 200) {
    await response.body?.cancel();
    throw new errors.JOSEError('Expected 200 OK from the JSON Web Key Set HTTP response');
  }
  try {
    return (await response.json()) as JSONWebKeySet;
  } catch (cause) {
    throw signal.aborted ? new errors.JWKSTimeout(undefined, { cause }) : new errors.JOSEError('Failed to parse the JSON Web Key Set HTTP response as JSON', { cause });
  }
}
