/**
 * The bench scripts' options (scripts/bench/options.ts): `--help` lists them and exits 0; an
 * unknown option or a malformed value is one line on stderr and exit code 2 — never a stack
 * trace (`npm run bench -- --help` threw ERR_PARSE_ARGS_UNKNOWN_OPTION before).
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { helpText, parseOrThrow, UsageError, type BenchArgsConfig } from '../../scripts/bench/options.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const config = {
  options: {
    n: { type: 'string', default: '100', value: 'positive integer', description: 'requests' },
    levels: { type: 'string', value: 'positive integers' },
    cache: { type: 'string', default: 'on', value: ['on', 'off'] },
    ratio: { type: 'string', value: 'non-negative number' },
    warm: { type: 'string', value: 'non-negative integer' },
    only: { type: 'string', value: 'non-negative integers' },
    quick: { type: 'boolean', default: false },
  },
} satisfies BenchArgsConfig;

describe('bench options', () => {
  it('parse what is declared, with defaults', () => {
    expect(parseOrThrow(config, ['--n', '5', '--levels', '1,8,32', '--quick', '--ratio=0.5e3', '--warm=0', '--only=0,2']).values).toMatchObject({ n: '5', levels: '1,8,32', cache: 'on', quick: true, ratio: '0.5e3', warm: '0', only: '0,2' });
  });

  it('refuse an unknown option, a missing or malformed value, a positional argument, each with a one-line UsageError', () => {
    const bad: Array<[string[], RegExp]> = [
      [['--nope'], /Unknown option '--nope'/],
      [['--n'], /--n/],
      [['--n', 'x'], /--n must be a whole number ≥ 1, not "x"/],
      [['--n', '-1'], /--n/],
      [['--n=0'], /--n must be a whole number ≥ 1, not "0"/],
      [['--n=-3'], /--n must be a whole number ≥ 1, not "-3"/],
      [['--n=1.5'], /--n must be a whole number ≥ 1/],
      [['--n=1e3'], /--n must be a whole number ≥ 1/],
      [[`--n=${'9'.repeat(400)}`], /--n must be a whole number ≥ 1/],
      [['--levels', '8,'], /--levels must be comma-separated whole numbers ≥ 1/],
      [['--levels', '8,0'], /--levels must be comma-separated whole numbers ≥ 1/],
      [['--cache', 'maybe'], /--cache must be one of on, off/],
      [['--ratio', 'NaN'], /--ratio must be a number ≥ 0/],
      [['--ratio=-1'], /--ratio must be a number ≥ 0/],
      [['--warm=-1'], /--warm must be a whole number ≥ 0/],
      [['--only', '0,x'], /--only must be comma-separated whole numbers ≥ 0/],
      [['extra'], /positional/i],
      [['--quick=yes'], /--quick/],
    ];
    for (const [args, message] of bad) {
      let err: unknown;
      try {
        parseOrThrow(config, args);
      } catch (e) {
        err = e;
      }
      expect(err, args.join(' ')).toBeInstanceOf(UsageError);
      expect((err as Error).message).toMatch(message);
      expect((err as Error).message).not.toContain('\n');
    }
  });

  it('list every option with its value, default and description', () => {
    const text = helpText('x.ts', config);
    expect(text).toMatch(/^usage: x\.ts \[options\]/);
    for (const line of [/--n <n>\s+requests; default: 100/, /--levels <n,n,…>/, /--cache <on\|off>\s+default: on/, /--quick\n/, /-h, --help/]) expect(text).toMatch(line);
  });

  it('npm run bench -- --help lists the options (exit 0); an unknown or malformed option is one line and exit 2', () => {
    const run = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', 'scripts/bench/index.ts', ...args], { cwd: REPO, encoding: 'utf8', timeout: 60_000 });
    const help = run('--help');
    expect(help.status).toBe(0);
    expect(help.stdout).toContain('--duration-ms <n>');
    expect(help.stdout).toContain('--concurrency <n,n,…>');
    for (const args of [['--nope'], ['--concurrency', '8,x']]) {
      const bad = run(...args);
      expect(bad.status).toBe(2);
      expect(bad.stderr.trim().split('\n')).toHaveLength(1);
      expect(bad.stderr).toMatch(/^index\.ts: .*\(see --help\)\n$/);
      expect(bad.stderr).not.toMatch(/\n\s+at /);
    }
  });

  it('npm run bench -- --slices refuses an odd count (exit 2): A B B A … cancels a linear drift over whole round pairs only (red team, fourteenth round)', () => {
    // --slices 1 was A's window then B's (the sequential method the pairs replaced); --slices 3 left
    // A at mean position 2.33 and B at 2.67 — a drift no longer cancels, yet the report said it did.
    expect(() => parseOrThrow({ options: { slices: { type: 'string', value: 'positive even integer' } } }, ['--slices', '3'])).toThrow(UsageError);
    expect(parseOrThrow({ options: { slices: { type: 'string', value: 'positive even integer' } } }, ['--slices', '6']).values.slices).toBe('6');
    const run = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', 'scripts/bench/index.ts', ...args], { cwd: REPO, encoding: 'utf8', timeout: 60_000 });
    for (const n of ['1', '3']) {
      const bad = run('--slices', n);
      expect(bad.status).toBe(2);
      expect(bad.stderr).toMatch(/^index\.ts: --slices must be an even whole number ≥ 2, not "\d"/);
    }
  });

  it('every bench script takes its options through the helper: receipt-statement-parts.ts --help exits 0, a malformed option is one line and exit 2', () => {
    // A script added alongside the helper (issue 16, thirteenth round) kept node:util's parseArgs:
    // --help was a stack trace and --n abc benched NaN statements.
    const bench = new URL('../../scripts/bench/', import.meta.url);
    const raw = readdirSync(bench).filter((f) => f.endsWith('.ts') && f !== 'options.ts' && /from 'node:util'/.test(readFileSync(new URL(f, bench), 'utf8')) && /\bparseArgs\b/.test(readFileSync(new URL(f, bench), 'utf8')));
    expect(raw).toEqual([]);
    const run = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', 'scripts/bench/receipt-statement-parts.ts', ...args], { cwd: REPO, encoding: 'utf8', timeout: 60_000 });
    const help = run('--help');
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/--only <n,n,…>/);
    const bad = run('--n', 'abc');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/^receipt-statement-parts\.ts: --n must be a whole number ≥ 1, not "abc" \(see --help\)\n$/);
  });

  it('every count of every bench script is a typed value: digest-micro.ts refuses --n=0, --n=-3, --n=abc, --pairs=1.5 (exit 2, one line naming the option); no script reads a number from an unchecked option', () => {
    // --n=0 printed "Infinity µs" (issue 16, thirteenth round): a count of 0 divided by.
    for (const [arg, option] of [['--n=0', 'n'], ['--n=-3', 'n'], ['--n=abc', 'n'], ['--pairs=1.5', 'pairs']] as const) {
      const bad = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/bench/digest-micro.ts', arg], { cwd: REPO, encoding: 'utf8', timeout: 60_000 });
      expect(bad.status, arg).toBe(2);
      expect(bad.stderr).toMatch(new RegExp(`^digest-micro\\.ts: --${option} must be a whole number ≥ 1, not ".*" \\(see --help\\)\n$`));
    }
    // Statically, for every script: an option whose value becomes a number (`Number(values.x)`)
    // declares a value kind, so the helper refuses what is no such number.
    const bench = new URL('../../scripts/bench/', import.meta.url);
    const unchecked: string[] = [];
    for (const file of readdirSync(bench).filter((f) => f.endsWith('.ts'))) {
      const text = readFileSync(new URL(file, bench), 'utf8');
      for (const [, dotted, quoted] of text.matchAll(/Number\(values(?:\.(\w+)|\['([\w-]+)'\])/g)) {
        const name = (dotted ?? quoted)!;
        const declared = new RegExp(`(?:'${name}'|\\b${name}): \\{[^}]*\\}`).exec(text)?.[0];
        if (!declared?.includes('value:')) unchecked.push(`${file}: --${name}`);
      }
    }
    expect(unchecked).toEqual([]);
  });
});
