/**
 * The export format: JSON Lines (one JSON object per line, UTF-8, `\n`-terminated), one receipt
 * per line in chain order:
 *
 * ```json
 * {"agent":"travel-agent","seq":1,"id":"…","hash":"…","prev":"…","receipt":"eyJhbGciOiJFUzI1NiIs…"}
 * ```
 *
 * `receipt` (the compact JWS) is the evidence; the other members repeat what it signs, for people
 * and tools that sort and grep. A verifier trusts only `receipt` and reports a line whose other
 * members disagree with it as edited.
 *
 * @module
 */
import type { SignedReceipt } from './receipt.js';

/** Media type of an export (JSON Lines). */
export const JSONL_MEDIA_TYPE = 'application/jsonl';

/** One export line. */
export interface ReceiptLine {
  agent?: string;
  seq?: number;
  id?: string;
  hash?: string;
  prev?: string;
  receipt: string;
}

/** One receipt as its JSON Lines export record ({@link ReceiptLine}); the inverse of the parser's read. */
export function toReceiptLine(r: SignedReceipt): ReceiptLine {
  return { agent: r.agent, seq: r.seq, id: r.id, hash: r.hash, prev: r.prev, receipt: r.jws };
}

/** One receipt as a JSON Lines line, newline included. */
export function formatLine(r: SignedReceipt): string {
  return `${JSON.stringify(toReceiptLine(r))}\n`;
}

/** A line of an export: its 1-based line number and either the parsed line or why it is not one. */
export type ParsedLine = { line: number; value: ReceiptLine } | { line: number; error: string };

/**
 * Splits an export into lines. Blank lines are skipped (line numbers still count them). A line
 * may also be a bare compact JWS, or a JSON string holding one.
 */
export function parseJsonLines(text: string): ParsedLine[] {
  const out: ParsedLine[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = i + 1;
    const s = raw.trim();
    if (s === '') return;
    if (!s.startsWith('{') && !s.startsWith('"')) {
      out.push({ line, value: { receipt: s } });
      return;
    }
    let doc: unknown;
    try {
      doc = JSON.parse(s);
    } catch {
      out.push({ line, error: 'not valid JSON' });
      return;
    }
    const parsed = toLine(doc);
    out.push(typeof parsed === 'string' ? { line, error: parsed } : { line, value: parsed });
  });
  return out;
}

/** A record given to the verifier: a line object, or a bare JWS. Returns an error message if neither. */
export function toLine(doc: unknown): ReceiptLine | string {
  if (typeof doc === 'string') return { receipt: doc };
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return 'not a receipt line (expected an object with "receipt")';
  const o = doc as Record<string, unknown>;
  if (typeof o.receipt !== 'string') return 'missing "receipt" (the compact JWS)';
  const line: ReceiptLine = { receipt: o.receipt };
  for (const k of ['agent', 'id', 'hash', 'prev'] as const) {
    if (o[k] === undefined) continue;
    if (typeof o[k] !== 'string') return `"${k}" must be a string`;
    line[k] = o[k];
  }
  if (o.seq !== undefined) {
    if (typeof o.seq !== 'number') return '"seq" must be a number';
    line.seq = o.seq;
  }
  return line;
}
