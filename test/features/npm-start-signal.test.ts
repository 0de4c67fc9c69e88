/**
 * `npm start` as a process supervisor runs it (a container's `CMD ["npm", "start"]`, a script that
 * keeps npm's pid): the supervisor's SIGTERM goes to npm, which passes it to its script's shell.
 * Before the scripts began with `exec`, that shell died of it and Deputy, its child, lived on as an
 * orphan — still listening, still holding the data folder's lock — so npm "stopped" while Deputy
 * did not, and the next start found its folder locked (or the container runtime SIGKILLed it
 * without a graceful stop). With `exec` the shell is Deputy: the signal reaches it, it stops
 * gracefully, and npm exits after it.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../support/net.js';
import { isListening, LISTENING } from '../support/process.js';

const dir = mkdtempSync(join(tmpdir(), 'deputy-npm-signal-'));
let groupLeader: number | undefined;

afterAll(() => {
  // Whatever the outcome, nothing of this start outlives the test (npm, its shell, an orphan).
  if (groupLeader !== undefined) {
    try {
      process.kill(-groupLeader, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('npm start under a supervisor', () => {
  it('a SIGTERM to npm stops Deputy itself: when npm has exited, nothing listens on the port any more', { timeout: 120_000 }, async () => {
    const port = await freePort();
    const child = spawn('npm', ['start'], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', PORT: String(port), HOST: '127.0.0.1', DEPUTY_DATA_DIR: join(dir, 'data'), DEPUTY_KEYS_DIR: join(dir, 'keys'), LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    groupLeader = child.pid;
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    let out = '';
    await new Promise<void>((resolve, reject) => {
      child.stdout!.setEncoding('utf8').on('data', (s: string) => {
        out += s;
        if (LISTENING.test(out)) resolve();
      });
      void exited.then(() => reject(new Error(`npm start exited before listening:\n${out.slice(-2000)}`)));
    });
    expect(await isListening(port)).toBe(true);
    child.kill('SIGTERM'); // npm's pid only, as a supervisor signals the process it started
    await exited;
    expect(await isListening(port)).toBe(false);
  });
});
