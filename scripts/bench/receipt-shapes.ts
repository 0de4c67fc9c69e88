/**
 * How many texts the exchange's group statement takes (src/audit/chain.ts `appendIfHead`, the
 * general statement with parts), and how many of them the store names (src/store/prepared.ts:
 * shapes past `MAX_SHAPES_NAMED` run unnamed, planned every time): groups of 1–`--max` exchanges
 * whose kinds are drawn at random — a new IdP token (vault row + token record), a remembered one
 * (token record on the condition that its vault row exists), a sub-delegation (token record with
 * its lineage check) — or `--kinds 1` (the bench's: the one remembered IdP token). No database:
 * the statements go to a recorder (issue 16, eleventh round).
 *
 * npx tsx scripts/bench/receipt-shapes.ts [--groups 2000] [--max 8] [--kinds 3]
 */
import { parseArgs } from './options.js';
import { appendIfHead } from '../../src/audit/chain.js';
import type { SignedReceipt } from '../../src/audit/receipt.js';
import { TokenRecords, type NewTokenRecord } from '../../src/oauth/token-records.js';
import { StatementNames } from '../../src/store/prepared.js';
import { EnvelopeVault } from '../../src/vault/envelope.js';
import type { Queryable, StatementPart, Store } from '../../src/store/index.js';

const { values } = parseArgs(import.meta.url, { options: { groups: { type: 'string', default: '2000', value: 'positive integer' }, max: { type: 'string', default: '8', value: 'positive integer' }, kinds: { type: 'string', default: '3', value: 'positive integer' } } });
const groups = Number(values.groups);
const max = Number(values.max);
const kinds = Number(values.kinds);

const records = new TokenRecords(undefined as unknown as Store);
const record = (parentJti?: string): NewTokenRecord => ({
  jti: 'j', parentJti, rootJti: 'r', agentId: 'a', userId: 'u', userAttrs: { groups: [], roles: [] }, issuerId: 'i', audience: ['x'], scope: 's',
  chain: [], cnfJkt: 'k', mayAct: undefined, upstream: 'h', issuedAt: 1, expiresAt: 2,
} as unknown as NewTokenRecord);
// The vault row's part and condition are EnvelopeVault's own (putPart, exists), under a stand-in key wrapper.
const vault = new EnvelopeVault({ activeKeyId: () => 'k', wrap: async (dek) => ({ kid: 'k', wrapped: Buffer.from(dek) }), unwrap: async () => Buffer.alloc(32) });
const vaultRow: StatementPart = await vault.putPart({ handle: 'h', kind: 'upstream_subject_token', plaintext: 'x', expiresAt: 2 });
const exists = vault.exists('h');
const partsOf = (kind: number): StatementPart[] =>
  kind === 0 ? [records.insertPart(record(), exists)] : kind === 1 ? [vaultRow, records.insertPart(record())] : [records.insertPart(record('p'))];

const names = new StatementNames();
const texts = new Set<string>();
let named = 0;
let unnamed = 0;
const db: Queryable = {
  async query<R extends object>(sql: string, _params?: readonly unknown[], opts?: { prepare?: boolean | 'shape' }): Promise<R[]> {
    texts.add(sql);
    if (names.nameOf(sql, opts?.prepare === 'shape') === undefined) unnamed++;
    else named++;
    return [{ moved: 1 } as R];
  },
  async exec() {},
};
let seed = 7;
const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
const receipt = (seq: number): SignedReceipt => ({ id: `r${seq}`, agent: 'a', seq, hash: `h${seq}`, prev: `h${seq - 1}`, jws: 'x.y.z' });
for (let g = 0; g < groups; g++) {
  const size = 1 + Math.floor(rnd() * max);
  const parts = Array.from({ length: size }, () => partsOf(Math.floor(rnd() * kinds))).flat();
  await appendIfHead(db, 'a', { seq: 10, hash: 'h10' }, Array.from({ length: size }, (_, i) => receipt(11 + i)), [], parts);
}
console.log(JSON.stringify({ groups, maxGroup: max, kinds, distinctTexts: texts.size, named, unnamed, unnamedShare: Math.round((unnamed / (named + unnamed)) * 1000) / 1000 }));
