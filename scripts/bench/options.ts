/**
 * Command-line options of the bench scripts, one way for all of them: `node:util` `parseArgs`
 * (strict: an unknown option is an error) with `--help` / `-h` listing the options, and every
 * usage error — an unknown option, a missing or malformed value — one line on stderr and exit
 * code 2, never a stack trace (issue 16, thirteenth round: `npm run bench -- --help` threw
 * ERR_PARSE_ARGS_UNKNOWN_OPTION).
 *
 * A script passes its options as to `parseArgs`, each with an optional `description` (shown by
 * `--help`) and `value` check, one of {@link VALUE_KINDS} — `positive integer` for every count
 * (calls, rounds, pairs, clients: `--n=0` printed `Infinity µs`, issue 16 thirteenth round),
 * `non-negative integer` where 0 means "none" (warm-up seconds, extra agents), `positive even
 * integer` where only whole A B B A rounds are sound (the bench's slices a side), `non-negative
 * number`, comma-separated lists of either integer kind — or the list of accepted values. Integers
 * are safe integers (`--n=1e400` is no count).
 *
 * @module
 */
import { basename } from 'node:path';
import { parseArgs as nodeParseArgs, type ParseArgsConfig } from 'node:util';

/** The typed value kinds, each with its test and how a usage error names it. */
const VALUE_KINDS = {
  'positive integer': { test: (v: string) => isInteger(v, 1), what: 'a whole number ≥ 1' },
  // Slices a side (index.ts --slices): the order A B B A … cancels a linear drift over whole round pairs only.
  'positive even integer': { test: (v: string) => isInteger(v, 2) && Number(v) % 2 === 0, what: 'an even whole number ≥ 2' },
  'non-negative integer': { test: (v: string) => isInteger(v, 0), what: 'a whole number ≥ 0' },
  'non-negative number': { test: (v: string) => /^\d+(\.\d+)?(e-?\d+)?$/i.test(v) && Number.isFinite(Number(v)), what: 'a number ≥ 0' },
  'positive integers': { test: (v: string) => v.split(',').every((x) => isInteger(x, 1)), what: 'comma-separated whole numbers ≥ 1' },
  'non-negative integers': { test: (v: string) => v.split(',').every((x) => isInteger(x, 0)), what: 'comma-separated whole numbers ≥ 0' },
} as const;

/** What a value must look like: a kind of {@link VALUE_KINDS}, or the list of accepted values. */
export type ValueCheck = keyof typeof VALUE_KINDS | readonly string[];

function isInteger(value: string, min: number): boolean {
  return /^\d+$/.test(value) && Number.isSafeInteger(Number(value)) && Number(value) >= min;
}

/** One option: `parseArgs`'s, with its help text and value check. */
export type BenchOption = NonNullable<ParseArgsConfig['options']>[string] & { description?: string; value?: ValueCheck };

/** `parseArgs`'s configuration with {@link BenchOption}s. */
export type BenchArgsConfig = Omit<ParseArgsConfig, 'options' | 'strict'> & { options: Record<string, BenchOption>; usage?: string };

/** A usage error: printed as one line, exit code 2. */
export class UsageError extends Error {}

/**
 * `parseArgs` for a bench script (`script`: its `import.meta.url`): `--help` prints the options
 * and exits 0; a usage error prints one line and exits 2.
 */
export function parseArgs<T extends BenchArgsConfig>(script: string, config: T): ReturnType<typeof nodeParseArgs<T & { strict: true }>> {
  const name = basename(new URL(script).pathname);
  const args = config.args ?? process.argv.slice(2);
  if (args.some((a) => a === '--help' || a === '-h')) {
    process.stdout.write(helpText(name, config));
    process.exit(0);
  }
  try {
    return parseOrThrow(config, args);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`${name}: ${err.message} (see --help)\n`);
    process.exit(2);
  }
}

/**
 * The parse itself, for tests: throws {@link UsageError} for an unknown option, a missing or
 * malformed value, an unexpected positional argument.
 */
export function parseOrThrow<T extends BenchArgsConfig>(config: T, args: readonly string[]): ReturnType<typeof nodeParseArgs<T & { strict: true }>> {
  const options: NonNullable<ParseArgsConfig['options']> = {};
  for (const [key, { description: _d, value: _v, ...option }] of Object.entries(config.options)) options[key] = option;
  let parsed;
  try {
    parsed = nodeParseArgs({ ...(config.allowPositionals === undefined ? {} : { allowPositionals: config.allowPositionals }), options, args: [...args], strict: true });
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) throw new UsageError((err as Error).message.split('\n')[0]!.replace(/\. To specify a positional argument starting with a '-'.*$/, ''));
    throw err;
  }
  for (const [key, option] of Object.entries(config.options)) {
    const given = (parsed.values as Record<string, unknown>)[key];
    if (option.value === undefined || typeof given !== 'string') continue;
    checkValue(key, given, option.value);
  }
  return parsed as ReturnType<typeof nodeParseArgs<T & { strict: true }>>;
}

function checkValue(key: string, given: string, check: ValueCheck): void {
  if (typeof check !== 'string') {
    if (!check.includes(given)) throw new UsageError(`--${key} must be one of ${check.join(', ')}, not "${given.slice(0, 64)}"`);
    return;
  }
  const { test, what } = VALUE_KINDS[check];
  if (!test(given)) throw new UsageError(`--${key} must be ${what}, not "${given.slice(0, 64)}"`);
}

/** The `--help` text: usage, then one line an option (value, default, description). */
export function helpText(name: string, config: BenchArgsConfig): string {
  const lines = [`usage: ${name} [options]${config.allowPositionals ? ' [arguments]' : ''}`];
  if (config.usage) lines.push('', config.usage);
  lines.push('', 'options:');
  const rows = Object.entries(config.options).map(([key, o]) => {
    const flag = `${o.short ? `-${o.short}, ` : ''}--${key}${o.type === 'string' ? ` <${valueName(o.value)}>` : ''}`;
    const notes = [o.description, o.default !== undefined && o.default !== false && o.default !== '' ? `default: ${String(o.default)}` : undefined].filter(Boolean).join('; ');
    return [flag, notes] as const;
  });
  rows.push(['-h, --help', 'this list']);
  const width = Math.max(...rows.map(([f]) => f.length));
  for (const [flag, notes] of rows) lines.push(`  ${flag.padEnd(width)}  ${notes}`.trimEnd());
  return `${lines.join('\n')}\n`;
}

function valueName(check: ValueCheck | undefined): string {
  if (check === undefined) return 'value';
  if (typeof check !== 'string') return check.join('|');
  return check.endsWith('integers') ? 'n,n,…' : check.endsWith('integer') ? 'n' : 'number';
}
