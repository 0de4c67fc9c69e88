/**
 * Each policy set gets a Cedar instance of its own (src/pdp/cedar.ts `newCedarInstance`, issue 16,
 * tenth round): an instance no set uses any more must be collectable. Node records every module
 * a `require` loaded in the requiring module's `children`, so re-evaluating the glue without
 * dropping that record kept every instance ever made — its WebAssembly memory and pre-parsed
 * sets — reachable: one leaked instance (~2 MiB and up) per policy reload.
 */
import { appendFileSync, cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { newCedarInstance } from '../../src/pdp/cedar.js';
import { PolicyStore } from '../../src/pdp/policy-store.js';
import { REPO } from '../support/authzen.js';

setFlagsFromString('--expose_gc');
const gc = runInNewContext('gc') as () => void;

async function collect(): Promise<void> {
  for (let i = 0; i < 4; i++) {
    await new Promise((r) => setTimeout(r, 20));
    gc();
  }
}

describe('Cedar instances', () => {
  it('are independent: a set pre-parsed in one is unknown to another', () => {
    const a = newCedarInstance();
    const b = newCedarInstance();
    expect(a.preparsePolicySet('only-in-a', { staticPolicies: 'permit(principal, action, resource);' }).type).toBe('success');
    const call = { principal: { type: 'User', id: 'u' }, action: { type: 'Action', id: 'read' }, resource: { type: 'R', id: 'r' }, context: {}, entities: [] };
    const inA = a.statefulIsAuthorized({ ...call, preparsedPolicySetId: 'only-in-a' });
    const inB = b.statefulIsAuthorized({ ...call, preparsedPolicySetId: 'only-in-a' });
    expect(inA.type === 'success' && inA.response.decision).toBe('allow');
    expect(inB.type).toBe('failure');
  });

  it('are collected once nothing uses them', async () => {
    const refs: Array<WeakRef<object>> = [];
    for (let i = 0; i < 12; i++) {
      const instance = newCedarInstance();
      instance.preparsePolicySet('set', { staticPolicies: 'permit(principal, action, resource);' });
      refs.push(new WeakRef(instance.statefulIsAuthorized));
    }
    await collect();
    expect(refs.filter((r) => r.deref() !== undefined).length).toBeLessThanOrEqual(1);
  });

  it('of replaced policy sets are collected: reloads do not keep them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'deputy-cedar-instances-'));
    try {
      cpSync(`${REPO}config/policies`, dir, { recursive: true });
      const store = new PolicyStore({ dir, logger: createLogger('silent') });
      await store.load();
      const refs: Array<WeakRef<object>> = [];
      for (let i = 0; i < 8; i++) {
        refs.push(new WeakRef(store.current));
        appendFileSync(join(dir, 'default.cedar'), `\n// reload ${i}\n`);
        expect((await store.reload('signal')).changed).toBe(true);
      }
      await collect();
      expect(refs.filter((r) => r.deref() !== undefined)).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
