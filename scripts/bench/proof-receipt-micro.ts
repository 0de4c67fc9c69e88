/**
 * `npx tsx scripts/bench/proof-receipt-micro.ts [--n 1500] [--rounds 5] [--work-us 150]` — the gateway call's two
 * WebCrypto operations at concurrency 1, in-process (issue 16, seventh round): the DPoP proof's
 * check (`DpopVerifier`, ES256 verify on libuv's thread pool) and the receipt's signature
 * (`ReceiptSigner`, ES256 sign, the same pool), one call after another as at c1:
 * - `serial` — the check, the main thread's work between (`--work-us` of busy CPU standing for
 *   the revocation cache, the PDP's decision, the budget memo: what the call does between
 *   `authenticate` and `receipt`), then the signature (the gateway before: `authenticate`
 *   awaited the proof's signature first);
 * - `overlapped` — `checkDeferred`, the same work while the proof's signature verifies, then
 *   the receipt signed, both awaited (the gateway now).
 * Modes alternate round by round in one process. Reports CPU microseconds per call (this
 * process, every thread: `process.cpuUsage`), wall microseconds, and the process's voluntary
 * context switches per call (`/proc/self/status`: a thread going to sleep — the main thread in
 * epoll, a pool thread waiting for work). Spending is faked (no store): only the crypto path.
 *
 * @module
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { parseArgs } from './options.js';
import { genesisHash, receiptClaims, ReceiptSigner, type ReceiptSigningKey } from '../../src/audit/receipt.js';
import { generateSigningKey } from '../../src/keys/keystore.js';
import { DpopVerifier, type DpopRequest } from '../../src/oauth/dpop.js';
import type { Queryable } from '../../src/store/index.js';
import { dpopKeys, dpopProof } from '../../test/support/agents.js';

const { values } = parseArgs(import.meta.url, { options: { n: { type: 'string', default: '1500', value: 'positive integer' }, rounds: { type: 'string', default: '5', value: 'positive integer' }, 'work-us': { type: 'string', default: '150', value: 'non-negative integer' } } });
const WORK_US = Number(values['work-us']);

/** Busy CPU on the main thread for `WORK_US` µs (the call's own work between the two operations). */
function work(): void {
  const end = performance.now() + WORK_US / 1000;
  while (performance.now() < end);
}
const N = Number(values.n);
const ROUNDS = Number(values.rounds);
const URL_ = 'https://deputy.example.com/gw/echo/items';

/** Voluntary context switches of every thread of this process. */
function sleeps(): number {
  let n = 0;
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      n += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(readFileSync(`/proc/self/task/${tid}/status`, 'utf8'))?.[1] ?? 0);
    } catch {
      // the thread ended meanwhile
    }
  }
  return n;
}

const keys = await dpopKeys();
const token = randomBytes(200).toString('base64url');
const dpop = new DpopVerifier({ db: { query: async () => [] } as unknown as Queryable, iatWindowSeconds: 60, requireNonce: false, nonceSecret: randomBytes(32) });
const signer = new ReceiptSigner((await generateSigningKey('ES256')) as unknown as ReceiptSigningKey);
const proofs = await Promise.all(Array.from({ length: N }, () => dpopProof(keys, URL_, { htm: 'GET', accessToken: token })));
const request = (i: number): DpopRequest => ({ proofs: [proofs[i]!], method: 'GET', url: URL_, accessToken: token, expectedJkt: keys.jkt });
const claims = (i: number) => receiptClaims(
  { agent: 'probe-agent', user: 'okta:u', chain: ['probe-agent'], event: 'gateway_call', action: 'http:GET', resource: URL_, decision: 'permit', scope: 'deputy.read', requestId: randomUUID(), tokenId: 'at-1' },
  { iss: 'https://deputy.example.com', jti: randomUUID(), iat: Math.floor(Date.now() / 1000), seq: i + 1, prev: genesisHash('probe-agent') },
);

const modes: Record<string, (i: number) => Promise<unknown>> = {
  serial: async (i) => {
    await dpop.check(request(i));
    work();
    await signer.sign(claims(i));
  },
  overlapped: async (i) => {
    const checked = await dpop.checkDeferred(request(i));
    work();
    const signed = signer.sign(claims(i));
    await checked.signature;
    await signed;
  },
};

const results = new Map<string, Array<{ cpu: number; wall: number; sleeps: number }>>();
for (let round = 0; round <= ROUNDS; round++) {
  for (const [label, run] of Object.entries(modes)) {
    const [c0, t0, s0] = [process.cpuUsage(), performance.now(), sleeps()];
    for (let i = 0; i < N; i++) await run(i);
    const c = process.cpuUsage(c0);
    const row = { cpu: (c.user + c.system) / N, wall: ((performance.now() - t0) * 1000) / N, sleeps: (sleeps() - s0) / N };
    if (round > 0) results.set(label, [...(results.get(label) ?? []), row]); // round 0 warms up
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
process.stdout.write(`| mode | CPU µs / call (median of ${ROUNDS}) | min | wall µs / call | sleeps / call |\n| --- | --- | --- | --- | --- |\n`);
for (const [label, rows] of results) {
  process.stdout.write(`| ${label} | ${median(rows.map((r) => r.cpu)).toFixed(0)} | ${Math.min(...rows.map((r) => r.cpu)).toFixed(0)} | ${median(rows.map((r) => r.wall)).toFixed(0)} | ${median(rows.map((r) => r.sleeps)).toFixed(2)} |\n`);
}
