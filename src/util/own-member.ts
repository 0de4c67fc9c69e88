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
const PROTO_MEMBER_REFUSAL = '"__proto__" is not a usable name';
/** Longest path a refusal quotes whole; a longer one keeps its head and tail. */
const MAX_QUOTED_PATH = 200;

/**
 * The refusal of each member named `__proto__` in `value` ({@link protoMemberPaths}), at most
 * `max`: `path: "__proto__" is not a usable name`, a path past 200 characters shortened in its
 * middle (a document nested thousands deep is not echoed back whole).
 */
export function protoMemberRefusals(value: unknown, max = Infinity): string[] {
  return protoMemberPaths(value)
    .slice(0, max)
    .map((at) => `${at.length > MAX_QUOTED_PATH ? `${at.slice(0, MAX_QUOTED_PATH / 2)}…${at.slice(-MAX_QUOTED_PATH / 2)}` : at}: ${PROTO_MEMBER_REFUSAL}`);
}

/**
 * The path (`a.b.0.__proto__`, from `path`) of every own member named `__proto__` in `value`, a
 * parsed JSON or YAML document, at any depth. `JSON.parse` and YAML make such a member an own key;
 * zod drops it from a record silently (`authorization_params`, `toolCosts`, `budgets.prices`: the
 * writer's value gone, the default applied, nothing said). Callers refuse the document naming
 * each path: the configuration loader (src/config/load.ts), the admin API's body parser (`jsonBody`, src/http/util.ts).
 */
function protoMemberPaths(value: unknown, path = ''): string[] {
  const found: string[] = [];
  // An explicit stack, not recursion: a body nested 100,000 deep (within any body limit) would
  // overflow the call stack, a 500 instead of the refusal.
  const stack: Array<readonly [unknown, string]> = [[value, path]];
  for (let next = stack.pop(); next !== undefined; next = stack.pop()) {
    const [v, at] = next;
    if (typeof v !== 'object' || v === null) continue;
    const names = Object.keys(v);
    // Pushed last to first: siblings are visited in document order.
    for (let i = names.length - 1; i >= 0; i--) {
      const k = names[i]!;
      const member = at ? `${at}.${k}` : k;
      if (k === '__proto__') found.push(member);
      else stack.push([(v as Record<string, unknown>)[k], member]);
    }
  }
  return found;
}
