/**
 * The size bound of Deputy's in-memory caches, spelled out once: a full cache forgets the entries
 * set longest ago, one for each new one, rather than all of them at once. Emptying a full cache
 * dropped its hot entries with the cold (a cliff in the hit rate, and a burst of misses on the
 * store or the CPU behind it, each time it filled); a `Map` iterates in insertion order, so the
 * oldest entries are the first its keys yield (issue 16, ninth round).
 *
 * @module
 */

/**
 * Sets `key` to `value` in `map`, keeping at most `max` entries: `key` moves to the end (it is the
 * newest), then the entries set longest ago are deleted while the map is full. O(1) per call
 * once full (one deletion each). A bound below one (0, negative, `NaN`: a size option meaning
 * "none", or mistyped) keeps nothing — `size >= NaN` is false, so such a bound kept every entry,
 * and a bound of 0 kept one; a fractional bound keeps its whole part.
 */
export function setBounded<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  map.delete(key);
  const bound = Math.floor(max);
  if (!(bound >= 1)) {
    map.clear();
    return;
  }
  // Checked first: a map below its bound (the usual case) allocates no iterator.
  if (map.size >= bound) {
    for (const oldest of map.keys()) {
      map.delete(oldest);
      if (map.size < bound) break;
    }
  }
  map.set(key, value);
}

/** What a {@link SizeBoundedMap} holds: a value that says how many bytes it counts. */
export interface Sized {
  /** The bytes the entry keeps on the heap, estimated by its cache (key included). */
  readonly size: number;
}

/**
 * A map bounded twice — by entries and by the bytes its entries count ({@link Sized.size}) — for
 * caches whose keys or values an attacker can make large (long tokens, large records): bounded by
 * entries alone, such a cache grows with entries × size. A new entry past either bound evicts the
 * entries set longest ago (insertion order, as {@link setBounded}); one larger than the whole
 * byte budget is not kept. The one mechanism for every byte-bounded cache (the agent token
 * resolver, the PDP's PEP tokens, read-through caches given a size: issue 16, thirteenth round).
 */
export class SizeBoundedMap<K, V extends Sized> {
  readonly #entries = new Map<K, V>();
  readonly #budgetBytes: number;
  readonly #maxEntries: number;
  #bytes = 0;

  /**
   * @param budgetBytes bytes the entries count at most (`Infinity`: entries only)
   * @param maxEntries entries at most; a bound below one keeps nothing, a fraction its whole part
   */
  constructor(budgetBytes: number, maxEntries: number) {
    this.#budgetBytes = budgetBytes;
    this.#maxEntries = Math.floor(maxEntries);
  }

  /** Bytes the entries count; never more than the budget. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Entries held; never more than the entry bound. */
  get size(): number {
    return this.#entries.size;
  }

  get(key: K): V | undefined {
    return this.#entries.get(key);
  }

  /**
   * Sets `key` to `value` as the newest entry, evicting the oldest while either bound would be
   * passed. Returns false (and holds no entry for `key`) when `value` alone passes the budget.
   */
  set(key: K, value: V): boolean {
    this.delete(key);
    if (!(value.size <= this.#budgetBytes) || !(this.#maxEntries >= 1)) return false;
    for (const [oldest, held] of this.#entries) {
      if (this.#bytes + value.size <= this.#budgetBytes && this.#entries.size < this.#maxEntries) break;
      this.#entries.delete(oldest);
      this.#bytes -= held.size;
    }
    this.#entries.set(key, value);
    this.#bytes += value.size;
    return true;
  }

  delete(key: K): boolean {
    const held = this.#entries.get(key);
    if (held === undefined) return false;
    this.#entries.delete(key);
    this.#bytes -= held.size;
    return true;
  }

  clear(): void {
    this.#entries.clear();
    this.#bytes = 0;
  }

  /** Entries oldest first; deleting the entry just yielded is safe (a `Map`'s iteration). */
  entries(): IterableIterator<[K, V]> {
    return this.#entries.entries();
  }
}
