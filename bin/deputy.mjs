#!/usr/bin/env node
// The `deputy` executable. In a checkout (src/ and the tsx development dependency present) it
// runs the TypeScript sources through tsx; in a production install (`npm ci --omit=dev` after
// `npm run build`) it runs the compiled dist/. See src/cli/index.ts.
import { existsSync } from 'node:fs';

const source = new URL('../src/cli/index.ts', import.meta.url);
const compiled = new URL('../dist/cli/index.js', import.meta.url);

async function entry() {
  if (existsSync(source)) {
    try {
      const { register } = await import('tsx/esm/api');
      register();
      return source;
    } catch {
      // no tsx (production install): the compiled build below
    }
  }
  if (existsSync(compiled)) return compiled;
  process.stderr.write('deputy: neither tsx (npm install) nor a build (npm run build) is available\n');
  process.exit(1);
}

// A reader that stops early (`deputy --help | head`, `deputy receipts export … | head`) closes
// the pipe: that ends our output, not in an unhandled EPIPE and a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}

const { runCli } = await import((await entry()).href);
process.exitCode = await runCli(process.argv.slice(2));
