/**
 * Every README snippet runs, so none can drift (README "Development" describes the convention):
 * each fenced block is tagged `run`, `output` or `no-run`; `sh run` blocks run in README order as
 * one bash session against a `deputy dev` environment started here, `ts run` blocks run with tsx
 * inside that session, `yaml run` blocks are validated as configuration files.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { validateConfig } from '../../src/config/load.js';
import { quickStartCommands, startDevEnvironment, type DevEnvironment } from '../../src/dev/environment.js';
import { createLogger } from '../../src/log.js';

const run = promisify(execFile);
const REPO = resolve('.');
const TAGS = new Set(['run', 'output', 'no-run']);
const RUNNABLE = new Set(['sh', 'ts', 'yaml']);
/** tsx's loader by path: the session's working folder is outside the repository. */
const TSX = pathToFileURL(join(REPO, 'node_modules/tsx/dist/loader.mjs')).href;

interface Block {
  lang: string;
  tag: string;
  body: string;
  /** 1-based line of the opening fence. */
  line: number;
}

/** The fenced code blocks of a Markdown text (``` fences, info string = language and tag). */
export function fencedBlocks(markdown: string): Block[] {
  const lines = markdown.split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i += 1) {
    const open = /^```(\S*)\s*(.*)$/.exec(lines[i]!);
    if (!open) continue;
    const start = i;
    const body: string[] = [];
    for (i += 1; i < lines.length && lines[i] !== '```'; i += 1) body.push(lines[i]!);
    blocks.push({ lang: open[1]!, tag: open[2]!.trim(), body: body.join('\n'), line: start + 1 });
  }
  return blocks;
}

const blocks = fencedBlocks(readFileSync('README.md', 'utf8'));

describe('README snippets', () => {
  it('every fenced block is tagged run, output or no-run (and run only for sh, ts, yaml)', () => {
    const untagged = blocks.filter((b) => !TAGS.has(b.tag) || (b.tag === 'run' && !RUNNABLE.has(b.lang)));
    expect(untagged.map((b) => `README.md:${b.line} \`\`\`${b.lang} ${b.tag}`)).toEqual([]);
    expect(blocks.filter((b) => b.tag === 'run').length).toBeGreaterThanOrEqual(8);
  });

  it('every yaml run block is a valid configuration', () => {
    for (const b of blocks.filter((x) => x.tag === 'run' && x.lang === 'yaml')) {
      expect(() => validateConfig(parse(b.body), `README.md:${b.line}`), `README.md:${b.line}`).not.toThrow();
    }
  });
});

describe('README sh and ts snippets, in order, against deputy dev', { timeout: 300_000 }, () => {
  let dev: DevEnvironment;
  let tmp: string;
  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'deputy-readme-'));
    dev = await startDevEnvironment({ port: 0, idpPort: 0, dir: join(tmp, '.deputy-dev'), logger: createLogger('silent') });
  });
  afterAll(async () => {
    await dev?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  /** The session script: every sh run block, and every ts run block as a tsx run, with this environment's addresses. */
  function session(): { script: string; tsFiles: string[] } {
    const tsFiles: string[] = [];
    const parts = ['set -euo pipefail', 'set -a', 'curl() { command curl --silent --show-error --fail-with-body "$@"; }'];
    for (const b of blocks.filter((x) => x.tag === 'run' && x.lang !== 'yaml')) {
      const body = b.body
        .replaceAll('http://localhost:3000', dev.deputy.issuer)
        .replaceAll('http://127.0.0.1:3001', dev.idp.issuer)
        .replaceAll('"$PWD/bin/deputy.mjs"', `"${REPO}/bin/deputy.mjs"`);
      parts.push(`echo "::README.md:${b.line}"`);
      if (b.lang === 'sh') parts.push(body);
      else {
        // Inside the repository, so the snippet's imports resolve; its working folder stays the session's.
        const file = join(REPO, `.readme-snippet-${process.pid}-${b.line}.mts`);
        tsFiles.push(file);
        parts.push(`cat > '${file}' <<'DEPUTY_README_TS'\n${body}\nDEPUTY_README_TS`, `node --import '${TSX}' '${file}'`);
      }
    }
    return { script: parts.join('\n'), tsFiles };
  }

  it('the quick start block is exactly what deputy dev prints', () => {
    const first = blocks.find((b) => b.tag === 'run' && b.lang === 'sh')!;
    expect(quickStartCommands('http://localhost:3000', 'http://127.0.0.1:3001', '.deputy-dev')).toBe(`${first.body}\n`);
    expect(dev.instructions).toContain(quickStartCommands(dev.deputy.issuer, dev.idp.issuer, dev.files.dir));
    expect(dev.instructions).toMatch(/^DEVELOPMENT ONLY/m);
  });

  it('runs every sh and ts run block as one session, with the results the README shows', async () => {
    const { script, tsFiles } = session();
    const { DEPUTY_URL: _u, DEPUTY_CREDENTIALS: _c, DEPUTY_CONFIG: _d, ...env } = process.env;
    let result: { stdout: string; stderr: string };
    try {
      result = await run('bash', ['-c', script], { cwd: tmp, env, maxBuffer: 16 << 20 });
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string };
      throw new Error(`README session failed (exit ${e.code}); last block: ${e.stdout.match(/::README\.md:\d+/g)?.at(-1)}\nstdout:\n${e.stdout.slice(-3000)}\nstderr:\n${e.stderr.slice(-3000)}`);
    } finally {
      for (const f of tsFiles) rmSync(f, { force: true });
    }
    const out = result.stdout;
    expect(out).toContain('"x-api-key":"[redacted]"'); // the quick start's gateway call
    expect(out).toContain('{"decision":true}'); // its evaluation
    expect(out).toMatch(/crm\.delete_customer.*needs the scope \\"crm\.write\\"[^\n]*\nexit 3\n/); // deputy call, refused
    expect(out).toMatch(/"decision":false,"context":\{"id":"not_permitted".*agent \\"researcher\\" \(link 1 of 1\) may not \\"delete\\"/);
    expect(out).toMatch(/^dpop crm\.read \d+$/m); // the openid-client snippet
    expect(out).toMatch(/mailer\tdisabled\tbob@example.com/); // the admin API, then deputy agents list
    expect(out).toMatch(/^OK: every signature, sequence and link verifies$/m); // the receipts
    expect(out).toMatch(/^deputy_token_exchanges_total\{outcome="issued",error="none"\} [1-9]\d*$/m); // the metrics scrape
  });
});
