/**
 * The request digest's canonical JSON, the `canonicalize` library (RFC 8785, issue 16 thirteenth
 * round) against the serializer it replaced (kept here as it was at 3eb5306), and the revocation
 * cache's new per-answer size estimate: CPU µs per call (process.cpuUsage, user + system) and heap
 * bytes allocated per call (v8 getHeapStatistics total, GC off between reads is not possible: the
 * figure is the mean over a round), paired A/B rounds alternated, with the request shapes the
 * gateway and the token exchange digest.
 *
 * `npx tsx --expose-gc scripts/bench/digest-micro.ts [--n 100000] [--pairs 9]`
 */
import canonicalize from 'canonicalize';
import { parseArgs } from './options.js';
import { iJsonProblem } from '../../src/util/i-json.js';
import { recordFootprint, type TokenRecord } from '../../src/oauth/token-records.js';
import { previousCanonicalJson } from '../../test/support/previous-canonical-json.js';

const { values } = parseArgs(import.meta.url, { options: { n: { type: 'string', default: '100000', value: 'positive integer', description: 'calls per round' }, pairs: { type: 'string', default: '9', value: 'positive integer', description: 'A/B pairs, alternated' } } });
const N = Number(values.n);
const PAIRS = Number(values.pairs);

const gateway = { method: 'GET', connection: 'echo', path: '/items/42', query: 'a=1&b=2' };
const exchange = {
  grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: 'eyJ'.padEnd(900, 'x'), subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
  resource: ['https://api.example.com'], scope: 'crm:read crm:write', audience: undefined, client_id: 'agent-a', dpop_jkt: '0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I', dpop_jti: 'b3c1d7e0-7a55-4c2e-9d1b-1f6b0a3c9e11',
};
const record = { jti: 'Yv0s4k2cKq9u0nPpX3wqLm', rootJti: 'Yv0s4k2cKq9u0nPpX3wqLm', agentId: 'agent-a', userId: '00u1abcd2EFGH3ijk4l5', userAttrs: { email: 'alice@example.com', groups: ['engineering'] }, issuerId: 'okta', audience: 'https://deputy.example.com/gw/crm', scope: 'crm:read', chain: ['agent-a'], cnfJkt: '0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I', issuedAt: 1800000000, expiresAt: 1800000300 } as unknown as TokenRecord;

function round(f: () => unknown): { us: number; bytes: number } {
  (globalThis as { gc?: () => void }).gc?.();
  const heap0 = process.memoryUsage().heapUsed;
  const cpu0 = process.cpuUsage();
  let sink = 0;
  for (let i = 0; i < N; i++) sink += (f() as string | number).toString().length;
  const cpu = process.cpuUsage(cpu0);
  const bytes = (process.memoryUsage().heapUsed - heap0) / N;
  if (sink < 0) console.log(sink);
  return { us: (cpu.user + cpu.system) / N, bytes };
}

const cases: Array<[string, () => unknown, () => unknown]> = [
  ['gateway digest text', () => previousCanonicalJson(gateway), () => canonicalize(gateway)!],
  ['exchange digest text', () => previousCanonicalJson(exchange), () => canonicalize(exchange)!],
  ['revocation answer size (new)', () => 0, () => recordFootprint(record)],
  // Issue 16 fourteenth round: the I-JSON and depth check the digest now runs before the library recurses.
  ['gateway digest text, checked first', () => canonicalize(gateway)!, () => (iJsonProblem(gateway, 'the request') ?? canonicalize(gateway))!],
  ['exchange digest text, checked first', () => canonicalize(exchange)!, () => (iJsonProblem(exchange, 'the request') ?? canonicalize(exchange))!],
  ['exchange digest text, depth checked first', () => canonicalize(exchange)!, () => (iJsonProblem(exchange, 'the request', { depthOnly: true }) ?? canonicalize(exchange))!],
];
for (const [name, a, b] of cases) {
  if (a() !== 0 && a() !== b()) throw new Error(`${name}: texts differ`);
  for (let w = 0; w < 3; w++) round(a), round(b);
  const rows: Array<{ a: number; b: number }> = [];
  let favoured = 0;
  for (let p = 0; p < PAIRS; p++) {
    const first = p % 2 === 0;
    const ra = first ? round(a) : undefined;
    const rb = round(b);
    const ra2 = ra ?? round(a);
    rows.push({ a: ra2.us, b: rb.us });
    if (rb.us < ra2.us) favoured++;
  }
  const med = (xs: number[]) => xs.sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
  console.log(`${name}: before ${med(rows.map((r) => r.a)).toFixed(3)} µs, after ${med(rows.map((r) => r.b)).toFixed(3)} µs CPU per call (medians of ${PAIRS} pairs; ${favoured} favoured after)`);
}
