/**
 * The offline receipt verifier on chains built in memory: every kind of tampering is reported
 * with the right code at the right position, and nothing else is.
 */
import { CompactSign, exportJWK, generateKeyPair, type CryptoKey, type JSONWebKeySet, type JWK } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { formatLine, toReceiptLine, type ReceiptLine } from '../../src/audit/jsonl.js';
import {
  genesisHash,
  receiptClaims,
  receiptHash,
  ReceiptSigner,
  type ReceiptClaims,
  type ReceiptInput,
  type SignedReceipt,
} from '../../src/audit/receipt.js';
import { verifyReceipts, type ReceiptProblemCode } from '../../src/audit/verify.js';

interface TestKey {
  signer: ReceiptSigner;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

async function receiptKey(alg: 'ES256' | 'EdDSA', kid: string): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(privateKey)), kid, alg };
  return { signer: new ReceiptSigner({ jwk }), privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

const ISS = 'https://deputy.example.com';

function input(agent: string, n: number): ReceiptInput {
  return {
    agent,
    user: 'okta:acme.okta.com:00u1',
    chain: ['agent-root', agent],
    event: 'token_exchange',
    action: 'delegate',
    resource: `https://api.example.com/${n}`,
    decision: n % 3 === 0 ? 'deny' : 'permit',
    policies: ['p-1'],
    scope: 'calendar.read',
    requestId: `req-${n}`,
    requestDigest: 'sha-256:AAAA',
    tokenId: `jti-${n}`,
  };
}

/** Signs `claims` as they are (no chain logic): for forged and re-signed receipts. */
async function sign(key: TestKey, claims: ReceiptClaims): Promise<SignedReceipt> {
  const jws = await key.signer.sign(claims);
  return { id: claims.jti, agent: claims.agent, seq: claims.seq, hash: receiptHash(jws), prev: claims.prev, jws };
}

/** A chain of `n` receipts for `agent`, as the service writes them. */
async function chain(key: TestKey, agent: string, n: number, start = { seq: 0, hash: genesisHash(agent) }): Promise<SignedReceipt[]> {
  const out: SignedReceipt[] = [];
  let head = start;
  for (let i = 1; i <= n; i++) {
    const r = await sign(key, receiptClaims(input(agent, head.seq + 1), { iss: ISS, jti: `${agent}-r${head.seq + 1}`, iat: 1_800_000_000 + i, seq: head.seq + 1, prev: head.hash }));
    out.push(r);
    head = { seq: r.seq, hash: r.hash };
  }
  return out;
}

const claimsOf = (jws: string): ReceiptClaims => JSON.parse(Buffer.from(jws.split('.')[1]!, 'base64url').toString('utf8'));
/** The same JWS with its payload replaced (signature left as it was). */
function withPayload(jws: string, claims: unknown): string {
  const [h, , s] = jws.split('.');
  return `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${s}`;
}
const jsonl = (lines: readonly (SignedReceipt | ReceiptLine | string)[]) =>
  lines.map((l) => (typeof l === 'string' ? `${l}\n` : 'jws' in l ? formatLine(l) : `${JSON.stringify(l)}\n`)).join('');
const summary = (problems: Array<{ position: number; code: ReceiptProblemCode }>) => problems.map((p) => [p.position, p.code]);

let key: TestKey;
let other: TestKey;
let jwks: JSONWebKeySet;
let receipts: SignedReceipt[];
const N = 6;

beforeAll(async () => {
  key = await receiptKey('ES256', 'receipt-1');
  other = await receiptKey('ES256', 'attacker');
  jwks = { keys: [key.publicJwk] };
  receipts = await chain(key, 'agent-a', N);
});

describe('an untouched chain', () => {
  it('verifies, and the report names its first, last and head', async () => {
    const report = await verifyReceipts(jsonl(receipts), jwks);
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.records).toBe(N);
    expect(report.chains).toEqual([{ agent: 'agent-a', first: 1, last: N, count: N, head: receipts[N - 1]!.hash, fromGenesis: true }]);
  });

  it('accepts records (lines or bare JWS strings) as well as a file, and EdDSA keys', async () => {
    const ed = await receiptKey('EdDSA', 'receipt-ed');
    const edChain = await chain(ed, 'agent-e', 3);
    const report = await verifyReceipts([...edChain.map((r) => r.jws)], { keys: [ed.publicJwk] });
    expect(report).toMatchObject({ ok: true, records: 3 });
    expect((await verifyReceipts(receipts.map(toReceiptLine), jwks)).ok).toBe(true);
  });

  it('verifies interleaved chains of several agents independently', async () => {
    const b = await chain(key, 'agent-b', 3);
    const mixed = [receipts[0]!, b[0]!, receipts[1]!, b[1]!, b[2]!, ...receipts.slice(2)];
    const report = await verifyReceipts(jsonl(mixed), jwks);
    expect(report.problems).toEqual([]);
    expect(report.chains.map((c) => [c.agent, c.first, c.last])).toEqual([
      ['agent-a', 1, N],
      ['agent-b', 1, 3],
    ]);
    // Told which agent the export is for, another agent's receipts are insertions.
    const scoped = await verifyReceipts(jsonl(mixed), jwks, { agent: 'agent-a' });
    expect(summary(scoped.problems)).toEqual([
      [2, 'inserted'],
      [4, 'inserted'],
      [5, 'inserted'],
    ]);
  });
});

describe('tampering is reported where it happened, and nowhere else', () => {
  it.each(Array.from({ length: N - 1 }, (_, i) => i))('a receipt removed at index %i: "removed" at that line', async (i) => {
    const cut = receipts.filter((_, j) => j !== i);
    const report = await verifyReceipts(jsonl(cut), jwks);
    expect(summary(report.problems)).toEqual([[i + 1, 'removed']]);
    expect(report.problems[0]).toMatchObject({ agent: 'agent-a', seq: i + 2, message: `1 receipt missing before this one (seq ${i + 1})` });
  });

  it('several receipts removed in a row: one report with the count', async () => {
    const report = await verifyReceipts(jsonl([receipts[0]!, receipts[4]!, receipts[5]!]), jwks);
    expect(report.problems).toMatchObject([{ position: 2, code: 'removed', message: '3 receipts missing before this one (seq 2..4)' }]);
  });

  it('the last receipt removed leaves a shorter valid chain: only the head tells (documented limit)', async () => {
    const report = await verifyReceipts(jsonl(receipts.slice(0, -1)), jwks);
    expect(report.ok).toBe(true);
    expect(report.chains[0]).toMatchObject({ last: N - 1, head: receipts[N - 2]!.hash });
    expect(report.chains[0]!.head).not.toBe(receipts[N - 1]!.hash);
  });

  it.each(Array.from({ length: N - 1 }, (_, i) => i))('receipts %i and the next swapped: "reordered" at both lines', async (i) => {
    const swapped = [...receipts];
    [swapped[i], swapped[i + 1]] = [swapped[i + 1]!, swapped[i]!];
    const report = await verifyReceipts(jsonl(swapped), jwks);
    expect(summary(report.problems)).toEqual([
      [i + 1, 'reordered'],
      [i + 2, 'reordered'],
    ]);
  });

  const signedClaims: Array<[keyof ReceiptClaims, unknown]> = [
    ['iss', 'https://evil.example.com'],
    ['jti', 'another-id'],
    ['iat', 1],
    ['seq', 99],
    ['prev', genesisHash('other')],
    ['agent', 'agent-z'],
    ['user', 'okta:acme.okta.com:mallory'],
    ['chain', ['agent-a']],
    ['event', 'gateway_call'],
    ['action', 'read'],
    ['resource', 'https://other.example.com'],
    ['decision', 'permit'],
    ['policies', []],
    ['scope', 'calendar.write'],
    ['request_id', 'req-x'],
    ['request_digest', 'sha-256:BBBB'],
    ['token_id', 'jti-x'],
  ];
  it.each(signedClaims)('the signed claim "%s" edited: "bad_signature" at that line only', async (claim, value) => {
    for (const i of [0, 2, N - 1]) {
      const edited = receipts.map((r) => toReceiptLine(r));
      const claims = { ...claimsOf(receipts[i]!.jws), [claim]: value };
      if (claim === 'decision') claims.decision = claimsOf(receipts[i]!.jws).decision === 'permit' ? 'deny' : 'permit';
      // Only the JWS changes; the plain members still say what the original said.
      edited[i] = { ...edited[i]!, receipt: withPayload(receipts[i]!.jws, claims), hash: undefined };
      const report = await verifyReceipts(jsonl(edited), jwks);
      expect(summary(report.problems), `index ${i}`).toEqual([[i + 1, 'bad_signature']]);
    }
  });

  it.each([
    ['agent', 'agent-z'],
    ['seq', 42],
    ['id', 'x'],
    ['hash', 'A'.repeat(43)],
    ['prev', 'B'.repeat(43)],
  ] as const)('the plain member "%s" of a line edited: "edited" at that line only', async (member, value) => {
    const lines = receipts.map((r) => toReceiptLine(r));
    lines[2] = { ...lines[2]!, [member]: value };
    const report = await verifyReceipts(jsonl(lines), jwks);
    expect(summary(report.problems)).toEqual([[3, 'edited']]);
    expect(report.problems[0]!.message).toContain(`"${member}"`);
  });

  it('a receipt re-signed with another key: "unknown_key", or "bad_signature" when it reuses the real kid', async () => {
    const forged = await sign(other, { ...claimsOf(receipts[3]!.jws), decision: 'permit', resource: 'https://evil.example.com' });
    const asOwnKid = receipts.map((r, i) => (i === 3 ? forged : r));
    expect(summary((await verifyReceipts(jsonl(asOwnKid), jwks)).problems)).toEqual([[4, 'unknown_key']]);

    const impostor: TestKey = { ...(await receiptKey('ES256', key.publicJwk.kid!)) };
    const reusedKid = await sign(impostor, claimsOf(receipts[3]!.jws));
    const report = await verifyReceipts(jsonl(receipts.map((r, i) => (i === 3 ? reusedKid : r))), jwks);
    expect(summary(report.problems)).toEqual([[4, 'bad_signature']]);
  });

  it('a receipt altered and re-signed with the real key: "broken_link" at the next receipt, naming both lines', async () => {
    const altered = await sign(key, { ...claimsOf(receipts[2]!.jws), decision: 'permit', resource: 'https://evil.example.com' });
    const report = await verifyReceipts(jsonl(receipts.map((r, i) => (i === 2 ? altered : r))), jwks);
    expect(summary(report.problems)).toEqual([[4, 'broken_link']]);
    expect(report.problems[0]!.message).toMatch(/hash of seq 3 \(line 3\)/);
  });

  it('a forged receipt inserted: reported at its line only; a copy of a real one: "inserted"', async () => {
    const forged = await sign(other, { ...claimsOf(receipts[2]!.jws), jti: 'forged', seq: 3 });
    const withForged = [...receipts.slice(0, 2), forged, ...receipts.slice(2)];
    expect(summary((await verifyReceipts(jsonl(withForged), jwks)).problems)).toEqual([[3, 'unknown_key']]);

    const withCopy = [...receipts.slice(0, 4), receipts[1]!, ...receipts.slice(4)];
    const report = await verifyReceipts(jsonl(withCopy), jwks);
    expect(summary(report.problems)).toEqual([[5, 'inserted']]);
    expect(report.problems[0]!.message).toMatch(/second receipt with seq 2; the chain continues from line 2/);
  });

  it('a second, validly signed receipt with an existing seq: the one the chain continues from is genuine', async () => {
    const fork = await sign(key, { ...claimsOf(receipts[2]!.jws), jti: 'fork', resource: 'https://fork.example.com' });
    // The fork comes first in the file; the next receipt links to the original, so the fork is the insertion.
    const lines = [...receipts.slice(0, 2), fork, ...receipts.slice(2)];
    expect(summary((await verifyReceipts(jsonl(lines), jwks)).problems)).toEqual([[3, 'inserted']]);
  });

  it('a line replaced by garbage: "malformed" at that line only', async () => {
    const lines: Array<SignedReceipt | string> = [...receipts];
    lines[2] = '{"agent":"agent-a","receipt":';
    expect(summary((await verifyReceipts(jsonl(lines), jwks)).problems)).toEqual([[3, 'malformed']]);
    lines[2] = 'not.a.jws';
    expect(summary((await verifyReceipts(jsonl(lines), jwks)).problems)).toEqual([[3, 'malformed']]);
  });
});

describe('genesis and partial exports', () => {
  it('the first receipt removed: "removed" at line 1', async () => {
    const report = await verifyReceipts(jsonl(receipts.slice(1)), jwks);
    expect(report.problems).toMatchObject([{ position: 1, code: 'removed', message: '1 receipt missing before this one (seq 1)' }]);
    expect(report.chains[0]).toMatchObject({ first: 2, fromGenesis: false });
  });

  it('an export of a range verifies with `partial`, its first prev taken on trust', async () => {
    const report = await verifyReceipts(jsonl(receipts.slice(2)), jwks, { partial: true });
    expect(report.problems).toEqual([]);
    expect(report.chains[0]).toMatchObject({ first: 3, last: N, fromGenesis: false });
    // Still: a gap inside the range is found.
    const gap = await verifyReceipts(jsonl([receipts[2]!, receipts[4]!, receipts[5]!]), jwks, { partial: true });
    expect(summary(gap.problems)).toEqual([[2, 'removed']]);
  });

  it('seq 1 that does not start from its agent\'s genesis: "bad_genesis"', async () => {
    const claims = claimsOf(receipts[0]!.jws);
    const rebased = await sign(key, { ...claims, prev: genesisHash('agent-b') });
    const report = await verifyReceipts(jsonl([rebased]), jwks);
    expect(summary(report.problems)).toEqual([[1, 'bad_genesis']]);
  });
});

describe('what is not a receipt', () => {
  it('refuses unsigned and HMAC "receipts", and signed JWTs of another type', async () => {
    const claims = claimsOf(receipts[0]!.jws);
    const unsigned = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'deputy-receipt+jwt' })).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.`;
    const hmac = `${Buffer.from(JSON.stringify({ alg: 'HS256', kid: 'receipt-1', typ: 'deputy-receipt+jwt' })).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.c2ln`;
    for (const jws of [unsigned, hmac]) {
      const report = await verifyReceipts([jws], jwks);
      expect(report.ok).toBe(false);
      expect(report.problems[0]!.code).toMatch(/bad_signature|malformed/);
    }
    // The real receipt key, but another type of JWT: not a receipt (RFC 8725 §3.11).
    const token = await new CompactSign(new TextEncoder().encode(JSON.stringify(claims)))
      .setProtectedHeader({ alg: 'ES256', kid: 'receipt-1', typ: 'at+jwt' })
      .sign(key.privateKey);
    expect((await verifyReceipts([token], jwks)).problems).toMatchObject([{ position: 1, code: 'malformed', message: 'typ is not "deputy-receipt+jwt": not a receipt' }]);
  });

  it('refuses a validly signed payload that is not a receipt (claims missing)', async () => {
    const { iss: _iss, ...withoutIss } = claimsOf(receipts[0]!.jws);
    const report = await verifyReceipts([(await sign(key, withoutIss as ReceiptClaims)).jws], jwks);
    expect(report.problems).toMatchObject([{ position: 1, code: 'malformed', message: 'claim "iss" is missing or malformed' }]);
  });
});
