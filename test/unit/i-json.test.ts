import { describe, expect, it } from 'vitest';
import { iJsonProblem, MAX_JSON_DEPTH } from '../../src/util/i-json.js';

/** `levels` objects nested under member `name`, holding `leaf` at the bottom. */
function nested(levels: number, name: string, leaf: unknown): unknown {
  let value = leaf;
  for (let i = 0; i < levels; i++) value = { [name]: value };
  return value;
}

describe('iJsonProblem', () => {
  it('names where the problem sits: a lone surrogate in a value or a member name, a non-finite number, nesting too deep', () => {
    expect(iJsonProblem({ a: [1, 'ok', '\ud800'] }, 'context')).toBe('context.a[2] holds a lone surrogate (not I-JSON, RFC 7493 §2.1)');
    expect(iJsonProblem({ ['x\udc00']: 1 }, 'context')).toMatch(/^context\["x\\udc00"\]: the member name holds a lone surrogate/);
    expect(iJsonProblem({ n: Number.POSITIVE_INFINITY }, 'the arguments')).toBe('the arguments.n is a non-finite number (not I-JSON, RFC 7493 §2.2)');
    expect(iJsonProblem(nested(MAX_JSON_DEPTH, 'a', 1), 'body')).toBeUndefined();
    expect(iJsonProblem(nested(MAX_JSON_DEPTH + 1, 'a', 1), 'body')).toMatch(new RegExp(`nested deeper than ${MAX_JSON_DEPTH} levels`));
    expect(iJsonProblem({ s: '\ud83d\ude00', e: '' }, 'body')).toBeUndefined();
  });

  it('keeps the message short however deep and long-named the path: the last levels and how many were left out', () => {
    const long = 'm'.repeat(39);
    const problem = iJsonProblem(nested(MAX_JSON_DEPTH - 1, long, '\ud800'), 'the request body')!;
    expect(problem.length).toBeLessThan(1200);
    expect(problem).toMatch(/^the request body…\(\d+ levels\)…(\.m{39})+ holds a lone surrogate/);
    const skipped = Number(/…\((\d+) levels\)…/.exec(problem)![1]);
    const shown = problem.match(/\.m{39}/g)!.length;
    expect(skipped + shown).toBe(MAX_JSON_DEPTH - 1);
    // Quoted member names of 40 characters, 200 levels: still bounded.
    expect(iJsonProblem(nested(200, 'a b'.repeat(20), Number.NaN), 'context')!.length).toBeLessThan(1200);
  });
});
