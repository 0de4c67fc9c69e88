/**
 * The receipt service: the one way any module (token exchange, PDP, gateway) records a receipt,
 * and the reads the admin API and exports need.
 *
 * Two ways to append, both linear per agent (see `./chain.ts`):
 * - `append(input, tx)` inside the caller's transaction: the receipt commits or rolls back with
 *   what it attests (the token exchange records its token and its receipt atomically).
 * - `append(input)` on its own: appends for one agent queue in this process and are written as
 *   a group, one transaction per group (group commit). The first append starts at once, so a
 *   lone append waits for nothing; appends that arrive while a transaction is in flight share the
 *   next one. One connection per busy agent waits on the chain lock instead of one per request.
 * - `appendOnce(input, key)`: the same group commit, and the group's transaction first records
 *   each append's once-key (the gateway's DPoP proof `jti`); an append whose key was recorded
 *   already writes nothing and rejects with {@link AlreadyRecorded}. One commit — on PostgreSQL
 *   one WAL flush — spends the proof and records the decision.
 *
 * Signing happens while the head is locked, because `prev` must be the hash of the previous
 * receipt's signed bytes; an ES256 / Ed25519 signature costs tens of microseconds, small next to
 * the database round trips of the same transaction.
 *
 * @module
 */
import { randomUUID } from 'node:crypto';
import { onceKeyId, recordEachOnce, type OnceKey } from '../oauth/adapter.js';
import { observeReceiptAppend } from '../observability/instrument.js';
import type { Queryable, Store } from '../store/index.js';
import { appendLocked, lockHead, readById, readHead, readRange, type ChainHead } from './chain.js';
import { assertReceiptInput, receiptClaims, receiptHash, ReceiptSigner, type ReceiptClaims, type ReceiptInput, type ReceiptSigningKey, type SignedReceipt } from './receipt.js';

/** What the token exchange, the PDP and the gateway depend on. */
export interface ReceiptAppender {
  /** Appends one receipt to `input.agent`'s chain; inside `tx` when given. */
  append(input: ReceiptInput, tx?: Queryable): Promise<AppendedReceipt>;
  /**
   * Records `once` and appends the receipt in one transaction (group-committed like
   * {@link append}): either both are written or neither. Rejects with {@link AlreadyRecorded},
   * writing nothing, when `once` was recorded before (the gateway's DPoP `jti`, RFC 9449 §11.1:
   * spending the proof and recording the decision cost one commit, not two). Absent on
   * appenders that cannot; callers then record the key themselves first.
   */
  appendOnce?(input: ReceiptInput, once: OnceKey): Promise<AppendedReceipt>;
}

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

interface Pending {
  input: ReceiptInput;
  /** Recorded in the group's transaction first; the receipt is written only if that succeeds. */
  once?: OnceKey;
  resolve: (r: AppendedReceipt) => void;
  reject: (err: unknown) => void;
}

/**
 * Appends signed receipts to per-agent hash chains (DESIGN capability 4). Concurrent appends for one
 * agent are grouped into one transaction (in order, one chain head read and written); a store failure
 * rejects every append of the group. Throws {@link AlreadyRecorded} when a receipt id was appended before.
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

  constructor(options: ReceiptServiceOptions) {
    this.#store = options.store;
    this.#issuer = options.issuer;
    this.#signer = new ReceiptSigner(options.key);
    this.#maxBatch = options.maxBatch ?? 100;
    this.#now = options.now ?? Date.now;
  }

  async append(input: ReceiptInput, tx?: Queryable): Promise<AppendedReceipt> {
    assertReceiptInput(input);
    if (tx) return observeReceiptAppend(async () => (await this.#appendLocked(tx, input.agent, [input]))[0]!);
    return observeReceiptAppend(() => this.#enqueue(input));
  }

  async appendOnce(input: ReceiptInput, once: OnceKey): Promise<AppendedReceipt> {
    assertReceiptInput(input);
    return observeReceiptAppend(() => this.#enqueue(input, once));
  }

  #enqueue(input: ReceiptInput, once?: OnceKey): Promise<AppendedReceipt> {
    return new Promise<AppendedReceipt>((resolve, reject) => {
      const queue = this.#queues.get(input.agent) ?? [];
      queue.push({ input, ...(once ? { once } : {}), resolve, reject });
      this.#queues.set(input.agent, queue);
      if (!this.#writers.has(input.agent)) this.#writers.set(input.agent, this.#write(input.agent));
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

  /** The group writer of one agent: drains its queue, one transaction per group. */
  async #write(agent: string): Promise<void> {
    try {
      for (;;) {
        const queue = this.#queues.get(agent);
        if (!queue || queue.length === 0) return;
        const group = queue.splice(0, this.#maxBatch);
        try {
          const { admitted, refused, written } = await this.#store.transaction(async (tx) => {
            const { admitted, refused } = await this.#admit(tx, group);
            const written = admitted.length ? await this.#appendLocked(tx, agent, admitted.map((p) => p.input)) : [];
            return { admitted, refused, written };
          });
          // Settled after the commit: a resolved append is durable, a refused one wrote nothing.
          admitted.forEach((p, i) => p.resolve(written[i]!));
          for (const p of refused) p.reject(new AlreadyRecorded(p.once!));
        } catch (err) {
          for (const p of group) p.reject(err);
        }
      }
    } finally {
      this.#queues.delete(agent);
      this.#writers.delete(agent);
    }
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

  /** Locks the head, signs `inputs` in order after it, inserts them and moves the head. */
  async #appendLocked(tx: Queryable, agent: string, inputs: readonly ReceiptInput[]): Promise<AppendedReceipt[]> {
    let head = await lockHead(tx, agent);
    const iat = Math.floor(this.#now() / 1000);
    const out: AppendedReceipt[] = [];
    for (const input of inputs) {
      const claims = receiptClaims(input, { iss: this.#issuer, jti: randomUUID(), iat, seq: head.seq + 1, prev: head.hash });
      const jws = await this.#signer.sign(claims);
      const receipt = { id: claims.jti, agent, seq: claims.seq, hash: receiptHash(jws), prev: claims.prev, jws, claims };
      out.push(receipt);
      head = { seq: receipt.seq, hash: receipt.hash };
    }
    await appendLocked(tx, agent, out);
    return out;
  }
}
