/**
 * The CLI's start loads only the command line: every module `src/cli/index.ts` reaches through
 * static value imports (what runs before any command does) is walked with the TypeScript syntax
 * tree, and none may be a heavy package — those load inside the command that needs them
 * (`await import(…)`), so `deputy --help` or `deputy receipts verify` do not pay for the server's
 * or the OAuth client's modules. `import type` is erased; `import { type X }` is not (with
 * verbatimModuleSyntax it still loads the module), so it counts.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');
const HEAVY = ['jose', 'openid-client', 'oidc-provider', 'pg', '@electric-sql/pglite', '@cedar-policy/cedar-wasm', 'yaml', 'zod', 'prom-client', 'koa', 'undici', 'pino'];

/** The specifiers a file loads when it is evaluated: value imports and re-exports, not `import type`, not `import()`. */
function staticImports(file: string): string[] {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, true);
  const out: string[] = [];
  for (const node of source.statements) {
    if (ts.isImportDeclaration(node) && !node.importClause?.isTypeOnly) out.push((node.moduleSpecifier as ts.StringLiteral).text);
    if (ts.isExportDeclaration(node) && node.moduleSpecifier && !node.isTypeOnly) out.push((node.moduleSpecifier as ts.StringLiteral).text);
  }
  return out;
}

/** Every package reached from `entry` through static imports, with the first path that reaches it. */
function packagesReached(entry: string): Map<string, string[]> {
  const first = `src/${entry.slice(resolve(ROOT, 'src').length + 1)}`;
  const packages = new Map<string, string[]>();
  const seen = new Set<string>();
  const walk = (file: string, path: string[]): void => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const spec of staticImports(file)) {
      if (spec.startsWith('.')) walk(resolve(dirname(file), spec.replace(/\.js$/, '.ts')), [...path, spec]);
      else if (!spec.startsWith('node:') && !packages.has(spec)) packages.set(spec, [...path, spec]);
    }
  };
  walk(entry, [first]);
  return packages;
}

describe("the CLI's start", () => {
  it('reaches no heavy package through static imports (each command imports its own when it runs)', () => {
    const reached = packagesReached(resolve(ROOT, 'src/cli/index.ts'));
    const heavy = [...reached].filter(([spec]) => HEAVY.some((h) => spec === h || spec.startsWith(`${h}/`))).map(([, path]) => path.join(' → '));
    expect(heavy).toEqual([]);
    // The walk itself works: commander, the CLI's parser, is reached.
    expect(reached.has('commander')).toBe(true);
  });

  it('the walk sees a heavy import where one is (the modules commands load on use reach them)', () => {
    // Guards the guard: from the OAuth helpers a token command loads, the same walk finds its packages.
    const reached = packagesReached(resolve(ROOT, 'src/cli/oauth.ts'));
    expect(reached.has('openid-client')).toBe(true);
    expect(reached.has('jose')).toBe(true);
    expect(reached.get('jose')).toEqual(['src/cli/oauth.ts', 'jose']);
  });
});
