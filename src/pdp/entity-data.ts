/**
 * Entities the PDP holds itself (its own policy information point): the `entities.json` of a
 * policy set, in Cedar's entity JSON format, plus `aliases.json` (other identifiers of the same
 * entity, such as an IdP's opaque subject ids). Immutable; a reload builds a new one.
 *
 * @module
 */
import type { EntityJson } from './cedar.js';
import { setBounded } from '../util/bounded-map.js';

export class EntityData {
  /** Entities by qualified type, then id, in id order. */
  readonly #byType = new Map<string, Map<string, EntityJson>>();
  /** Alias id → canonical id, by qualified type. */
  readonly #aliases = new Map<string, Map<string, string>>();
  /** Every ancestor (transitively, through `parents`) held here, by `type\0id`. */
  readonly #ancestors = new Map<string, EntityJson[]>();

  constructor(entities: readonly EntityJson[], aliases: ReadonlyMap<string, ReadonlyMap<string, string>>) {
    const sorted = [...entities].sort((a, b) => (uidOf(a).id < uidOf(b).id ? -1 : uidOf(a).id > uidOf(b).id ? 1 : 0));
    for (const e of sorted) {
      const { type, id } = uidOf(e);
      let ofType = this.#byType.get(type);
      if (!ofType) this.#byType.set(type, (ofType = new Map()));
      ofType.set(id, e);
    }
    for (const [type, map] of aliases) this.#aliases.set(type, new Map(map));
  }

  get size(): number {
    let n = 0;
    for (const m of this.#byType.values()) n += m.size;
    return n;
  }

  /** The entity known as `id` (or by an alias of it). */
  find(type: string, id: string): EntityJson | undefined {
    const ofType = this.#byType.get(type);
    if (!ofType) return undefined;
    return ofType.get(id) ?? ofType.get(this.#aliases.get(type)?.get(id) ?? '');
  }

  /** The canonical id of `id` for `type` (itself when it is not an alias). */
  canonicalId(type: string, id: string): string {
    if (this.#byType.get(type)?.has(id)) return id;
    return this.#aliases.get(type)?.get(id) ?? id;
  }

  /** Every entity of `type`, in id order (search candidates). */
  list(type: string): readonly EntityJson[] {
    return [...(this.#byType.get(type)?.values() ?? [])];
  }

  /** The ancestors of an entity held here, so Cedar's `in` sees the whole hierarchy. */
  ancestors(parents: ReadonlyArray<{ type: string; id: string }>): EntityJson[] {
    if (parents.length === 0) return [];
    const key = parents.map((p) => `${p.type}\0${p.id}`).join('\0\0');
    const hit = this.#ancestors.get(key);
    if (hit) return hit;
    const seen = new Set<string>();
    const out: EntityJson[] = [];
    const queue = [...parents];
    while (queue.length > 0 && out.length < 10_000) {
      const p = queue.shift()!;
      const k = `${p.type}\0${p.id}`;
      if (seen.has(k)) continue;
      seen.add(k);
      const e = this.#byType.get(p.type)?.get(p.id);
      if (!e) continue;
      out.push(e);
      queue.push(...e.parents.map(uidOfJson));
    }
    setBounded(this.#ancestors, key, out, 10_000);
    return out;
  }
}

/** The `{type, id}` of an entity JSON (Cedar accepts both `{type,id}` and `{__entity:{…}}`). */
export function uidOf(e: EntityJson): { type: string; id: string } {
  return uidOfJson(e.uid);
}

function uidOfJson(u: EntityJson['uid']): { type: string; id: string } {
  return '__entity' in u ? u.__entity : u;
}
