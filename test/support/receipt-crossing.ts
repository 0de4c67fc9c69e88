/**
 * Two receipt services on one PostgreSQL database crossing one once-key (a proof replayed to two
 * instances): a store whose transaction pauses at a chosen statement while the other instance
 * acts, how the two appends ended, and the agent's chain as a verifier reads it.
 */
import { formatLine } from '../../src/audit/jsonl.js';
import { AlreadyRecorded, type ReceiptService } from '../../src/audit/receipts.js';
import { verifyReceipts, type VerificationReport } from '../../src/audit/verify.js';
import { toPublicJwk, type SigningKeyRecord } from '../../src/keys/keystore.js';
import type { Queryable, Store } from '../../src/store/index.js';
import type { ReceiptInput } from '../../src/audit/receipt.js';

/** `inner`, where the first statement inside a transaction that `matches` is followed by `meanwhile()` before that transaction goes on. */
export function pausedAfter(inner: Store, matches: (sql: string) => boolean, meanwhile: () => Promise<void>): Store {
  let hooked = false;
  const transaction: Store['transaction'] = (fn) =>
    inner.transaction((tx) => {
      const txQuery = async <R extends object>(sql: string, params?: readonly unknown[], options?: Parameters<Queryable['query']>[2]): Promise<R[]> => {
        const rows = await tx.query<R>(sql, params, options);
        if (!hooked && matches(sql)) {
          hooked = true;
          await meanwhile();
        }
        return rows;
      };
      return fn(new Proxy(tx, { get: (t, p) => (p === 'query' ? txQuery : Reflect.get(t, p, t)) }));
    });
  return new Proxy(inner, { get: (t, p) => (p === 'transaction' ? transaction : Reflect.get(t, p, t)) });
}

/**
 * How the second instance's append and the first's (started while the second's transaction was
 * paused: `onFirst()` once the second settled) ended, sorted: `written`, `replay`
 * ({@link AlreadyRecorded}), else the error's code (`40P01`: a deadlock).
 */
export async function crossedOutcomes(onSecond: Promise<unknown>, onFirst: () => Promise<unknown> | undefined): Promise<string[]> {
  onSecond.catch(() => {});
  const outcomes = await Promise.allSettled([onSecond, (async () => {
    await onSecond.catch(() => {});
    return onFirst();
  })()]);
  return outcomes.map((o) => (o.status === 'fulfilled' ? 'written' : o.reason instanceof AlreadyRecorded ? 'replay' : String((o.reason as { code?: string }).code ?? o.reason))).sort();
}

/** The agent's whole chain read through `service` and verified with `key`'s public half. */
export async function verifiedChain(service: ReceiptService, agent: string, key: SigningKeyRecord): Promise<VerificationReport> {
  let text = '';
  for await (const r of service.range(agent, 1, Number.MAX_SAFE_INTEGER)) text += formatLine(r);
  return verifyReceipts(text, { keys: [toPublicJwk(key.jwk)] });
}

/** A gateway call's receipt input for `agent` (item `n`), with `extra` members over it. */
export function gatewayReceiptInput(agent: string, n: number, extra: Partial<ReceiptInput> = {}): ReceiptInput {
  return { agent, chain: [agent], event: 'gateway_call', action: 'invoke', resource: `https://api.example.com/items/${n}`, decision: 'permit', ...extra };
}
