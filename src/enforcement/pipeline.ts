/**
 * The enforcement pipeline's runner: named steps over one typed context object.
 *
 * A {@link Step} reads fields of the context, returns the fields it adds (merged into the same
 * object, so no context is copied between steps), and refuses by throwing a typed
 * `DeputyError`. Every step whose `run` returned is then told how the run ended, latest first:
 * - `refused(ctx, refusal)` when a later step threw (a refusal such as 403/402, or a failure
 *   such as an upstream 502), before the error leaves {@link Pipeline.run} — a pending DPoP
 *   proof is spent, a budget hold released;
 * - `settle(ctx, ending)` after a success, once the response was delivered or cut (the
 *   context's {@link Forwarded.ended}; at once when the run adds none) — a budget hold is
 *   charged what was used.
 *
 * The runner renders nothing: exactly one error leaves `run` (the refusal, or the error a
 * `refused` hook replaced it with), and the one renderer at the HTTP edge writes it. Settle
 * errors after a success have no client left to tell: they go to `onSettleError`.
 *
 * @module
 */
import { finished } from 'node:stream';
import type { Readable } from 'node:stream';
import { observeStep, type ObservedStepKind } from '../observability/instrument.js';

/**
 * How a run ended.
 * - `refused`: a step threw (a refusal such as 403/402, or a failure such as an upstream 502);
 *   `step` names it. Nothing, or no complete response, reached the agent.
 * - `completed`: the response was delivered whole (for a stream: it ended normally).
 * - `cut`: the response started but did not end normally (the agent went away, the upstream
 *   reset, a size limit or a budget cap ended it).
 */
export type Outcome = Refusal | Ending;

/** A run that a step refused: told to the `refused` hooks of the steps before it. */
export interface Refusal {
  readonly kind: 'refused';
  /** The name of the step that threw. */
  readonly step: string;
  readonly error: unknown;
}

/** The end of a delivered response: told to the `settle` hooks. */
export type Ending = { readonly kind: 'completed' } | { readonly kind: 'cut'; readonly error: unknown };

/**
 * What a forward step adds: when its response was delivered or cut. A function, called by the
 * runner right after the run and only when a step settles (no cost otherwise); for a body
 * stream, `() => streamEnding(body)`.
 */
export interface Forwarded {
  readonly ended: () => Promise<Ending>;
}

/**
 * One named step.
 *
 * @typeParam In - the context fields it reads (earlier steps' additions and the run's input).
 * @typeParam Add - the fields it adds; {@link NOTHING} when none.
 */
export interface Step<In, Add extends object = object> {
  /** Stable name (logs, tests, the order listed by {@link Pipeline.names}). */
  readonly name: string;
  /** Does the step's work; throws a typed error to refuse (later steps do not run). */
  run(ctx: In): Add | Promise<Add>;
  /**
   * Observed by the runner (src/observability/instrument.ts): `decision` runs in a span of its
   * own; `upstream` (a PEP's forward step) in a client span, timed per connection — so every
   * gateway's decisions and upstream calls are measured in this one place.
   */
  readonly observe?: ObservedStepKind;
  /**
   * A later step refused (never called when this step's own `run` threw). Awaited before the
   * error leaves the run; throwing replaces the error (steps are told latest first, so the
   * earliest step's replacement wins). A hook that must not change the outcome catches.
   */
  refused?(ctx: In & Add, refusal: Refusal): void | Promise<void>;
  /**
   * The run succeeded and its response ended ({@link Ending}); not awaited by the run. Errors
   * go to {@link RunOptions.onSettleError}.
   */
  settle?(ctx: In & Add, ending: Ending): void | Promise<void>;
}

/** The addition of a step that adds nothing (shared: no allocation per call). */
export const NOTHING: Readonly<Record<never, never>> = Object.freeze({});

/** Options of one {@link Pipeline.run}. */
export interface RunOptions {
  /** A `settle` that failed after a success (logged by the caller; no client to tell). */
  onSettleError?: (error: unknown, step: string) => void;
}

type AnyStep = Step<object, object>;

/**
 * An ordered list of steps, typed by what each adds: `Pipeline.start<In>().then(a).then(b)`
 * compiles only when every step's input is provided by the input and the steps before it.
 * Built once (at start-up) and run per call; immutable, so one pipeline serves every call.
 *
 * @typeParam In - what a run starts from (the object becomes the context: not copied).
 * @typeParam C - the context after the last step.
 */
export class Pipeline<In extends object, C extends object> {
  readonly #steps: readonly AnyStep[];
  /** Whether any step has a `refused` hook: runs without skip the bookkeeping. */
  readonly #refusing: boolean;
  /**
   * The steps with a `settle` hook, latest first: a run settles only these (a gateway call has 1
   * of 9), not `await undefined` once per step — each a promise, a microtask turn and, under
   * Node 22's `AsyncLocalStorage`, a promise-hook call (issue 16, tenth round).
   */
  readonly #settlers: readonly AnyStep[];

  private constructor(steps: readonly AnyStep[]) {
    this.#steps = steps;
    this.#refusing = steps.some((s) => s.refused !== undefined);
    this.#settlers = steps.filter((s) => s.settle !== undefined).reverse();
  }

  /** An empty pipeline over runs starting from `In`. */
  static start<In extends object>(): Pipeline<In, In> {
    return new Pipeline<In, In>([]);
  }

  /** A new pipeline with `step` appended. */
  then<Add extends object>(step: Step<C, Add>): Pipeline<In, C & Add> {
    return new Pipeline<In, C & Add>([...this.#steps, step as unknown as AnyStep]);
  }

  /** The steps' names, in order. */
  names(): string[] {
    return this.#steps.map((s) => s.name);
  }

  /**
   * Runs the steps in order over `input` (which becomes the context).
   *
   * @returns the context with every step's additions.
   * @throws the first refusal (or the error a `refused` hook replaced it with), after the
   *   `refused` hooks of every step that ran.
   */
  async run(input: In, options: RunOptions = {}): Promise<C> {
    const ctx = input as unknown as Record<string, unknown>;
    const steps = this.#steps;
    let i = 0;
    try {
      for (; i < steps.length; i++) {
        const step = steps[i]!;
        const result = step.observe ? observeStep(step.observe, step.name, ctx, () => step.run(ctx)) : step.run(ctx);
        // A synchronous step costs no microtask turn (per-call overhead: issue 16).
        const added = isThenable(result) ? await result : result;
        if (added !== NOTHING) Object.assign(ctx, added);
      }
    } catch (error) {
      if (!this.#refusing) throw error;
      throw await tellRefused(steps, i, ctx, { kind: 'refused', step: steps[i]!.name, error });
    }
    if (this.#settlers.length > 0) this.#settleAfter(ctx, options);
    return ctx as unknown as C;
  }

  /**
   * Settles every step with a `settle` hook, latest first, once the response ended (or at once
   * without `ended`); a hook's promise is awaited before the next hook runs, a synchronous hook
   * costs no microtask turn.
   */
  #settleAfter(ctx: Record<string, unknown>, options: RunOptions): void {
    const report = options.onSettleError ?? (() => {});
    const settleAll = async (ending: Ending): Promise<void> => {
      for (const step of this.#settlers) {
        try {
          const settled = step.settle!(ctx, ending);
          // Any thenable, as `await` would (a `void` hook may return one that is no native Promise).
          if (isThenable(settled)) await settled;
        } catch (err) {
          reportSafely(report, err, step.name);
        }
      }
    };
    // A response end that throws or rejects is a cut: the hooks settle (holds released), nothing unhandled.
    void endingOf(ctx).then(settleAll, (error: unknown) => settleAll({ kind: 'cut', error }));
  }
}

/** When the run's response ended ({@link Forwarded.ended}); at once without one; a throwing `ended` rejects. */
function endingOf(ctx: Record<string, unknown>): Promise<Ending> {
  try {
    return (ctx as Partial<Forwarded>).ended?.() ?? Promise.resolve<Ending>(COMPLETED);
  } catch (error) {
    return Promise.reject(error as Error);
  }
}

/** Hands a settle error to `report`; a reporter that throws loses it rather than leave a rejection unhandled (which ends the process). */
function reportSafely(report: (error: unknown, step: string) => void, error: unknown, step: string): void {
  try {
    report(error, step);
  } catch {
    // Nothing left to tell: the response is gone and the reporter failed.
  }
}

/** Whether `value` is a promise or any other thenable (what `await` would wait for), rather than a value known now. */
export function isThenable<T>(value: T | PromiseLike<T>): value is PromiseLike<T> {
  return value instanceof Promise || (typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function');
}

const COMPLETED: Ending = Object.freeze({ kind: 'completed' });

/** Tells the `ran` first steps latest first; returns the error to throw. */
async function tellRefused(steps: readonly AnyStep[], ran: number, ctx: object, refusal: Refusal): Promise<unknown> {
  let error = refusal.error;
  for (let i = ran - 1; i >= 0; i--) {
    try {
      await steps[i]!.refused?.(ctx, refusal);
    } catch (replaced) {
      error = replaced;
    }
  }
  return error;
}

/**
 * When a response body was delivered (`completed`: it ended) or `cut` (destroyed or errored
 * before its end: the agent went away, the upstream reset, a limit). No body: completed at once.
 */
export function streamEnding(body: Readable | undefined): Promise<Ending> {
  if (!body) return Promise.resolve(COMPLETED);
  return new Promise((resolve) => {
    finished(body, (error) => resolve(error ? { kind: 'cut', error } : COMPLETED));
  });
}
