/**
 * How deeply a Cedar text (a policy file, a schema in Cedar syntax) nests its brackets, counted
 * before Cedar parses it. Cedar's parser recurses once per level of every grammar rule; from the
 * main thread's stack, about 300 nested parentheses in one condition overflowed it inside Cedar's
 * WebAssembly (`RangeError: Maximum call stack size exceeded`), and the module was left corrupt:
 * every later call — every decision against the set still serving, every later reload — failed
 * with `RuntimeError: memory access out of bounds` until the process restarted. A reload on SIGHUP
 * or a file change swallowed the first error unlogged (issue 16, ninth round red team). Real
 * policies nest a handful of levels; {@link MAX_NESTING} leaves room for far more.
 *
 * @module
 */

/** The deepest bracket nesting accepted in a policy or schema file. */
export const MAX_NESTING = 32;

/**
 * The deepest nesting of `(`, `[`, `{` — and `<` too when `angles` (a schema's `Set<…>`; in a
 * policy, `<` is a comparison) — in `text`, not counting brackets inside string literals (`"…"`,
 * with backslash escapes) or `//` comments. Unbalanced closers never take the count below zero.
 */
export function nestingDepth(text: string, angles = false): number {
  let depth = 0;
  let max = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '"') i = stringEnd(text, i);
    else if (c === '/' && text[i + 1] === '/') i = lineEnd(text, i);
    else if (c === '(' || c === '[' || c === '{' || (angles && c === '<')) max = Math.max(max, ++depth);
    else if (c === ')' || c === ']' || c === '}' || (angles && c === '>')) depth = Math.max(0, depth - 1);
  }
  return max;
}

/** The index of the quote closing the string literal opened at `open` (the text's end when unclosed). */
function stringEnd(text: string, open: number): number {
  for (let i = open + 1; i < text.length; i++) {
    if (text[i] === '\\') i++;
    else if (text[i] === '"') return i;
  }
  return text.length;
}

/** The index of the line break ending the comment begun at `start` (the text's end when none). */
function lineEnd(text: string, start: number): number {
  const end = text.indexOf('\n', start);
  return end === -1 ? text.length : end;
}

/**
 * The deepest nesting accepted in a policy's JSON form (Cedar's EST, `policyToJson`): a binary
 * operator (`&&`, `||`, `+`, `==`, `.contains`), an attribute access, an `if` or a record or set
 * literal adds about two levels. Measured at the top of a Node 20 stack (issue 16, tenth round):
 * Cedar's evaluation overflowed its stack from ~150 nested `if`s or attribute accesses (JSON
 * depth ~300), validation from ~200 nested `+` (~400), its JSON form from ~400 `||` (~800).
 * 160 leaves room for the stack a request is evaluated under, and for ~78 conditions in a chain.
 */
export const MAX_POLICY_DEPTH = 160;
