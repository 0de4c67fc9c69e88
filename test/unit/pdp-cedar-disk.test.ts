/**
 * A new Cedar instance must not need the disk (issue 16, tenth round red team). Each policy load,
 * and each recovery after a crash, makes a fresh Cedar instance; the first version re-evaluated
 * cedar-wasm's glue through `require`, which read the glue and its 4.3 MB `.wasm` from
 * node_modules every time. A process out of file descriptors (EMFILE), or a node_modules being
 * replaced under it, then refused every reload as an unexpected error — and a recovery after a
 * crash failed, leaving the serving set retired: every decision denied until an operator acted.
 * Read once at start, an instance is made from memory, and always from the same Cedar build.
 */
import { appendFileSync, cpSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../../src/log.js';
import { PolicyStore } from '../../src/pdp/policy-store.js';
import { REPO } from '../support/authzen.js';

// The CommonJS `fs` object, which the glue's `require('fs')` returns (an ES namespace cannot be spied on).
const fs = createRequire(import.meta.url)('node:fs') as typeof import('node:fs');
const dir = mkdtempSync(join(tmpdir(), 'deputy-cedar-disk-'));
let store: PolicyStore;

/** Runs `fn` while no file under cedar-wasm's folder can be opened (EMFILE), counting the tries. */
async function withoutCedarFiles<T>(fn: () => Promise<T>): Promise<{ value: T; tries: number }> {
  const real = fs.readFileSync;
  let tries = 0;
  const spy = vi.spyOn(fs, 'readFileSync').mockImplementation(((path: unknown, ...rest: unknown[]) => {
    if (String(path).includes('cedar-wasm')) {
      tries += 1;
      throw Object.assign(new Error(`EMFILE: too many open files, open '${String(path)}'`), { code: 'EMFILE' });
    }
    return (real as (...a: unknown[]) => unknown)(path, ...rest);
  }) as typeof fs.readFileSync);
  try {
    return { value: await fn(), tries };
  } finally {
    spy.mockRestore();
  }
}

beforeAll(async () => {
  cpSync(`${REPO}config/policies`, dir, { recursive: true });
  store = new PolicyStore({ dir, logger: createLogger('silent') });
  await store.load();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('a new Cedar instance without the disk', () => {
  it('a reload loads while cedar-wasm\'s files cannot be opened', async () => {
    const before = store.current.generation;
    appendFileSync(join(dir, 'default.cedar'), '\n// changed\n');
    const { value, tries } = await withoutCedarFiles(() => store.reload('signal'));
    expect(value).toMatchObject({ changed: true, generation: before + 1 });
    expect(tries).toBe(0);
  });

  it('a recovery after a crash loads while cedar-wasm\'s files cannot be opened', async () => {
    const serving = store.current;
    const WasmRuntimeError = (globalThis as unknown as { WebAssembly: { RuntimeError: new (m: string) => Error } }).WebAssembly.RuntimeError;
    const { value } = await withoutCedarFiles(async () => {
      serving.crashed(new WasmRuntimeError('memory access out of bounds'));
      return store.reload('recover'); // queued after the recovery the crash started
    });
    expect(value.generation).toBe(serving.generation + 1);
    expect(store.current.usable()).toBe(true);
    const call = { principal: { type: 'User', id: 'u' }, action: { type: 'Action', id: 'read' }, resource: { type: 'Resource', id: 'r' }, context: {}, entities: [] };
    expect(store.current.cedar.statefulIsAuthorized({ ...call, preparsedPolicySetId: store.current.policySetId }).type).toBe('success');
  });
});
