/**
 * A policy set that crashes Cedar on every decision (issue 16, tenth round red team). A crash
 * retires the serving set's instance and loads the same files into a fresh one; when the fresh
 * one crashes too (a policy that overflows Cedar's stack only under a request's deeper stack, a
 * request shape that crashes it), the first version loaded the set again after every crashing
 * decision: one whole, synchronous compile (~0.8 s at 1,000 policies) and one error line per
 * request, the event loop held by reloads. Recoveries in a row now wait longer each time, and a
 * refused recovery is tried again the same way, rather than leaving the set retired for good.
 */
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../../src/log.js';
import { newCedarInstance, type Cedar } from '../../src/pdp/cedar.js';
import { CedarEngine } from '../../src/pdp/engine.js';
import { PolicyStore } from '../../src/pdp/policy-store.js';
import { REPO } from '../support/authzen.js';

const WasmRuntimeError = (globalThis as unknown as { WebAssembly: { RuntimeError: new (m: string) => Error } }).WebAssembly.RuntimeError;
const dir = mkdtempSync(join(tmpdir(), 'deputy-cedar-loop-'));
cpSync(`${REPO}config/policies`, dir, { recursive: true });
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => vi.useRealTimers());

const REQUEST = { principal: { type: 'User', id: 'u' }, action: { type: 'Action', id: 'read' }, resource: { type: 'Resource', id: 'r' }, context: {}, entities: [] };

/** A store whose instances crash on every decision (while `crashing.on`), counting instances and error lines. */
function crashingStore(crashing: { on: boolean; loads: boolean }) {
  const counts = { instances: 0, errors: 0, messages: [] as string[] };
  const newCedar = (): Cedar => {
    counts.instances += 1;
    const real = newCedarInstance();
    return {
      ...real,
      preparsePolicySet: (...a: Parameters<Cedar['preparsePolicySet']>) => {
        if (!crashing.loads) throw new WasmRuntimeError('memory access out of bounds');
        return real.preparsePolicySet(...a);
      },
      statefulIsAuthorized: (call) => {
        if (crashing.on) throw new WasmRuntimeError('memory access out of bounds');
        return real.statefulIsAuthorized(call);
      },
    };
  };
  const logger = createLogger('info', {
    write: (line: string) => {
      const { level, msg } = JSON.parse(line) as { level: string; msg: string };
      if (level === 'error') counts.errors += 1;
      counts.messages.push(msg);
    },
  });
  return { store: new PolicyStore({ dir, logger, newCedar }), counts };
}

/** `n` turns of the event loop. */
async function turns(n: number): Promise<void> {
  for (let t = 0; t < n; t++) await new Promise((r) => setImmediate(r));
}

/** `n` decisions, each followed by a turn of the event loop (a recovery may run between them). */
async function decide(store: PolicyStore, engine: CedarEngine, n: number): Promise<string[]> {
  const kinds: string[] = [];
  for (let i = 0; i < n; i++) {
    const v = engine.authorize(store.current, REQUEST);
    kinds.push(v.allowed ? 'allow' : v.kind);
    await turns(5);
  }
  return kinds;
}

describe('a set that crashes Cedar on every decision', () => {
  it('is not loaded again after every decision: recoveries in a row back off, decisions stay denied', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const crashing = { on: true, loads: true };
    const { store, counts } = crashingStore(crashing);
    await store.load();
    const engine = new CedarEngine({ cacheSize: 0, slice: false });
    const kinds = await decide(store, engine, 40);
    expect(kinds.every((k) => k === 'engine_error')).toBe(true);
    // The load, then the first recovery at once; the next waits for its timer.
    expect(counts.instances).toBeLessThanOrEqual(3);
    expect(counts.errors).toBeLessThanOrEqual(3);
    // Cedar stops crashing: the timer's recovery serves the set again.
    crashing.on = false;
    await vi.advanceTimersByTimeAsync(120_000);
    await turns(10); // the timer's recovery, not one asked for here
    expect(store.current.usable()).toBe(true);
    expect((engine.authorize(store.current, REQUEST) as { kind?: string }).kind).not.toBe('engine_error');
  });

  it('a recovery that crashes while loading is tried again, not left retired for good', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const crashing = { on: true, loads: true };
    const { store, counts } = crashingStore(crashing);
    await store.load();
    const engine = new CedarEngine({ cacheSize: 0, slice: false });
    crashing.loads = false; // the recovery's load crashes too
    await decide(store, engine, 5);
    const retired = store.current;
    expect(retired.usable()).toBe(false);
    // The refusal does not claim a set keeps serving: none does.
    expect(counts.messages).toContain('policy set refused; the serving set is retired (Cedar crashed): decisions are denied until a load succeeds');
    expect(counts.messages.filter((m) => m.includes('previous set keeps serving'))).toEqual([]);
    crashing.loads = true;
    crashing.on = false;
    await vi.advanceTimersByTimeAsync(120_000);
    await turns(10); // the timer's recovery, not one asked for here
    expect(store.current.generation).toBeGreaterThan(retired.generation);
    expect(store.current.usable()).toBe(true);
    expect((engine.authorize(store.current, REQUEST) as { kind?: string }).kind).not.toBe('engine_error');
    expect(counts.instances).toBeLessThanOrEqual(12);
  });
});
