/**
 * A store fake for `OperatorTokenRevocations` (src/oauth/operator-token-revocation.ts): it keeps
 * every revocation written and counts the look-ups that reach it, so a test sees from outside
 * what a cached answer saved or what a forgotten one cost.
 */
import type { Store } from '../../src/store/index.js';

export function countingRevocationStore(): { store: Store; lookups: () => number } {
  const recorded = new Set<string>();
  let lookups = 0;
  const store = {
    async query(sql: string, params: unknown[]) {
      if (sql.includes('INSERT INTO oidc_models')) {
        recorded.add(String(params[1]));
        return [{ id: params[1] }];
      }
      lookups++;
      const ids = params[1] as string[];
      return ids.filter((id) => recorded.has(id)).map((id) => ({ model: (params[0] as string[])[0]!, id }));
    },
  } as unknown as Store;
  return { store, lookups: () => lookups };
}
