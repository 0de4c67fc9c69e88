/**
 * `npm start` as an operator runs it: a separate process, configured by a file and the
 * environment, stopped with SIGTERM.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, usingPostgres, type TestDatabase } from '../support/database.js';
import { json } from '../support/http.js';
import { freePort } from '../support/net.js';
import { isListening, killAll, startDeputyProcess as startProcess } from '../support/process.js';

let tmp: string;

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'deputy-start-'));
});
// A test that failed half-way must not leave a server behind: kill our own process group.
afterEach(() => killAll());
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('npm start', () => {
  it('an invalid configuration stops the start: exit code 2, the field named, nothing created', async () => {
    const bad = join(tmp, 'bad.yaml');
    writeFileSync(bad, 'server:\n  bodyLimitBytes: big\n');
    const dataDir = join(tmp, 'bad-data');
    const keysDir = join(tmp, 'bad-keys');
    const port = await freePort();
    const proc = startProcess({ DEPUTY_CONFIG: bad, PORT: String(port), DEPUTY_DATA_DIR: dataDir, DEPUTY_KEYS_DIR: keysDir });
    const { code } = await proc.exited;
    expect(code).toBe(2);
    expect(proc.stderr()).toContain(`deputy: invalid configuration (${bad}):`);
    expect(proc.stderr()).toMatch(/ {2}- server\.bodyLimitBytes: Invalid input: expected number, received string/);
    expect(proc.stdout()).not.toMatch(/listening/);
    expect(existsSync(dataDir)).toBe(false);
    expect(existsSync(keysDir)).toBe(false);
    expect(await isListening(port)).toBe(false);
  });

  it(
    'starts on the default configuration, is ready, and stops cleanly on SIGTERM',
    async () => {
      const dataDir = join(tmp, 'data');
      const keysDir = join(tmp, 'keys');
      let db: TestDatabase | undefined;
      const env: Record<string, string> = {
        PORT: '0',
        HOST: '127.0.0.1',
        DEPUTY_DATA_DIR: dataDir,
        DEPUTY_KEYS_DIR: keysDir,
        LOG_LEVEL: 'info',
      };
      if (usingPostgres) {
        db = await createTestDatabase();
        env.DATABASE_URL = db.url!;
      }
      try {
        const proc = startProcess(env);
        const [, url, port, kind] = await proc.waitFor(/Deputy is listening on (http:\/\/localhost:(\d+)) \(store: (\w+)\)\n/);
        // PORT=0: the printed URL carries the port actually bound.
        expect(Number(port)).toBeGreaterThan(0);
        expect(kind).toBe(usingPostgres ? 'postgres' : 'pglite');

        const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
        expect(ready.status).toBe(200);
        expect((await json(ready)).status).toBe('ready');
        const discovery = await json(await fetch(`http://127.0.0.1:${port}/.well-known/openid-configuration`));
        expect(discovery.issuer).toBe(url);

        // Keys generated (development default), the embedded database created when it is the store.
        expect(readdirSync(keysDir).sort()).toEqual(['receipt-keys.json', 'server-secrets.json', 'signing-keys.json', 'vault-kek.json']);
        expect(existsSync(dataDir)).toBe(!usingPostgres);
        if (!usingPostgres) expect(statSync(dataDir).mode & 0o777).toBe(0o700);

        proc.child.kill('SIGTERM');
        const { code, signal } = await proc.exited;
        expect({ code, signal }).toEqual({ code: 0, signal: null });
        expect(await isListening(Number(port))).toBe(false);
        const logs = proc
          .stdout()
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l) as { msg: string; signal?: string });
        expect(logs.map((l) => l.msg)).toEqual(expect.arrayContaining(['deputy started', 'shutting down']));
        expect(logs.find((l) => l.msg === 'shutting down')?.signal).toBe('SIGTERM');
        expect(proc.stderr()).not.toMatch(/Error|fatal/i);
      } finally {
        await db?.drop();
      }
    },
    90_000,
  );

  it('refuses several workers on embedded PGlite (exit 2, the field named)', async () => {
    const proc = startProcess({ DEPUTY_WORKERS: '2', PORT: String(await freePort()), DEPUTY_DATA_DIR: join(tmp, 'w-data'), DEPUTY_KEYS_DIR: join(tmp, 'w-keys') });
    expect((await proc.exited).code).toBe(2);
    expect(proc.stderr()).toMatch(/DEPUTY_WORKERS \(server\.workers\): more than one worker needs PostgreSQL/);
  });

  it.skipIf(!usingPostgres)(
    'runs several workers on one port with PostgreSQL, and SIGTERM stops them all',
    async () => {
      const db = await createTestDatabase();
      try {
        const port = await freePort();
        const proc = startProcess({ DEPUTY_WORKERS: '2', PORT: String(port), HOST: '127.0.0.1', DATABASE_URL: db.url!, DEPUTY_KEYS_DIR: join(tmp, 'cluster-keys'), LOG_LEVEL: 'info' });
        await proc.waitFor(/Deputy is listening on http:\/\/localhost:\d+ \(store: postgres, 2 workers\)\n/);
        // Both workers come up (each logs its start); the port answers throughout.
        await new Promise<void>((resolve) => {
          const check = () => ((proc.stdout().match(/"msg":"deputy started"/g) ?? []).length >= 2 ? resolve() : setTimeout(check, 100));
          check();
        });
        for (let i = 0; i < 4; i += 1) expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
        proc.child.kill('SIGTERM');
        expect((await proc.exited).code).toBe(0);
        expect(await isListening(port)).toBe(false);
      } finally {
        await db.drop();
      }
    },
    120_000,
  );
});
