/**
 * `npm start` reloads the policy set on SIGHUP (the signal handler lives in main(), so this runs
 * Deputy as its own process). File watching is off here: only the signal can cause the reload.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { REPO } from '../support/authzen.js';
import { initialisedDataDir } from '../support/database.js';
import { TEST_NODE_FLAGS } from '../support/process.js';

let dir: string;
let child: ChildProcess;
let url: string;
let stderr = '';
/** Deputy's log lines (JSON, on stdout). */
let stdout = '';

const readOwnDoc = {
  subject: { type: 'User', id: 'alice', properties: { email: 'alice@example.com' } },
  action: { name: 'read' },
  resource: { type: 'Resource', id: 'doc-1', properties: { owner: 'alice@example.com' } },
};
const decision = async () => {
  const res = await fetch(`${url}/access/v1/evaluation`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(readOwnDoc) });
  return ((await res.json()) as { decision: boolean }).decision;
};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'deputy-sighup-'));
  const policies = join(dir, 'policies');
  mkdirSync(policies);
  cpSync(`${REPO}config/policies/schema.cedarschema`, join(policies, 'schema.cedarschema'));
  cpSync(`${REPO}config/policies/default.cedar`, join(policies, 'default.cedar'));
  writeFileSync(
    join(dir, 'deputy.yaml'),
    [
      'server: { port: 0, host: 127.0.0.1, shutdownGraceSeconds: 1 }',
      // A folder holding an initialised, empty cluster: the process skips initdb.
      `store: { dataDir: ${JSON.stringify(initialisedDataDir(join(dir, 'data')))} }`,
      `keys: { dir: ${JSON.stringify(join(dir, 'keys'))}, generate: true }`,
      `pdp: { policies: ${JSON.stringify(policies)}, watch: false, auth: none }`,
      'log: { level: warn }',
    ].join('\n'),
  );
  child = spawn(process.execPath, [...TEST_NODE_FLAGS, '--import', 'tsx', `${REPO}src/main.ts`], {
    env: { ...process.env, DEPUTY_CONFIG: join(dir, 'deputy.yaml'), DATABASE_URL: '', PORT: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  url = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(stdout);
      if (m) resolve(m[1]!.replace('localhost', '127.0.0.1'));
    });
    child.once('exit', (code) => reject(new Error(`deputy exited with ${code}: ${stderr}`)));
  });
}, 120_000);

afterAll(async () => {
  if (child && child.exitCode === null) {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('SIGHUP', () => {
  it('reloads the policy folder: a good set takes effect, a bad one is refused and the previous keeps serving', async () => {
    const policies = join(dir, 'policies');
    expect(await decision()).toBe(true);

    writeFileSync(join(policies, 'maintenance.cedar'), '@id("maintenance")\nforbid (principal, action == Action::"read", resource);\n');
    expect(await decision()).toBe(true); // nothing watches the folder: the file alone changes nothing
    child.kill('SIGHUP');
    await vi.waitFor(async () => expect(await decision()).toBe(false), { timeout: 20_000, interval: 100 });

    writeFileSync(join(policies, 'maintenance.cedar'), 'forbid (principal, action == Action::"read", resource'); // broken
    child.kill('SIGHUP');
    await vi.waitFor(() => expect(stdout).toMatch(/policy set refused/), { timeout: 20_000, interval: 100 });
    expect(await decision()).toBe(false);

    unlinkSync(join(policies, 'maintenance.cedar'));
    child.kill('SIGHUP');
    await vi.waitFor(async () => expect(await decision()).toBe(true), { timeout: 20_000, interval: 100 });
    expect(child.exitCode).toBeNull();
  }, 90_000);
});
