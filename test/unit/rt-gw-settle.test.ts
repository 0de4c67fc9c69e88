/**
 * Red team of the tenth round's per-call cuts (issue 16): the pipeline's settle hooks — only
 * steps that have one, awaited only when they return a promise — must still settle every hold
 * whatever the hooks or the response's end do: a hook returning a thenable that is not a native
 * `Promise` (legal: a `void`-returning hook may return anything), a response end that rejects or
 * throws, a budgeter that throws synchronously.
 */
import { describe, expect, it } from 'vitest';
import { budget, NOTHING, Pipeline, type Budgeter, type Ending, type Step } from '../../src/enforcement/index.js';

/** Waits until the microtask and timer queues have run (settling is not awaited by the run). */
const drain = () => new Promise((resolve) => setTimeout(resolve, 5));

/** A thenable that is no native Promise: settles on a later timer tick. */
function lateThenable(fail: boolean, done: () => void): PromiseLike<void> {
  return {
    then(onFulfilled, onRejected) {
      return new Promise<void>((resolve, reject) => setTimeout(() => { done(); if (fail) reject(new Error('late')); else resolve(); }, 1)).then(onFulfilled, onRejected);
    },
  };
}

describe('settle hooks', () => {
  it('a hook returning a non-native thenable is awaited before earlier steps settle; its rejection is reported', async () => {
    const order: string[] = [];
    const errors: string[] = [];
    const first: Step<object> = { name: 'first', run: () => NOTHING, settle: () => void order.push('first') };
    const second: Step<object> = {
      name: 'second', run: () => NOTHING,
      settle: () => lateThenable(true, () => order.push('second done')) as unknown as Promise<void>,
    };
    await Pipeline.start<object>().then(first).then(second).run({}, { onSettleError: (_e, step) => errors.push(step) });
    // Settling is not awaited by the run, and a loaded machine can delay the thenable's timer past one drain.
    for (let i = 0; i < 200 && order.length < 2; i++) await drain();
    expect(order).toEqual(['second done', 'first']);
    expect(errors).toEqual(['second']);
  });

  it('a response end that rejects or throws still settles every hook (as cut), nothing unhandled', async () => {
    for (const ended of [() => Promise.reject(new Error('end failed')), () => { throw new Error('end threw'); }]) {
      const endings: Ending[] = [];
      const hold: Step<object> = { name: 'hold', run: () => NOTHING, settle: (_c, e) => void endings.push(e) };
      const forward: Step<object, { ended: () => Promise<Ending> }> = { name: 'forward', run: () => ({ ended }) };
      await Pipeline.start<object>().then(hold).then(forward).run({});
      await drain();
      expect(endings.map((e) => e.kind)).toEqual(['cut']);
    }
  });

  it('a budgeter throwing synchronously refuses the call (a rejection of run, earlier steps told), never a throw at the call site', async () => {
    const told: string[] = [];
    const budgeter: Budgeter<{ decision: { allowed: true } }> = { reserve: () => { throw new Error('demand broke'); } };
    const decided: Step<object, { decision: { allowed: true } }> = { name: 'decide', run: () => ({ decision: { allowed: true } }), refused: (_c, r) => void told.push(r.step) };
    let run: Promise<unknown> | undefined;
    expect(() => { run = Pipeline.start<object>().then(decided).then(budget(budgeter)).run({}); }).not.toThrow();
    await expect(run).rejects.toThrow('demand broke');
    expect(told).toEqual(['budget']);
  });
});

describe('settle errors', () => {
  it('a reporter that throws leaves nothing unhandled, and later hooks still settle', async () => {
    const settled: string[] = [];
    const first: Step<object> = { name: 'first', run: () => NOTHING, settle: () => void settled.push('first') };
    const second: Step<object> = { name: 'second', run: () => NOTHING, settle: () => Promise.reject(new Error('settle failed')) };
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      await Pipeline.start<object>().then(first).then(second).run({}, { onSettleError: () => { throw new Error('logger broke'); } });
      await drain();
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    expect(settled).toEqual(['first']);
    expect(unhandled).toEqual([]);
  });

  it('a hook returning an object whose `then` getter or call throws: reported, and the earlier hooks still settle', async () => {
    const hostile = [
      Object.defineProperty({}, 'then', { get() { throw new Error('getter'); } }),
      { then() { throw new Error('then threw'); } },
    ];
    for (const returned of hostile) {
      const order: string[] = [];
      const errors: string[] = [];
      const first: Step<object> = { name: 'first', run: () => NOTHING, settle: () => void order.push('first') };
      const second: Step<object> = { name: 'second', run: () => NOTHING, settle: () => returned as unknown as Promise<void> };
      await Pipeline.start<object>().then(first).then(second).run({}, { onSettleError: (_e, step) => errors.push(step) });
      for (let i = 0; i < 200 && order.length < 1; i++) await drain();
      expect(order).toEqual(['first']);
      expect(errors).toEqual(['second']);
    }
  });
});
