/**
 * Dependencies point inward (issue 12, DESIGN "HTTP → services → store"): every file under `src/`
 * is read and its import specifiers matched, and each rule below names the files that break it.
 *
 * The scanner's own test below keeps the rules from passing by seeing nothing.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');
const SRC = join(ROOT, 'src');

/** One import of one file: the specifier as written and, for a relative one, the repo path it names. */
interface ImportEdge {
  file: string;
  specifier: string;
  target: string | undefined;
}

/**
 * Import specifiers of a TypeScript source: `import … from`, `export … from`, side-effect
 * `import '…'`, `import type`, and `import('…')` (also in type positions). Statements are matched
 * at the start of a line, so TSDoc prose that mentions a module does not count.
 */
export function importSpecifiers(source: string): string[] {
  const found: string[] = [];
  const statement = /^\s*(?:import|export)\b[^'";]*?\bfrom\s*['"]([^'"]+)['"]|^\s*import\s*['"]([^'"]+)['"]/gm;
  const dynamic = /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;
  for (const m of source.matchAll(statement)) found.push((m[1] ?? m[2])!);
  for (const m of source.matchAll(dynamic)) found.push(m[1]!);
  return found;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(path);
    return /\.(ts|mts|cts)$/.test(e.name) ? [path] : [];
  });
}

function edges(): ImportEdge[] {
  return sourceFiles(SRC).flatMap((path) => {
    const file = relative(ROOT, path);
    return importSpecifiers(readFileSync(path, 'utf8')).map((specifier) => ({
      file,
      specifier,
      target: specifier.startsWith('.') ? relative(ROOT, resolve(dirname(path), specifier)) : undefined,
    }));
  });
}

const ALL = edges();

const under = (folder: string) => (path: string) => path.startsWith(`${folder}/`);
const isPackage = (name: string) => (e: ImportEdge) => e.specifier === name || e.specifier.startsWith(`${name}/`);
const importsFolder = (folder: string) => (e: ImportEdge) => e.target !== undefined && under(folder)(e.target);
const isKoa = (e: ImportEdge) => isPackage('koa')(e) || e.specifier.startsWith('@koa/');

/** The edges that break a rule, as `file → specifier` lines (readable in a failure). */
function offenders(from: (file: string) => boolean, forbidden: (e: ImportEdge) => boolean): string[] {
  return ALL.filter((e) => from(e.file) && forbidden(e)).map((e) => `${e.file} → ${e.specifier}`);
}

/** Where the process is assembled (main.ts starts it and loads services.ts): it wires the Koa app. */
const COMPOSITION_ROOT = ['src/main.ts', 'src/services.ts'];

/** The one folder that adapts oidc-provider (issue 12 item 2). */
const OIDC_PROVIDER_FOLDER = 'src/oauth/oidc-provider';

describe('import scanner', () => {
  it.each([
    ["import Koa from 'koa';", ['koa']],
    ["import type { X } from '../oauth/x.js';", ['../oauth/x.js']],
    ["export { a, b } from './a.js';", ['./a.js']],
    ["export * from \"./b.js\";", ['./b.js']],
    ["import './side-effect.js';", ['./side-effect.js']],
    ["import {\n  a,\n  type B,\n} from '@koa/router';", ['@koa/router']],
    ["type P = import('oidc-provider').default;", ['oidc-provider']],
    ["const m = await import('./lazy.js');", ['./lazy.js']],
    [" * prose: the PDP never imports from 'koa' here", []],
    ["const s = 'import x from y';", []],
    ["export const PREFIX = 'urn:deputy:agent:';", []],
  ])('reads %j as %j', (source, expected) => {
    expect(importSpecifiers(source)).toEqual(expected);
  });

  it('sees every area of src/ and their imports (so no rule passes by seeing nothing)', () => {
    const files = new Set(ALL.map((e) => e.file));
    for (const folder of ['src/pdp', 'src/delegation', 'src/oauth', 'src/http', 'src/gateway']) {
      expect([...files].some(under(folder)), folder).toBe(true);
    }
    expect(ALL.some((e) => e.file === 'src/main.ts' && e.target === 'src/pdp/service.js')).toBe(true);
    expect(ALL.some((e) => e.file === 'src/pdp/pdp.ts' && e.target === 'src/delegation/index.js')).toBe(true);
    expect(ALL.some(isKoa)).toBe(true);
    expect(ALL.some(isPackage('oidc-provider'))).toBe(true);
  });
});

describe('import direction', () => {
  it('nothing under src/pdp/ imports src/oauth/ (the PDP resolves subjects through SubjectResolver)', () => {
    expect(offenders(under('src/pdp'), importsFolder('src/oauth'))).toEqual([]);
  });

  it('src/delegation/ imports none of oauth/, pdp/, http/, gateway/, nor Koa or oidc-provider', () => {
    const forbidden = (e: ImportEdge) =>
      ['src/oauth', 'src/pdp', 'src/http', 'src/gateway'].some((f) => importsFolder(f)(e)) || isKoa(e) || isPackage('oidc-provider')(e);
    expect(offenders(under('src/delegation'), forbidden)).toEqual([]);
  });

  it(`only ${OIDC_PROVIDER_FOLDER}/ imports oidc-provider (types included)`, () => {
    expect(existsSync(join(ROOT, OIDC_PROVIDER_FOLDER))).toBe(true);
    expect(offenders((file) => !under(OIDC_PROVIDER_FOLDER)(file), isPackage('oidc-provider'))).toEqual([]);
  });

  // oidc-provider is itself a Koa application: its hooks (client authentication, the grant's
  // DPoP check, introspection, error rendering) receive Koa contexts, so the one folder that
  // adapts it may name Koa's types. The protocol core (the exchange, the PDP, delegation) may not.
  it(`nothing outside src/http/, the composition root (src/main.ts, src/services.ts) and ${OIDC_PROVIDER_FOLDER}/ imports koa or @koa/*`, () => {
    const allowed = (file: string) => under('src/http')(file) || COMPOSITION_ROOT.includes(file) || under(OIDC_PROVIDER_FOLDER)(file);
    expect(offenders((file) => !allowed(file), isKoa)).toEqual([]);
  });
});
