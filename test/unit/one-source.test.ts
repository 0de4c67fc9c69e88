/**
 * One source for each fact (issue 12 item 5): a scan of `src/` that fails when a fact defined
 * once is spelled out again elsewhere — a JOSE algorithm list, a constant-time comparison, the
 * RFC 6749 §3.3 scope-token grammar, `no-store`, an issuer stripped of its trailing slash.
 * Each rule names the one module that owns the fact.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.js';
import { constantTimeEqual } from '../../src/util/constant-time.js';
import { isScopeToken } from '../../src/util/scope.js';

const SRC = new URL('../../src/', import.meta.url).pathname;

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sources(path);
    return e.name.endsWith('.ts') ? [path] : [];
  });
}

/** `src/`-relative files whose code (comments dropped) matches `pattern`. */
function filesMatching(pattern: RegExp): string[] {
  return sources(SRC)
    .filter((file) => pattern.test(readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\/|^\s*\/\/.*$/gm, '')))
    .map((file) => relative(SRC, file))
    .sort();
}

describe('one source for each fact', () => {
  it.each([
    ['a JOSE algorithm list', /\[\s*'(?:ES|RS|PS)(?:256|384|512)'\s*,\s*'/, ['util/algorithms.ts']],
    ['crypto.timingSafeEqual', /timingSafeEqual/, ['util/constant-time.ts']],
    ['the scope-token grammar', /\\x21\\x23-\\x5B\\x5D-\\x7E/, ['util/scope.ts']],
    ['the no-store directive', /'no-store'/, ['util/http.ts']],
    ['Deputy\'s issuer stripped of its trailing slash', /issuer\.replace\(\/\\\/\$\//, []],
  ] as const)('%s is spelled out only in its own module', (_fact, pattern, owners) => {
    expect(filesMatching(pattern)).toEqual([...owners]);
  });
});

describe('the facts themselves', () => {
  it('the issuer loses its trailing slash once, in configuration', () => {
    const parse = (issuer: string) => configSchema.parse({ server: { issuer } }).server.issuer;
    expect(parse('https://deputy.example.com/')).toBe('https://deputy.example.com');
    expect(parse('https://deputy.example.com/tenant/')).toBe('https://deputy.example.com/tenant');
    expect(parse('https://deputy.example.com')).toBe('https://deputy.example.com');
  });

  it.each([
    ['same', 'same', true],
    ['same', 'Same', false],
    ['short', 'shorter', false],
    ['', '', true],
    ['', 'x', false],
    ['ünïcödé', 'ünïcödé', true],
  ])('constantTimeEqual(%j, %j) is %s', (a, b, equal) => {
    expect(constantTimeEqual(a, b)).toBe(equal);
    expect(constantTimeEqual(Buffer.from(a), Buffer.from(b))).toBe(equal);
  });

  it.each([
    ['deputy.read', true],
    ['deputy:admin', true],
    ['a!#[]~', true],
    ['', false],
    ['two words', false],
    ['quote"d', false],
    ['back\\slash', false],
    ['tab\t', false],
    ['ünicode', false],
  ])('isScopeToken(%j) is %s (RFC 6749 §3.3)', (token, valid) => {
    expect(isScopeToken(token)).toBe(valid);
  });
});
