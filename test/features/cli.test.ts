/**
 * The `deputy` CLI against a running Deputy: most commands in-process through `runCli` (the
 * same code path as the executable, without a tsx start per command), and a few through the real
 * executable (`bin/deputy.mjs`, `npm run keys:rotate`) for what only a process shows: exit codes,
 * help that does nothing, unknown options refused.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { decodeJwt, decodeProtectedHeader, exportJWK, jwtVerify, EmbeddedJWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/index.js';
import { loadConfig } from '../../src/config/load.js';
import { SIGNING_KEYS_FILE } from '../../src/keys/keystore.js';
import { LOCK_FILE } from '../../src/store/lock.js';
import { agentConfig } from '../support/agents.js';
import { clientKeys, type ClientKeys } from '../support/clients.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { killAll, spawnNode } from '../support/process.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';

const runFile = promisify(execFile);
const API = 'https://api.example.com';

let deputy: TestDeputy;
let idp: MockIdp;
let tmp: string;
let adminFile: string;
let agentFile: string;

async function credentialsFile(name: string, clientId: string, keys: ClientKeys, issuer: string): Promise<string> {
  const file = join(tmp, `${name}.json`);
  writeFileSync(file, JSON.stringify({ client_id: clientId, issuer, private_jwk: { ...(await exportJWK(keys.privateKey)), alg: 'ES256' } }), { mode: 0o600 });
  return file;
}

beforeAll(async () => {
  idp = await startMockIdp();
  tmp = mkdtempSync(join(tmpdir(), 'deputy-cli-'));
  const admin = await clientKeys();
  const agent = await clientKeys();
  deputy = await startTestDeputy({
    config: {
      admin: { clients: [{ client_id: 'cli-admin', scopes: ['deputy:admin', 'authzen:evaluate'], jwks: admin.jwks }] },
      trustedIssuers: [idp.issuerConfig('okta')],
      agents: [agentConfig('agent-a', agent, { scopes: ['deputy.read'], audiences: [API] })],
    },
  });
  adminFile = await credentialsFile('admin', 'cli-admin', admin, deputy.issuer);
  agentFile = await credentialsFile('agent-a', 'agent-a', agent, deputy.issuer);
});
afterAll(async () => {
  await deputy?.stop();
  await idp?.close();
  rmSync(tmp, { recursive: true, force: true });
});

/** The CLI in-process, with `env` as its whole environment. */
async function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runCli(args, { out: (s) => void (out += s), err: (s) => void (err += s), env: { DEPUTY_CREDENTIALS: adminFile, ...env } });
  return { code, out, err };
}

/** The real executable (`node bin/deputy.mjs …`, or any node script), exit code and output. */
function spawnCli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const { DEPUTY_CONFIG: _c, DEPUTY_CREDENTIALS: _d, DEPUTY_URL: _u, ...base } = process.env;
  return runFile(args[0] === 'npm' ? 'npm' : process.execPath, args[0] === 'npm' ? args.slice(1) : ['bin/deputy.mjs', ...args], { env: { ...base, ...env } }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

describe('the executable', () => {
  it('prints help without acting, refuses unknown options and commands (exit 2), and gets a token', async () => {
    const keysFile = join(deputy.keysDir, SIGNING_KEYS_FILE);
    const before = readFileSync(keysFile, 'utf8');
    const [help, rotateHelp, unknownOption, unknownCommand, token] = await Promise.all([
      spawnCli(['--help']),
      spawnCli(['npm', 'run', '-s', 'keys:rotate', '--', '--help'], { DEPUTY_KEYS_DIR: deputy.keysDir }),
      spawnCli(['agents', 'list', '--bogus']),
      spawnCli(['frobnicate']),
      spawnCli(['token', '--json'], { DEPUTY_CREDENTIALS: adminFile }),
    ]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/Commands:[\s\S]*init[\s\S]*token[\s\S]*agents[\s\S]*Exit codes: 0 ok/);
    expect(rotateHelp.code).toBe(0);
    expect(rotateHelp.stdout).toMatch(/Usage: deputy keys rotate/);
    expect(readFileSync(keysFile, 'utf8')).toBe(before); // --help rotated nothing
    expect(unknownOption.code).toBe(2);
    expect(unknownOption.stderr).toMatch(/unknown option '--bogus'/);
    expect(unknownCommand.code).toBe(2);
    expect(unknownCommand.stderr).toMatch(/unknown command 'frobnicate'/);
    expect(token.code).toBe(0);
    expect(decodeJwt((JSON.parse(token.stdout) as { access_token: string }).access_token).aud).toBe(`${deputy.issuer}/admin`);
  });

  it('a reader that closes the pipe early (`deputy --help | head -1`) ends the output quietly, not in an EPIPE stack trace', async () => {
    const { DEPUTY_CONFIG: _c, DEPUTY_CREDENTIALS: _d, DEPUTY_URL: _u, ...env } = process.env;
    const child = spawn(process.execPath, ['bin/deputy.mjs', '--help'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => void (stderr += chunk.toString()));
    child.stdout.destroy(); // the reader is gone before the help is written
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(stderr).not.toMatch(/EPIPE|Unhandled|at /);
    expect(code).toBe(0);
  });
});

/** Every file under `dir` but the lock: path → content and modification time. */
function filesOf(dir: string, under = ''): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of readdirSync(join(dir, under), { withFileTypes: true })) {
    const rel = join(under, e.name);
    if (e.isDirectory()) Object.assign(out, filesOf(dir, rel));
    else if (rel !== LOCK_FILE) out[rel] = `${statSync(join(dir, rel)).mtimeMs} ${readFileSync(join(dir, rel), 'utf8')}`;
  }
  return out;
}

// One `deputy dev` process for both: it was started twice (here, and for the lock in
// data-dir-lock.test.ts), each paying a whole server start and an initdb, to prove what one proves.
describe('deputy dev (npm run dev)', { timeout: 300_000 }, () => {
  it('starts Deputy with the development IdP, prints the commands, and stops cleanly on SIGTERM; a second one in its folder stops naming it and writes nothing', async () => {
    const dir = join(tmp, 'dev', '.deputy-dev');
    const dev = () => spawnNode(['bin/deputy.mjs', 'dev', '--port', '0', '--idp-port', '0', '--dir', dir], {});
    const first = dev();
    try {
      const [, url] = await first.waitFor(/Deputy dev is ready on (http:\/\/localhost:\d+)/);
      expect(first.stdout()).toMatch(/^DEVELOPMENT ONLY/m);
      expect(first.stdout()).toContain(`export DEPUTY_URL=${url} DEPUTY_CREDENTIALS=${dir}/admin-client.json`);
      expect((await fetch(`${url}/readyz`)).status).toBe(200);
      expect(statSync(join(dir, 'researcher.json')).mode & 0o777).toBe(0o600);

      // The dev folder is locked as a data folder (src/store/lock.ts): the first one's credentials and keys stay as it printed them.
      const before = filesOf(dir);
      expect(Object.keys(before)).toEqual(expect.arrayContaining(['admin-client.json', 'researcher.json']));
      expect(Object.keys(before).some((f) => f.startsWith('keys/'))).toBe(true);
      const second = dev();
      // A second one that is not refused starts and keeps running: caught as soon as it says so,
      // with its output, rather than as the test's timeout minutes later.
      const started = second.waitFor(/Deputy dev is ready/).then(() => `started:\n${second.stdout()}\n${second.stderr()}`, () => undefined);
      expect(await Promise.race([second.exited, started])).toEqual({ code: 1, signal: null });
      expect(second.stderr()).toMatch(new RegExp(`^deputy: the data folder ${dir} is in use by another Deputy process \\(pid ${first.child.pid}, started [^,]+, command "[^"]*deputy\\.mjs dev[^"]*"\\)`));
      expect(second.stderr()).toMatch(/give this one a folder of its own \(--dir\); nothing was written/);
      expect(second.stdout()).not.toMatch(/DEVELOPMENT ONLY|ready/);
      expect(filesOf(dir)).toEqual(before);
      expect((await fetch(`${url}/readyz`)).status).toBe(200);

      first.child.kill('SIGTERM');
      expect((await first.exited).code).toBe(0);
      expect(readdirSync(dir)).not.toContain(LOCK_FILE);
    } finally {
      killAll();
    }
  });
});

describe('deputy init', () => {
  it('writes an admin key pair and a configuration that uses it, and refuses to overwrite without --force', async () => {
    const config = join(tmp, 'deputy.yaml');
    const creds = join(tmp, 'init', 'admin-client.json');
    const first = await cli(['init', '--config', config, '--credentials', creds]);
    expect(first).toMatchObject({ code: 0, err: '' });
    expect(first.out).toMatch(/Next:[\s\S]*DEPUTY_CONFIG=/);
    expect(statSync(creds).mode & 0o777).toBe(0o600);
    const text = readFileSync(config, 'utf8');
    expect(text).toMatch(/# - id: okta[\s\S]*# - id: entra[\s\S]*# - id: corp-oidc[\s\S]*allowInsecureHttp/);
    const loaded = loadConfig({ file: config, env: {} });
    const saved = JSON.parse(readFileSync(creds, 'utf8')) as { client_id: string; private_jwk: { x: string } };
    expect(loaded.admin.clients).toMatchObject([{ client_id: 'deputy-admin', scopes: ['deputy:admin', 'authzen:evaluate'] }]);
    expect(loaded.admin.clients[0]!.jwks!.keys[0]!.x).toBe(saved.private_jwk.x);
    expect(JSON.stringify(loaded)).not.toContain((saved.private_jwk as { d?: string }).d);

    const again = await cli(['init', '--config', config, '--credentials', creds]);
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/already exist.*--force/);
    expect(readFileSync(config, 'utf8')).toBe(text);
    const forced = await cli(['--json', 'init', '--config', config, '--credentials', creds, '--force', '--client-id', 'ops']);
    expect(forced.code).toBe(0);
    expect(JSON.parse(forced.out)).toMatchObject({ config, credentials: creds, client_id: 'ops' });
  });
});

describe('tokens', () => {
  it('deputy token: an admin token, a DPoP-bound PEP token with its key, refusals with exit 3 and 1', async () => {
    const admin = await cli(['token']);
    expect(admin.code).toBe(0);
    expect(decodeJwt(admin.out.trim())).toMatchObject({ aud: `${deputy.issuer}/admin`, scope: 'deputy:admin', client_id: 'cli-admin' });

    const keyFile = join(tmp, 'pep-dpop.json');
    const pep = await cli(['token', '--scope', 'authzen:evaluate', '--dpop-key', keyFile, '--json']);
    expect(pep.code).toBe(0);
    const body = JSON.parse(pep.out) as { access_token: string; token_type: string; dpop_jkt: string; dpop_key: string };
    expect(body.token_type.toLowerCase()).toBe('dpop');
    expect(decodeJwt(body.access_token)).toMatchObject({ aud: `${deputy.issuer}/access`, cnf: { jkt: body.dpop_jkt } });
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);

    const stranger = join(tmp, 'stranger.json');
    writeFileSync(stranger, readFileSync(adminFile, 'utf8').replace('cli-admin', 'nobody'));
    const refused = await cli(['token', '--credentials', stranger]);
    expect(refused.code).toBe(3);
    expect(refused.err).toMatch(/^deputy: 401 invalid_client/);
    const badScope = await cli(['token', '--scope', 'calendar.read']);
    expect(badScope.code).toBe(2);
    const unreachable = await cli(['token', '--url', 'http://127.0.0.1:9']);
    expect(unreachable.code).toBe(1);
    expect(unreachable.err).toMatch(/cannot reach/);
    const plainHttp = await cli(['token', '--url', 'http://deputy.example.com']);
    expect(plainHttp.code).toBe(2);
    const missing = await cli(['token', '--credentials', join(tmp, 'none.json')]);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/no such credentials file/);
  });

  it('deputy exchange and dpop-proof: a DPoP-bound agent token, and a proof a resource server accepts', async () => {
    const userToken = await idp.oktaAccessToken({ scp: ['deputy.read'] });
    const keyFile = join(tmp, 'agent-dpop.json');
    const exchanged = await cli(['exchange', '--credentials', agentFile, '--dpop-key', keyFile, '--subject-token', userToken, '--resource', API, '--scope', 'deputy.read', '--json']);
    expect(exchanged.code).toBe(0);
    const t = JSON.parse(exchanged.out) as { access_token: string; dpop_jkt: string };
    expect(decodeJwt(t.access_token)).toMatchObject({ aud: API, client_id: 'agent-a', cnf: { jkt: t.dpop_jkt } });
    expect(exchanged.out).not.toContain(userToken);

    const proof = await cli(['dpop-proof', '--key', keyFile, '--htm', 'get', '--htu', `${API}/docs/1?x=1`, '--token', t.access_token]);
    expect(proof.code).toBe(0);
    const verified = await jwtVerify(proof.out.trim(), EmbeddedJWK, { typ: 'dpop+jwt' });
    expect(verified.payload).toMatchObject({ htm: 'GET', htu: `${API}/docs/1` });
    expect(verified.payload.ath).toBe(Buffer.from(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(t.access_token))).toString('base64url'));
    expect(decodeProtectedHeader(proof.out.trim()).jwk).not.toHaveProperty('d');

    const refused = await cli(['exchange', '--credentials', agentFile, '--dpop-key', keyFile, '--subject-token', 'not-a-token', '--resource', API]);
    expect(refused.code).toBe(3);
    expect(refused.err).toMatch(/400 invalid_grant|400 invalid_request/);
    const noKey = await cli(['dpop-proof', '--key', join(tmp, 'nokey.json'), '--htm', 'GET', '--htu', API]);
    expect(noKey.code).toBe(1);
    const badUrl = await cli(['dpop-proof', '--key', keyFile, '--htm', 'GET', '--htu', 'not a url']);
    expect(badUrl.code).toBe(2);
  });
});

describe('the admin API', () => {
  it('agents: create, list, get, update, disable, enable; refusals are exit 3 with the protocol error', async () => {
    const jwks = (await clientKeys()).jwks;
    const created = await cli(['agents', 'create', '--data', JSON.stringify({ id: 'mailer', name: 'Mailer', owner: 'bob@example.com', scopes: ['mail.send'], audiences: ['https://mail.example.com'], jwks })]);
    expect(created).toMatchObject({ code: 0, out: 'created agent mailer\n' });
    const listed = await cli(['agents', 'list', '--json', '--limit', '10']);
    expect((JSON.parse(listed.out) as { agents: Array<{ id: string }> }).agents.map((a) => a.id).sort()).toEqual(['agent-a', 'mailer']);
    const text = await cli(['agents', 'list']);
    expect(text.out).toMatch(/^mailer\tactive\tbob@example.com\tmail.send$/m);
    const file = join(tmp, 'patch.json');
    writeFileSync(file, '{"max_delegation_depth": 1, "scopes": []}');
    const updated = await cli(['agents', 'update', 'mailer', '--file', file]);
    expect(JSON.parse(updated.out)).toMatchObject({ id: 'mailer', max_delegation_depth: 1, scopes: [] });
    expect((await cli(['agents', 'disable', 'mailer'])).out).toBe('agent mailer is disabled\n');
    expect(JSON.parse((await cli(['agents', 'get', 'mailer'])).out)).toMatchObject({ status: 'disabled' });
    expect((await cli(['agents', 'enable', 'mailer'])).out).toBe('agent mailer is active\n');

    const wrongMember = await cli(['agents', 'update', 'mailer', '--data', '{"maxDelegationDepth": 1}']);
    expect(wrongMember.code).toBe(3);
    expect(wrongMember.err).toMatch(/400 invalid_request: .*use max_delegation_depth/);
    const missing = await cli(['agents', 'get', 'nobody']);
    expect(missing.code).toBe(3);
    expect(missing.err).toMatch(/^deputy: 404 /);
    expect((await cli(['agents', 'create'])).code).toBe(2);
    expect((await cli(['agents', 'create', '--data', '[1]'])).code).toBe(2);
    expect((await cli(['agents', 'list', '--limit', '500'])).code).toBe(2);
  });

  it('agents delete: the agent is gone, its receipts are not; a repeat is 404 and a configured agent 409 (exit 3)', async () => {
    const jwks = (await clientKeys()).jwks;
    expect((await cli(['agents', 'create', '--data', JSON.stringify({ id: 'temp', name: 'Temp', owner: 'bob@example.com', jwks })])).code).toBe(0);
    await deputy.receipts.append({ agent: 'temp', user: 'u', chain: ['temp'], event: 'access_evaluation', action: 'read', resource: 'doc', decision: 'permit', policies: [], requestId: 'r-1' });
    expect(await cli(['agents', 'delete', 'temp'])).toMatchObject({ code: 0, out: 'deleted agent temp (its receipts are kept: deputy receipts export temp)\n' });
    expect(await deputy.agents.get('temp')).toBeUndefined();
    // Its receipt is kept, and the deletion closes the chain (event agent_deleted).
    const exported = await cli(['receipts', 'export', 'temp']);
    const lines = exported.out.trim().split('\n').map((l) => JSON.parse(Buffer.from((JSON.parse(l) as { receipt: string }).receipt.split('.')[1]!, 'base64url').toString()) as { event: string });
    expect(lines.map((c) => c.event)).toEqual(['access_evaluation', 'agent_deleted']);
    const again = await cli(['agents', 'delete', 'temp', '--json']);
    expect(again.code).toBe(3);
    expect(again.err).toMatch(/^deputy: 404 not_found: agent "temp" does not exist/);
    const configured = await cli(['agents', 'delete', 'agent-a']);
    expect(configured.code).toBe(3);
    expect(configured.err).toMatch(/409 conflict: .*defined in configuration/);
    expect(await deputy.agents.get('agent-a')).toMatchObject({ status: 'active' });
  });

  it('connections and policies', async () => {
    const created = await cli(['connections', 'create', '--data', JSON.stringify({ id: 'crm', kind: 'api_key', base_url: 'https://crm.example.com/v1', header: 'X-Api-Key', secret: 'sk_test_cli_0123456789', required_scopes: ['crm.read'] })]);
    expect(created).toMatchObject({ code: 0, out: 'created connection crm\n' });
    const listed = await cli(['connections', 'list']);
    expect(listed.out).toMatch(/^crm\tapi_key\thttps:\/\/crm.example.com\/v1$/m);
    const shown = await cli(['connections', 'get', 'crm']);
    expect(shown.out).not.toContain('sk_test_cli_0123456789');
    expect((await cli(['connections', 'rotate-secret', 'crm', '--data', '{"secret":"sk_test_cli_rotated_98765"}'])).code).toBe(0);
    expect((await cli(['connections', 'delete', 'crm'])).out).toBe('deleted connection crm\n');
    expect((await cli(['connections', 'get', 'crm'])).code).toBe(3);

    const policies = JSON.parse((await cli(['policies', 'show'])).out) as { generation: number; policies: unknown[] };
    expect(policies.policies.length).toBeGreaterThan(0);
    const reloaded = JSON.parse((await cli(['policies', 'reload'])).out) as { generation: number };
    expect(reloaded.generation).toBeGreaterThanOrEqual(policies.generation);
  });

  it('budgets: create, list, get (current window), update, delete; bad input exits 2, a missing budget 3', async () => {
    const created = await cli(['budgets', 'create', '--data', JSON.stringify({ id: 'cli-daily', agent: 'agent-a', unit: 'requests', window: 'day', limit: 100 })]);
    expect(created).toMatchObject({ code: 0, out: 'created budget cli-daily\n' });
    const listed = await cli(['budgets', 'list']);
    expect(listed.out).toMatch(/^cli-daily\trequests\/day\t0\+0 of 100\tagent=agent-a$/m);
    const listedJson = JSON.parse((await cli(['budgets', 'list', '--json'])).out) as { budgets: Array<{ id: string }> };
    expect(listedJson.budgets.map((b) => b.id)).toContain('cli-daily');
    const shown = JSON.parse((await cli(['budgets', 'get', 'cli-daily'])).out) as { limit: number; current: { spent: number; remaining: number }; reservations: unknown[] };
    expect(shown).toMatchObject({ limit: 100, current: { spent: 0, remaining: 100 }, reservations: [] });
    const updated = JSON.parse((await cli(['budgets', 'update', 'cli-daily', '--data', '{"limit":50,"agent":null}'])).out) as { limit: number; agent: unknown };
    expect(updated).toMatchObject({ limit: 50, agent: null });
    expect((await cli(['budgets', 'delete', 'cli-daily'])).out).toBe('deleted budget cli-daily\n');
    expect((await cli(['budgets', 'get', 'cli-daily'])).code).toBe(3);

    expect((await cli(['budgets', 'create', '--data', '{"id":"x","unit":"parsecs","window":"day","limit":1}'])).code).toBe(3);
    expect((await cli(['budgets', 'create'])).code).toBe(2);
    expect((await cli(['budgets', 'list', '--limit', '0'])).code).toBe(2);
    const unknown = await cli(['budgets', 'list', '--bogus']);
    expect(unknown.code).toBe(2);
    expect(unknown.err).toMatch(/unknown option '--bogus'/);
    expect((await cli(['budgets', '--help'])).out).toMatch(/list.*\n.*get/s);
  });

  it('receipts: export (stdout and file), verify (ok, tampered, --json), get', async () => {
    const userToken = await idp.oktaAccessToken({ scp: ['deputy.read'] });
    const keyFile = join(tmp, 'agent-dpop-2.json');
    for (let i = 0; i < 2; i += 1) {
      expect((await cli(['exchange', '--credentials', agentFile, '--dpop-key', keyFile, '--subject-token', userToken, '--resource', API])).code).toBe(0);
    }
    await deputy.receipts.flush();
    const exported = await cli(['receipts', 'export', 'agent-a']);
    expect(exported.code).toBe(0);
    const file = join(tmp, 'agent-a.jsonl');
    expect((await cli(['receipts', 'export', 'agent-a', '--output', file, '--from', '1'])).code).toBe(0);
    expect(readFileSync(file, 'utf8')).toBe(exported.out);
    const lines = exported.out.trim().split('\n');
    expect(lines.length).toBeGreaterThanOrEqual(2);

    const jwks = `${deputy.url}/receipts/jwks`;
    const ok = await cli(['receipts', 'verify', file, '--jwks', jwks]);
    expect(ok.code).toBe(0);
    expect(ok.out).toMatch(/^OK: every signature/m);
    const cut = join(tmp, 'cut.jsonl');
    writeFileSync(cut, `${lines.slice(1).join('\n')}\n`);
    const failed = await cli(['--json', 'receipts', 'verify', cut, '--jwks', jwks]);
    expect(failed.code).toBe(1);
    expect(JSON.parse(failed.out)).toMatchObject({ ok: false });
    const local = await cli(['receipts', 'verify', file], { DEPUTY_KEYS_DIR: deputy.keysDir });
    expect(local.code).toBe(0);
    expect((await cli(['receipts', 'verify', join(tmp, 'none.jsonl'), '--jwks', jwks])).code).toBe(2);
    // An empty input (an export that failed upstream of a pipe) verifies nothing: not OK.
    const emptyFile = join(tmp, 'empty.jsonl');
    writeFileSync(emptyFile, '');
    const empty = await cli(['receipts', 'verify', emptyFile, '--jwks', jwks]);
    expect(empty.code).toBe(1);
    expect(empty.out).toMatch(/^FAILED: no receipts/m);
    expect(JSON.parse((await cli(['--json', 'receipts', 'verify', emptyFile, '--jwks', jwks])).out)).toMatchObject({ ok: false, records: 0 });

    const id = (JSON.parse(lines[0]!) as { id: string }).id;
    expect(JSON.parse((await cli(['receipts', 'get', id])).out)).toMatchObject({ id, agent: 'agent-a', seq: 1 });
    expect(existsSync(file)).toBe(true);
  });
});
