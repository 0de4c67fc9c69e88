/**
 * The enforcement pipeline's runner: named steps over one typed context object.
 *
 * A {@link Step} reads fields of the context, returns the fields it adds (merged into the same
 * object, so no context is copied between steps), and refuses by throwing a typed
 * `DeputyError`. A step may also `settle`: once the outcome of the whole run is known, every
 * step that ran is told it, latest first — a budget releases on a refusal and settles after
 * the response, a pending DPoP proof is spent on a refusal. The outcome is known:
 * - on a refusal or failure (any step throws, the upstream call included): at once, before the
 *   error leaves {@link Pipeline.run};
 * - after a success: when the context's `ended` promise resolves ({@link Forwarded}: the
 *   response body was delivered, or cut), or at once when the run adds no `ended`.
 *
 * The runner renders nothing: exactly one error leaves `run` (the refusal, or the error a
 * `settle` replaced it with), and the one renderer at the HTTP edge writes it. Settle errors
 * after a success have no client left to tell: they go to `onSettleError`.
 *
 * @module
 */
import { finished } from 'node:stream';
import type { Readable } from 'node:stream';

/**
 * How a run ended, as each step's `settle` sees it.
 * - `refused`: a step threw (a refusal such as 403/402, or a failure such as an upstream 502);
 *   `step` names it. Nothing, or no complete response, reached the agent.
 * - `completed`: the response was delivered whole (for a stream: it ended normally).
 * - `cut`: the response started but did not end normally (the agent went away, the upstream
 *   reset, a size limit or a budget cap ended it).
 */
export type Outcome =
  | { readonly kind: 'refused'; readonly step: string; readonly error: unknown }
  | { readonly kind: 'completed' }
  | { readonly kind: 'cut'; readonly error: unknown };

/** The end of a delivered response: {@link Outcome} without `refused`. */
export type Ending = Extract<Outcome, { kind: 'completed' | 'cut' }>;

/** What a forward step adds: when its response was delivered or cut (see {@link streamEnding}). */
export interface Forwarded {
  readonly ended: Promise<Ending>;
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
   * Told the run's outcome when the step's `run` returned (never when it threw). Throwing
   * replaces a refusal's error (the earliest step's wins, steps settle latest first); after a
   * success it goes to `onSettleError`. A step that must not change the outcome catches.
   */
  settle?(ctx: In & Add, outcome: Outcome): void | Promise<void>;
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
  /** Whether any step has a `settle`: a run without one skips the bookkeeping. */
  readonly #settling: boolean;

  private constructor(steps: readonly AnyStep[]) {
    this.#steps = steps;
    this.#settling = steps.some((s) => s.settle !== undefined);
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
   * @throws the first refusal (or the error a `settle` replaced it with), after every step that
   *   ran has settled.
   */
  async run(input: In, options: RunOptions = {}): Promise<C> {
    const ctx = input as unknown as Record<string, unknown>;
    const steps = this.#steps;
    let i = 0;
    try {
      for (; i < steps.length; i++) {
        const added = await steps[i]!.run(ctx);
        if (added !== NOTHING) Object.assign(ctx, added);
      }
    } catch (error) {
      if (!this.#settling) throw error;
      throw await settleRefused(steps, i, ctx, { kind: 'refused', step: steps[i]!.name, error });
    }
    if (this.#settling) this.#settleAfter(ctx, options);
    return ctx as unknown as C;
  }

  /** Settles every step once the response ended (or at once without `ended`). */
  #settleAfter(ctx: Record<string, unknown>, options: RunOptions): void {
    const report = options.onSettleError ?? (() => {});
    const ended = (ctx as Partial<Forwarded>).ended ?? Promise.resolve<Ending>({ kind: 'completed' });
    void ended.then(async (outcome) => {
      for (let i = this.#steps.length - 1; i >= 0; i--) {
        const step = this.#steps[i]!;
        try {
          await step.settle?.(ctx, outcome);
        } catch (err) {
          report(err, step.name);
        }
      }
    });
  }
}

/** Settles the `ran` first steps latest first; returns the error to throw. */
async function settleRefused(steps: readonly AnyStep[], ran: number, ctx: object, outcome: Outcome & { kind: 'refused' }): Promise<unknown> {
  let error = outcome.error;
  for (let i = ran - 1; i >= 0; i--) {
    try {
      await steps[i]!.settle?.(ctx, outcome);
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
  if (!body) return Promise.resolve({ kind: 'completed' });
  return new Promise((resolve) => {
    finished(body, (error) => resolve(error ? { kind: 'cut', error } : { kind: 'completed' }));
  });
}
