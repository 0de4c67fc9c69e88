/**
 * Writing a member of an object keyed by untrusted names whatever the name: a Cedar JSON record
 * (an entity's attributes, a context), or HTTP header fields from an upstream (the gateway).
 *
 * `JSON.parse` makes `"__proto__"` an own key like any other, and Cedar accepts it as an attribute
 * or context member name (`"__proto__": String` in a schema, `principal["__proto__"]` in a policy).
 * A plain assignment `out["__proto__"] = value` sets `out`'s prototype instead: the member is gone
 * from what Cedar is given (a value it would refuse is no longer refused, a policy reading it
 * errs or sees it absent — a `forbid` that no longer applies). The same holds for header fields:
 * `__proto__` is a valid field name (RFC 9110 §5.1 token) that undici keeps as an own key.
 *
 * Where a document is validated by zod instead (the configuration, the admin API's bodies), a
 * member named `__proto__` is refused by its path ({@link protoMemberPaths}): zod drops it from a
 * record silently, so the writer's value would be gone and a default applied in its place.
 *
 * @module
 */
/** `into[name] = value` as an own, enumerable member, also when `name` is `__proto__`. */
export function setMember<T>(into: Record<string, T>, name: string, value: T): void {
  if (name === '__proto__') Object.defineProperty(into, name, { value, enumerable: true, writable: true, configurable: true });
  else into[name] = value;
}

/** Why a member named `__proto__` is refused (see {@link protoMemberPaths}). */
export const PROTO_MEMBER_REFUSAL = '"__proto__" is not a usable name';

/**
 * The path (`a.b.0.__proto__`, from `path`) of every own member named `__proto__` in `value`, a
 * parsed JSON or YAML document, at any depth. `JSON.parse` and YAML make such a member an own key;
 * zod drops it from a record silently (`authorization_params`, `toolCosts`, `budgets.prices`: the
 * writer's value gone, the default applied, nothing said). Callers refuse the document naming
 * each path: the configuration loader (src/config/load.ts), the admin API's body parser (`jsonBody`, src/http/util.ts).
 */
export function protoMemberPaths(value: unknown, path = '', found: string[] = []): string[] {
  if (typeof value !== 'object' || value === null) return found;
  for (const k of Object.keys(value)) {
    const at = path ? `${path}.${k}` : k;
    if (k === '__proto__') found.push(at);
    else protoMemberPaths((value as Record<string, unknown>)[k], at, found);
  }
  return found;
}
