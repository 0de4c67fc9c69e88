/**
 * Sharing one asynchronous read among concurrent callers (single flight), and the short-lived
 * read cache built on it that the agent registry (src/agents/registry.ts) and the revocation
 * cache (src/oauth/token-records.ts) both keep in front of the store: concurrent misses share one
 * read, never across a local invalidation, answers are reused within a staleness bound, and (as
 * an option) re-read ahead of that bound. One mechanism, so both caches keep the same bound under
 * a stalled store, a clock step and a change made while a read runs (issue 16, seventh round).
 *
 * @module
 */
import { SizeBoundedMap } from './bounded-map.js';

/**
 * Concurrent calls for one key share the promise of the call under way (single flight). The
 * promise is dropped when it settles, so a failure is never reused: the next call starts again.
 * A caller may refuse to join a running call (`mayJoin`, given the call's `meta`): it then starts
 * its own, which later callers join.
 */
export class SingleFlight<K, V, M = undefined> {
  readonly #running = new Map<K, { promise: Promise<V>; meta: M }>();

  /** Each call under way: its key and the `meta` it was started with. */
  *running(): IterableIterator<[K, M]> {
    for (const [key, r] of this.#running) yield [key, r.meta];
  }

  /** `start()`'s promise for `key`, or the running one's when `mayJoin(itsMeta)` allows. */
  run(key: K, start: () => Promise<V>, meta: M, mayJoin: (running: M) => boolean = () => true): Promise<V> {
    const running = this.#running.get(key);
    if (running !== undefined && mayJoin(running.meta)) return running.promise;
    const promise = start();
    this.#running.set(key, { promise, meta });
    const settled = (): void => {
      if (this.#running.get(key)?.promise === promise) this.#running.delete(key);
    };
    promise.then(settled, settled);
    return promise;
  }
}

/** How long a {@link BoundedReadCache} keeps an answer. */
export interface Lifetime {
  /** Epoch milliseconds until which the answer is reused. */
  until: number;
  /**
   * A final answer cannot go stale (a revoked token stays revoked): kept until `until` whatever the
   * clock does, and cached even when a local invalidation happened while it was read.
   */
  final: boolean;
}

/** Options of a {@link BoundedReadCache}. */
export interface BoundedReadCacheOptions<V, K = unknown> {
  /** The staleness bound (ms): no non-final answer is older than this, counted from its read's start. */
  ttlMs: number;
  /**
   * A caller joins a running read only if it began at most this long ago (ms); default `ttlMs`.
   * A read stalled for longer (a hung store or AS) is left to its own callers: later ones start
   * their own.
   */
  joinWithinMs?: number;
  /**
   * Entries kept at most (a burst of unique keys cannot grow it): a new answer for a full cache
   * evicts the one read longest ago, so the answers in use stay (no hit-rate cliff).
   */
  maxEntries: number;
  /**
   * An answer's lifetime; default: non-final, `ttlMs` from the start of its read. A non-final
   * `until` past `ttlMs` from the read's start is cut to it.
   */
  lifetime?: (value: V, readStartedAt: number) => Lifetime;
  /**
   * Re-read in the background once an answer is in the last quarter of its bound, so a key in
   * steady use never waits for its re-read; the answers stay within the bound. Default false.
   */
  refreshAhead?: boolean;
  /**
   * The value to cache for a fresh read `next`, given the answer it replaces (`previous`): lets a
   * caller keep an equal previous object, so identity-keyed memos survive re-reads.
   */
  keep?: (previous: V, next: V) => V;
  /**
   * Bytes the answers count at most, by `sizeOf` (default: no byte bound, `maxEntries` alone): for
   * a cache whose keys or answers an attacker can make large. Past it the answers read longest ago
   * go, as past `maxEntries`; an answer larger than the whole budget is not cached.
   */
  budgetBytes?: number;
  /** The bytes one answer keeps on the heap with its key, estimated (required with `budgetBytes`). */
  sizeOf?: (key: K, value: V) => number;
}

interface Entry<V> {
  value: V;
  /** Bytes counted against the budget (0 without one). */
  size: number;
  until: number;
  final: boolean;
  /** When the read that gave it started (epoch ms). */
  startedAt: number;
}

/** A read under way: the generation and time it began, and whether {@link BoundedReadCache.forget} detached it. */
interface Flight {
  generation: number;
  startedAt: number;
  detached: boolean;
}

/**
 * A read-through cache whose answers are at most `ttlMs` old (from the start of their read):
 *
 * - concurrent misses of a key share one read ({@link SingleFlight}), but a caller never joins a
 *   read that started before the last {@link invalidate} (it may return data as it was before a
 *   local change), nor one that started more than `joinWithinMs` (default `ttlMs`) before it (a
 *   stalled store: its answer could predate a change on another instance by more than the bound);
 * - a read that started before an {@link invalidate} caches nothing non-final;
 * - a failed read caches nothing and is not reused: every caller of it gets its error;
 * - a non-final answer stands only while the clock reads between its read's start and its
 *   `until` (≤ `ttlMs` after that start): a wall clock stepped back drops it, so a clock step
 *   never stretches its life;
 * - at most `maxEntries` answers are kept; a new one for a full cache evicts the one read longest
 *   ago (insertion order, a re-read moves its key to the end). A non-final answer read earlier
 *   also expires earlier, so the evicted one is the next to go stale anyway; a key in use is
 *   re-read at least every `ttlMs` and so stays near the end.
 */
export class BoundedReadCache<K, V> {
  readonly #read: (key: K) => Promise<V>;
  readonly #o: Required<Omit<BoundedReadCacheOptions<V, K>, 'keep' | 'budgetBytes' | 'sizeOf'>> & Pick<BoundedReadCacheOptions<V, K>, 'keep' | 'sizeOf'>;
  /** Bounded by entries and, given `budgetBytes`, by bytes: one mechanism (src/util/bounded-map.ts). */
  readonly #entries: SizeBoundedMap<K, Entry<V>>;
  readonly #flights = new SingleFlight<K, V, Flight>();
  /** Bumped by {@link invalidate}: reads begun before it neither cache nor are joined. */
  #generation = 0;

  /** @param read the store read of one key (its errors reach every caller that shared it) */
  constructor(read: (key: K) => Promise<V>, options: BoundedReadCacheOptions<V, K>) {
    this.#read = read;
    const ttlMs = options.ttlMs;
    if (options.budgetBytes !== undefined && options.sizeOf === undefined) throw new TypeError('BoundedReadCache: budgetBytes needs sizeOf');
    this.#entries = new SizeBoundedMap(options.budgetBytes ?? Number.POSITIVE_INFINITY, options.maxEntries);
    this.#o = {
      ttlMs,
      joinWithinMs: options.joinWithinMs ?? ttlMs,
      maxEntries: options.maxEntries,
      lifetime: options.lifetime ?? ((_v, startedAt) => ({ until: startedAt + ttlMs, final: false })),
      refreshAhead: options.refreshAhead ?? false,
      keep: options.keep,
      sizeOf: options.budgetBytes === undefined ? undefined : options.sizeOf,
    };
  }

  /** Bytes the cached answers count (0 without a byte budget). */
  get bytes(): number {
    return this.#entries.bytes;
  }

  /** Answers cached now. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * The answer for `key`: cached while it stands at `now` (epoch ms), else read — by `read` when
   * given (a caller whose read needs more than the key, e.g. the connection it fetches a token
   * for), else by the constructor's.
   */
  get(key: K, now = Date.now(), read: (key: K) => Promise<V> = this.#read): Promise<V> {
    const hit = this.#entries.get(key);
    if (hit === undefined || !this.#stands(hit, now)) return this.#start(key, now, read);
    if (this.#o.refreshAhead && !hit.final && hit.until - now <= this.#o.ttlMs / 4) void this.#start(key, now, read).catch(() => {});
    return Promise.resolve(hit.value);
  }

  /** The cached answer at `now` without reading (`undefined` when {@link get} would read). */
  peek(key: K, now: number): { readonly value: V } | undefined {
    const hit = this.#entries.get(key);
    return hit !== undefined && this.#stands(hit, now) ? hit : undefined;
  }

  /**
   * Call after this instance changed what the cache reflects (after the commit). Drops the
   * non-final answers `drop` selects (all of them by default) and detaches every read under way:
   * later callers start their own, and those reads cache nothing non-final.
   */
  invalidate(drop: (key: K) => boolean = () => true): void {
    this.#generation++;
    this.#dropAnswers(drop);
  }

  /**
   * Drops the non-final answers `drop` selects and detaches only the reads under way of those keys
   * (an upstream refused one key's token: another key's fetch is still good to share and keep —
   * {@link invalidate} would detach every read, so that one key refused over and over kept every
   * other key from being cached or shared).
   */
  forget(drop: (key: K) => boolean): void {
    for (const [key, flight] of this.#flights.running()) if (drop(key)) flight.detached = true;
    this.#dropAnswers(drop);
  }

  /** Deletes the non-final answers `drop` selects (final ones stand until they expire). */
  #dropAnswers(drop: (key: K) => boolean): void {
    for (const [key, entry] of this.#entries.entries()) if (!entry.final && drop(key)) this.#entries.delete(key);
  }

  /** Drops every answer, final ones included, and detaches every read under way. */
  clear(): void {
    this.#generation++;
    this.#entries.clear();
  }

  #stands(entry: Entry<V>, now: number): boolean {
    return entry.until > now && (entry.final || now >= entry.startedAt);
  }

  #start(key: K, now: number, read: (key: K) => Promise<V>): Promise<V> {
    const generation = this.#generation;
    const mayJoin = (r: Flight): boolean =>
      r.generation === generation && !r.detached && r.startedAt <= now && now - r.startedAt <= this.#o.joinWithinMs;
    const flight: Flight = { generation, startedAt: now, detached: false };
    return this.#flights.run(key, () => this.#readAndCache(key, flight, read), flight, mayJoin);
  }

  async #readAndCache(key: K, flight: Flight, reader: (key: K) => Promise<V>): Promise<V> {
    const read = await reader(key);
    const startedAt = flight.startedAt;
    const life = this.#o.lifetime(read, startedAt);
    const final = life.final;
    if (!final && (flight.generation !== this.#generation || flight.detached)) return read;
    const until = final ? life.until : Math.min(life.until, startedAt + this.#o.ttlMs);
    const previous = this.#entries.get(key);
    const value = previous !== undefined && this.#o.keep !== undefined ? this.#o.keep(previous.value, read) : read;
    this.#entries.set(key, { value, until, final, startedAt, size: this.#o.sizeOf?.(key, value) ?? 0 });
    return value;
  }
}
