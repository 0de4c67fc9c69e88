/**
 * Red team (issue 16, ninth round): a policy subset that does not pre-parse
 * (src/pdp/policy-scopes.ts — it parsed as a whole set, so a bug, or Cedar failing) threw a plain
 * `Error`, which the policy store did not recognise as a refusal: a reload failed without the
 * "refused" line, and the admin API answered it as an unexpected error. It is now the store's
 * `PolicyLoadError`: the reload is refused, logged as such, and the set serving keeps serving.
 * The failure is injected (Cedar's pre-parse of a subset id, `<slot>~n`, answers a failure) in
 * the instances the store loads sets into (its `newCedar` option).
 */
import { cpSync, mkdtempSync, rmSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { newCedarInstance, type Cedar } from '../../src/pdp/cedar.js';
import { PolicyLoadError, PolicyStore } from '../../src/pdp/policy-store.js';
import { REPO } from '../support/authzen.js';

/** Whether the next instances refuse to pre-parse a non-empty subset. */
let failSubsets = false;

/** A Cedar instance that refuses to pre-parse a non-empty subset while {@link failSubsets}. */
function newCedar(): Cedar {
  const instance = newCedarInstance();
  const preparsePolicySet: Cedar['preparsePolicySet'] = (id, set) =>
    failSubsets && id.includes('~') && Object.keys(set.staticPolicies ?? {}).length > 0
      ? ({ type: 'failure', errors: [{ message: 'injected subset failure', help: null }] } as unknown as ReturnType<Cedar['preparsePolicySet']>)
      : instance.preparsePolicySet(id, set);
  return { ...instance, preparsePolicySet };
}

afterEach(() => {
  failSubsets = false;
});

describe('a policy subset that does not pre-parse', () => {
  it('refuses the reload with PolicyLoadError and the "refused" line; the previous set keeps serving', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'deputy-scopes-'));
    try {
      cpSync(`${REPO}config/policies/default.cedar`, join(dir, 'default.cedar'));
      cpSync(`${REPO}config/policies/schema.cedarschema`, join(dir, 'schema.cedarschema'));
      let out = '';
      const sink = new Writable({
        write(chunk: Buffer, _enc, done) {
          out += chunk.toString();
          done();
        },
      });
      const store = new PolicyStore({ dir, logger: createLogger('info', sink), newCedar });
      const first = await store.load();
      // A changed folder (a comment), and Cedar refusing the subsets of the next load.
      appendFileSync(join(dir, 'default.cedar'), '\n// changed\n');
      failSubsets = true;
      const refused = await store.reload('admin').catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(PolicyLoadError);
      expect((refused as PolicyLoadError).issues.join('\n')).toMatch(/did not pre-parse: injected subset failure/);
      expect(store.current.generation).toBe(first.generation);
      expect(store.current.digest).toBe(first.digest);
      const line = out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'policy set refused; the previous set keeps serving');
      expect(line).toMatchObject({ trigger: 'admin', serving: first.generation });
      // Cedar well again: the same folder loads.
      failSubsets = false;
      expect((await store.reload('admin')).changed).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
