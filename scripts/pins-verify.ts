/**
 * `npm run pins:verify -- FILE [--jwks FILE]…`
 *
 * Verifies an export of an MCP server's tool pins (`GET /admin/mcp-servers/{id}/pins`, JSON)
 * offline: each pin's signature with a trusted key, its claims, and each exported definition
 * against the pinned digest. With `--jwks` (repeatable; a JWK Set file such as `/receipts/jwks`
 * saved, with `--issuer` naming whose it is), only those keys are trusted; without, the
 * export's own `signers`.
 *
 * Exit codes: 0 every pin verifies, 1 problems found, 2 usage or unreadable input.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { JSONWebKeySet } from 'jose';
import { verifyPinExport, type PinExport } from '../src/mcp/verify.js';

const USAGE = 'usage: npm run pins:verify -- FILE [--issuer ISS --jwks FILE]…';

try {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { jwks: { type: 'string', multiple: true }, issuer: { type: 'string', multiple: true } } });
  if (positionals.length !== 1) throw new Error(USAGE);
  const exported = JSON.parse(readFileSync(positionals[0]!, 'utf8')) as PinExport;
  const jwks = values.jwks ?? [];
  const issuers = values.issuer ?? [];
  if (jwks.length !== issuers.length) throw new Error(`${USAGE}\n(each --jwks needs its --issuer)`);
  const signers = jwks.map((file, i) => ({ issuer: issuers[i]!, jwks: JSON.parse(readFileSync(file, 'utf8')) as JSONWebKeySet }));
  const report = await verifyPinExport(exported, signers.length ? signers : exported.signers);
  for (const p of report.problems) process.stdout.write(`${p.tool}: ${p.code}: ${p.message}\n`);
  process.stdout.write(report.ok ? `OK: ${report.verified} pins of "${report.server}" verify\n` : `FAILED: ${report.problems.length} of ${exported.pins.length} pins\n`);
  process.exit(report.ok ? 0 : 1);
} catch (err) {
  process.stderr.write(`pins:verify: ${(err as Error).message}\n`);
  process.exit(2);
}
