import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import {
  generateSigningKey,
  KeyError,
  loadKeyStore,
  RECEIPT_KEYS_FILE,
  ROLLOUT_GRACE_SECONDS,
  rotateSigningKeys,
  SERVER_SECRETS_FILE,
  SIGNING_KEYS_FILE,
  VAULT_KEK_FILE,
  type SigningAlg,
} from '../../src/keys/keystore.js';
import { runCli } from '../../src/cli/index.js';
import { adminSetup, clientCredentialsToken, oauthClient } from '../support/clients.js';
import { createTestDatabase, usingPostgres } from '../support/database.js';
import { json, type Json } from '../support/http.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';
import { freePort } from '../support/net.js';

const run = promisify(execFile);
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k', 'oth'];

let tmp: string;
let admin: Awaited<ReturnType<typeof adminSetup>>;

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'deputy-keys-test-'));
  admin = await adminSetup();
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const mode = (path: string) => statSync(path).mode & 0o777;
const fresh = (name: string) => join(tmp, `${name}-${randomBytes(4).toString('hex')}`);

async function servedJwks(deputy: TestDeputy): Promise<JSONWebKeySet> {
  const res = await fetch(`${deputy.url}/jwks`);
  expect(res.status).toBe(200);
  return json<JSONWebKeySet>(res);
}

async function adminToken(deputy: TestDeputy): Promise<string> {
  return clientCredentialsToken(await oauthClient(deputy.issuer, admin.clientId, admin.keys), 'deputy:admin');
}

/** Verifies `token` against the JWKS the server publishes, as a resource server would. */
async function verifyWithServedJwks(deputy: TestDeputy, token: string) {
  return jwtVerify(token, createLocalJWKSet(await servedJwks(deputy)), { issuer: deputy.issuer, typ: 'at+jwt' });
}


/** `npm run keys:rotate` on `keysDir`, with the default configuration file. */
function rotateScript(keysDir: string, args: string[] = []) {
  const { DEPUTY_CONFIG: _ignored, ...env } = process.env;
  return run(process.execPath, ['--import', 'tsx', 'scripts/keys-rotate.ts', ...args], { env: { ...env, DEPUTY_KEYS_DIR: keysDir } });
}

/**
 * `deputy keys rotate` in-process (the code `scripts/keys-rotate.ts` runs, without a tsx start),
 * on `keysDir` with the default configuration file. The real script is run by the first test.
 */
async function rotateInProcess(keysDir: string, args: string[] = []): Promise<{ code: number; stdout: string; stderr: string }> {
  const { DEPUTY_CONFIG: _ignored, ...env } = process.env;
  let stdout = '';
  let stderr = '';
  const code = await runCli(['keys', 'rotate', ...args], {
    out: (s) => void (stdout += s),
    err: (s) => void (stderr += s),
    env: { ...(env as Record<string, string>), DEPUTY_KEYS_DIR: keysDir },
  });
  return { code, stdout, stderr };
}

function readSigningFile(dir: string): { keys: Array<{ jwk: Json; status: string; retiredAt?: number }> } {
  return JSON.parse(readFileSync(join(dir, SIGNING_KEYS_FILE), 'utf8'));
}

describe('generated keys, restart and rotation', { timeout: 120_000 }, () => {
  it('generates key files (0600 in a 0700 folder), reuses them, and rotates without breaking live tokens', async () => {
    const keysDir = fresh('keys');
    const database = await createTestDatabase();
    // One fixed port (hence one issuer) for both instances, and a PGlite folder that survives the restart.
    const port = await freePort();
    const config = {
      server: { port },
      admin: { clients: [admin.config] },
      ...(usingPostgres ? {} : { store: { dataDir: fresh('data') } }),
    };
    try {
      // First start: keys generated.
      const first = await startTestDeputy({ keysDir, database, config });
      let oldToken: string;
      let oldKid: string;
      try {
        expect(mode(keysDir)).toBe(0o700);
        for (const file of [SIGNING_KEYS_FILE, VAULT_KEK_FILE, SERVER_SECRETS_FILE, RECEIPT_KEYS_FILE]) {
          expect(existsSync(join(keysDir, file))).toBe(true);
          expect(mode(join(keysDir, file))).toBe(0o600);
        }
        const file = readSigningFile(keysDir);
        expect(file.keys).toHaveLength(1);
        oldKid = first.keys.activeSigningKey.jwk.kid;
        expect(file.keys[0]).toMatchObject({ status: 'active', jwk: { kid: oldKid, alg: 'ES256', d: expect.any(String) } });

        oldToken = await adminToken(first);
        expect(decodeProtectedHeader(oldToken).kid).toBe(oldKid);
        const created = await fetch(`${first.url}/admin/agents`, {
          method: 'POST',
          headers: { authorization: `Bearer ${oldToken}`, 'content-type': 'application/json' },
          body: JSON.stringify({ id: 'survivor', name: 'Survivor', owner: 'ops@example.com', jwks: admin.keys.jwks }),
        });
        expect(created.status).toBe(201);
      } finally {
        await first.close(100);
      }

      // Rotation, as an operator runs it.
      const { stdout } = await rotateScript(keysDir);
      const rotated = readSigningFile(keysDir);
      expect(mode(join(keysDir, SIGNING_KEYS_FILE))).toBe(0o600);
      expect(readdirSync(keysDir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
      expect(rotated.keys).toHaveLength(2);
      const newKey = rotated.keys.find((k) => k.status === 'active')!;
      const newKid = newKey.jwk.kid as string;
      expect(newKid).not.toBe(oldKid);
      expect(stdout).toContain(newKid);
      expect(rotated.keys.find((k) => k.jwk.kid === oldKid)).toMatchObject({ status: 'retired', retiredAt: expect.any(Number) });

      // Restart on the same keys and database.
      const second = await startTestDeputy({ keysDir, database, config });
      try {
        expect(second.issuer).toBe(`http://localhost:${port}`);
        expect(second.keys.activeSigningKey.jwk.kid).toBe(newKid);
        const kids = (await servedJwks(second)).keys.map((k) => k.kid);
        expect(kids).toEqual(expect.arrayContaining([oldKid, newKid]));
        expect(kids).toHaveLength(2);

        const newToken = await adminToken(second);
        expect(decodeProtectedHeader(newToken).kid).toBe(newKid);
        expect((await verifyWithServedJwks(second, newToken)).protectedHeader.kid).toBe(newKid);
        // The token signed before the rotation still verifies, for resource servers and for Deputy itself.
        expect((await verifyWithServedJwks(second, oldToken)).protectedHeader.kid).toBe(oldKid);
        const read = await fetch(`${second.url}/admin/agents/survivor`, { headers: { authorization: `Bearer ${oldToken}` } });
        expect(read.status).toBe(200);
        expect((await json(read)).owner).toBe('ops@example.com');
      } finally {
        await second.close(100);
      }
    } finally {
      await database.drop();
    }
  });
});

describe('instances generating keys at the same moment', { timeout: 120_000 }, () => {
  it('agree on one set of keys, and none reads a half-written file', async () => {
    const dir = fresh('race');
    const code = `import { loadKeyStore } from './src/keys/keystore.ts';
const k = await loadKeyStore({ dir: ${JSON.stringify(dir)}, signingAlg: 'ES256', generate: true, maxTokenLifetime: 300 });
console.log(k.activeSigningKey.jwk.kid + ' ' + k.vaultKeks().active.kid);`;
    const results = await Promise.all(Array.from({ length: 4 }, () => run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code])));
    const seen = new Set(results.map((r) => r.stdout.trim()));
    expect(seen.size).toBe(1);
    expect(readdirSync(dir).sort()).toEqual([RECEIPT_KEYS_FILE, SERVER_SECRETS_FILE, SIGNING_KEYS_FILE, VAULT_KEK_FILE].sort());
    for (const file of readdirSync(dir)) expect(mode(join(dir, file))).toBe(0o600);
  });
});

describe('keys from the environment', { timeout: 120_000 }, () => {
  it('starts on DEPUTY_SIGNING_KEYS / DEPUTY_VAULT_KEK / DEPUTY_SERVER_SECRETS / DEPUTY_RECEIPT_KEYS, writing no file', async () => {
    const signing = await generateSigningKey('ES256');
    const receipt = await generateSigningKey('EdDSA');
    const kek = { kid: 'kek-env', k: randomBytes(32).toString('base64url'), status: 'active', createdAt: 1 };
    const secrets = { dpopNonceSecret: randomBytes(32).toString('base64url'), cookieKeys: [randomBytes(32).toString('base64url')] };
    const keysDir = fresh('env-keys');
    mkdirSync(keysDir);
    const deputy = await startTestDeputy({
      keysDir,
      config: { admin: { clients: [admin.config] }, keys: { generate: false } },
      env: {
        DEPUTY_SIGNING_KEYS: JSON.stringify({ keys: [signing] }),
        DEPUTY_VAULT_KEK: JSON.stringify({ keys: [kek] }),
        DEPUTY_SERVER_SECRETS: JSON.stringify(secrets),
        DEPUTY_RECEIPT_KEYS: JSON.stringify({ keys: [receipt] }),
      },
    });
    try {
      expect(deputy.keys.activeSigningKey.jwk.kid).toBe(signing.jwk.kid);
      expect(deputy.keys.vaultKeks().active.kid).toBe('kek-env');
      expect(deputy.keys.dpopNonceSecret.toString('base64url')).toBe(secrets.dpopNonceSecret);
      expect(deputy.keys.activeReceiptKey.jwk.kid).toBe(receipt.jwk.kid);
      expect(readdirSync(keysDir)).toEqual([]);

      const published = (await servedJwks(deputy)).keys;
      expect(published.map((k) => k.kid)).toEqual([signing.jwk.kid]);
      expect(published[0]).toMatchObject({ x: signing.jwk.x, y: signing.jwk.y });

      const token = await adminToken(deputy);
      expect((await verifyWithServedJwks(deputy, token)).protectedHeader.kid).toBe(signing.jwk.kid);
    } finally {
      await deputy.stop();
    }
  });

  it('refuses malformed key material from the environment, naming the variable and not echoing it', async () => {
    const signing = await generateSigningKey('ES256');
    const publicOnly = { ...signing, jwk: { ...signing.jwk, d: undefined } };
    const base = { dir: fresh('never'), signingAlg: 'ES256' as const, generate: false, maxTokenLifetime: 300 };
    const secretish = `{"keys": [${JSON.stringify(signing)}`; // truncated JSON holding a private key
    await expect(loadKeyStore({ ...base, env: { DEPUTY_SIGNING_KEYS: secretish } })).rejects.toSatisfy(
      (err: unknown) => err instanceof KeyError && /^DEPUTY_SIGNING_KEYS: not valid JSON/.test(err.message) && !err.message.includes(signing.jwk.d!),
    );
    await expect(loadKeyStore({ ...base, env: { DEPUTY_SIGNING_KEYS: JSON.stringify({ keys: [publicOnly] }) } })).rejects.toThrow(
      /DEPUTY_SIGNING_KEYS: keys\[0\]\.jwk must be a private key/,
    );
    // Signing keys given, but the vault key neither given nor allowed to be generated.
    await expect(loadKeyStore({ ...base, env: { DEPUTY_SIGNING_KEYS: JSON.stringify({ keys: [signing] }) } })).rejects.toThrow(
      new RegExp(`${VAULT_KEK_FILE} is missing and key generation is off.*DEPUTY_VAULT_KEK`),
    );
    expect(existsSync(base.dir)).toBe(false);
  });
});

describe('signing algorithms', () => {
  it.each([
    ['RS256', { kty: 'RSA' }],
    ['EdDSA', { kty: 'OKP', crv: 'Ed25519' }],
  ] as const)('%s keys sign tokens that verify against the served JWKS', async (alg, shape) => {
    const deputy = await startTestDeputy({ config: { admin: { clients: [admin.config] }, keys: { signingAlg: alg as SigningAlg } } });
    try {
      expect(deputy.keys.activeSigningKey.jwk.alg).toBe(alg);
      const jwks = await servedJwks(deputy);
      expect(jwks.keys).toHaveLength(1);
      expect(jwks.keys[0]).toMatchObject({ ...shape, alg, kid: deputy.keys.activeSigningKey.jwk.kid });
      for (const member of PRIVATE_MEMBERS) expect(jwks.keys[0]).not.toHaveProperty(member);

      const token = await adminToken(deputy);
      const { protectedHeader, payload } = await verifyWithServedJwks(deputy, token);
      expect(protectedHeader).toMatchObject({ alg, kid: deputy.keys.activeSigningKey.jwk.kid, typ: 'at+jwt' });
      expect(payload.client_id).toBe(admin.clientId);
      // Deputy accepts its own token at its admin API.
      const res = await fetch(`${deputy.url}/admin/agents`, { headers: { authorization: `Bearer ${token}` } });
      expect(res.status).toBe(200);
    } finally {
      await deputy.stop();
    }
  });
});

describe('malformed key files', () => {
  it('a malformed signing-keys.json stops the start with a KeyError naming the file', async () => {
    const keysDir = fresh('bad-keys');
    mkdirSync(keysDir, { mode: 0o700 });
    const path = join(keysDir, SIGNING_KEYS_FILE);
    writeFileSync(path, '{ "keys": [ { "jwk": { "kty": "EC" ', { mode: 0o600 });
    const database = await createTestDatabase();
    try {
      const err = await startTestDeputy({ keysDir, database }).then(
        (d) => d.stop().then(() => undefined),
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(KeyError);
      expect((err as KeyError).message).toContain(path);
      expect((err as KeyError).message).toMatch(/not valid JSON/);
      // Not replaced by a generated key.
      expect(readFileSync(path, 'utf8')).toBe('{ "keys": [ { "jwk": { "kty": "EC" ');
    } finally {
      await database.drop();
    }
  });

  it('names the failing entry of a well-formed but invalid file', async () => {
    const dir = fresh('invalid-keys');
    mkdirSync(dir, { mode: 0o700 });
    const path = join(dir, SIGNING_KEYS_FILE);
    const a = await generateSigningKey('ES256');
    const b = await generateSigningKey('ES256');
    const opts = { dir, signingAlg: 'ES256' as const, generate: true, maxTokenLifetime: 300 };
    const cases: Array<[unknown, RegExp]> = [
      [{ keys: [] }, /"keys" must be a non-empty array/],
      [{ keys: [{ ...a, jwk: { ...a.jwk, alg: 'HS256' } }] }, /keys\[0\]\.jwk\.alg must be ES256, RS256 or EdDSA/],
      [{ keys: [a, { ...b, status: 'pending' }] }, /keys\[1\]\.status must be/],
      [{ keys: [a, b] }, /exactly one must be "active" \(found 2\)/],
      [[a], /must be a JSON object/],
    ];
    for (const [doc, message] of cases) {
      writeFileSync(path, JSON.stringify(doc), { mode: 0o600 });
      const err = await loadKeyStore(opts).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KeyError);
      expect((err as Error).message).toMatch(message);
      if (!/exactly one/.test(String(message))) expect((err as Error).message).toContain(path);
    }
  });
});

describe('rotation retention', () => {
  it('the rotation script fails cleanly (exit 1, file named) when there is no key to rotate', async () => {
    const keysDir = fresh('no-keys');
    const err = await rotateInProcess(keysDir);
    expect(err.code).toBe(1);
    expect(err.stderr).toBe(`deputy: ${join(keysDir, SIGNING_KEYS_FILE)} does not exist\n`);
    expect(existsSync(keysDir)).toBe(false);
  });

  it('rotates the receipt key with --receipts, keeping every earlier receipt key', async () => {
    const dir = fresh('receipt-rotation');
    await loadKeyStore({ dir, signingAlg: 'ES256', generate: true, maxTokenLifetime: 300 });
    const signingBefore = readFileSync(join(dir, SIGNING_KEYS_FILE), 'utf8');
    const { code, stdout } = await rotateInProcess(dir, ['--receipts', '--alg=EdDSA']);
    expect(code).toBe(0);
    const receipts = JSON.parse(readFileSync(join(dir, RECEIPT_KEYS_FILE), 'utf8')) as { keys: Array<{ status: string; jwk: Json }> };
    expect(receipts.keys.map((k) => [k.status, k.jwk.alg])).toEqual([['active', 'EdDSA'], ['retired', 'ES256']]);
    expect(stdout).toContain(String(receipts.keys[0]!.jwk.kid));
    expect(readFileSync(join(dir, SIGNING_KEYS_FILE), 'utf8')).toBe(signingBefore);
    expect(mode(join(dir, RECEIPT_KEYS_FILE))).toBe(0o600);
    expect((await rotateInProcess(dir, ['--receipts', '--alg=RS256'])).code).toBe(2);
  });

  it('keeps retired keys published while their tokens may live, then drops them', async () => {
    const dir = fresh('retention');
    const ttl = 300;
    const t0 = 1_800_000_000;
    const opts = { dir, signingAlg: 'ES256' as const, generate: true, maxTokenLifetime: ttl };
    const k1 = (await loadKeyStore(opts)).activeSigningKey.jwk.kid;
    const k2 = await rotateSigningKeys(dir, 'ES256', ttl, t0);
    const k3 = await rotateSigningKeys(dir, 'EdDSA', ttl, t0 + 100);

    const store = await loadKeyStore(opts);
    expect(store.activeSigningKey.jwk).toMatchObject({ kid: k3, alg: 'EdDSA' });
    expect(store.providerJwks().keys.map((k) => k.kid)).toEqual([k3]);
    const published = (now: number) => store.publicJwks(now).keys.map((k) => k.kid).sort();
    expect(published(t0 + 10)).toEqual([k1, k2, k3].sort());
    // k1 retired at t0: instances may sign with it until they are rolled (the grace), and its
    // tokens are gone ttl + 60 s of skew after that.
    const grace = ROLLOUT_GRACE_SECONDS;
    expect(published(t0 + grace + ttl + 59)).toEqual([k1, k2, k3].sort());
    expect(published(t0 + grace + ttl + 61)).toEqual([k2, k3].sort());
    expect(published(t0 + 100 + grace + ttl + 61)).toEqual([k3]);
    for (const key of store.publicJwks(t0).keys) for (const m of PRIVATE_MEMBERS) expect(key).not.toHaveProperty(m);

    // A later rotation drops the keys whose retention has passed from the file.
    const k4 = await rotateSigningKeys(dir, 'ES256', ttl, t0 + 100 + grace + ttl + 61);
    const left = readSigningFile(dir).keys.map((k) => [k.jwk.kid, k.status]);
    expect(left).toEqual([
      [k4, 'active'],
      [k3, 'retired'],
    ]);
    expect(mode(join(dir, SIGNING_KEYS_FILE))).toBe(0o600);
  });
});
