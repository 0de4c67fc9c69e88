// CI: `npm start` on the current Node starts, answers /readyz, and stops cleanly on SIGTERM.
// With --dist, the compiled start instead (`node dist/main.js`, after `npm run build`): no tsx.
// Runs on a throwaway data and keys folder and a free port; exits non-zero on any failure.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nodeFlagsOf } from './node-flags.mjs';

const port = await new Promise((resolve) => {
  const srv = createServer().listen(0, '127.0.0.1', () => {
    const { port: p } = srv.address();
    srv.close(() => resolve(p));
  });
});
const dir = mkdtempSync(join(tmpdir(), 'deputy-start-check-'));
const dist = process.argv.includes('--dist');
const what = dist ? 'node dist/main.js' : 'npm start';
// The Node flags the product starts with (package.json `start` / `start:dist`, e.g. the young
// generation's size): checked on every Node CI starts, so a flag a version refuses fails here.
const scripts = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).scripts;
// Parsed by the bench's parser too (./node-flags.mjs): a flag list it cannot read whole stops the check.
const flags = nodeFlagsOf(scripts[dist ? 'start:dist' : 'start'], dist ? 'dist/main.js' : 'src/main.ts');
const child = spawn(process.execPath, [...flags, ...(dist ? ['dist/main.js'] : ['--import', 'tsx', 'src/main.ts'])], {
  env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', DEPUTY_DATA_DIR: join(dir, 'data'), DEPUTY_KEYS_DIR: join(dir, 'keys'), LOG_LEVEL: 'warn' },
  stdio: ['ignore', 'inherit', 'inherit'],
});
const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));

async function ready(deadline) {
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/readyz`);
      if (res.status === 200) return true;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return false;
}

let failed = false;
if (!(await ready(Date.now() + 120_000))) {
  console.error(`start-check: ${what}: /readyz did not answer 200 within 120 s on Node ${process.version}`);
  failed = true;
}
child.kill('SIGTERM');
const { code, signal } = await exited;
if (!failed && code !== 0) {
  console.error(`start-check: exit code ${code} (signal ${signal}) after SIGTERM`);
  failed = true;
}
rmSync(dir, { recursive: true, force: true });
if (!failed) console.log(`start-check: ${what} on Node ${process.version} is ready and stops cleanly`);
process.exit(failed ? 1 : 0);
