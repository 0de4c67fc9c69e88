/**
 * The RFC 6749 §3.3 scope-token grammar, the one definition every schema and parser uses:
 * `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )` (printable ASCII except space, `"` and `\`).
 *
 * @module
 */

/** One scope token (RFC 6749 §3.3), anchored; any length ≥ 1. */
export const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/;

/**
 * The longest scope token an agent may be registered with (configuration or admin API). RFC 6749
 * sets no length; real scopes are tens of characters, and a scope is copied into every token,
 * receipt and PDP request the agent makes.
 */
export const MAX_SCOPE_TOKEN = 256;

/** Whether `value` is one RFC 6749 §3.3 scope token of at most `maxLength` characters. */
export function isScopeToken(value: string, maxLength = Number.POSITIVE_INFINITY): boolean {
  return value.length <= maxLength && SCOPE_TOKEN.test(value);
}

/**
 * The characters of an RFC 6749 §4.1.2.1 / §5.2 `error` code (`%x20-21 / %x23-5B / %x5D-7E`),
 * at most 64 of them: what is echoed back of an upstream's error code, anything else is not.
 */
export const ERROR_CODE = /^[\x20-\x21\x23-\x5B\x5D-\x7E]{1,64}$/;
