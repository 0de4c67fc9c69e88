/**
 * The receipt service: the one way any module (token exchange, PDP, gateway) records a receipt,
 * and the reads the admin API and exports need.
 *
 * Two ways to append, both linear per agent (see `./chain.ts`):
 * - `append(input, tx)` inside the caller's transaction: the receipt commits or rolls back with
 *   what it attests (the authorization code grant records its token and its receipt atomically).
 * - `append(input)` on its own: appends for one agent queue in this process and are written as
 *   a group, one statement per group (group commit). The first append starts at once, so a
 *   lone append waits for nothing; appends that arrive while a write is in flight share the next.
 * - `appendOnce(input, key)`: the same group commit, and the group's statement also records
 *   each append's once-key (the gateway's DPoP proof `jti`); an append whose key was recorded
 *   already writes nothing and rejects with {@link AlreadyRecorded}. One commit — on PostgreSQL
 *   one WAL flush — spends the proof and records the decision.
 * - `appendWith(input, writes)`: the same group commit carrying the writes the receipt attests
 *   (the token exchange's `jti`s, token record and vault row) in the group's statement, all or
 *   nothing; when that statement refuses, each such append is decided alone in a locked
 *   transaction (its rows by `writes.inTransaction`, then the head, then its keys) that throws
 *   the caller's own error.
 *
 * Optimistic head: this instance remembers the head it last wrote for each agent (the group
 * writer already serialises one agent's appends within the process), signs the next receipts
 * against it with no lock held, and writes them with {@link appendIfHead}: receipts, once-keys
 * and the head's move in one statement, conditional on the head still being where this instance
 * left it. When another instance (or a transaction) moved it, nothing was written: the head is
 * read again and the receipts signed again. When a once-key was recorded before, nothing was
 * written either, and the group goes through the locked path (lock the head, record the keys,
 * sign, insert: one transaction) that refuses exactly the replayed appends. The remembered head
 * is a hint, never trusted: a stale one costs a retry, not a fork.
 *
 * @module
 */
import { randomUUID } from 'node:crypto';
import { findRecorded, onceKeyId, recordEachOnce, type OnceKey } from '../oauth/adapter.js';
import { observeReceiptAppend } from '../observability/instrument.js';
import { isTransactionConflict, type Queryable, type StatementPart, type Store } from '../store/index.js';
import { appendIfHead, appendLocked, lockHead, readById, readHead, readRange, type ChainHead, type ConditionalAppend } from './chain.js';
import { assertReceiptInput, genesisHash, receiptClaims, receiptHash, ReceiptSigner, type ReceiptClaims, type ReceiptInput, type ReceiptSigningKey, type SignedReceipt } from './receipt.js';

/** What the token exchange, the PDP and the gateway depend on. */
export interface ReceiptAppender {
  /** Appends one receipt to `input.agent`'s chain; inside `tx` when given. */
  append(input: ReceiptInput, tx?: Queryable): Promise<AppendedReceipt>;
  /**
   * Records `once` and appends the receipt in one transaction (group-committed like
   * {@link append}): either both are written or neither. Rejects with {@link AlreadyRecorded},
   * writing nothing, when `once` was recorded before (the gateway's DPoP `jti`, RFC 9449 §11.1:
   * spending the proof and recording the decision cost one commit, not two). Absent on
   * appenders that cannot; callers then record the key themselves first. `ready` (the gateway's
   * DPoP proof signature, verified while the receipt is signed): nothing is written before it
   * resolves; when it rejects, nothing is written and the append rejects with its error.
   */
  appendOnce?(input: ReceiptInput, once: OnceKey, ready?: Promise<unknown>): Promise<AppendedReceipt>;
  /**
   * Appends the receipt together with the writes it attests ({@link AttestedWrites}: once-keys and
   * rows of other modules), group-committed like {@link append}: all of them or nothing, and the
   * receipt is durable when this resolves. Rejects with what `writes.inTransaction` throws (a
   * replayed key, a refused row), having written nothing. Absent on appenders that cannot; callers
   * then write in a transaction of their own with `append(input, tx)`.
   */
  appendWith?(input: ReceiptInput, writes: AttestedWrites): Promise<AppendedReceipt>;
}

/**
 * What a receipt attests, written with it by {@link ReceiptAppender.appendWith} (the token
 * exchange: its proof and client assertion `jti`s, its token record and the upstream token's
 * vault row). Two forms of the same writes, because the group writer first tries one statement
 * for a whole group and falls back, per append, to a transaction when that statement refuses.
 */
export interface AttestedWrites {
  /** Single-use keys recorded with the receipt (distinct). */
  once: readonly OnceKey[];
  /** `INSERT`s (no `RETURNING`) each of which must write exactly one row, else nothing is written. */
  parts: readonly StatementPart[];
  /**
   * The rows of `parts` inside `tx` — not the keys of `once`, which the receipt service records
   * there itself, after the chain head's lock (rows, head, keys: the one lock order of every
   * path, see `#writeAlone`). Throws (rolling `tx` back) with the error the caller is to see
   * when a row is refused.
   */
  inTransaction(tx: Queryable): Promise<void>;
  /** The error a replay gets, `key` (one of `once`) having been recorded before; {@link AlreadyRecorded} when absent. */
  replayed?(key: OnceKey): Error;
  /**
   * Nothing is written before this resolves (the token exchange: its token's signature, computed
   * while the receipt is signed); when it rejects, nothing is written and the append rejects with
   * its error. Awaited after the receipt is signed, before the statement.
   */
  ready?: Promise<unknown>;
}

/** Appends of a group whose {@link AttestedWrites.ready} rejected, with their errors: written by none. */
class NotReady extends Error {
  /** What the group was signed as before its statement was given up ({@link reusablePrefix}). */
  signed: Signed | undefined;

  constructor(readonly failed: ReadonlyMap<Pending, unknown>) {
    super('an attested write was not ready');
  }
}

/** Receipts signed for `inputs` (in order, each after the one before) starting from `head`. */
interface Signed {
  head: ChainHead;
  inputs: readonly ReceiptInput[];
  receipts: readonly AppendedReceipt[];
}

/**
 * The receipts of `signed` that stay valid for the group `firsts` written over `head`: those
 * signed for its leading appends, up to the first that differs (a refused append taken out of
 * the group, say) — each names the one before it, so nothing after a difference can be kept.
 */
function reusablePrefix(signed: Signed, head: ChainHead, firsts: readonly Pending[]): AppendedReceipt[] {
  if (signed.head.seq !== head.seq || signed.head.hash !== head.hash) return [];
  let n = 0;
  while (n < firsts.length && n < signed.receipts.length && firsts[n]!.input === signed.inputs[n]) n++;
  return signed.receipts.slice(0, n);
}

/** The promise an append's writing waits for: its attested writes' `ready`, or `appendOnce`'s. */
function readyOf(p: Pending): Promise<unknown> | undefined {
  return p.writes?.ready ?? p.ready;
}

/** Marks `p` refused as soon as its `ready` rejects (its writer still waits for it: {@link whenReady}). */
function noteRefusal(p: Pending): void {
  readyOf(p)?.then(undefined, (error: unknown) => {
    p.refusal = { error };
  });
}

/**
 * Waits for the `ready` promises of `group`'s appends; `undefined` when none has one (nothing to
 * wait for: the caller awaits nothing). @throws NotReady naming those that rejected
 */
function whenReady(group: readonly Pending[]): Promise<void> | undefined {
  return group.length === 1 ? whenOneReady(group[0]!) : whenAllReady(group);
}

/** {@link whenReady} for a group of several appends: every `ready` settled, then the refused ones named. */
async function whenAllReady(group: readonly Pending[]): Promise<void> {
  const gated = group.filter(readyOf);
  if (gated.length === 0) return;
  const settled = await Promise.allSettled(gated.map(readyOf));
  const failed = new Map<Pending, unknown>();
  settled.forEach((r, i) => {
    if (r.status === 'rejected') failed.set(gated[i]!, r.reason);
  });
  if (failed.size > 0) throw new NotReady(failed);
}

/**
 * {@link whenReady} for a group of one (the gateway's lone call at c1): its own `ready`, one
 * derived promise — not an `async` wrapper and its `await` (two promises, each a promise-hook call
 * under Node 22's `AsyncLocalStorage`; issue 16, twelfth round).
 */
function whenOneReady(p: Pending): Promise<void> | undefined {
  return readyOf(p)?.then(IGNORE, (error: unknown) => {
    throw new NotReady(new Map([[p, error]]));
  });
}

/** Resolves a derived promise with `undefined`, whatever its source resolved with. */
function IGNORE(): void {}

/** {@link ReceiptAppender.appendOnce}: the key was recorded already, so no receipt was written. */
export class AlreadyRecorded extends Error {
  readonly code = 'ERR_ALREADY_RECORDED';
  constructor(readonly once: OnceKey) {
    super(`"${once.namespace}" key was recorded already`);
    this.name = 'AlreadyRecorded';
  }
}

/** A receipt as appended: signed, with its place in the agent's chain, and its claims. */
export interface AppendedReceipt extends SignedReceipt {
  claims: ReceiptClaims;
}

/** What {@link ReceiptService} needs: the store, issuer, signing key, the batch size of one group transaction and a clock (tests). */
export interface ReceiptServiceOptions {
  store: Store;
  /** Deputy's issuer (`iss` of every receipt). */
  issuer: string;
  key: ReceiptSigningKey;
  /** Receipts written per group transaction at most. Default 100. */
  maxBatch?: number;
  /** Milliseconds since the epoch; tests may pin it. */
  now?: () => number;
}

/** Agents whose last written head this instance remembers, at most; the oldest is forgotten (and read again when needed). */
const REMEMBERED_HEADS = 10_000;
/** Optimistic writes of one group (each after re-reading the head) before it takes the head's lock. */
const OPTIMISTIC_TRIES = 3;

interface Pending {
  input: ReceiptInput;
  /** Recorded in the group's transaction first; the receipt is written only if that succeeds. */
  once?: OnceKey;
  /** Written with the receipt, all or nothing ({@link ReceiptAppender.appendWith}). */
  writes?: AttestedWrites;
  /** Nothing is written for this append before it resolves ({@link ReceiptAppender.appendOnce}). */
  ready?: Promise<unknown>;
  /** Set once this append's `ready` (or its writes') rejected: refused when its group is cut, never signed from then on. */
  refusal?: { error: unknown };
  resolve: (r: AppendedReceipt) => void;
  reject: (err: unknown) => void;
}

/** The next group's receipts, signed ahead against the head the in-flight statement leaves if it writes. */
interface Presigned {
  /** The queue's front, signed in order: the group the writer cuts next. */
  group: Pending[];
  head: ChainHead;
  /** The inputs signed (the group's, in order; no once-key repeats within it). */
  inputs: ReceiptInput[];
  /** The group's once-key ids. */
  keys: Set<string>;
  /** The receipts, each signed after the one before; undefined when a signature failed. */
  signed: Promise<AppendedReceipt[] | undefined>;
}

/** How one append of a group ended: its receipt (durable), or the error it is rejected with. */
type Outcome = { pending: Pending; receipt: AppendedReceipt; error?: undefined } | { pending: Pending; receipt?: undefined; error: unknown };

/**
 * Appends signed receipts to per-agent hash chains (DESIGN capability 4). Concurrent appends for one
 * agent are grouped into one transaction (in order, one chain head read and written); a store failure
 * rejects every append of the group — except a statement the server refused (SQLSTATE classes 22,
 * 23, 40, 42) for a group with attested writes, which is decided again per append (locked path). Throws {@link AlreadyRecorded} when a receipt id was appended before.
 */
export class ReceiptService implements ReceiptAppender {
  readonly #store: Store;
  readonly #issuer: string;
  readonly #signer: ReceiptSigner;
  readonly #maxBatch: number;
  readonly #now: () => number;
  /** Appends waiting for their agent's next group transaction. */
  readonly #queues = new Map<string, Pending[]>();
  /** Agents whose group writer is running, with its completion. */
  readonly #writers = new Map<string, Promise<void>>();
  /** The head this instance last wrote per agent (at most {@link REMEMBERED_HEADS}, oldest first). */
  readonly #heads = new Map<string, ChainHead>();
  /**
   * Per agent, the next group's receipts signed while the current group's statement is in flight,
   * against the head that statement leaves if it writes ({@link #presignNext}). Used only if that
   * is the head and the group is the same; the statement's own head check decides either way.
   */
  readonly #presigned = new Map<string, Presigned>();
  /** Per agent, the head its in-flight optimistic statement leaves if it writes. */
  readonly #inFlight = new Map<string, ChainHead>();

  constructor(options: ReceiptServiceOptions) {
    this.#store = options.store;
    this.#issuer = options.issuer;
    this.#signer = new ReceiptSigner(options.key);
    this.#maxBatch = options.maxBatch ?? 100;
    this.#now = options.now ?? Date.now;
  }

  // Not `async`: the writer's promise is handed back as it is ({@link checkedAppend}).
  append(input: ReceiptInput, tx?: Queryable): Promise<AppendedReceipt> {
    if (tx) return checkedAppend(input, () => this.#appendIn(tx, input));
    return checkedAppend(input, () => this.#enqueue(input));
  }

  appendOnce(input: ReceiptInput, once: OnceKey, ready?: Promise<unknown>): Promise<AppendedReceipt> {
    return checkedAppend(input, () => this.#enqueue(input, once, undefined, ready), ready);
  }

  appendWith(input: ReceiptInput, writes: AttestedWrites): Promise<AppendedReceipt> {
    return checkedAppend(input, () => this.#enqueue(input, undefined, writes), writes.ready);
  }

  #enqueue(input: ReceiptInput, once?: OnceKey, writes?: AttestedWrites, ready?: Promise<unknown>): Promise<AppendedReceipt> {
    return new Promise<AppendedReceipt>((resolve, reject) => {
      const queue = this.#queues.get(input.agent) ?? [];
      // Optional members set only when present (no throwaway spread objects per append; issue 16, ninth round).
      const pending: Pending = { input, resolve, reject };
      if (once) pending.once = once;
      if (writes) pending.writes = writes;
      if (ready) pending.ready = ready;
      // Also for an append that starts the writer (which reads its refusal through `whenReady`):
      // the handler keeps a caller's `ready` that rejects while the receipt is signed from ever
      // being an unhandled rejection.
      noteRefusal(pending);
      queue.push(pending);
      this.#queues.set(input.agent, queue);
      if (!this.#writers.has(input.agent)) this.#writers.set(input.agent, this.#write(input.agent));
      else this.#presignNext(input.agent);
    });
  }

  /** Resolves once every queued append has been written (or has failed). */
  async flush(): Promise<void> {
    while (this.#writers.size > 0) await Promise.all(this.#writers.values());
  }

  /** The agent's chain head, or undefined when it has no receipt yet. */
  async head(agent: string): Promise<ChainHead | undefined> {
    const head = await readHead(this.#store, agent);
    return head && head.seq > 0 ? head : undefined;
  }

  /** Receipts of `agent` after `afterSeq`, in chain order; `next` is the cursor for the next page. */
  async list(agent: string, options: { afterSeq?: number; limit: number }): Promise<{ receipts: SignedReceipt[]; next?: number }> {
    const rows = await readRange(this.#store, agent, (options.afterSeq ?? 0) + 1, Number.MAX_SAFE_INTEGER, options.limit + 1);
    const page = rows.slice(0, options.limit);
    return rows.length > options.limit ? { receipts: page, next: page[page.length - 1]!.seq } : { receipts: page };
  }

  async get(id: string): Promise<SignedReceipt | undefined> {
    return readById(this.#store, id);
  }

  /** Every receipt of `agent` with `from <= seq <= to`, read in pages (exports of any size). */
  async *range(agent: string, from: number, to: number, pageSize = 500): AsyncGenerator<SignedReceipt> {
    let next = from;
    while (next <= to) {
      const page = await readRange(this.#store, agent, next, to, pageSize);
      yield* page;
      if (page.length < pageSize) return;
      next = page[page.length - 1]!.seq + 1;
    }
  }

  /**
   * The group writer of one agent: drains its queue, one write per group. A group's appends are
   * settled after its commit (a resolved append is durable, a refused one wrote nothing) — and, on
   * PostgreSQL when another group is queued behind it, only once that group's write has started and
   * had the rest of this turn of the event loop to send its statement ({@link settleLater}): the
   * settled callers' continuations (their responses) would otherwise run first and hold the next
   * statement back, the chain idle meanwhile (issue 16, eighth round: one agent's exchanges at c8).
   */
  async #write(agent: string): Promise<void> {
    let done: Outcome[] = [];
    try {
      for (;;) {
        const queue = this.#queues.get(agent);
        if (!queue || queue.length === 0) return;
        // The appends signed ahead (the front of the queue when they were), so that they match.
        const group = queue.splice(0, this.#presigned.get(agent)?.group.length ?? this.#maxBatch);
        const writing = this.#writeGroup(agent, group).catch((error: unknown) => group.map((pending): Outcome => ({ pending, error })));
        // PGlite runs the statement on this thread: nothing to send ahead, the callers would only wait for it.
        if (this.#store.kind === 'postgres') settleLater(done);
        else settle(done);
        done = await writing;
      }
    } finally {
      settle(done);
      this.#queues.delete(agent);
      this.#writers.delete(agent);
      this.#presigned.delete(agent);
      this.#inFlight.delete(agent);
    }
  }

  /**
   * Writes one group: optimistically (one statement, signed against the remembered head; when
   * once-keys were recorded before, again without the appends holding them, each of which is
   * then refused alone), or — when an attested write was refused, the head kept moving, or the
   * second statement failed too — in locked transactions. Returns each append's outcome.
   */
  #writeGroup(agent: string, group: readonly Pending[], reuse?: Signed): Promise<Outcome[]> {
    // Appends already known to be refused (a forged proof whose check failed while it queued)
    // leave the group before anything is signed for them.
    const known: Outcome[] = group.some((p) => p.refusal) ? group.flatMap((pending) => (pending.refusal ? [{ pending, error: pending.refusal.error }] : [])) : [];
    const admitted = known.length > 0 ? group.filter((p) => !p.refusal) : group;
    let writing: Promise<Outcome[]>;
    if (known.length === 0) writing = this.#writeReady(agent, admitted, reuse);
    else if (admitted.length > 0) writing = this.#writeReady(agent, admitted, reuse).then((outcomes) => [...known, ...outcomes]);
    else return Promise.resolve(known);
    // One derived promise, not an `async` wrapper awaiting the write (issue 16, twelfth round).
    return writing.then(undefined, (err: unknown) => this.#writeRefusedOut(agent, err, admitted, known));
  }

  /**
   * {@link #writeGroup} after its write threw: for {@link NotReady}, nothing was written — the
   * appends not ready are refused, the others written as a group again, with the receipts signed
   * before the first refused one (still valid: same head, same predecessors), so a refused append
   * costs its group at most the signatures after it. Any other error is thrown again.
   */
  async #writeRefusedOut(agent: string, err: unknown, admitted: readonly Pending[], known: readonly Outcome[]): Promise<Outcome[]> {
    if (!(err instanceof NotReady)) throw err;
    const rest = admitted.filter((p) => !err.failed.has(p));
    const refused: Outcome[] = [...err.failed].map(([pending, error]) => ({ pending, error }));
    return [...known, ...refused, ...(rest.length > 0 ? await this.#writeGroup(agent, rest, err.signed) : [])];
  }

  /** {@link #writeGroup} once every append's attested writes are ready (else it throws {@link NotReady}, having written nothing). */
  async #writeReady(agent: string, group: readonly Pending[], reuse?: Signed): Promise<Outcome[]> {
    const split = splitRepeats(group);
    const repeats = split.repeats;
    let firsts = split.firsts;
    let written = await this.#writeOptimistic(agent, firsts, reuse);
    let replays: Pending[] = [];
    if (!written) {
      // A key recorded before (a replay: the token exchange no longer looks its values up first)
      // refuses the whole statement: decide the replays alone and write the others together
      // again, so that a replay does not send its group's fresh appends down the locked path.
      replays = await this.#recordedBefore(firsts);
      const rest = firsts.filter((p) => !replays.includes(p));
      if (replays.length > 0 && rest.length > 0) written = await this.#writeOptimistic(agent, rest);
      if (!written) return this.#writeLocked(agent, group);
      firsts = rest;
    }
    const outcomes: Outcome[] = firsts.map((pending, i) => ({ pending, receipt: written[i]! }));
    for (const p of [...replays, ...repeats]) {
      // A replay, or a repeat of a key earlier in the group: refused whatever the store says,
      // with the caller's own error when it attests writes (its transaction finds the key spent).
      outcomes.push(p.writes ? await this.#writeAlone(agent, p) : { pending: p, error: new AlreadyRecorded(p.once!) });
    }
    return outcomes;
  }

  /** The appends of `firsts` one of whose once-keys is recorded and unexpired (one read; none when no append has a key). */
  async #recordedBefore(firsts: readonly Pending[]): Promise<Pending[]> {
    const keys = firsts.flatMap(keysOf);
    if (keys.length === 0) return [];
    const recorded = await findRecorded(this.#store, keys);
    return firsts.filter((p) => keysOf(p).some((k) => recorded.has(onceKeyId(k.namespace, k.key))));
  }

  /** The group in one statement ({@link appendIfHead}); `undefined` when the locked path must decide. */
  async #writeOptimistic(agent: string, firsts: readonly Pending[], reuse?: Signed): Promise<AppendedReceipt[] | undefined> {
    const once = firsts.flatMap((p) => (p.once ? [p.once] : (p.writes?.once ?? [])));
    const parts = firsts.flatMap((p) => p.writes?.parts ?? []);
    for (let tries = 0; tries < OPTIMISTIC_TRIES; tries++) {
      const head = this.#heads.get(agent) ?? (await this.#readHead(agent));
      const signed = await this.#signGroup(agent, head, firsts, tries === 0 ? reuse : undefined);
      try {
        const gate = whenReady(firsts);
        if (gate) await gate;
      } catch (err) {
        if (err instanceof NotReady) err.signed = { head, inputs: firsts.map((p) => p.input), receipts: signed };
        throw err;
      }
      const statement = appendIfHead(this.#store, agent, head, signed, once, parts);
      const last = signed[signed.length - 1]!;
      this.#inFlight.set(agent, { seq: last.seq, hash: last.hash });
      this.#presignNext(agent);
      let outcome: ConditionalAppend | 'refused';
      try {
        outcome = await settled(statement, parts.length > 0);
      } finally {
        this.#inFlight.delete(agent);
      }
      if (outcome === 'refused') return undefined;
      if (outcome === 'written') return this.#wrote(agent, signed);
      this.#heads.delete(agent);
      if (outcome === 'moved') continue;
      if (parts.length === 0) return undefined;
      // With parts, `recorded` may also be a moved head: retry then, else let the locked path decide.
      const now = await this.#readHead(agent);
      if (now.seq === head.seq && now.hash === head.hash) return undefined;
      this.#heads.set(agent, now);
    }
    return undefined;
  }

  /**
   * While a statement is in flight, signs the appends queued behind it (the next group, as the
   * writer will cut it) against the head that statement leaves if it writes — at the statement's
   * start and as appends arrive during it, one after the other as the chain requires: the
   * signatures then overlap the statement's round trip and WAL flush instead of following them
   * (issue 16, seventh round: one agent's exchanges at concurrency 8 waited on this cycle). A
   * signature against the wrong head is discarded, never written ({@link #takePresigned}); the
   * group ends before an append repeating one of its once-keys.
   */
  #presignNext(agent: string): void {
    const predicted = this.#inFlight.get(agent);
    const queue = this.#queues.get(agent);
    if (!predicted || !queue) return;
    let ahead = this.#presigned.get(agent);
    if (ahead && (ahead.head.seq !== predicted.seq || ahead.head.hash !== predicted.hash)) return;
    while (queue.length > (ahead?.group.length ?? 0) && (ahead?.group.length ?? 0) < this.#maxBatch) {
      const next = queue[ahead?.group.length ?? 0]!;
      // Known to be refused (a forged proof): never signed; the group it starts leaves it out.
      if (next.refusal) return;
      const ids = keysOf(next).map((k) => onceKeyId(k.namespace, k.key));
      if (ahead && ids.some((id) => ahead!.keys.has(id))) return;
      ahead ??= { group: [], head: predicted, inputs: [], keys: new Set(), signed: Promise.resolve([]) };
      this.#presigned.set(agent, ahead);
      for (const id of ids) ahead.keys.add(id);
      ahead.group.push(next);
      ahead.inputs.push(next.input);
      const head = ahead.head;
      // A failed signature is the normal path's to report: it signs again.
      ahead.signed = ahead.signed
        .then(async (done) => (done ? [...done, ...(await this.#sign(agent, done.at(-1) ?? head, [next.input]))] : undefined))
        .catch(() => undefined);
    }
  }

  /**
   * The group's receipts over `head`: those signed ahead ({@link #presignNext}) or before a
   * refusal (`reuse`) for its leading appends, the rest signed now. Forgets the ones signed ahead.
   */
  #signGroup(agent: string, head: ChainHead, firsts: readonly Pending[], reuse: Signed | undefined): Promise<AppendedReceipt[]> {
    // Nothing signed ahead or before (a lone append, the first group): sign, without the look-ups'
    // promises and arrays — and without an `async` wrapper around the signature's promise.
    if (!reuse && !this.#presigned.has(agent)) return this.#sign(agent, head, firsts.map((p) => p.input));
    return this.#signGroupAhead(agent, head, firsts, reuse);
  }

  /** {@link #signGroup} when receipts were signed ahead or before. */
  async #signGroupAhead(agent: string, head: ChainHead, firsts: readonly Pending[], reuse: Signed | undefined): Promise<AppendedReceipt[]> {
    const ahead = await this.#takePresigned(agent, head, firsts);
    const kept = reusablePrefix(reuse ?? ahead ?? { head, inputs: [], receipts: [] }, head, firsts);
    if (kept.length === firsts.length) return kept;
    return [...kept, ...(await this.#sign(agent, kept.at(-1) ?? head, firsts.slice(kept.length).map((p) => p.input)))];
  }

  /** The receipts signed ahead, when they start the group `firsts` over `head` (else none: not waited for); forgets them either way. */
  async #takePresigned(agent: string, head: ChainHead, firsts: readonly Pending[]): Promise<Signed | undefined> {
    const ahead = this.#presigned.get(agent);
    if (!ahead) return undefined;
    this.#presigned.delete(agent);
    if (ahead.head.seq !== head.seq || ahead.head.hash !== head.hash || ahead.inputs[0] !== firsts[0]?.input) return undefined;
    const receipts = await ahead.signed;
    return receipts ? { head: ahead.head, inputs: ahead.inputs, receipts } : undefined;
  }

  /**
   * The locked path: the plain and once-keyed appends in one transaction (the replayed ones
   * refused), then each append with attested writes in a transaction of its own, so that one
   * refusal (its error) leaves the others written. The plain appends' transaction locks the
   * chain head before it records a once-key, the order of the group statement (`appendIfHead`:
   * head, then keys): in the opposite order, this path on one instance and a group statement on
   * another, for the same agent and a key both hold (a gateway proof replayed to both), each
   * waited for the other — a deadlock PostgreSQL breaks only after `deadlock_timeout` (issue 16,
   * ninth round red team).
   */
  async #writeLocked(agent: string, group: readonly Pending[]): Promise<Outcome[]> {
    const gate = whenReady(group);
    if (gate) await gate;
    const plain = group.filter((p) => !p.writes);
    const outcomes: Outcome[] = [];
    if (plain.length > 0) {
      outcomes.push(...(await this.#store.transaction(async (tx) => {
        const head = await lockHead(tx, agent);
        const { admitted, refused } = await this.#admit(tx, plain);
        const written = admitted.length ? await this.#appendLocked(tx, agent, admitted.map((p) => p.input), head) : [];
        return [...admitted.map((pending, i) => ({ pending, receipt: written[i]! })), ...refused.map((pending) => ({ pending, error: new AlreadyRecorded(pending.once!) }))];
      }, { retryConflicts: true })));
    }
    for (const p of group) if (p.writes) outcomes.push(await this.#writeAlone(agent, p));
    return outcomes;
  }

  /**
   * One append with its attested writes, in its own transaction, taking its locks in the one
   * order every path agrees on: its rows, then the chain head, then its once-keys. Rows before
   * the head is an agent's deletion's order (its rows, then its closing receipt:
   * test/unit/upstream-lock-order.test.ts); the head before the keys is the group statement's and
   * the locked path's. With the keys first (before issue 16's ninth round), an exchange's proof
   * replayed to two instances deadlocked on PostgreSQL: this transaction held the key and waited
   * for the head, the other instance's statement held the head and waited for the key
   * (test/unit/write-alone-lock-order.test.ts). The statement checks rows without waiting, so
   * it never waits here for a row this transaction holds.
   */
  async #writeAlone(agent: string, p: Pending): Promise<Outcome> {
    const writes = p.writes!;
    let rowsRefused = false;
    try {
      await writes.ready;
      const receipt = await this.#store.transaction(async (tx) => {
        // Run again after a conflict (40001, 40P01): what this run's rows met is what counts.
        rowsRefused = false;
        await writes.inTransaction(tx).catch((error: unknown) => {
          rowsRefused = true;
          throw error;
        });
        const head = await lockHead(tx, agent);
        await spendAttested(tx, writes);
        return (await this.#appendLocked(tx, agent, [p.input], head))[0]!;
      }, { retryConflicts: true });
      return { pending: p, receipt };
    } catch (error) {
      return { pending: p, error: rowsRefused ? await this.#replayFirst(writes, error) : error };
    }
  }

  /**
   * The error of a write-alone append whose rows were refused (`error`): its replay's when one of
   * its keys is recorded (the first in `writes.once` order), as when the keys were recorded before
   * the rows (and as an appender without `appendWith` answers) — a replayed proof is refused as a
   * replay even if its agent was disabled meanwhile, whatever the lock order. One read, on this
   * failure path only, after the transaction rolled back (on PostgreSQL it is aborted by a
   * refused statement); a failed read keeps `error`.
   */
  async #replayFirst(writes: AttestedWrites, error: unknown): Promise<unknown> {
    if (writes.once.length === 0) return error;
    const recorded = await findRecorded(this.#store, writes.once).catch(() => undefined);
    const replayed = recorded && writes.once.find((k) => recorded.has(onceKeyId(k.namespace, k.key)));
    return replayed ? (writes.replayed?.(replayed) ?? new AlreadyRecorded(replayed)) : error;
  }

  /**
   * An append inside the caller's transaction: against the remembered head (one statement; the
   * head row stays locked until the caller commits), else — unknown or moved — the locked path.
   */
  async #appendIn(tx: Queryable, input: ReceiptInput): Promise<AppendedReceipt> {
    const head = this.#heads.get(input.agent);
    if (head) {
      const signed = await this.#sign(input.agent, head, [input]);
      if ((await appendIfHead(tx, input.agent, head, signed)) === 'written') return this.#wrote(input.agent, signed)[0]!;
    }
    return (await this.#appendLocked(tx, input.agent, [input]))[0]!;
  }

  async #readHead(agent: string): Promise<ChainHead> {
    return (await readHead(this.#store, agent)) ?? { seq: 0, hash: genesisHash(agent) };
  }

  /** Remembers the head `written` leaves (the last receipt), forgetting the oldest agent past the bound; returns `written`. */
  #wrote(agent: string, written: AppendedReceipt[]): AppendedReceipt[] {
    const last = written[written.length - 1];
    if (!last) return written;
    this.#heads.delete(agent);
    this.#heads.set(agent, { seq: last.seq, hash: last.hash });
    if (this.#heads.size > REMEMBERED_HEADS) this.#heads.delete(this.#heads.keys().next().value!);
    return written;
  }

  /**
   * Records the group's once-keys (one statement) and splits the group: appends whose key was
   * recorded already — before, or earlier in this same group — are refused and get no receipt
   * (their `seq` is never assigned, so the chain has no gap).
   */
  async #admit(tx: Queryable, group: readonly Pending[]): Promise<{ admitted: Pending[]; refused: Pending[] }> {
    const guarded = group.filter((p) => p.once);
    if (guarded.length === 0) return { admitted: [...group], refused: [] };
    const firsts = new Map<string, Pending>();
    for (const p of guarded) {
      const id = onceKeyId(p.once!.namespace, p.once!.key);
      if (!firsts.has(id)) firsts.set(id, p);
    }
    const fresh = await recordEachOnce(tx, [...firsts.values()].map((p) => p.once!));
    const admitted: Pending[] = [];
    const refused: Pending[] = [];
    for (const p of group) {
      const id = p.once && onceKeyId(p.once.namespace, p.once.key);
      if (id === undefined || (firsts.get(id) === p && fresh.has(id))) admitted.push(p);
      else refused.push(p);
    }
    return { admitted, refused };
  }

  /** Locks the head (unless the caller did: `locked`), signs `inputs` in order after it, inserts them and moves the head. */
  async #appendLocked(tx: Queryable, agent: string, inputs: readonly ReceiptInput[], locked?: ChainHead): Promise<AppendedReceipt[]> {
    const out = await this.#sign(agent, locked ?? (await lockHead(tx, agent)), inputs);
    await appendLocked(tx, agent, out);
    return this.#wrote(agent, out);
  }

  /**
   * Signs `inputs` in order as the receipts after `head` (each one's `prev` is the hash of the one
   * before). One input (a lone append) is one derived promise on the signature's, not an `async`
   * function awaiting it (issue 16, twelfth round). Rejects with the signer's error.
   */
  #sign(agent: string, head: ChainHead, inputs: readonly ReceiptInput[]): Promise<AppendedReceipt[]> {
    if (inputs.length !== 1) return this.#signEach(agent, head, inputs);
    try {
      const claims = this.#claims(inputs[0]!, head, Math.floor(this.#now() / 1000));
      return this.#signer.sign(claims).then((jws) => [signedReceipt(agent, claims, jws)]);
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /** {@link #sign} for several inputs: one after the other, each naming the one before. */
  async #signEach(agent: string, head: ChainHead, inputs: readonly ReceiptInput[]): Promise<AppendedReceipt[]> {
    const iat = Math.floor(this.#now() / 1000);
    const out: AppendedReceipt[] = [];
    let prev = head;
    for (const input of inputs) {
      const claims = this.#claims(input, prev, iat);
      const receipt = signedReceipt(agent, claims, await this.#signer.sign(claims));
      out.push(receipt);
      prev = { seq: receipt.seq, hash: receipt.hash };
    }
    return out;
  }

  /** The claims of the receipt after `prev`, with a new id. */
  #claims(input: ReceiptInput, prev: ChainHead, iat: number): ReceiptClaims {
    return receiptClaims(input, { iss: this.#issuer, jti: randomUUID(), iat, seq: prev.seq + 1, prev: prev.hash });
  }
}

/**
 * SQLSTATE classes of an error the server raised for the statement itself — data exception (22),
 * integrity constraint violation (23), transaction rollback (40: serialization failure, deadlock),
 * syntax error or access rule violation (42), PostgreSQL Appendix A — so that the statement,
 * run on its own, certainly committed nothing and the locked path may decide each append again.
 * A lost connection is not one of them: its statement may have committed, and is never retried.
 */
const REFUSED_STATEMENT = /^(22|23|40|42)[0-9A-Z]{3}$/;

function statementRefused(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && REFUSED_STATEMENT.test(code);
}

/**
 * What the group's statement did; `refused` when the server refused it and the group has parts
 * (one append's write refused — a unique violation on its vault row, say: the statement wrote
 * nothing, and each append is decided alone, so the others commit).
 */
function settled(statement: Promise<ConditionalAppend>, withParts: boolean): Promise<ConditionalAppend | 'refused'> {
  // One derived promise, not an `async` wrapper and its `await` (issue 16, twelfth round).
  return statement.then(undefined, (err: unknown) => {
    // A conflict (40001, 40P01) aborted the one statement: it committed nothing, and the locked
    // path's transaction, which runs again after one (`retryConflicts`), decides every append.
    if ((withParts && statementRefused(err)) || isTransactionConflict(err)) return 'refused' as const;
    throw err;
  });
}

/** The appended receipt of `claims` signed as `jws` (its chain hash computed). */
function signedReceipt(agent: string, claims: ReceiptClaims, jws: string): AppendedReceipt {
  return { id: claims.jti, agent, seq: claims.seq, hash: receiptHash(jws), prev: claims.prev, jws, claims };
}

/** Resolves each append with its receipt, or rejects it with its error. */
function settle(outcomes: readonly Outcome[]): void {
  for (const o of outcomes) {
    if (o.receipt) o.pending.resolve(o.receipt);
    else o.pending.reject(o.error);
  }
}

/**
 * {@link settle} in the event loop's check phase (`setImmediate`): after the microtasks and
 * `nextTick`s the writer's next statement needs to reach PostgreSQL's socket (or, when that
 * group still waits for a signature, as soon as the loop turns). The outcomes are final already:
 * the receipts are committed (or were refused).
 */
function settleLater(outcomes: readonly Outcome[]): void {
  if (outcomes.length > 0) setImmediate(settle, outcomes);
}

/** Records `writes.once` in `tx` (one statement); throws the caller's replay error for the first key recorded before. */
async function spendAttested(tx: Queryable, writes: AttestedWrites): Promise<void> {
  const fresh = await recordEachOnce(tx, writes.once);
  const replayed = writes.once.find((k) => !fresh.has(onceKeyId(k.namespace, k.key)));
  if (replayed) throw writes.replayed?.(replayed) ?? new AlreadyRecorded(replayed);
}

/** Every once-key an append records: its own (`appendOnce`) or its attested writes' (`appendWith`). */
function keysOf(p: Pending): OnceKey[] {
  return p.once ? [p.once] : [...(p.writes?.once ?? [])];
}

/**
 * Splits a group by once-key: the first append of each key (and every append without one), in
 * order, and the appends sharing a key with one earlier in the same group — refused whatever the
 * store says (one statement cannot record a key twice).
 */
function splitRepeats(group: readonly Pending[]): { firsts: readonly Pending[]; repeats: readonly Pending[] } {
  if (group.length === 1) return { firsts: group, repeats: [] };
  const seen = new Set<string>();
  const firsts: Pending[] = [];
  const repeats: Pending[] = [];
  for (const p of group) {
    const ids = keysOf(p).map((k) => onceKeyId(k.namespace, k.key));
    if (ids.some((id) => seen.has(id))) repeats.push(p);
    else {
      for (const id of ids) seen.add(id);
      firsts.push(p);
    }
  }
  return { firsts, repeats };
}

/**
 * `append()` of a checked input (an invalid one rejects with {@link assertReceiptInput}'s
 * TypeError, as from an `async` function), observed: the writer's promise as it is, without an
 * `async` wrapper around it — which would add a promise and two microtask turns to every gateway
 * call's receipt (issue 16, tenth round). An invalid input's `ready` (never queued, so never
 * noted by {@link noteRefusal}) is handled here too: its later rejection is no unhandled one,
 * as for every append that queues.
 */
function checkedAppend(input: ReceiptInput, append: () => Promise<AppendedReceipt>, ready?: Promise<unknown>): Promise<AppendedReceipt> {
  try {
    assertReceiptInput(input);
  } catch (err) {
    ready?.then(undefined, IGNORE);
    return Promise.reject(err as Error);
  }
  return observeReceiptAppend(append);
}
