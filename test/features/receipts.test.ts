/**
 * Receipts end to end: real token exchanges (mock IdP, agents as OAuth clients with DPoP) leave
 * signed receipts in per-agent hash chains; the admin API lists, reads and exports them; the
 * offline verifier (library and `npm run receipts:verify`) proves an export intact and finds
 * tampering where it happened; chains stay linear under concurrency and across instances.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CompactSign, decodeProtectedHeader, generateKeyPair, type JSONWebKeySet } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requestDigest } from '../../src/audit/digest.js';
import { formatLine, parseJsonLines, type ReceiptLine } from '../../src/audit/jsonl.js';
import { genesisHash, receiptHash, type ReceiptClaims, type ReceiptInput } from '../../src/audit/receipt.js';
import { verifyReceipts } from '../../src/audit/verify.js';
import { runCli } from '../../src/cli/index.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { RECEIPT_KEYS_FILE, SERVER_SECRETS_FILE, SIGNING_KEYS_FILE, VAULT_KEK_FILE } from '../../src/keys/keystore.js';
import { request } from 'undici';
import { ACCESS_TOKEN_TYPE, agentConfig, claimsOf, clientAssertion, dpopKeys, dpopProof, exchange, rawExchange, testAgent, TOKEN_EXCHANGE, type TestAgent } from '../support/agents.js';
import { adminSetup, clientCredentialsToken, clientKeys, oauthClient, type ClientKeys } from '../support/clients.js';
import { createTestDatabase, usingPostgres, type TestDatabase } from '../support/database.js';
import { json, type Json } from '../support/http.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';

const run = promisify(execFile);
const API = 'https://api.example.com';
const PAY = 'https://pay.example.com';
const handoff = (id: string) => `urn:deputy:agent:${id}`;

let idp: MockIdp;
let tmp: string;
let admin: Awaited<ReturnType<typeof adminSetup>>;
const keys: Record<string, ClientKeys> = {};
/** Every token, proof and assertion the tests send or receive: none may appear in a receipt. */
const secrets = new Set<string>();

beforeAll(async () => {
  idp = await startMockIdp();
  admin = await adminSetup();
  tmp = mkdtempSync(join(tmpdir(), 'deputy-receipts-'));
  // The default policies plus one Cedar forbid, so that a policy decides a refusal.
  mkdirSync(join(tmp, 'policies'));
  for (const f of ['default.cedar', 'schema.cedarschema']) copyFileSync(join('config/policies', f), join(tmp, 'policies', f));
  writeFileSync(
    join(tmp, 'policies', 'payments.cedar'),
    `@id("no-pay-delegation")\n@reason("Payments are never delegated.")\nforbid (principal, action == Action::"delegate", resource == Audience::"${PAY}");\n`,
  );
  for (const id of ['agent-a', 'agent-b', 'agent-p']) keys[id] = await clientKeys();
});
afterAll(async () => {
  await idp?.close();
  rmSync(tmp, { recursive: true, force: true });
});

const config = (extra: ConfigInput = {}): ConfigInput => ({
  admin: { clients: [admin.config] },
  trustedIssuers: [idp.issuerConfig('okta')],
  agents: [
    agentConfig('agent-a', keys['agent-a']!, { scopes: ['deputy.read'], audiences: [API, PAY, handoff('agent-b')] }),
    agentConfig('agent-b', keys['agent-b']!, { scopes: ['deputy.read'], audiences: [API] }),
    agentConfig('agent-p', keys['agent-p']!, { scopes: ['deputy.read'], audiences: [API] }),
  ],
  pdp: { policies: join(tmp, 'policies') },
  ...extra,
});

async function adminToken(deputy: TestDeputy): Promise<string> {
  const token = await clientCredentialsToken(await oauthClient(deputy.issuer, admin.clientId, admin.keys), 'deputy:admin');
  secrets.add(token);
  return token;
}

const get = (deputy: TestDeputy, path: string, token?: string) =>
  fetch(`${deputy.url}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });

async function exportText(deputy: TestDeputy, token: string, agent: string, query = ''): Promise<string> {
  const res = await get(deputy, `/admin/agents/${agent}/receipts/export${query}`, token);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('application/jsonl; charset=utf-8');
  return res.text();
}

async function receiptJwks(deputy: TestDeputy): Promise<JSONWebKeySet> {
  const metadata = await json(await fetch(`${deputy.url}/.well-known/openid-configuration`));
  const res = await fetch((metadata.receipts_jwks_uri as string).replace(deputy.issuer, deputy.url));
  expect(res.status).toBe(200);
  return json<JSONWebKeySet>(res);
}

const claimsOfReceipt = (jws: string): ReceiptClaims => JSON.parse(Buffer.from(jws.split('.')[1]!, 'base64url').toString('utf8'));
const linesOf = (text: string): ReceiptLine[] => parseJsonLines(text).map((l) => ('value' in l ? l.value : expect.unreachable(l.error)));
const toText = (lines: readonly ReceiptLine[]) => lines.map((l) => `${JSON.stringify(l)}\n`).join('');
const problemsOf = async (lines: readonly ReceiptLine[], jwks: JSONWebKeySet) =>
  (await verifyReceipts(toText(lines), jwks)).problems.map((p) => [p.position, p.code]);

/** A receipt input for direct appends (what the PDP and the gateway will send). */
const decision = (agent: string, n: number): ReceiptInput => ({
  agent,
  user: 'okta:acme.okta.com:00u1',
  chain: [agent],
  event: 'access_evaluation',
  action: 'read',
  resource: `doc:${n}`,
  decision: n % 2 ? 'permit' : 'deny',
  policies: ['policy0'],
  requestId: `req-${n}`,
});

/** The chain of `agent` as stored: seqs 1..n, each prev the hash of the one before. */
async function assertLinearChain(deputy: TestDeputy, agent: string, expected: number): Promise<void> {
  const rows = await deputy.store.query<{ seq: string; prev: string; hash: string; jws: string }>(
    'SELECT seq::text AS seq, prev, hash, jws FROM receipts WHERE agent_id = $1 ORDER BY receipts.seq',
    [agent],
  );
  expect(rows.map((r) => Number(r.seq))).toEqual(Array.from({ length: expected }, (_, i) => i + 1));
  rows.forEach((r, i) => {
    expect(r.prev).toBe(i === 0 ? genesisHash(agent) : rows[i - 1]!.hash);
    expect(r.hash).toBe(receiptHash(r.jws));
  });
  const head = await deputy.store.query<{ seq: string; head: string }>('SELECT seq::text AS seq, head FROM receipt_chains WHERE agent_id = $1', [agent]);
  expect(head).toEqual([{ seq: String(expected), head: rows[expected - 1]!.hash }]);
}

/**
 * One instance on its own database, shared by the two single-instance groups below: the scripted
 * session writes for agent-a and agent-b, the concurrency group for agent-p alone, and every chain
 * is per agent, so neither group sees the other's receipts (one database opened fewer: BENCHMARKS.md,
 * issue 16 sixth round, second pass).
 */
let single: Promise<TestDeputy> | undefined;
const singleInstance = (): Promise<TestDeputy> => (single ??= startTestDeputy({ config: config() }));
afterAll(async () => {
  await (await single)?.stop();
});

describe('a scripted session on one instance', () => {
  let deputy: TestDeputy;
  let token: string;
  let agents: Record<string, TestAgent>;
  /** What the session did, in order, for agent-a. */
  const issued: Array<{ jti: string; requestId: string; digest: string }> = [];

  beforeAll(async () => {
    deputy = await singleInstance();
    token = await adminToken(deputy);
    agents = {};
    for (const id of ['agent-a', 'agent-b']) agents[id] = await testAgent(deputy.issuer, id, keys[id]!);
    const a = { id: 'agent-a', keys: keys['agent-a']!, dpop: agents['agent-a']!.dpop };

    // 1. agent-a: user token → API (permit), sent raw so the test knows the proof and request id.
    const user = await idp.oktaAccessToken();
    secrets.add(user);
    const proofJti = 'proof-jti-1';
    const proof = await dpopProof(a.dpop, `${deputy.issuer}/token`, { jti: proofJti });
    secrets.add(proof);
    const res = await rawExchange(deputy.url, deputy.issuer, a, { subject_token: user, resource: API, scope: 'deputy.read' }, { proof });
    const body = await json(res);
    expect(body.token_type).toBe('DPoP');
    secrets.add(body.access_token as string);
    issued.push({
      jti: claimsOf(body.access_token as string).jti!,
      requestId: res.headers.get('x-request-id')!,
      digest: requestDigest({
        grant_type: TOKEN_EXCHANGE,
        client_id: 'agent-a',
        dpop_jkt: a.dpop.jkt,
        dpop_jti: proofJti,
        subject_token: user,
        subject_token_type: ACCESS_TOKEN_TYPE,
        resource: API,
        scope: 'deputy.read',
      }),
    });

    // 2. agent-a asks for a scope the user's token grants but the agent may not hold: a policy deny.
    const refused = await rawExchange(deputy.url, deputy.issuer, a, { subject_token: user, resource: API, scope: 'openid' });
    expect(await json(refused)).toMatchObject({ error: 'invalid_scope' });

    // 3. An invalid subject token: refused before any decision, so no receipt.
    const expired = await idp.oktaAccessToken({ expiresIn: -600 });
    secrets.add(expired);
    expect((await json(await rawExchange(deputy.url, deputy.issuer, a, { subject_token: expired, resource: API }))).error).toBe('invalid_grant');

    // 4. agent-a hands over to agent-b (permit on a's chain), b exchanges (permit on b's chain).
    const toB = await exchange(agents['agent-a']!, { subject_token: user, audience: handoff('agent-b'), scope: 'deputy.read' });
    secrets.add(toB.access_token);
    const byB = await exchange(agents['agent-b']!, { subject_token: toB.access_token, resource: API });
    secrets.add(byB.access_token);
    issued.push({ jti: claimsOf(toB.access_token).jti!, requestId: '', digest: '' });

    // 5. A last permit for agent-a.
    const last = await exchange(agents['agent-a']!, { subject_token: user, resource: API });
    secrets.add(last.access_token);
  });

  it('publishes the receipt keys at their own URL, listed in discovery, apart from the token keys', async () => {
    const metadata = await json(await fetch(`${deputy.url}/.well-known/openid-configuration`));
    expect(metadata.receipts_jwks_uri).toBe(`${deputy.issuer}/receipts/jwks`);
    const res = await fetch(`${deputy.url}/receipts/jwks`);
    expect(res.headers.get('content-type')).toMatch(/^application\/jwk-set\+json/);
    const jwks = await json<{ keys: Json[] }>(res);
    const active = deputy.keys.activeReceiptKey.jwk;
    expect(jwks.keys).toEqual([{ kty: 'EC', crv: 'P-256', x: active.x, y: active.y, kid: active.kid, alg: 'ES256', use: 'sig' }]);
    const tokenKids = (await json<{ keys: Json[] }>(await fetch(`${deputy.url}/jwks`))).keys.map((k) => k.kid);
    expect(tokenKids).not.toContain(active.kid);
  });

  it('records what each decision was, for whom, through which chain, with the request digest and ids', async () => {
    const lines = linesOf(await exportText(deputy, token, 'agent-a'));
    const claims = lines.map((l) => claimsOfReceipt(l.receipt));
    expect(claims.map((c) => [c.seq, c.event, c.action, c.decision, c.resource])).toEqual([
      [1, 'token_exchange', 'delegate', 'permit', API],
      [2, 'token_exchange', 'delegate', 'deny', API],
      [3, 'token_exchange', 'delegate', 'permit', handoff('agent-b')],
      [4, 'token_exchange', 'delegate', 'permit', API],
    ]);
    const user = `okta:${new URL(idp.base).host}:00u1a2b3c4d5e6f7g8h9`;
    expect(claims[0]).toMatchObject({
      iss: deputy.issuer,
      agent: 'agent-a',
      user,
      chain: ['agent-a'],
      scope: 'deputy.read',
      // Cedar's `delegate` permit decided (for the user and the agent: one id).
      policies: ['delegate'],
      token_id: issued[0]!.jti,
      request_id: issued[0]!.requestId,
      request_digest: issued[0]!.digest,
      prev: genesisHash('agent-a'),
    });
    // Refused by the registry's rules, before any policy: no policy id.
    expect(claims[1]).toMatchObject({ scope: 'openid', reason: 'agent "agent-a" is not allowed the scope "openid"', policies: [] });
    expect(claims[1]).not.toHaveProperty('token_id');
    expect(claims[2]!.token_id).toBe(issued[1]!.jti);
    expect(decodeProtectedHeader(lines[0]!.receipt)).toEqual({ alg: 'ES256', kid: deputy.keys.activeReceiptKey.jwk.kid, typ: 'deputy-receipt+jwt' });

    // agent-b's own chain: its exchange of a's handoff token, with the whole delegation chain.
    const b = linesOf(await exportText(deputy, token, 'agent-b')).map((l) => claimsOfReceipt(l.receipt));
    expect(b).toHaveLength(1);
    expect(b[0]).toMatchObject({ seq: 1, agent: 'agent-b', chain: ['agent-a', 'agent-b'], decision: 'permit', resource: API, user });
  });

  it('exports a chain that verifies offline, through the library and `npm run receipts:verify`', async () => {
    const text = await exportText(deputy, token, 'agent-a');
    const jwks = await receiptJwks(deputy);
    const report = await verifyReceipts(text, jwks);
    expect(report.problems).toEqual([]);
    expect(report.chains).toEqual([{ agent: 'agent-a', first: 1, last: 4, count: 4, head: linesOf(text)[3]!.hash, fromGenesis: true }]);

    const file = join(tmp, 'agent-a.jsonl');
    const cut = join(tmp, 'agent-a-cut.jsonl');
    const jwksFile = join(tmp, 'receipts-jwks.json');
    writeFileSync(file, text);
    const lines = text.split('\n');
    writeFileSync(cut, [lines[0], ...lines.slice(2)].join('\n')); // one receipt removed
    writeFileSync(jwksFile, JSON.stringify(jwks));
    // The script as an auditor runs it (a process: its exit codes 0 and 2), and, for the other
    // cases, the same command in-process through the CLI's entry (no tsx start each).
    const script = (args: string[]) =>
      run(process.execPath, ['--import', 'tsx', 'scripts/receipts-verify.ts', ...args], { env: process.env }).then(
        (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
        (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
      );
    const cli = async (args: string[], env: Record<string, string> = {}) => {
      let stdout = '';
      let stderr = '';
      const out = (t: string) => void (stdout += t);
      const code = await runCli(['receipts', 'verify', ...args], { out, err: (t) => void (stderr += t), env: { ...(process.env as Record<string, string>), ...env } });
      return { code, stdout, stderr };
    };
    const [ok, online, failed, usage, local] = await Promise.all([
      script([file, '--jwks', jwksFile]),
      cli([file, `--jwks=${deputy.url}/receipts/jwks`]), // the JWKS straight from the server
      cli([cut, '--jwks', jwksFile]),
      script([]),
      // No --jwks on the server's own machine: the public parts of keys/receipt-keys.json; JSON report.
      cli([cut, '--json', '--agent', 'agent-a'], { DEPUTY_KEYS_DIR: deputy.keysDir }),
    ]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('chain agent-a: seq 1..4 (4 receipts, from genesis)');
    expect(ok.stdout).toMatch(/^OK/m);
    expect(online.code).toBe(0);
    expect(online.stdout).toMatch(/^OK/m);
    expect(failed.code).toBe(1);
    expect(failed.stdout).toContain('line 2: removed: 1 receipt missing before this one (seq 2)');
    expect(failed.stdout).toMatch(/^FAILED: 1 problem$/m);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/missing required argument 'file'/);
    expect(local.code).toBe(1);
    expect(JSON.parse(local.stdout)).toMatchObject({
      ok: false,
      records: 3,
      chains: [{ agent: 'agent-a', first: 1, last: 4, count: 3, fromGenesis: true }],
      problems: [{ position: 2, code: 'removed', agent: 'agent-a', seq: 3 }],
    });
  }, 120_000);

  it('finds deletion, swaps, edits of any field and re-signing in the export, at the right line', async () => {
    const lines = linesOf(await exportText(deputy, token, 'agent-a'));
    const jwks = await receiptJwks(deputy);
    expect(await problemsOf(lines, jwks)).toEqual([]);

    expect(await problemsOf([lines[0]!, lines[1]!, lines[3]!], jwks)).toEqual([[3, 'removed']]);
    expect(await problemsOf([lines[0]!, lines[2]!, lines[1]!, lines[3]!], jwks)).toEqual([
      [2, 'reordered'],
      [3, 'reordered'],
    ]);
    // Every signed claim of the second receipt, changed without re-signing.
    const claims = claimsOfReceipt(lines[1]!.receipt);
    for (const name of Object.keys(claims) as Array<keyof ReceiptClaims>) {
      const value = claims[name];
      const changed = typeof value === 'number' ? value + 1 : Array.isArray(value) ? [...value, 'x'] : `${String(value)}x`;
      const [h, , s] = lines[1]!.receipt.split('.');
      const receipt = `${h}.${Buffer.from(JSON.stringify({ ...claims, [name]: changed })).toString('base64url')}.${s}`;
      expect(await problemsOf([lines[0]!, { receipt }, lines[2]!, lines[3]!], jwks), name).toEqual([[2, 'bad_signature']]);
    }
    // Every plain member of the third line.
    for (const member of ['agent', 'seq', 'id', 'hash', 'prev'] as const) {
      const value = lines[2]![member];
      const edited = { ...lines[2]!, [member]: typeof value === 'number' ? value + 1 : `${String(value)}x` };
      expect(await problemsOf([lines[0]!, lines[1]!, edited, lines[3]!], jwks), member).toEqual([[3, 'edited']]);
    }
    // Re-signed with another key (its own kid, then the real kid).
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    for (const kid of ['attacker', deputy.keys.activeReceiptKey.jwk.kid]) {
      const forged = await new CompactSign(new TextEncoder().encode(JSON.stringify({ ...claimsOfReceipt(lines[3]!.receipt), decision: 'deny' })))
        .setProtectedHeader({ alg: 'ES256', kid, typ: 'deputy-receipt+jwt' })
        .sign(privateKey);
      expect(await problemsOf([lines[0]!, lines[1]!, lines[2]!, { receipt: forged }], jwks)).toEqual([[4, kid === 'attacker' ? 'unknown_key' : 'bad_signature']]);
    }
    // Verified against the token JWKS (wrong keys), nothing verifies.
    const tokenJwks = await json<JSONWebKeySet>(await fetch(`${deputy.url}/jwks`));
    expect((await problemsOf(lines, tokenJwks)).map(([, code]) => code)).toEqual(['unknown_key', 'unknown_key', 'unknown_key', 'unknown_key']);
  });

  it('lists an agent\'s receipts in pages with the head, reads one, exports a range', async () => {
    const first = await json(await get(deputy, '/admin/agents/agent-a/receipts?limit=3', token));
    expect(first.agent).toBe('agent-a');
    expect(first.receipts.map((r: Json) => r.seq)).toEqual([1, 2, 3]);
    expect(first.next_cursor).toEqual(expect.any(String));
    const second = await json(await get(deputy, `/admin/agents/agent-a/receipts?limit=3&cursor=${first.next_cursor}`, token));
    expect(second.receipts.map((r: Json) => r.seq)).toEqual([4]);
    expect(second.next_cursor).toBeNull();
    expect(first.head).toEqual({ seq: 4, hash: second.receipts[0].hash });
    expect(first.receipts[1]).toMatchObject({ agent: 'agent-a', seq: 2, prev: first.receipts[0].hash, claims: { decision: 'deny', seq: 2 } });
    // The admin API's timestamp (RFC 3339 UTC) beside the claims, which stay as signed (iat: NumericDate).
    for (const r of first.receipts as Json[]) expect(r.issued_at).toBe(new Date(r.claims.iat * 1000).toISOString());

    const one = await get(deputy, `/admin/receipts/${first.receipts[1].id}`, token);
    expect(one.status).toBe(200);
    expect(one.headers.get('cache-control')).toBe('no-store');
    expect(await json(one)).toEqual(first.receipts[1]);
    const missing = await get(deputy, '/admin/receipts/nope', token);
    expect(missing.status).toBe(404);
    expect((await json(missing)).error).toBe('not_found');

    const range = await exportText(deputy, token, 'agent-a', '?from=2&to=3');
    expect(linesOf(range).map((l) => l.seq)).toEqual([2, 3]);
    // A range needs `partial`: its first prev is outside the export.
    const jwks = await receiptJwks(deputy);
    expect((await verifyReceipts(range, jwks)).problems.map((p) => p.code)).toEqual(['removed']);
    expect((await verifyReceipts(range, jwks, { partial: true })).ok).toBe(true);

    expect(await exportText(deputy, token, 'nobody')).toBe('');
    expect(await json(await get(deputy, '/admin/agents/nobody/receipts', token))).toEqual({ agent: 'nobody', head: null, receipts: [], next_cursor: null });
    // A cursor belongs to its listing: agent-a's cursor does not page agent-b's chain.
    expect((await get(deputy, `/admin/agents/agent-b/receipts?cursor=${first.next_cursor}`, token)).status).toBe(400);
    for (const bad of ['?limit=0', '?limit=x', '?limit=201', '?cursor=%21%21']) {
      const res = await get(deputy, `/admin/agents/agent-a/receipts${bad}`, token);
      expect(res.status, bad).toBe(400);
      expect((await json(res)).error).toBe('invalid_request');
    }
    expect((await get(deputy, '/admin/agents/agent-a/receipts/export?from=3&to=2', token)).status).toBe(400);
  });

  it('requires an admin token for every receipt route except the JWKS', async () => {
    const b = await exchange(agents['agent-b']!, { subject_token: await idp.oktaAccessToken(), resource: API });
    secrets.add(b.access_token);
    for (const path of ['/admin/agents/agent-a/receipts', '/admin/agents/agent-a/receipts/export', '/admin/receipts/x']) {
      expect((await get(deputy, path)).status, path).toBe(401);
      // An agent token (DPoP-bound, another audience) is no admin token.
      expect((await get(deputy, path, b.access_token)).status, path).toBe(401);
    }
  });

  it('a failed exchange writes no receipt unless policy refused it, and nothing else then', async () => {
    const count = async (table: string) => Number((await deputy.store.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`))[0]!.n);
    const before = { receipts: await count('receipts'), tokens: await count('token_records'), vault: await count('vault_secrets') };
    const a = { id: 'agent-a', keys: keys['agent-a']!, dpop: agents['agent-a']!.dpop };
    const user = await idp.oktaAccessToken();
    secrets.add(user);
    // Refused before the decision (a scope the user's token does not grant): nothing written.
    expect((await json(await rawExchange(deputy.url, deputy.issuer, a, { subject_token: user, resource: API, scope: 'calendar.write' }))).error).toBe('invalid_scope');
    const afterFirst = await count('receipts');
    // Refused by the decision: one deny receipt, no token, no vault secret.
    expect((await json(await rawExchange(deputy.url, deputy.issuer, a, { subject_token: user, resource: API, scope: 'profile' }))).error).toBe('invalid_scope');
    expect(await count('receipts')).toBe(afterFirst + 1);
    // Refused by a Cedar policy: a deny receipt naming the policy.
    const pay = await json(await rawExchange(deputy.url, deputy.issuer, a, { subject_token: user, resource: PAY }));
    expect(pay.error).toMatch(/invalid_grant|unauthorized_client/);
    expect(await count('receipts')).toBe(afterFirst + 2);
    const last = await json(await get(deputy, '/admin/agents/agent-a/receipts?limit=200', token));
    expect(last.receipts.at(-1).claims).toMatchObject({ decision: 'deny', resource: PAY, policies: ['no-pay-delegation'], reason: expect.stringContaining('no-pay-delegation') });
    expect(last.receipts.at(-1).claims).not.toHaveProperty('token_id');
    expect(await count('token_records')).toBe(before.tokens);
    expect(await count('vault_secrets')).toBe(before.vault);
    expect(afterFirst).toBe(before.receipts);
  });

  it('no receipt, export or stored row contains a token, proof, assertion or key (scan)', async () => {
    const exports = await Promise.all(['agent-a', 'agent-b'].map((a) => exportText(deputy, token, a)));
    const rows = await deputy.store.query<{ jws: string }>('SELECT jws FROM receipts');
    const decoded = rows.map((r) => `${Buffer.from(r.jws.split('.')[0]!, 'base64url').toString()} ${Buffer.from(r.jws.split('.')[1]!, 'base64url').toString()}`);
    const haystacks = [...exports, ...rows.map((r) => r.jws), ...decoded];
    expect(rows.length).toBeGreaterThanOrEqual(6);
    const keyFiles = [SIGNING_KEYS_FILE, VAULT_KEK_FILE, SERVER_SECRETS_FILE, RECEIPT_KEYS_FILE].map((f) => readFileSync(join(deputy.keysDir, f), 'utf8'));
    const keyMaterial = keyFiles.flatMap((t) => [...t.matchAll(/"(?:d|k|dpopNonceSecret)"\s*:\s*"([^"]+)"/g)].map((m) => m[1]!));
    expect(keyMaterial.length).toBeGreaterThanOrEqual(4);
    const needles = [...secrets, ...keyMaterial];
    expect(needles.length).toBeGreaterThan(8);
    for (const hay of haystacks) {
      for (const needle of needles) expect(hay.includes(needle), `a receipt contains ${needle.slice(0, 12)}…`).toBe(false);
      // Nothing JWT-shaped inside the signed claims either (a receipt's own JWS is the only one).
      expect(hay.replace(/"receipt":"[^"]+"/g, '').replace(/^[\w-]+\.[\w-]+\.[\w-]+$/, '')).not.toMatch(/eyJ[\w-]{8,}\.[\w-]{8,}\./);
    }
  });
});

describe('concurrency on one instance', () => {
  let deputy: TestDeputy;
  let token: string;
  beforeAll(async () => {
    deputy = await singleInstance();
    token = await adminToken(deputy);
  });

  it('many parallel appends and exchanges for one agent make one unbroken chain', async () => {
    const agent = await testAgent(deputy.issuer, 'agent-p', keys['agent-p']!);
    const user = await idp.oktaAccessToken();
    const appended = Array.from({ length: 120 }, (_, i) => deputy.receipts.append(decision('agent-p', i)));
    const exchanged = Array.from({ length: 12 }, () => exchange(agent, { subject_token: user, resource: API }));
    const [receipts, tokens] = await Promise.all([Promise.all(appended), Promise.all(exchanged)]);
    for (const t of tokens) secrets.add(t.access_token);
    expect(new Set(receipts.map((r) => r.seq)).size).toBe(120);
    await assertLinearChain(deputy, 'agent-p', 132);

    const text = await exportText(deputy, token, 'agent-p');
    const report = await verifyReceipts(text, await receiptJwks(deputy));
    expect(report.problems).toEqual([]);
    expect(report.chains).toMatchObject([{ agent: 'agent-p', first: 1, last: 132, count: 132 }]);
    expect(linesOf(text).filter((l) => claimsOfReceipt(l.receipt).event === 'token_exchange')).toHaveLength(12);
    // Each token has exactly one receipt naming it (written with its record, in a group or alone).
    const jtis = tokens.map((t) => JSON.parse(Buffer.from(t.access_token.split('.')[1]!, 'base64url').toString()).jti as string).sort();
    const attested = linesOf(text).flatMap((l) => (claimsOfReceipt(l.receipt).event === 'token_exchange' ? [claimsOfReceipt(l.receipt).token_id as string] : []));
    expect(attested.sort()).toEqual(jtis);
  });

  it('refuses receipt input that looks like a token, before writing anything', async () => {
    const jwt = await adminToken(deputy);
    await expect(deputy.receipts.append({ ...decision('agent-p', 1), resource: jwt })).rejects.toThrow(/receipt resource looks like a token/);
    await expect(deputy.receipts.append({ ...decision('agent-p', 1), decision: 'maybe' as 'permit' })).rejects.toBeInstanceOf(TypeError);
    await assertLinearChain(deputy, 'agent-p', 132);
  });
});

describe.skipIf(!usingPostgres)('two instances on one PostgreSQL', () => {
  const ISSUER = 'http://deputy.test';
  let database: TestDatabase;
  let keysDir: string;
  let one: TestDeputy;
  let two: TestDeputy;
  beforeAll(async () => {
    database = await createTestDatabase();
    keysDir = mkdtempSync(join(tmpdir(), 'deputy-receipts-shared-'));
    const shared = config({ server: { issuer: ISSUER } });
    one = await startTestDeputy({ config: shared, keysDir, database });
    two = await startTestDeputy({ config: shared, keysDir, database });
  });
  afterAll(async () => {
    await one?.stop();
    await two?.stop();
    await database?.drop();
    rmSync(keysDir, { recursive: true, force: true });
  });

  it('appends from both instances at once make one unbroken chain, verifiable with either JWKS', async () => {
    const appends = Array.from({ length: 160 }, (_, i) => (i % 2 ? one : two).receipts.append(decision('agent-p', i)));
    // And appends inside transactions (the exchange's path), racing the group writers.
    const inTx = Array.from({ length: 20 }, (_, i) => (i % 2 ? two : one).store.transaction((tx) => (i % 2 ? two : one).receipts.append(decision('agent-p', 1000 + i), tx)));
    // And real token exchanges at both instances, as a load balancer would spread them.
    const user = await idp.oktaAccessToken();
    const dpop = await dpopKeys();
    const exchanges = Array.from({ length: 8 }, async (_, i) => {
      const body = new URLSearchParams({
        grant_type: TOKEN_EXCHANGE,
        subject_token: user,
        subject_token_type: ACCESS_TOKEN_TYPE,
        resource: API,
        client_id: 'agent-p',
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: await clientAssertion({ id: 'agent-p', keys: keys['agent-p']! }, ISSUER),
      });
      const res = await request(`${(i % 2 ? one : two).url}/token`, {
        method: 'POST',
        headers: { host: 'deputy.test', 'content-type': 'application/x-www-form-urlencoded', dpop: await dpopProof(dpop, `${ISSUER}/token`) },
        body: body.toString(),
      });
      return (await res.body.json()) as Json;
    });
    const [, , exchanged] = await Promise.all([Promise.all(appends), Promise.all(inTx), Promise.all(exchanges)]);
    expect(exchanged.map((e) => e.token_type)).toEqual(Array(8).fill('DPoP'));
    await assertLinearChain(one, 'agent-p', 188);

    // The export as the admin API streams it (read from instance two this time).
    let text = '';
    for await (const r of two.receipts.range('agent-p', 1, Number.MAX_SAFE_INTEGER, 50)) text += formatLine(r);
    const jwksOne = await json<JSONWebKeySet>(await fetch(`${one.url}/receipts/jwks`));
    const jwksTwo = await json<JSONWebKeySet>(await fetch(`${two.url}/receipts/jwks`));
    expect(jwksTwo).toEqual(jwksOne);
    const report = await verifyReceipts(text, jwksTwo);
    expect(report.problems).toEqual([]);
    expect(report.chains).toMatchObject([{ agent: 'agent-p', first: 1, last: 188, count: 188, fromGenesis: true }]);
    const issuers = new Set(parseJsonLines(text).map((l) => ('value' in l ? claimsOfReceipt(l.value.receipt).iss : '')));
    expect(issuers).toEqual(new Set([ISSUER]));
  });
});
