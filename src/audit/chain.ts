/**
 * Per-agent hash chains in the store (`receipt_chains`, `receipts`; migration 003).
 *
 * Appending is one short transaction: lock the agent's head row (`SELECT … FOR UPDATE`), sign
 * the next receipt(s) against it, insert them and move the head. Every appender for the agent —
 * on any connection, on any instance sharing the PostgreSQL database — waits on that row lock,
 * so the chain is linear: no two receipts get the same `seq` or the same `prev`. PGlite runs one
 * transaction at a time, which is the same guarantee within its single process.
 *
 * @module
 */
import type { Queryable } from '../store/index.js';
import { genesisHash, type SignedReceipt } from './receipt.js';

/** The last receipt of a chain: its `seq` (0 for an empty chain) and hash (genesis when empty). */
export interface ChainHead {
  seq: number;
  hash: string;
}

interface HeadRow {
  seq: string | number;
  head: string;
}

interface ReceiptRow {
  id: string;
  agent_id: string;
  seq: string | number;
  hash: string;
  prev: string;
  jws: string;
}

const RECEIPT_COLUMNS = 'id, agent_id, seq, hash, prev, jws';

/**
 * Locks the agent's chain head for the rest of `tx` and returns it. The first append for an agent
 * creates the row; a concurrent first append waits on the primary key, then locks the same row.
 */
export async function lockHead(tx: Queryable, agent: string): Promise<ChainHead> {
  const select = () => tx.query<HeadRow>('SELECT seq, head FROM receipt_chains WHERE agent_id = $1 FOR UPDATE', [agent]);
  let rows = await select();
  if (rows.length === 0) {
    await tx.query('INSERT INTO receipt_chains (agent_id, seq, head) VALUES ($1, 0, $2) ON CONFLICT (agent_id) DO NOTHING', [agent, genesisHash(agent)]);
    rows = await select();
  }
  const row = rows[0]!;
  return { seq: Number(row.seq), hash: row.head };
}

/**
 * Inserts `receipts` (consecutive, starting right after the locked head) and moves the head to
 * the last one, in one statement (a data-modifying CTE runs exactly once, PostgreSQL §7.8.4).
 */
export async function appendLocked(tx: Queryable, agent: string, receipts: readonly SignedReceipt[]): Promise<void> {
  const last = receipts[receipts.length - 1];
  if (!last) return;
  await tx.query(
    `WITH inserted AS (
       INSERT INTO receipts (agent_id, seq, id, hash, prev, jws)
       SELECT $1, s, i, h, p, j FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[]) AS r(s, i, h, p, j)
       RETURNING 1)
     UPDATE receipt_chains SET seq = $7, head = $8, updated_at = now() WHERE agent_id = $1`,
    [
      agent,
      receipts.map((r) => r.seq),
      receipts.map((r) => r.id),
      receipts.map((r) => r.hash),
      receipts.map((r) => r.prev),
      receipts.map((r) => r.jws),
      last.seq,
      last.hash,
    ],
  );
}

export async function readHead(db: Queryable, agent: string): Promise<ChainHead | undefined> {
  const rows = await db.query<HeadRow>('SELECT seq, head FROM receipt_chains WHERE agent_id = $1', [agent]);
  return rows[0] ? { seq: Number(rows[0].seq), hash: rows[0].head } : undefined;
}

/** Receipts of `agent` with `from <= seq <= to`, in chain order, at most `limit`. */
export async function readRange(db: Queryable, agent: string, from: number, to: number, limit: number): Promise<SignedReceipt[]> {
  const rows = await db.query<ReceiptRow>(
    `SELECT ${RECEIPT_COLUMNS} FROM receipts WHERE agent_id = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq LIMIT $4`,
    [agent, from, to, limit],
  );
  return rows.map(fromRow);
}

export async function readById(db: Queryable, id: string): Promise<SignedReceipt | undefined> {
  const rows = await db.query<ReceiptRow>(`SELECT ${RECEIPT_COLUMNS} FROM receipts WHERE id = $1`, [id]);
  return rows[0] ? fromRow(rows[0]) : undefined;
}

function fromRow(r: ReceiptRow): SignedReceipt {
  return { id: r.id, agent: r.agent_id, seq: Number(r.seq), hash: r.hash, prev: r.prev, jws: r.jws };
}
