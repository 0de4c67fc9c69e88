/**
 * What every command reads from the command line beyond its own options: the global options
 * (`--url`, `--credentials`, `--json`) with their environment fallbacks, and where to write.
 *
 * @module
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { UsageError } from './errors.js';

export interface GlobalOptions {
  /** Deputy's base URL (its issuer): `--url`, else `DEPUTY_URL`, else the credentials' issuer, else http://localhost:3000. */
  url?: string;
  /** Client credentials file: `--credentials`, else `DEPUTY_CREDENTIALS`, else `<keys dir>/admin-client.json`. */
  credentials: string;
  /** Machine-readable output. */
  json: boolean;
}

/** Where the CLI writes: stdout for results, stderr for diagnostics (tests capture both). */
export interface Io {
  out(text: string): void;
  err(text: string): void;
  env: Readonly<Record<string, string | undefined>>;
}

export const DEFAULT_URL = 'http://localhost:3000';

/** The default credentials file: `admin-client.json` in `DEPUTY_KEYS_DIR` (default `./keys`). */
export function defaultCredentialsFile(env: Io['env']): string {
  return join(env.DEPUTY_KEYS_DIR || 'keys', 'admin-client.json');
}

/** The global options as seen from `command` (options given before or after the command name). */
export function globals(command: Command, io: Io): GlobalOptions {
  const o = command.optsWithGlobals<{ url?: string; credentials?: string; json?: boolean }>();
  return {
    ...(o.url || io.env.DEPUTY_URL ? { url: o.url || io.env.DEPUTY_URL } : {}),
    credentials: o.credentials || io.env.DEPUTY_CREDENTIALS || defaultCredentialsFile(io.env),
    json: o.json === true,
  };
}

/** Prints `value` as JSON (one document, two-space indent) followed by a newline. */
export function printJson(io: Io, value: unknown): void {
  io.out(`${JSON.stringify(value, null, 2)}\n`);
}

/**
 * Deputy's URL for a command: `--url` / `DEPUTY_URL`, else the `issuer` recorded in the
 * credentials file (when readable), else {@link DEFAULT_URL}.
 */
export function resolveUrl(g: GlobalOptions, _io: Io): string {
  if (g.url) return g.url;
  try {
    const doc = JSON.parse(readFileSync(g.credentials, 'utf8')) as { issuer?: unknown };
    if (typeof doc.issuer === 'string') return doc.issuer;
  } catch {
    // no readable credentials file: the command will say so when it needs it
  }
  return DEFAULT_URL;
}

/**
 * A URL the user typed (or a server announced) as a base for paths: without its trailing slash,
 * so `${base}/admin` has one. Deputy's own configuration normalizes its issuer the same way.
 */
export function baseOf(url: string): string {
  return url.endsWith('/') ? url.slice(0, -1) : url;
}

const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]']);

/**
 * Checks a Deputy URL: `https:`, or `http:` on a loopback host (development).
 * @returns whether openid-client must be told to allow plain HTTP.
 * @throws UsageError for anything else.
 */
export function insecureAllowed(url: string): boolean {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UsageError(`${url}: not a URL`);
  }
  if (u.protocol === 'https:') return false;
  if (u.protocol === 'http:' && LOOPBACK.has(u.hostname)) return true;
  throw new UsageError(`${url}: only https: URLs (or http: on localhost, for development) are accepted`);
}
