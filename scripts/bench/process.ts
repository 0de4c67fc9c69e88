/**
 * The bench's server processes: each runs a TypeScript entry of this folder in its own Node
 * process and announces itself with one `READY …` line on stdout.
 *
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nodeFlagsOf } from '../ci/node-flags.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));

/** The entries that run Deputy itself: started with {@link productNodeFlags}. */
const DEPUTY_ENTRIES = new Set(['deputy-process.ts']);

/**
 * The Node flags the product starts Deputy with: those of package.json's `start:dist`
 * (`node <flags> dist/main.js`, the production start; `npm start` carries the same ones), so the
 * bench measures Deputy as operators run it, never with a flag of its own (issue 16, eighth
 * round: `--max-semi-space-size`).
 */
export function productNodeFlags(): string[] {
  const pkg = JSON.parse(readFileSync(join(HERE, '../../package.json'), 'utf8')) as { scripts: Record<string, string> };
  // The same parser as scripts/ci/start-check.mjs: a flag whose value is a separate word throws
  // rather than losing its value (the bench's own `--cpu-prof` or `--import tsx` would become it).
  return nodeFlagsOf(pkg.scripts['start:dist']!, 'dist/main.js');
}

/**
 * Starts a child process running a TypeScript entry and waits for its `READY …` line.
 * `nodeFlags`: more Node / V8 flags for this run only (a probe's experiment, e.g. V8's
 * `--single-threaded-gc`, which `NODE_OPTIONS` does not accept), after the product's.
 */
export async function startProcess(entry: string, env: Record<string, string>, nodeFlags: string[] = []): Promise<{ child: ChildProcess; ready: string[] }> {
  // BENCH_CPU_PROF=<dir>: write a V8 CPU profile of each server process there (`--cpu-prof`).
  const profile = process.env.BENCH_CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_CPU_PROF] : [];
  const product = DEPUTY_ENTRIES.has(entry) ? productNodeFlags() : [];
  const child = spawn(process.execPath, [...product, ...nodeFlags, ...profile, '--import', 'tsx', join(HERE, entry)], {
    env: { ...process.env, ...env, NODE_ENV: 'production' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const ready = await new Promise<string[]>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.startsWith('READY '));
      if (line) resolve(line.split(' ').slice(1));
    });
    child.once('exit', (code) => reject(new Error(`${entry} exited (${code}) before it was ready: ${stderr.slice(-2000)}`)));
  });
  // An exit during the run (a crash between phases) names its cause instead of a bare socket error.
  child.once('exit', (code, signal) => {
    if (code !== 0 && signal !== 'SIGTERM') process.stderr.write(`${entry} exited (${code ?? signal}): ${stderr.slice(-2000)}\n`);
  });
  return { child, ready };
}
