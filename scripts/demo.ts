/**
 * `npm run demo`: the whole story on a fresh machine, no setup — everything runs in this
 * process on 127.0.0.1: a mock enterprise IdP (Okta-shaped), a mock downstream CRM API, and
 * Deputy itself (embedded PGlite in memory, throw-away keys).
 *
 * 1. Alice signs in at her IdP; her app hands her token to the "planner" agent.
 * 2. The planner exchanges it (RFC 8693 + DPoP) for a token it can only hand to "researcher".
 * 3. The researcher exchanges that for a DPoP-bound token for the CRM connection of the gateway.
 * 4. The researcher calls the CRM through the gateway: Deputy verifies the token and proof, asks
 *    the PDP about the whole chain, injects the CRM API key, forwards.
 * 5. The researcher tries to delete a customer: the PDP refuses (sub-agents may not delete).
 * 6. What the agents hold — and that the CRM key is in none of it, nor in any log line.
 * 7. Alice's delegation is revoked: the researcher's token stops working at once.
 * 8. The receipts of all this verify offline against Deputy's receipt keys.
 *
 * Exit code 0 when every step behaved as described, 1 otherwise.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { decodeJwt } from 'jose';
import * as client from 'openid-client';
import { verifyReceipts, toReceiptLine } from '../src/audit/index.js';
import { validateConfig } from '../src/config/load.js';
import { createLogger } from '../src/log.js';
import { startDeputy, type DeputyServer } from '../src/main.js';
import { agentConfig, authenticatedPost, exchange, testAgent, type TestAgent } from '../test/support/agents.js';
import { adminSetup, clientKeys } from '../test/support/clients.js';
import { startMockIdp, type MockIdp } from '../test/support/mock-idp.js';
import { startMockUpstream, type MockUpstream } from '../test/support/upstream.js';
import { freePort } from '../test/support/net.js';

const CRM_KEY = `sk_live_${randomBytes(24).toString('hex')}`;
const out = (s = '') => process.stdout.write(`${s}\n`);
const step = (n: number, title: string) => out(`\n━━ ${n}. ${title} ${'━'.repeat(Math.max(0, 74 - title.length))}`);
const kv = (k: string, v: unknown) => out(`   ${k.padEnd(22)} ${typeof v === 'string' ? v : JSON.stringify(v)}`);
const short = (token: string) => `${token.slice(0, 16)}…${token.slice(-6)} (${token.length} chars)`;
let failures = 0;
const check = (ok: boolean, what: string) => {
  out(`   ${ok ? '✔' : '✘'} ${what}`);
  if (!ok) failures += 1;
};


async function main(): Promise<void> {
  out('Deputy demo — an agent acts for a user, through a sub-agent, without ever holding the API key.');
  const keysDir = mkdtempSync(join(tmpdir(), 'deputy-demo-keys-'));
  const logs: string[] = [];
  let idp: MockIdp | undefined;
  let crm: MockUpstream | undefined;
  let deputy: DeputyServer | undefined;
  try {
    idp = await startMockIdp();
    crm = await startMockUpstream();
    const port = await freePort();
    const issuer = `http://localhost:${port}`;
    const gwCrm = `${issuer}/gw/crm`;
    const admin = await adminSetup();
    const keys = { planner: await clientKeys(), researcher: await clientKeys() };
    const config = validateConfig(
      {
        server: { port, host: '127.0.0.1' },
        store: { dataDir: 'memory://' },
        keys: { dir: keysDir, generate: true },
        log: { level: 'info' },
        admin: { clients: [admin.config] },
        trustedIssuers: [idp.issuerConfig('okta')],
        agents: [
          agentConfig('planner', keys.planner, { scopes: ['crm.read', 'crm.write'], audiences: ['urn:deputy:agent:researcher', gwCrm] }),
          agentConfig('researcher', keys.researcher, { scopes: ['crm.read', 'crm.write'], audiences: [gwCrm] }),
        ],
        connections: [
          {
            id: 'crm', kind: 'api_key', name: 'Acme CRM', baseUrl: `${crm.base}/crm/v1`, allowInsecureHttp: true,
            header: 'X-Api-Key', secret: { env: 'CRM_API_KEY' }, requiredScopes: ['crm.read'],
            // Routes name the tools policy and receipts see; a call matching none is refused.
            routes: [
              { methods: ['GET'], path: '/customers/**', action: 'crm.read_customer' },
              { methods: ['DELETE'], path: '/customers/*', action: 'crm.delete_customer', scopes: ['crm.write'] },
            ],
          },
        ],
      },
      'demo',
    );
    const sink = new Writable({ write: (chunk, _enc, cb) => (logs.push(String(chunk)), cb()) });
    deputy = await startDeputy({ config, logger: createLogger('info', sink), env: { CRM_API_KEY: CRM_KEY } });
    out(`\n   Deputy        ${issuer}   (embedded PGlite, fresh keys)`);
    out(`   Okta (mock)   ${idp.oktaIssuer}`);
    out(`   CRM (mock)    ${crm.base}/crm/v1   — its API key lives only in Deputy's vault`);

    step(1, 'Alice signs in at her enterprise IdP');
    const userToken = await idp.oktaAccessToken({ scp: ['crm.read', 'crm.write'] });
    const u = decodeJwt(userToken);
    kv('user token', short(userToken));
    kv('iss / sub', `${u.iss} / ${u.sub}`);
    kv('scp', u.scp);

    step(2, 'planner exchanges it (RFC 8693, DPoP) — for a token only researcher may use');
    const planner: TestAgent = await testAgent(issuer, 'planner', keys.planner);
    const researcher: TestAgent = await testAgent(issuer, 'researcher', keys.researcher);
    const handoff = await exchange(planner, { subject_token: userToken, audience: 'urn:deputy:agent:researcher', scope: 'crm.read crm.write' });
    const h = decodeJwt(handoff.access_token);
    kv('asked', 'audience=urn:deputy:agent:researcher scope="crm.read crm.write"');
    kv('got (token_type)', `${handoff.token_type}, expires_in ${handoff.expires_in}s`);
    kv('sub', h.sub);
    kv('act', h.act);
    kv('may_act', h.may_act);
    kv('cnf.jkt', (h.cnf as { jkt: string }).jkt);

    step(3, 'researcher exchanges the handoff token for the CRM connection');
    const agentToken = (await exchange(researcher, { subject_token: handoff.access_token, resource: gwCrm, scope: 'crm.read crm.write' })).access_token;
    const t = decodeJwt(agentToken);
    kv('aud', t.aud);
    kv('act (chain)', t.act);
    kv('scope', t.scope);
    kv('bound to key', `${(t.cnf as { jkt: string }).jkt} (researcher's DPoP key)`);

    step(4, 'researcher calls GET /gw/crm/customers/42 through the gateway');
    const before = crm.requests.length;
    const res = await client.fetchProtectedResource(researcher.config, agentToken, new URL(`${gwCrm}/customers/42`), 'GET', null, new Headers(), { DPoP: researcher.handle });
    const body = (await res.json()) as { headers: Record<string, string> };
    const seen = crm.requests[before];
    kv('gateway answered', res.status);
    kv('CRM received', `${seen?.method} ${seen?.path}`);
    kv('  X-Api-Key', `${seen?.headers['x-api-key']?.toString().slice(0, 12)}… (${String(seen?.headers['x-api-key']).length} chars)`);
    kv('  Authorization / DPoP', `${seen?.headers.authorization ?? '(none)'} / ${seen?.headers.dpop ?? '(none)'}`);
    kv('agent sees X-Api-Key', body.headers['x-api-key']);
    check(res.status === 200 && seen?.headers['x-api-key'] === CRM_KEY, 'the CRM got the real key, injected by Deputy');
    check(seen?.headers.authorization === undefined && seen?.headers.dpop === undefined, "the agent's own token and proof did not reach the CRM");
    check(body.headers['x-api-key'] === '[redacted]', 'the CRM echoed the key back; the gateway redacted it');

    step(5, 'researcher tries DELETE /gw/crm/customers/42');
    const beforeDelete = crm.requests.length;
    const denied = await client.fetchProtectedResource(researcher.config, agentToken, new URL(`${gwCrm}/customers/42`), 'DELETE', null, new Headers(), { DPoP: researcher.handle });
    const why = (await denied.json()) as { error: string; error_description: string };
    kv('gateway answered', `${denied.status} ${why.error}`);
    kv('reason (PDP)', why.error_description);
    check(denied.status === 403 && crm.requests.length === beforeDelete, 'refused before anything reached the CRM');

    step(6, 'What the agents hold');
    const held = { planner: [userToken, handoff.access_token], researcher: [handoff.access_token, agentToken] };
    kv('planner', 'user token, handoff token, its client key, its DPoP key');
    kv('researcher', 'handoff token, CRM agent token, its client key, its DPoP key');
    check(![...held.planner, ...held.researcher].some((x) => x.includes(CRM_KEY)), 'the CRM key is in no token an agent holds (it never left the vault)');
    check(!logs.join('').includes(CRM_KEY), `the CRM key is in none of Deputy's ${logs.length} log lines`);

    step(7, "Alice's delegation is revoked (admin revokes the planner's handoff token)");
    const revoked = await authenticatedPost(`${issuer}/revoke`, issuer, { id: admin.clientId, keys: admin.keys }, { token: handoff.access_token });
    kv('revocation', revoked.status);
    const after = await fetch(`${gwCrm}/customers/42`, {
      headers: {
        authorization: `DPoP ${agentToken}`,
        dpop: await (await import('../test/support/agents.js')).dpopProof(researcher.dpop, `${gwCrm}/customers/42`, { htm: 'GET', accessToken: agentToken }),
      },
    });
    kv('researcher again', `${after.status} ${after.headers.get('www-authenticate')?.split(',')[1]?.trim()}`);
    check(after.status === 401, "the researcher's token, delegated from the revoked one, no longer works");

    step(8, 'Receipts: every exchange and gateway decision, signed and hash-chained');
    await deputy.receipts.flush();
    const jwks = deputy.keys.receiptJwks();
    for (const agent of ['planner', 'researcher']) {
      const { receipts } = await deputy.receipts.list(agent, { limit: 100 });
      for (const r of receipts) {
        const c = decodeJwt(r.jws);
        out(`   ${agent.padEnd(11)} #${String(r.seq).padEnd(2)} ${String(c.event).padEnd(15)} ${String(c.action).padEnd(20)} ${String(c.decision).padEnd(7)} ${String(c.resource)}`);
      }
      const report = await verifyReceipts(receipts.map(toReceiptLine), jwks);
      check(report.ok, `${agent}'s chain verifies offline (${report.records} receipt${report.records === 1 ? '' : 's'})`);
    }
  } finally {
    await deputy?.close(100).catch(() => {});
    await crm?.close();
    await idp?.close();
    rmSync(keysDir, { recursive: true, force: true });
  }
  out(failures === 0 ? '\nEvery step behaved as described.' : `\n${failures} check(s) failed.`);
  process.exit(failures === 0 ? 0 : 1);
}

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
