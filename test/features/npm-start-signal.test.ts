/**
 * `npm start` as a process supervisor runs it (a container's `CMD ["npm", "start"]`, a script that
 * keeps npm's pid): the supervisor's SIGTERM goes to npm, which passes it to its script's shell.
 * Before the scripts began with `exec`, that shell died of it and Deputy, its child, lived on as an
 * orphan — still listening, still holding the data folder's lock — so npm "stopped" while Deputy
 * did not, and the next start found its folder locked (or the container runtime SIGKILLed it
 * without a graceful stop). With `exec` the shell is Deputy: the signal reaches it, it stops
 * gracefully, and npm exits after it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { initialisedDataDir } from '../support/database.js';
import { freePort } from '../support/net.js';
import { isListening, LISTENING } from '../support/process.js';

const dir = mkdtempSync(join(tmpdir(), 'deputy-npm-signal-'));
const groupLeaders: number[] = [];

afterAll(() => {
  // Whatever the outcome, nothing of this start outlives the test (npm, its shell, an orphan).
  for (const leader of groupLeaders) {
    try {
      process.kill(-leader, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

/** Runs `npm <args>` as a supervisor would (npm's pid known, its own process group); resolves once `ready` is on stdout. */
async function underNpm(args: string[], env: Record<string, string>, ready: RegExp): Promise<{ child: ChildProcess; exited: Promise<void> }> {
  const child = spawn('npm', args, {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  groupLeaders.push(child.pid!);
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  let out = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout!.setEncoding('utf8').on('data', (s: string) => {
      out += s;
      if (ready.test(out)) resolve();
    });
    void exited.then(() => reject(new Error(`npm ${args.join(' ')} exited before it was ready:\n${out.slice(-2000)}`)));
  });
  return { child, exited };
}

describe('npm start under a supervisor', () => {
  it('a SIGTERM to npm stops Deputy itself: when npm has exited, nothing listens on the port any more', { timeout: 120_000 }, async () => {
    const port = await freePort();
    // An initialised, empty cluster: the signal is the subject here, not the folder's creation
    // (test/features/start.test.ts), so this server skips initdb (seconds of CPU at npm's full tier).
    const dataDir = initialisedDataDir(join(dir, 'data'));
    const env = { PORT: String(port), HOST: '127.0.0.1', DEPUTY_DATA_DIR: dataDir, DEPUTY_KEYS_DIR: join(dir, 'keys'), LOG_LEVEL: 'info' };
    const { child, exited } = await underNpm(['start'], env, LISTENING);
    expect(await isListening(port)).toBe(true);
    child.kill('SIGTERM'); // npm's pid only, as a supervisor signals the process it started
    await exited;
    expect(await isListening(port)).toBe(false);
  });

  // README "Try it by hand": `npm run dev` is stopped the same way (a terminal's or an IDE's task
  // runner signals npm); without `exec` its Deputy and development IdP lived on, holding both ports.
  it('npm run dev: a SIGTERM to npm stops Deputy and the development IdP', { timeout: 120_000 }, async () => {
    const [port, idpPort] = [await freePort(), await freePort()];
    const args = ['run', 'dev', '--', '--port', String(port), '--idp-port', String(idpPort), '--dir', join(dir, 'dev')];
    const { child, exited } = await underNpm(args, { LOG_LEVEL: 'warn' }, /Deputy dev is ready on /);
    expect([await isListening(port), await isListening(idpPort)]).toEqual([true, true]);
    child.kill('SIGTERM');
    await exited;
    expect([await isListening(port), await isListening(idpPort)]).toEqual([false, false]);
  });
});
