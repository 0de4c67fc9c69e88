/**
 * Issue 12: only src/oauth/oidc-provider/ imports `oidc-provider` (types included), so an upgrade
 * of that pinned dependency is one folder's work; and the protocol core (the token exchange, the
 * error family and its serializer) imports neither Koa nor oidc-provider.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = fileURLToPath(new URL('../../src', import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sources(path);
    return e.name.endsWith('.ts') ? [path] : [];
  });
}

function imports(file: string, pkg: string): boolean {
  return new RegExp(`(from|import)\\s*\\(?\\s*'${pkg}(/[^']*)?'`).test(readFileSync(file, 'utf8'));
}

describe('import boundaries', () => {
  it('only src/oauth/oidc-provider/ imports oidc-provider', () => {
    const outside = sources(SRC)
      .map((f) => relative(SRC, f))
      .filter((f) => !f.startsWith(join('oauth', 'oidc-provider')))
      .filter((f) => imports(join(SRC, f), 'oidc-provider'));
    expect(outside).toEqual([]);
  });

  it.each(['oauth/token-exchange.ts', 'oauth/introspection.ts', 'errors/index.ts', 'errors/serialize.ts'])('%s imports neither Koa nor oidc-provider', (file) => {
    const path = join(SRC, file);
    expect(imports(path, 'koa')).toBe(false);
    expect(imports(path, 'oidc-provider')).toBe(false);
  });
});
