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
const SURFACES = ['src/delegation/index.ts', 'src/pdp/index.ts'];

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
    const documented = ts.displayPartsToString(target.getDocumentationComment(checker)) !== '' || (declaration !== undefined && ts.getJSDocCommentsAndTags(declaration).length > 0);
    return { name: exported.name, documented };
  });
}

describe('public surfaces carry TSDoc', () => {
  it.each(SURFACES)('every export of %s', (file) => {
    const exports = exportsOf(file);
    expect(exports.length).toBeGreaterThan(5);
    expect(exports.filter((e) => !e.documented).map((e) => e.name)).toEqual([]);
  });
});
