/**
 * The offline verifier: given receipts (an export, or records) and the receipt JWKS, prove each
 * agent's chain complete and untampered, or say by position what is wrong. It trusts nothing but
 * the JWKS: not the database, not the export's own `seq` / `hash` members.
 *
 * Checks, per receipt: the JWS (RFC 7515 §5.2) verifies with a key of the JWKS named by its
 * `kid`, with an allowed `alg` (ES256, EdDSA) and `typ: deputy-receipt+jwt` (RFC 8725 §3.11);
 * the claims are well formed; the line's plain members agree with the signed claims. Per chain
 * (receipts grouped by `agent`, in file order): `seq` runs 1, 2, 3… with no gap, repeat or
 * inversion; `prev` of seq 1 is the agent's genesis value and `prev` of seq n is the hash of
 * the receipt with seq n − 1.
 *
 * What each tampering looks like:
 *
 * | tampering | reported |
 * | --- | --- |
 * | a receipt deleted | `removed` at the line after the gap |
 * | two receipts swapped | `reordered` at both lines |
 * | a forged receipt inserted | `unknown_key` / `bad_signature` at its line (valid copies: `inserted`) |
 * | a signed member edited | `bad_signature` at its line |
 * | a plain member of the line edited | `edited` at its line |
 * | re-signed with another key | `unknown_key` (kid not in the JWKS) or `bad_signature` (kid reused) |
 * | altered and re-signed with the real key | `broken_link` at the next receipt, naming both lines |
 *
 * Cutting receipts off the end of a chain leaves a shorter valid chain: compare each chain's
 * `last` / `head` in the report with a head obtained independently (the admin API's `head`).
 *
 * @module
 */
import { compactVerify, createLocalJWKSet, errors, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import { parseJsonLines, toLine, type ParsedLine, type ReceiptLine } from './jsonl.js';
import { genesisHash, RECEIPT_ALGORITHMS, RECEIPT_TYP, receiptHash, type ReceiptClaims } from './receipt.js';

/** Why one receipt failed verification (signature, sequence, link, claims). */
export type ReceiptProblemCode =
  /** Not a receipt at all: not JSON, not a JWS, or claims missing / of the wrong type. */
  | 'malformed'
  /** Its `kid` names no key of the JWKS (signed by another key). */
  | 'unknown_key'
  /** The signature does not verify with the named key (content changed after signing, or another key). */
  | 'bad_signature'
  /** The line's plain members (`seq`, `hash`, …) disagree with the signed receipt. */
  | 'edited'
  /** Receipts missing from the chain before this one. */
  | 'removed'
  /** Out of chain order. */
  | 'reordered'
  /** A valid receipt that does not belong here: a second receipt with the same seq, or another agent's. */
  | 'inserted'
  /** `prev` is not the hash of the receipt before it. */
  | 'broken_link'
  /** `prev` of seq 1 is not the agent's genesis value. */
  | 'bad_genesis';

/** One failed check: its code, the receipt (position, agent, seq) it concerns and a message for operators. */
export interface ReceiptProblem {
  /** 1-based line of the export (or index + 1 of the records given). */
  position: number;
  code: ReceiptProblemCode;
  message: string;
  agent?: string;
  seq?: number;
}

/** One agent's chain as verified: first and last sequence, count, its head, whether it starts at genesis. */
export interface ChainSummary {
  agent: string;
  /** Lowest and highest seq of the chain's valid receipts. */
  first: number;
  last: number;
  /** Valid receipts of this chain in the input. */
  count: number;
  /** Hash of the receipt with the highest seq: compare with the chain head. */
  head: string;
  /** Whether the chain starts at seq 1 (its genesis). */
  fromGenesis: boolean;
}

/** The result of {@link verifyReceipts}: per-chain summaries and every problem found (empty: all verified). */
export interface VerificationReport {
  ok: boolean;
  /** Records read (non-blank lines). */
  records: number;
  chains: ChainSummary[];
  /** Sorted by position. */
  problems: ReceiptProblem[];
}

/** What to verify: a partial export (chains need not start at genesis) and optionally one agent only. */
export interface VerifyOptions {
  /**
   * Accept chains that start after seq 1 (an export of a range): the first receipt's `prev` is
   * then taken on trust. Default false: a chain must start at its genesis.
   */
  partial?: boolean;
  /** The agent whose chain this is: a receipt of any other agent is `inserted`. */
  agent?: string;
}

/** One record after signature and claim checks. */
interface Entry {
  position: number;
  hash: string;
  claims?: ReceiptClaims;
  /** The agent the record claims (unverified) when it failed its checks, for grouping. */
  hint?: string;
}

/**
 * Verifies receipts against `jwks`. `input` is an export's text (JSON Lines), or records: export
 * lines, or bare compact JWS strings. Never throws for bad input: everything wrong is a problem.
 */
export async function verifyReceipts(
  input: string | readonly (string | ReceiptLine)[],
  jwks: JSONWebKeySet,
  options: VerifyOptions = {},
): Promise<VerificationReport> {
  const lines: ParsedLine[] =
    typeof input === 'string'
      ? parseJsonLines(input)
      : input.map((r, i) => {
          const v = toLine(r);
          return typeof v === 'string' ? { line: i + 1, error: v } : { line: i + 1, value: v };
        });
  const problems: ReceiptProblem[] = [];
  const keys = createLocalJWKSet(jwks);
  const entries: Entry[] = [];
  for (const l of lines) entries.push(await checkRecord(l, keys, problems));

  const chains: ChainSummary[] = [];
  for (const [agent, members] of groupByAgent(entries, options, problems)) {
    const summary = checkChain(agent, members, options, problems);
    if (summary) chains.push(summary);
  }
  problems.sort((a, b) => a.position - b.position);
  return { ok: problems.length === 0, records: lines.length, chains, problems };
}

/** Signature, header and claims of one record; problems are pushed, the entry returned either way. */
async function checkRecord(l: ParsedLine, keys: JWTVerifyGetKey, problems: ReceiptProblem[]): Promise<Entry> {
  const position = l.line;
  if ('error' in l) {
    problems.push({ position, code: 'malformed', message: l.error });
    return { position, hash: '' };
  }
  const jws = l.value.receipt;
  const entry: Entry = { position, hash: receiptHash(jws) };
  const unverified = decodeUnverified(jws);
  if (unverified) entry.hint = unverified.agent;
  const at = { position, ...(unverified ? { agent: unverified.agent, seq: unverified.seq } : {}) };
  let payload: Uint8Array;
  try {
    const result = await compactVerify(jws, keys, { algorithms: [...RECEIPT_ALGORITHMS] });
    if (result.protectedHeader.typ !== RECEIPT_TYP) {
      problems.push({ ...at, code: 'malformed', message: `typ is not "${RECEIPT_TYP}": not a receipt` });
      return entry;
    }
    payload = result.payload;
  } catch (err) {
    problems.push({ ...at, ...classifyJoseError(err) });
    return entry;
  }
  const claims = parseClaims(payload);
  if (typeof claims === 'string') {
    problems.push({ ...at, code: 'malformed', message: claims });
    return entry;
  }
  entry.claims = claims;
  const edited = diffLine(l.value, claims, entry.hash);
  if (edited) problems.push({ position, agent: claims.agent, seq: claims.seq, code: 'edited', message: edited });
  return entry;
}

function classifyJoseError(err: unknown): { code: ReceiptProblemCode; message: string } {
  if (err instanceof errors.JWKSNoMatchingKey) return { code: 'unknown_key', message: 'signed with a key that is not in the receipt JWKS' };
  if (err instanceof errors.JWSSignatureVerificationFailed) {
    return { code: 'bad_signature', message: 'signature does not verify: the receipt was changed after signing, or signed with another key' };
  }
  if (err instanceof errors.JOSEAlgNotAllowed) return { code: 'bad_signature', message: 'signature algorithm is not ES256 or EdDSA' };
  if (err instanceof errors.JWKSMultipleMatchingKeys) return { code: 'unknown_key', message: 'the JWKS has several keys for this kid' };
  return { code: 'malformed', message: 'not a compact JWS' };
}

/** The claimed agent and seq of a record that failed verification (for grouping and messages only). */
function decodeUnverified(jws: string): { agent?: string; seq?: number } | undefined {
  const part = jws.split('.')[1];
  if (part === undefined) return undefined;
  try {
    const doc = JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as Record<string, unknown>;
    return {
      ...(typeof doc.agent === 'string' ? { agent: doc.agent } : {}),
      ...(typeof doc.seq === 'number' ? { seq: doc.seq } : {}),
    };
  } catch {
    return undefined;
  }
}

const HASH = /^[A-Za-z0-9_-]{43}$/;

/** The claims, or a message naming the first claim that is missing or of the wrong type. */
function parseClaims(payload: Uint8Array): ReceiptClaims | string {
  let doc: unknown;
  try {
    doc = JSON.parse(new TextDecoder().decode(payload));
  } catch {
    return 'payload is not JSON';
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return 'payload is not a JSON object';
  const c = doc as Record<string, unknown>;
  const isString = (v: unknown) => typeof v === 'string' && v.length > 0;
  const isStrings = (v: unknown) => Array.isArray(v) && v.every(isString);
  const required: Array<[string, (v: unknown) => boolean]> = [
    ['iss', isString],
    ['jti', isString],
    ['iat', (v) => Number.isInteger(v)],
    ['seq', (v) => Number.isSafeInteger(v) && (v as number) >= 1],
    ['prev', (v) => typeof v === 'string' && HASH.test(v)],
    ['agent', isString],
    ['chain', isStrings],
    ['event', isString],
    ['action', isString],
    ['resource', isString],
    ['decision', (v) => v === 'permit' || v === 'deny'],
    ['policies', isStrings],
  ];
  for (const [name, ok] of required) if (!ok(c[name])) return `claim "${name}" is missing or malformed`;
  for (const name of ['user', 'reason', 'scope', 'request_id', 'request_digest', 'token_id']) {
    if (c[name] !== undefined && !isString(c[name])) return `claim "${name}" is malformed`;
  }
  return c as unknown as ReceiptClaims;
}

/** A message when the line's plain members disagree with what the receipt signs. */
function diffLine(line: ReceiptLine, claims: ReceiptClaims, hash: string): string | undefined {
  const signed: Record<string, string | number> = { agent: claims.agent, seq: claims.seq, id: claims.jti, prev: claims.prev, hash };
  for (const k of ['agent', 'seq', 'id', 'prev', 'hash'] as const) {
    if (line[k] !== undefined && line[k] !== signed[k]) return `the line's "${k}" (${String(line[k])}) differs from the signed receipt (${String(signed[k])})`;
  }
  return undefined;
}

/**
 * Chains by agent, records in file order. A record that failed its checks joins the chain its
 * (unverified) agent names if that chain exists, else the chain of the record before it, so an
 * edit of the `agent` claim is reported once, where it is.
 */
function groupByAgent(entries: readonly Entry[], options: VerifyOptions, problems: ReceiptProblem[]): Map<string, Entry[]> {
  const known = new Set(entries.flatMap((e) => (e.claims ? [e.claims.agent] : [])));
  const groups = new Map<string, Entry[]>();
  const add = (agent: string, e: Entry) => {
    const g = groups.get(agent) ?? [];
    g.push(e);
    groups.set(agent, g);
  };
  let previous: string | undefined;
  const firstValid = entries.find((e) => e.claims)?.claims?.agent;
  for (const e of entries) {
    if (e.claims) {
      const agent = e.claims.agent;
      if (options.agent !== undefined && agent !== options.agent) {
        problems.push({ position: e.position, agent, seq: e.claims.seq, code: 'inserted', message: `a receipt of agent "${agent}" in the chain of "${options.agent}"` });
        continue;
      }
      add(agent, e);
      previous = agent;
      continue;
    }
    const agent = options.agent ?? (e.hint !== undefined && known.has(e.hint) ? e.hint : (previous ?? firstValid ?? e.hint ?? ''));
    add(agent, e);
  }
  return groups;
}

/** The order and link checks of one agent's chain. */
function checkChain(agent: string, members: readonly Entry[], options: VerifyOptions, problems: ReceiptProblem[]): ChainSummary | undefined {
  const report = (e: Entry, code: ReceiptProblemCode, message: string) => problems.push({ position: e.position, agent, seq: e.claims?.seq, code, message });
  const valid = members.filter((e): e is Entry & { claims: ReceiptClaims } => e.claims !== undefined);
  const bySeq = genuineBySeq(valid, report);

  let max: number | undefined;
  let unplaced = 0; // records since the last valid one that failed their checks: they may fill gaps
  for (const e of members) {
    if (!e.claims) {
      unplaced += 1;
      continue;
    }
    if (bySeq.get(e.claims.seq) !== e) continue; // a duplicate, reported as inserted
    const s = e.claims.seq;
    const floor = max ?? (options.partial ? s - 1 : 0);
    if (max !== undefined && s < max) {
      report(e, 'reordered', `seq ${s} comes after seq ${max} (line ${bySeq.get(max)!.position})`);
    } else if (s > floor + 1) {
      // Seqs floor+1 … s−1 are not where they belong: later in the file (reordered), taken by
      // records that failed their checks just before this one (already reported), or gone.
      const later = [...bySeq.keys()].filter((n) => n > floor && n < s).sort((a, b) => a - b);
      if (later.length > 0) report(e, 'reordered', `seq ${s} comes before seq ${describe(later)}`);
      const absent = s - floor - 1 - later.length;
      const missing = absent - Math.min(unplaced, absent);
      if (missing > 0) {
        const which = later.length === 0 ? ` (seq ${describe([s - missing, s - 1])})` : '';
        report(e, 'removed', `${missing} receipt${missing > 1 ? 's' : ''} missing before this one${which}`);
      }
    }
    if (s === 1 && e.claims.prev !== genesisHash(agent)) report(e, 'bad_genesis', 'seq 1 does not start from the genesis value of its agent');
    const before = bySeq.get(s - 1);
    if (before && e.claims.prev !== before.hash) {
      report(e, 'broken_link', `prev is not the hash of seq ${s - 1} (line ${before.position}): one of the two was altered after the chain was written`);
    }
    max = Math.max(max ?? s, s);
    unplaced = 0;
  }
  if (bySeq.size === 0) return undefined;
  const seqs = [...bySeq.keys()];
  const first = Math.min(...seqs);
  const last = Math.max(...seqs);
  return { agent, first, last, count: bySeq.size, head: bySeq.get(last)!.hash, fromGenesis: first === 1 };
}

/**
 * One receipt per seq. Of several valid receipts with one seq, the genuine one is the one the
 * next receipt's `prev` names (else the first); the others are reported as inserted.
 */
function genuineBySeq<E extends Entry & { claims: ReceiptClaims }>(valid: readonly E[], report: (e: Entry, code: ReceiptProblemCode, m: string) => void): Map<number, E> {
  const groups = new Map<number, E[]>();
  for (const e of valid) groups.set(e.claims.seq, [...(groups.get(e.claims.seq) ?? []), e]);
  const prevs = new Map<number, Set<string>>();
  for (const e of valid) prevs.set(e.claims.seq, (prevs.get(e.claims.seq) ?? new Set()).add(e.claims.prev));
  const out = new Map<number, E>();
  for (const [seq, group] of groups) {
    const linked = group.find((e) => prevs.get(seq + 1)?.has(e.hash)) ?? group[0]!;
    out.set(seq, linked);
    for (const e of group) {
      if (e !== linked) report(e, 'inserted', `a second receipt with seq ${seq}; the chain continues from line ${linked.position}`);
    }
  }
  return out;
}

/** `7`, or `7..9` for a sorted list or a [first, last] pair. */
function describe(seqs: readonly number[]): string {
  const first = seqs[0]!;
  const last = seqs[seqs.length - 1]!;
  return first === last ? String(first) : `${first}..${last}`;
}
