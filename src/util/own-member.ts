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
 * @module
 */
/** `into[name] = value` as an own, enumerable member, also when `name` is `__proto__`. */
export function setMember<T>(into: Record<string, T>, name: string, value: T): void {
  if (name === '__proto__') Object.defineProperty(into, name, { value, enumerable: true, writable: true, configurable: true });
  else into[name] = value;
}
