/**
 * The policy store's crash recovery and its end (issue 16, eleventh round). A set whose Cedar
 * instance crashed is loaded again after a backoff (PolicyStore `#recoverLater`, one timer). That
 * timer outlived what made it moot: a reload that succeeded meanwhile (an operator's fix through
 * the admin API) left it pending — the next crash's recovery then waited for the stale timer's
 * longer delay, decisions denied meanwhile — and the server's shutdown left it too, compiling the
 * set once more after the server closed. A successful load now cancels it, and `close()` (the
 * server's shutdown, through the PDP service) cancels it, stops the folder watches, and makes any
 * later reload load nothing.
 */
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../../src/log.js';
import { newCedarInstance, type Cedar } from '../../src/pdp/cedar.js';
import { CedarEngine } from '../../src/pdp/engine.js';
import { PolicyStore } from '../../src/pdp/policy-store.js';
import { REPO } from '../support/authzen.js';
import { startTestDeputy } from '../support/server.js';

const WasmRuntimeError = (globalThis as unknown as { WebAssembly: { RuntimeError: new (m: string) => Error } }).WebAssembly.RuntimeError;
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
afterEach(() => vi.useRealTimers());

const REQUEST = { principal: { type: 'User', id: 'u' }, action: { type: 'Action', id: 'read' }, resource: { type: 'Resource', id: 'r' }, context: {}, entities: [] };

/** A store over a copy of the default policies whose instances crash on every decision while `crashing.on`; counts instances. */
function crashingStore(crashing: { on: boolean }) {
  const dir = mkdtempSync(join(tmpdir(), 'deputy-policy-close-'));
  dirs.push(dir);
  cpSync(`${REPO}config/policies`, dir, { recursive: true });
  const counts = { instances: 0, messages: [] as string[] };
  const newCedar = (): Cedar => {
    counts.instances += 1;
    const real = newCedarInstance();
    return {
      ...real,
      statefulIsAuthorized: (call) => {
        if (crashing.on) throw new WasmRuntimeError('memory access out of bounds');
        return real.statefulIsAuthorized(call);
      },
    };
  };
  const logger = createLogger('info', { write: (line: string) => void counts.messages.push((JSON.parse(line) as { msg: string }).msg) });
  return { dir, store: new PolicyStore({ dir, logger, newCedar }), counts };
}

async function turns(n: number): Promise<void> {
  for (let t = 0; t < n; t++) await new Promise((r) => setImmediate(r));
}

/** `n` decisions, each followed by turns of the event loop (an immediate recovery runs between them). */
async function decide(store: PolicyStore, engine: CedarEngine, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    engine.authorize(store.current, REQUEST);
    await turns(5);
  }
}

describe('a pending crash recovery', () => {
  it('is cancelled by a reload that succeeds: the next crash recovers on a backoff counted afresh, not on the stale timer', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const crashing = { on: true };
    const { store, counts } = crashingStore(crashing);
    await store.load();
    const engine = new CedarEngine({ cacheSize: 0, slice: false });
    // Crash, recover at once, crash, … : four recoveries in a row, the next one 8 s away.
    await decide(store, engine, 2);
    for (const wait of [1_000, 2_000, 4_000]) {
      await vi.advanceTimersByTimeAsync(wait);
      await turns(5);
      await decide(store, engine, 1);
    }
    expect(vi.getTimerCount()).toBe(1);

    // An operator's reload serves a usable set: nothing is left to recover.
    await store.reload('admin');
    expect(store.current.usable()).toBe(true);
    expect(vi.getTimerCount()).toBe(0);

    // That set crashes too: an immediate recovery, then the second one after 1 s — not after the 8 s left on the stale timer.
    await decide(store, engine, 2);
    const before = counts.instances;
    await vi.advanceTimersByTimeAsync(1_000);
    await turns(10);
    expect(counts.instances).toBe(before + 1);
  });

  it('close() cancels it: nothing is compiled after the server closed, and later reloads load nothing', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const crashing = { on: true };
    const { dir, store, counts } = crashingStore(crashing);
    const loaded = await store.load();
    const engine = new CedarEngine({ cacheSize: 0, slice: false });
    await decide(store, engine, 2); // crash, immediate recovery, crash: a recovery pending (1 s)
    expect(vi.getTimerCount()).toBe(1);
    const instances = counts.instances;
    const messages = counts.messages.length;

    store.close();
    expect(vi.getTimerCount()).toBe(0);
    crashing.on = false;
    await vi.advanceTimersByTimeAsync(600_000);
    await turns(10);
    // A crash after close schedules nothing either.
    await decide(store, engine, 1);
    writeFileSync(join(dir, 'late.cedar'), 'permit(principal, action, resource) when { false };\n');
    for (const trigger of ['admin', 'signal', 'file', 'recover'] as const) {
      expect(await store.reload(trigger)).toMatchObject({ changed: false });
    }
    expect(counts.instances).toBe(instances);
    expect(store.current.generation).toBe(loaded.generation + 1);
    expect(vi.getTimerCount()).toBe(0);
    expect(counts.messages.slice(messages).filter((m) => m === 'policy set loaded')).toEqual([]);
    store.close(); // idempotent
  });

  it('close() stops the folder watches: a file written afterwards loads nothing', async () => {
    const { dir, store, counts } = crashingStore({ on: false });
    await store.load();
    store.watch(10);
    store.close();
    const instances = counts.instances;
    writeFileSync(join(dir, 'late.cedar'), 'permit(principal, action, resource) when { false };\n');
    await new Promise((r) => setTimeout(r, 300));
    expect(counts.instances).toBe(instances);
    expect(store.current.generation).toBe(1);
  });

  it('the server\'s shutdown closes it: a reload asked after the server closed loads nothing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'deputy-policy-close-server-'));
    dirs.push(dir);
    cpSync(`${REPO}config/policies`, dir, { recursive: true });
    const deputy = await startTestDeputy({ config: { pdp: { policies: dir, watch: true } } });
    const generation = deputy.pdp.policies.current.generation;
    await deputy.stop();
    writeFileSync(join(dir, 'late.cedar'), 'permit(principal, action, resource) when { false };\n');
    expect(await deputy.pdp.policies.reload('signal')).toMatchObject({ changed: false, generation });
  }, 60_000);
});
