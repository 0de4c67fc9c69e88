/**
 * `npx tsx scripts/bench/receipt-parts-micro.ts [--n 2000] [--rounds 7] [--count-promises]` — what a
 * gateway call's receipt costs in JavaScript, step by step, in-process (issue 16, ninth round):
 * building its input (`receiptText`, `requestDigest`), the input check, the claims, the payload's
 * serialisation, the JWS signature (jose `CompactSign`, ES256 on libuv's thread pool), the chain
 * hash, and the whole `ReceiptService.appendOnce` path against a store that answers at once (the
 * chain writer's bookkeeping included, the statement excluded) beside the bench's receipts-off
 * no-op (`deputy-process.ts`: the proof's `jti` spent alone) on the same store. Steps alternate
 * round by round; each figure is a median: CPU µs per operation (`process.cpuUsage`: every thread,
 * so the thread pool's share of the signature too), heap KiB allocated per operation (V8 heap
 * used + what each GC freed), and with `--count-promises` promises created per operation (an
 * `async_hooks` init hook: it slows every step, so CPU figures of that run are not comparable).
 * An `AsyncLocalStorage` is entered first, as in the server (oidc-provider's), so promise hooks
 * cost what they cost there. For the statement's share, see `statement-micro.ts` and
 * `pglite-statement-parts.ts`.
 *
 * @module
 */
import { AsyncLocalStorage, createHook } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import { parseArgs } from './options.js';
import { GCProfiler, getHeapStatistics } from 'node:v8';
import { requestDigest } from '../../src/audit/digest.js';
import { assertReceiptInput, receiptClaims, receiptHash, receiptText, ReceiptSigner, type ReceiptInput, type ReceiptSigningKey } from '../../src/audit/receipt.js';
import { ReceiptService } from '../../src/audit/receipts.js';
import { generateSigningKey } from '../../src/keys/keystore.js';
import { recordOnce } from '../../src/oauth/adapter.js';
import type { Store } from '../../src/store/index.js';

const { values } = parseArgs(import.meta.url, { options: { n: { type: 'string', default: '2000', value: 'positive integer' }, rounds: { type: 'string', default: '7', value: 'positive integer' }, 'count-promises': { type: 'boolean', default: false } } });
const N = Number(values.n);
const ROUNDS = Number(values.rounds);

new AsyncLocalStorage<{ server: true }>().enterWith({ server: true });
let promises = 0;
if (values['count-promises']) {
  createHook({
    init(_id, type) {
      if (type === 'PROMISE') promises += 1;
    },
  }).enable();
}

/** A store whose every statement succeeds at once: the receipt append's statement answers "written". */
function instantStore(): Store {
  const store = {
    kind: 'pglite',
    query: async (sql: string) => (sql.includes('moved') ? [{ moved: 1, inserted: 1 }] : [{ id: 'k' }]),
    exec: async () => {},
    transaction: async (body: (tx: unknown) => unknown) => body(store),
  };
  return store as unknown as Store;
}

/** A gateway call's receipt input, as `src/enforcement/steps/receipt.ts` builds it. */
function gatewayInput(): ReceiptInput {
  return {
    agent: 'agent-bench', user: 'okta:acme.okta.com:00u1', chain: ['agent-bench'], event: 'gateway_call', action: 'GET',
    resource: receiptText('echo/items/42'), decision: 'permit', policies: ['gw-permit'], scope: 'echo.read echo.write',
    requestId: randomUUID(), requestDigest: requestDigest({ method: 'GET', connection: 'echo', path: '/items/42', query: '' }), tokenId: 'Yv0s4k2cKq9u0nPpX3wqLm',
  };
}

const key: ReceiptSigningKey = { jwk: (await generateSigningKey('ES256')).jwk as ReceiptSigningKey['jwk'] };
const signer = new ReceiptSigner(key);
const store = instantStore();
const service = new ReceiptService({ store, issuer: 'https://deputy.example.com', key });
const fixed = gatewayInput();
const at = () => ({ iss: 'https://deputy.example.com', jti: randomUUID(), iat: 1_764_500_000, seq: 42, prev: 'Xk3yq5P2gkIu0G1nA9w3v8uJv1K7Yz8q3b5lWm4tHcE' });
const claims = receiptClaims(fixed, at());
const jws = await signer.sign(claims);
const proofKey = () => ({ namespace: 'DPoPProof', key: randomUUID(), ttlSeconds: 300 });

const steps: Record<string, () => unknown> = {
  'input (receiptText + requestDigest)': gatewayInput,
  'assertReceiptInput': () => assertReceiptInput(fixed),
  'receiptClaims + jti': () => receiptClaims(fixed, at()),
  'payload JSON + UTF-8': () => new TextEncoder().encode(JSON.stringify(claims)),
  'signature (jose CompactSign, ES256)': () => signer.sign(claims),
  'chain hash (SHA-256 of the JWS)': () => receiptHash(jws),
  'appendOnce, whole JS path': () => service.appendOnce(gatewayInput(), proofKey(), Promise.resolve()),
  'receipts off (bench no-op)': async () => {
    gatewayInput();
    await recordOnce(store, 'DPoPProof', randomUUID(), 300);
  },
};

/** CPU µs, heap bytes and promises per call of `step`, over `N` calls one after another. */
async function measure(step: () => unknown): Promise<{ cpu: number; heap: number; promises: number }> {
  for (let i = 0; i < 100; i++) await step();
  const gc = new GCProfiler();
  gc.start();
  const p0 = promises;
  const h0 = getHeapStatistics().used_heap_size;
  const c0 = process.cpuUsage();
  for (let i = 0; i < N; i++) await step();
  const cpu = process.cpuUsage(c0);
  const h1 = getHeapStatistics().used_heap_size;
  let freed = 0;
  for (const s of gc.stop()?.statistics ?? []) freed += s.beforeGC.heapStatistics.usedHeapSize - s.afterGC.heapStatistics.usedHeapSize;
  return { cpu: (cpu.user + cpu.system) / N, heap: (h1 - h0 + freed) / N, promises: (promises - p0) / N };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const results = new Map<string, { cpu: number[]; heap: number[]; promises: number[] }>();
for (let r = 0; r < ROUNDS; r++) {
  for (const [label, step] of Object.entries(steps)) {
    const m = await measure(step);
    const row = results.get(label) ?? { cpu: [], heap: [], promises: [] };
    row.cpu.push(m.cpu);
    row.heap.push(m.heap);
    row.promises.push(m.promises);
    results.set(label, row);
  }
}
console.log(`gateway receipt: JWS ${jws.length} characters, payload ${JSON.stringify(claims).length} bytes; ${N} calls × ${ROUNDS} rounds`);
for (const [label, row] of results) {
  console.log(`  ${label.padEnd(38)} ${median(row.cpu).toFixed(1).padStart(6)} µs CPU  ${(median(row.heap) / 1024).toFixed(2).padStart(6)} KiB${values['count-promises'] ? `  ${median(row.promises).toFixed(1)} promises` : ''}`);
}
