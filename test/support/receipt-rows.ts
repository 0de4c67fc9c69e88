/**
 * Receipt rows for tests of the chain statements (src/audit/chain.ts): consecutive, linked by
 * `prev`, with made-up hashes and JWS (the statements check the links, never the hashes).
 */
import { randomUUID } from 'node:crypto';
import { expect } from 'vitest';
import type { ChainHead } from '../../src/audit/chain.js';
import { formatLine } from '../../src/audit/jsonl.js';
import type { SignedReceipt } from '../../src/audit/receipt.js';
import { ReceiptService } from '../../src/audit/receipts.js';
import { verifyReceipts } from '../../src/audit/verify.js';
import { toPublicJwk, type generateSigningKey } from '../../src/keys/keystore.js';
import type { Store } from '../../src/store/index.js';

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

/**
 * Exports `agent`'s whole chain from `store` and checks it: seqs 1, 2, … without a gap, no
 * resource twice, and the export verifying with `key`. Each receipt's resource → its seq.
 */
export async function exportedChain(store: Store, agent: string, key: Awaited<ReturnType<typeof generateSigningKey>>): Promise<Map<string, number>> {
  const reader = new ReceiptService({ store, issuer: 'https://deputy.example.com', key });
  let text = '';
  const seqs: number[] = [];
  const chain = new Map<string, number>();
  for await (const r of reader.range(agent, 1, Number.MAX_SAFE_INTEGER)) {
    text += formatLine(r);
    seqs.push(r.seq);
    const resource = (JSON.parse(Buffer.from(r.jws.split('.')[1]!, 'base64url').toString()) as { resource: string }).resource;
    expect(chain.has(resource), `${resource} twice`).toBe(false);
    chain.set(resource, r.seq);
  }
  expect(seqs).toEqual(seqs.map((_, i) => i + 1));
  const report = await verifyReceipts(text, { keys: [toPublicJwk(key.jwk)] });
  expect(report.ok, JSON.stringify(report.problems)).toBe(true);
  return chain;
}
