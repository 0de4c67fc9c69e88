/**
 * Receipt rows for tests of the chain statements (src/audit/chain.ts): consecutive, linked by
 * `prev`, with made-up hashes and JWS (the statements check the links, never the hashes).
 */
import { randomUUID } from 'node:crypto';
import type { ChainHead } from '../../src/audit/chain.js';
import type { SignedReceipt } from '../../src/audit/receipt.js';

/** `n` consecutive rows of `agent`'s chain after `head`. */
export function chainRows(agent: string, head: ChainHead, n: number): SignedReceipt[] {
  const out: SignedReceipt[] = [];
  let prev = head;
  for (let i = 0; i < n; i++) {
    const r = { id: randomUUID(), agent, seq: prev.seq + 1, hash: `h-${randomUUID()}`, prev: prev.hash, jws: `x.${i}.z` };
    out.push(r);
    prev = { seq: r.seq, hash: r.hash };
  }
  return out;
}
