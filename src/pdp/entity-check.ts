/**
 * `entities.json` checked against the schema the way Cedar checks it
 * (`checkParseEntities`), in bounded pieces.
 *
 * One call over the whole file made Cedar build every entity and the transitive closure of the
 * whole hierarchy at once: at 10⁵ entities ~19 s of CPU and ~370 MiB more RSS, WebAssembly memory
 * that is never returned to the system (BENCHMARKS.md, "Issue 16, fifth round: start-up cost").
 * What Cedar checks is local to an entity (its type, its attributes and tags against the
 * schema, its parents' types) except what involves several entities: a uid given twice, and the
 * ancestor relation (closure, cycles). Both stay inside one *closed group* — the entities joined
 * by a shared uid or a parent link (union–find over uids) — so Cedar, called on whole groups
 * packed into chunks of about {@link CHUNK_ENTITIES} entities, refuses exactly the files it
 * refuses in one call, and its memory is bounded by the chunk, not the file. An entry whose uid
 * cannot be read is a group of its own (Cedar refuses it in its chunk).
 *
 * @module
 */
import { cedar, type EntityJson } from './cedar.js';

/** Entities per Cedar call (a closed group larger than this is checked whole, alone). */
export const CHUNK_ENTITIES = 1000;

/** Cedar's answer to one check: success, or its errors for the first chunk refused. */
export type EntityCheck = ReturnType<typeof cedar.checkParseEntities>;

/** The uid of an entity or a parent as Cedar's JSON writes it (`{type, id}` or `{"__entity": {type, id}}`); `undefined` when not one. */
function uidKey(uid: unknown): string | undefined {
  if (typeof uid !== 'object' || uid === null) return undefined;
  const u = '__entity' in uid ? (uid as { __entity: unknown }).__entity : uid;
  if (typeof u !== 'object' || u === null) return undefined;
  const { type, id } = u as { type?: unknown; id?: unknown };
  return typeof type === 'string' && typeof id === 'string' ? JSON.stringify([type, id]) : undefined;
}

/**
 * The entities split into chunks of whole closed groups (shared uid or parent link), each chunk at
 * most `max` entities unless one group alone is larger; file order is kept inside a chunk.
 */
export function closedChunks(entities: readonly unknown[], max: number = CHUNK_ENTITIES): unknown[][] {
  const parent = new Map<string, string>();
  const find = (k: string): string => {
    if (!parent.has(k)) return parent.set(k, k), k;
    let root = k;
    while (parent.get(root) !== root) root = parent.get(root)!;
    for (let x = k; x !== root; ) {
      const next = parent.get(x)!;
      parent.set(x, root);
      x = next;
    }
    return root;
  };
  const union = (a: string, b: string) => parent.set(find(a), find(b));
  const keys = entities.map((e, i) => {
    const own = uidKey((e as { uid?: unknown } | null)?.uid) ?? `#${i}`;
    find(own);
    const parents = (e as { parents?: unknown } | null)?.parents;
    if (Array.isArray(parents)) {
      for (const p of parents) {
        const k = uidKey(p);
        if (k !== undefined) union(own, k);
      }
    }
    return own;
  });
  const groups = new Map<string, unknown[]>();
  entities.forEach((e, i) => {
    const root = find(keys[i]!);
    (groups.get(root) ?? groups.set(root, []).get(root)!).push(e);
  });
  const chunks: unknown[][] = [];
  let current: unknown[] = [];
  for (const group of groups.values()) {
    if (current.length > 0 && current.length + group.length > max) {
      chunks.push(current);
      current = [];
    }
    for (const e of group) current.push(e);
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

/**
 * Checks `entities` against `schema` (Cedar schema text) chunk by chunk ({@link closedChunks}, at
 * most `max` entities per call but for a larger closed group).
 * @returns Cedar's own answer: success, or the errors of the first chunk it refuses.
 */
export function checkEntities(entities: readonly unknown[], schema: string, max: number = CHUNK_ENTITIES): EntityCheck {
  for (const chunk of closedChunks(entities, max)) {
    const answer = cedar.checkParseEntities({ entities: chunk as EntityJson[], schema });
    if (answer.type === 'failure') return answer;
  }
  return { type: 'success' } as EntityCheck;
}
