/**
 * What the PDP knows about a Cedar schema: entity types and their attributes, actions and what
 * they apply to, and how an AuthZEN name maps to a Cedar name. Built once per policy set, from
 * Cedar's own JSON form of the schema (`schemaToJsonWithResolvedTypes`: every name qualified).
 *
 * It also turns untrusted JSON (AuthZEN `properties` and `context`, Deputy's own chain record)
 * into Cedar values of the declared types ({@link SchemaInfo.project}): members the schema does
 * not declare are dropped (AuthZEN 1.0 §10.1.1: receivers MUST ignore unknown fields), a value of the wrong
 * type is refused with the path and the expected type — never with the value itself.
 *
 * @module
 */
import type { CedarValueJson, EntityJson, EntityUid, SchemaJson } from './cedar.js';
import { setMember } from '../util/own-member.js';
import { hasLoneSurrogate } from '../util/i-json.js';

/** A schema type in Cedar's JSON schema format, names qualified. */
export interface SchemaType {
  type: string;
  name?: string;
  element?: SchemaType;
  attributes?: Record<string, SchemaType>;
  required?: boolean;
}

export interface EntityTypeInfo {
  /** Qualified Cedar name (`Ns::User`, or `User` in the empty namespace). */
  name: string;
  /** Declared attributes (undefined: none). */
  shape: SchemaType | undefined;
  /** Types an entity of this type may be a member of (Cedar `in`). */
  memberOfTypes: readonly string[];
  /** The type of its tags' values (undefined: it takes no tags). */
  tags?: SchemaType;
}

export interface ActionInfo {
  /** The action id, as AuthZEN `action.name` gives it. */
  name: string;
  uid: EntityUid;
  principalTypes: ReadonlySet<string>;
  resourceTypes: ReadonlySet<string>;
  /** The declared `context` record type (undefined: the action takes an empty context). */
  context: SchemaType | undefined;
  /** The action entity and its ancestors (action groups, schema `memberOf`), for Cedar's `in`. */
  entities: EntityJson[];
}

/** A value that does not fit the schema. `path` names the member; the value is never included. */
export class ProjectionError extends Error {
  readonly code = 'ERR_PDP_SCHEMA_MISMATCH';
  constructor(
    readonly path: string,
    readonly expected: string,
  ) {
    super(expected === 'required' ? `${path} is required by the schema` : `${path} must be ${expected}`);
    this.name = 'ProjectionError';
  }
}

/** Cedar extension types and the constructor function each takes its string form with. */
const EXTENSIONS: Readonly<Record<string, string>> = { ipaddr: 'ip', decimal: 'decimal', datetime: 'datetime', duration: 'duration' };
const PRIMITIVES = new Set(['String', 'Long', 'Boolean', 'Bool', 'Set', 'Record', 'Entity', 'EntityOrCommon', 'Extension']);
/** Names the JSON form may carry for built-in types (`Bool` from the text syntax, `__cedar::` qualified). */
const BUILTIN_ALIASES: Readonly<Record<string, string>> = {
  Bool: 'Boolean',
  '__cedar::Bool': 'Boolean',
  '__cedar::Boolean': 'Boolean',
  '__cedar::String': 'String',
  '__cedar::Long': 'Long',
};

export class SchemaInfo {
  readonly entityTypes: ReadonlyMap<string, EntityTypeInfo>;
  readonly actions: readonly ActionInfo[];
  readonly #commonTypes = new Map<string, SchemaType>();
  /** Unqualified name → qualified entity type; `null` when ambiguous across namespaces. Qualified names are looked up first. */
  readonly #typeNames = new Map<string, string | null>();
  readonly #actionNames = new Map<string, ActionInfo | null>();
  readonly #qualifiedActions = new Map<string, ActionInfo>();

  constructor(json: SchemaJson<string>) {
    const entityTypes = new Map<string, EntityTypeInfo>();
    const actions: ActionInfo[] = [];
    const actionParents = new Map<string, EntityUid[]>();
    for (const [ns, def] of Object.entries(json)) {
      const q = (n: string) => (ns ? `${ns}::${n}` : n);
      for (const [name, t] of Object.entries(def.commonTypes ?? {})) this.#commonTypes.set(q(name), t as SchemaType);
      for (const [name, t] of Object.entries(def.entityTypes ?? {})) {
        const std = t as { shape?: SchemaType; memberOfTypes?: string[]; tags?: SchemaType };
        const info: EntityTypeInfo = { name: q(name), shape: std.shape, memberOfTypes: std.memberOfTypes ?? [], ...(std.tags ? { tags: std.tags } : {}) };
        entityTypes.set(info.name, info);
        this.#alias(this.#typeNames, name, info.name);
      }
      for (const [name, a] of Object.entries(def.actions ?? {})) {
        const applies = a.appliesTo;
        const info: ActionInfo = {
          name,
          uid: { type: q('Action'), id: name },
          principalTypes: new Set(applies?.principalTypes ?? []),
          resourceTypes: new Set(applies?.resourceTypes ?? []),
          context: applies?.context as SchemaType | undefined,
          entities: [],
        };
        actionParents.set(uidKey(info.uid), (a.memberOf ?? []).map((m) => ({ type: m.type ?? q('Action'), id: m.id })));
        actions.push(info);
        this.#alias(this.#actionNames, name, info);
        this.#qualifiedActions.set(ns ? `${ns}::${name}` : name, info);
      }
    }
    this.entityTypes = entityTypes;
    this.actions = actions;
    for (const a of actions) {
      const seen = new Set<string>();
      const queue: EntityUid[] = [a.uid];
      while (queue.length > 0) {
        const uid = queue.shift()!;
        if (seen.has(uidKey(uid))) continue;
        seen.add(uidKey(uid));
        const parents = actionParents.get(uidKey(uid)) ?? [];
        a.entities.push({ uid, attrs: {}, parents });
        queue.push(...parents);
      }
    }
  }

  #alias<V>(map: Map<string, V | null>, key: string, value: V): void {
    map.set(key, map.has(key) && map.get(key) !== value ? null : value);
  }

  /** The Cedar entity type an AuthZEN `type` names: exact, or unqualified when unambiguous. */
  entityType(authzenType: string): EntityTypeInfo | undefined {
    const exact = this.entityTypes.get(authzenType);
    if (exact) return exact;
    const name = this.#typeNames.get(authzenType);
    return name ? this.entityTypes.get(name) : undefined;
  }

  /** The action an AuthZEN `action.name` names: the empty namespace's or a qualified one exactly, else unqualified when unambiguous. */
  action(name: string): ActionInfo | undefined {
    return this.#qualifiedActions.get(name) ?? this.#actionNames.get(name) ?? undefined;
  }

  /**
   * What a member of `context` is, by its path (`["chain", "user"]`), in every action whose
   * context declares it: `record` when it is a record everywhere, an entity type when it is that
   * entity type everywhere, `undefined` otherwise (unknown, or different across actions).
   */
  contextMemberType(path: readonly string[]): string | undefined {
    const kinds = new Set<string | undefined>();
    for (const a of this.actions) {
      let t: SchemaType | undefined = a.context ? this.#resolve(a.context) : undefined;
      for (const name of path) t = t?.type === 'Record' && t.attributes?.[name] ? this.#resolve(t.attributes[name]) : undefined;
      if (t) kinds.add(t.type === 'Record' ? 'record' : t.type === 'Entity' ? t.name : undefined);
    }
    return kinds.size === 1 ? [...kinds][0] : undefined;
  }

  /** Projects a JSON object onto an entity type's attributes (`partial`: missing required attributes allowed). */
  projectAttributes(source: Readonly<Record<string, unknown>>, entityType: EntityTypeInfo, path: string, partial = false): Record<string, CedarValueJson> {
    if (!entityType.shape) return {};
    return this.#record(source, this.#resolve(entityType.shape), path, partial);
  }

  /** Projects `value` onto `type` (see the module comment). */
  project(value: unknown, type: SchemaType, path: string): CedarValueJson {
    const t = this.#resolve(type);
    switch (BUILTIN_ALIASES[t.type] ?? t.type) {
      case 'String':
        if (typeof value !== 'string') throw new ProjectionError(path, 'a string');
        if (hasLoneSurrogate(value)) throw new ProjectionError(path, 'a string without a lone surrogate (I-JSON)');
        return value;
      case 'Long':
        if (typeof value !== 'number' || !Number.isSafeInteger(value)) throw new ProjectionError(path, 'an integer (Long)');
        return value;
      case 'Boolean':
        if (typeof value !== 'boolean') throw new ProjectionError(path, 'a boolean');
        return value;
      case 'Set': {
        if (!Array.isArray(value)) throw new ProjectionError(path, `an array (Set<${describe(t.element)}>)`);
        return value.map((v, i) => this.project(v, t.element!, `${path}[${i}]`));
      }
      case 'Record':
        if (!isObject(value)) throw new ProjectionError(path, 'an object');
        return this.#record(value, t, path, false);
      case 'Entity':
        return this.#entity(value, t.name!, path);
      case 'Extension':
        return this.#extension(value, t.name!, path);
      default:
        if (EXTENSIONS[t.type]) return this.#extension(value, t.type, path);
        throw new ProjectionError(path, `a value of the unsupported schema type ${t.type}`);
    }
  }

  #record(source: Readonly<Record<string, unknown>>, t: SchemaType, path: string, partial: boolean): Record<string, CedarValueJson> {
    const out: Record<string, CedarValueJson> = {};
    for (const [name, attrType] of Object.entries(t.attributes ?? {})) {
      const value = Object.hasOwn(source, name) ? source[name] : undefined;
      // AuthZEN 1.0 §11.5: a null member is treated as absent (I-JSON guidance to omit nulls).
      if (value === undefined || value === null) {
        if (attrType.required !== false && !partial) throw new ProjectionError(`${path}.${name}`, 'required');
        continue;
      }
      setMember(out, name, this.project(value, attrType, `${path}.${name}`));
    }
    return out;
  }

  #entity(value: unknown, typeName: string, path: string): CedarValueJson {
    let uid: unknown = value;
    if (typeof value === 'string') uid = { type: typeName, id: value };
    else if (isObject(value) && isObject(value.__entity)) uid = value.__entity;
    if (!isObject(uid) || typeof uid.type !== 'string' || typeof uid.id !== 'string') {
      throw new ProjectionError(path, `an entity reference to ${typeName} (an id, or {"type","id"})`);
    }
    const resolved = this.entityType(uid.type)?.name ?? uid.type;
    if (resolved !== typeName) throw new ProjectionError(path, `an entity reference to ${typeName}`);
    return { __entity: { type: typeName, id: uid.id } };
  }

  #extension(value: unknown, name: string, path: string): CedarValueJson {
    const fn = EXTENSIONS[name];
    if (isObject(value) && isObject(value.__extn)) return value as CedarValueJson;
    if (!fn || typeof value !== 'string') throw new ProjectionError(path, `a string in ${name} form`);
    return { __extn: { fn, arg: value } };
  }

  /** Follows common-type references (`{ "type": "Ns::Chain" }`) to the structural type. */
  #resolve(type: SchemaType): SchemaType {
    let t = type;
    for (let hops = 0; hops < 32 && !PRIMITIVES.has(t.type) && !EXTENSIONS[t.type] && !BUILTIN_ALIASES[t.type]; hops++) {
      const common = this.#commonTypes.get(t.type);
      if (common) {
        t = { ...common, ...(t.required === false ? { required: false } : {}) };
        continue;
      }
      if (this.entityTypes.has(t.type)) return { type: 'Entity', name: t.type };
      break;
    }
    if (t.type === 'EntityOrCommon') {
      const common = this.#commonTypes.get(t.name!);
      return common ? this.#resolve(common) : { type: 'Entity', name: t.name! };
    }
    return t;
  }
}

function describe(t: SchemaType | undefined): string {
  if (!t) return '?';
  if (t.type === 'Set') return `Set<${describe(t.element)}>`;
  if (t.type === 'Entity') return t.name ?? 'Entity';
  return t.type;
}

function uidKey(u: EntityUid): string {
  return `${u.type}\0${u.id}`;
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
