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
