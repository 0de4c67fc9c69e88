/**
 * What Deputy asks of every JSON value a caller sends before anything recurses over it or hands
 * it to Cedar or the RFC 8785 canonicalizer:
 *
 * - I-JSON's string rule (RFC 7493 §2.1): no lone surrogate. JSON text may spell one
 *   (`"\ud800"`), but it is no Unicode text: RFC 8785 cannot canonicalize it and Cedar cannot
 *   take it (it throws).
 * - I-JSON's number rule (RFC 7493 §2.2): finite numbers only (parsed JSON never holds another;
 *   a value built in code may).
 * - Nesting no deeper than {@link MAX_JSON_DEPTH} objects and arrays. `JSON.parse` takes any
 *   depth a body limit allows (about 500,000 from 1 MB), but the canonicalizer, `JSON.stringify`
 *   and Cedar recurse once per level; past a few thousand levels they overflow the engine's stack
 *   (`RangeError`). The depth is checked here, iteratively, so that overflow is never the check.
 *
 * @module
 */

/**
 * The deepest nesting of objects and arrays Deputy accepts in any caller JSON (AuthZEN bodies,
 * MCP arguments, LLM request bodies, anything digested into a receipt): `{}` is 1 level, `{"a":[]}`
 * 2. The PDP's `pdp.maxJsonDepth` (default 32) may only lower it for AuthZEN bodies.
 */
export const MAX_JSON_DEPTH = 256;

/** A surrogate code unit standing alone (with the `u` flag a well-formed pair is one code point, never matched). */
const LONE_SURROGATE = /\p{Surrogate}/u;

/** Whether `text` holds a lone surrogate (is not well-formed UTF-16). */
export function hasLoneSurrogate(text: string): boolean {
  return LONE_SURROGATE.test(text);
}

/** A value met while walking, with how to name where it sits (built only when a problem is found). */
interface Visit {
  readonly value: unknown;
  readonly depth: number;
  readonly parent: Visit | undefined;
  readonly key: string | number | undefined;
}

const PLAIN_NAME = /^[A-Za-z_$][\w$]{0,39}$/;

/** `root.a["b c"][2]`: where `visit` sits; odd member names JSON-quoted (lone surrogates escaped) and cut at 40 characters. */
function pathOf(visit: Visit, root: string): string {
  const parts: string[] = [];
  for (let v: Visit | undefined = visit; v?.parent; v = v.parent) {
    const k = v.key!;
    parts.push(typeof k === 'number' ? `[${k}]` : PLAIN_NAME.test(k) ? `.${k}` : `[${JSON.stringify(k.slice(0, 40))}]`);
  }
  return root + parts.reverse().join('');
}

/**
 * Why `value` is not JSON Deputy takes from a caller, or `undefined` when it is: the first lone
 * surrogate (in a string or a member name), non-finite number, or object/array nested deeper than
 * `maxDepth`, named by its path under `root` (e.g. `context.a[2] holds a lone surrogate …`).
 * Iterative: the value may be nested deeper than the JavaScript stack allows. `undefined` members
 * and functions are left to the serializer (it omits them).
 *
 * @param root - how the message names the value itself (`the arguments`, `context`).
 * @param options.maxDepth - levels of objects and arrays accepted ({@link MAX_JSON_DEPTH} unless a surface has a lower limit).
 * @param options.depthOnly - check the nesting only (a surface that answers other problems its own way, later).
 */
export function iJsonProblem(value: unknown, root: string, options: { maxDepth?: number; depthOnly?: boolean } = {}): string | undefined {
  const maxDepth = options.maxDepth ?? MAX_JSON_DEPTH;
  const strings = options.depthOnly !== true;
  const pending: Visit[] = [{ value, depth: 0, parent: undefined, key: undefined }];
  while (pending.length > 0) {
    const visit = pending.pop()!;
    const v = visit.value;
    if (typeof v === 'string') {
      if (strings && hasLoneSurrogate(v)) return `${pathOf(visit, root)} holds a lone surrogate (not I-JSON, RFC 7493 §2.1)`;
    } else if (typeof v === 'number') {
      if (strings && !Number.isFinite(v)) return `${pathOf(visit, root)} is a non-finite number (not I-JSON, RFC 7493 §2.2)`;
    } else if (typeof v === 'object' && v !== null) {
      const depth = visit.depth + 1;
      if (depth > maxDepth) return `${pathOf(visit, root)} is nested deeper than ${maxDepth} levels of objects and arrays`;
      if (Array.isArray(v)) {
        for (let i = v.length - 1; i >= 0; i--) pending.push({ value: v[i], depth, parent: visit, key: i });
      } else {
        const keys = Object.keys(v);
        for (let i = keys.length - 1; i >= 0; i--) {
          const key = keys[i]!;
          const child: Visit = { value: (v as Record<string, unknown>)[key], depth, parent: visit, key };
          if (strings && hasLoneSurrogate(key)) return `${pathOf(child, root)}: the member name holds a lone surrogate (not I-JSON, RFC 7493 §2.1)`;
          pending.push(child);
        }
      }
    }
  }
  return undefined;
}
