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
 * The schema is parsed per check, not per chunk: `checkParseEntities` takes schema text and
 * parsed it again at every call (~3.4 ms for Deputy's default schema: a sixth of a 1,000-entity
 * chunk, nearly all of a small one). cedar-wasm 4 pre-parses schemas only for
 * `statefulIsAuthorized`, which parses the request's entities against its pre-parsed schema
 * before deciding (the same checks and messages as `checkParseEntities`: measured, not documented).
 * So, when a file makes several chunks, each is such a call: the schema pre-parsed once with one
 * more action of a random name (a request needs an action the schema declares; this one has an
 * empty context), request validation off, an empty policy set. It refuses what
 * `checkParseEntities` refuses, in Cedar's words (test/unit/pdp-entity-check.test.ts). A schema
 * Cedar refuses falls back to `checkParseEntities`, whose answer is then Cedar's error about it.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { cedar, type Cedar, type EntityJson, type EntityUid } from './cedar.js';

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

/** The check's own names in Cedar's pre-parsed storage and schema: random, so no policy-store slot and no file's action meets them. */
const TAG = randomBytes(8).toString('hex');
const CHECK_SCHEMA = `deputy-entity-check-${TAG}`;
const CHECK_POLICIES = `deputy-entity-check-${TAG}`;
/** The request's action (principal and resource too: with request validation off, any uid does). */
const CHECK_UID: EntityUid = { type: 'Action', id: `__deputy_entity_check_${TAG}` };

/**
 * Pre-parses `schema`, with {@link CHECK_UID} declared as one more action (no `appliesTo`: an
 * empty context), and an empty policy set.
 * @returns false when Cedar refuses the schema, alone or with the action (the caller falls back).
 */
function prepare(schema: string, engine: Cedar): boolean {
  // The schema alone first: text that Cedar refuses must not pass because of what is appended.
  if (engine.checkParseSchema(schema).type === 'failure') return false;
  if (engine.preparseSchema(CHECK_SCHEMA, `${schema}\naction "${CHECK_UID.id}";\n`).type === 'failure') return false;
  if (engine.preparsePolicySet(CHECK_POLICIES, { staticPolicies: '' }).type === 'failure') return false;
  return checkPrepared([], engine).type === 'success';
}

/** One chunk against the schema {@link prepare} left in Cedar's storage. */
function checkPrepared(entities: unknown[], engine: Cedar): EntityCheck {
  const answer = engine.statefulIsAuthorized({
    principal: CHECK_UID,
    action: CHECK_UID,
    resource: CHECK_UID,
    context: {},
    entities: entities as EntityJson[],
    preparsedSchemaName: CHECK_SCHEMA,
    preparsedPolicySetId: CHECK_POLICIES,
    validateRequest: false,
  });
  return answer.type === 'failure' ? { type: 'failure', errors: answer.errors } : { type: 'success' };
}

/**
 * Checks `entities` against `schema` (Cedar schema text) chunk by chunk ({@link closedChunks}, at
 * most `max` entities per call but for a larger closed group), the schema parsed once.
 * @param engine - the Cedar instance to check in (a policy set's own: policy-store.ts).
 * @returns Cedar's own answer: success, or the errors of the first chunk it refuses.
 */
export function checkEntities(entities: readonly unknown[], schema: string, max: number = CHUNK_ENTITIES, engine: Cedar = cedar): EntityCheck {
  const chunks = closedChunks(entities, max);
  // One chunk is one parse of the schema either way; pre-parsing pays off from the second.
  const check = chunks.length > 1 && prepare(schema, engine)
    ? (chunk: unknown[]) => checkPrepared(chunk, engine)
    : (chunk: unknown[]) => engine.checkParseEntities({ entities: chunk as EntityJson[], schema });
  for (const chunk of chunks) {
    const answer = check(chunk);
    if (answer.type === 'failure') return answer;
  }
  return { type: 'success' };
}
