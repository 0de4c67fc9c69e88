/**
 * Every export of a folder's public surface (its `index.ts`) carries TSDoc on its declaration
 * (issue 12 item 6; panva/jose checks its declaration comments the same way). The TypeScript
 * compiler resolves each re-export to the declaration it names.
 *
 * Folders are listed as they gain an `index.ts` whose surface is documented; add yours.
 */
import { resolve } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');
const SURFACES = [
  'src/agents/index.ts',
  'src/audit/index.ts',
  'src/config/index.ts',
  'src/delegation/index.ts',
  'src/enforcement/index.ts',
  'src/errors/index.ts',
  'src/federation/index.ts',
  'src/gateway/index.ts',
  'src/http/index.ts',
  'src/keys/index.ts',
  'src/oauth/index.ts',
  'src/oauth/oidc-provider/index.ts',
  'src/observability/index.ts',
  'src/pdp/index.ts',
  'src/store/index.ts',
  'src/util/index.ts',
  'src/vault/index.ts',
  'src/vault/connections/index.ts',
];

const program = ts.createProgram(
  SURFACES.map((f) => resolve(ROOT, f)),
  { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, strict: true, noEmit: true },
);
const checker = program.getTypeChecker();

/** The exports of `file` and whether the declaration each names has a doc comment. */
function exportsOf(file: string): Array<{ name: string; documented: boolean }> {
  const source = program.getSourceFile(resolve(ROOT, file));
  const module = source && checker.getSymbolAtLocation(source);
  if (!module) throw new Error(`${file} is not a module`);
  return checker.getExportsOfModule(module).map((exported) => {
    const target = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
    const declaration = target.declarations?.[0];
    // A dependency's type passed through (oidc-provider's `Provider`) is documented by its library.
    if (declaration?.getSourceFile().fileName.includes('/node_modules/')) return { name: exported.name, documented: true };
    const documented = ts.displayPartsToString(target.getDocumentationComment(checker)) !== '' || (declaration !== undefined && ts.getJSDocCommentsAndTags(declaration).length > 0);
    return { name: exported.name, documented };
  });
}

describe('public surfaces carry TSDoc', () => {
  it.each(SURFACES)('every export of %s', (file) => {
    const exports = exportsOf(file);
    // A surface is a folder's public API, not an empty file (agents/ has one class and its types).
    expect(exports.length).toBeGreaterThan(3);
    expect(exports.filter((e) => !e.documented).map((e) => e.name)).toEqual([]);
  });
});
