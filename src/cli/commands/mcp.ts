/**
 * `deputy mcp …`: MCP servers behind the MCP gateway and their signed tool pins
 * (`/admin/mcp-servers`, README "MCP gateway"), and offline verification of a pin export.
 *
 * - `servers` / `get` / `create` / `delete` — the servers.
 * - `tools <server>` — the live tools with each one's digest and pin verdict (what to review).
 * - `approve <server> [tool…]` — Deputy signs the live definitions (all tools when none named).
 * - `import <server>` — pins signed offline by a publisher (body `{"pins": [{"jws", "definition"?}]}`).
 * - `pins <server>` — the export: pins with the keys that verify them (`-o FILE`).
 * - `revoke <server> <tool>` — remove a pin (the tool is then unpinned).
 * - `verify <file>` — verify an export offline (exit 0 verified, 1 problems, 2 usage).
 *
 * @module
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { Command } from 'commander';
import type { JSONWebKeySet } from 'jose';
import type { PinExport } from '../../mcp/verify.js';
import { CliError, EXIT, UsageError } from '../errors.js';
import { globals, printJson, type Io } from '../shared.js';
import { addCreate, addDelete, addGet, addList, jsonBody, path, printList, withAdmin, withBody, type AdminCollection, type BodyOptions } from '../admin-resource.js';

const SERVERS = '/admin/mcp-servers';
const COLLECTION: AdminCollection = { base: SERVERS, member: 'mcp_servers', noun: 'MCP server' };

/** The `mcp` command and its subcommands. */
export function mcpCommand(io: Io, done: (code: number) => void): Command {
  const cmd = new Command('mcp').description('MCP servers behind the MCP gateway and their signed tool pins (/admin/mcp-servers)');
  const out = { io, done };
  const serverLine = (x: Record<string, unknown>) => {
    const s = (x.settings ?? {}) as Record<string, unknown>;
    return `${String(x.id)}\t${String(s.url ?? '')}\tpinning=${String(s.pinning ?? '')}`;
  };
  addList(cmd, out, COLLECTION, { name: 'servers', description: 'MCP servers: id, upstream URL, pinning', line: serverLine, paged: false });
  addGet(cmd, out, COLLECTION, { description: 'one MCP server', argument: 'server' });
  addCreate(cmd, out, COLLECTION, { description: 'create an MCP server (body: id, url, connection, required_scopes, pinning, …)', idFrom: 'body' });
  addDelete(cmd, out, COLLECTION, { description: 'delete an MCP server created through the API, with its pins', argument: 'server' });
  cmd
    .command('tools')
    .description("the server's live tools: name, digest, pin verdict (pinned, changed, unpinned, invalid) and what changed")
    .argument('<server>')
    .action((id: string, _o: unknown, c: Command) =>
      withAdmin(io, done, c, async (admin, g) => {
        const doc = await admin.request('GET', `${path(SERVERS, id)}/tools`);
        printList(io, g, doc, 'tools', (t) => `${String(t.name)}\t${String(t.pin)}${Array.isArray(t.changed) ? ` (${t.changed.join(', ')} changed)` : ''}\t${String(t.digest)}`);
      }),
    );
  cmd
    .command('approve')
    .description("sign the server's live definitions of these tools (all of them when none is named); re-approval replaces a pin")
    .argument('<server>')
    .argument('[tools...]')
    .action((id: string, tools: string[], _o: unknown, c: Command) =>
      withAdmin(io, done, c, async (admin, g) => {
        const doc = await admin.request('POST', `${path(SERVERS, id)}/pins`, { approve: tools.length ? tools : 'all' });
        printList(io, g, doc, 'pins', (p) => `${String(p.tool)}\t${String(p.digest)}`);
      }),
    );
  withBody(cmd.command('import').description('import pins signed offline (body: {"pins": [{"jws": "…", "definition": {…}}]})').argument('<server>')).action((id: string, o: BodyOptions, c: Command) => {
    const body = jsonBody(o);
    return withAdmin(io, done, c, async (admin, g) => {
      const doc = await admin.request('POST', `${path(SERVERS, id)}/pins`, body);
      printList(io, g, doc, 'pins', (p) => `${String(p.tool)}\t${String(p.digest)}\t${String(p.signer)}`);
    });
  });
  cmd
    .command('pins')
    .description("the server's pins with the keys that verify them (JSON; verify it with `deputy mcp verify`)")
    .argument('<server>')
    .option('-o, --output <file>', 'write to FILE instead of stdout')
    .action((id: string, o: { output?: string }, c: Command) =>
      withAdmin(io, done, c, async (admin) => {
        const doc = await admin.request('GET', `${path(SERVERS, id)}/pins`);
        if (o.output) writeFileSync(o.output, `${JSON.stringify(doc, null, 2)}\n`);
        else printJson(io, doc);
      }),
    );
  cmd
    .command('revoke')
    .description("remove a tool's pin (the tool is then unpinned)")
    .argument('<server>')
    .argument('<tool>')
    .action((id: string, tool: string, _o: unknown, c: Command) =>
      withAdmin(io, done, c, async (admin, g) => {
        await admin.request('DELETE', path(SERVERS, id, 'pins', tool));
        if (g.json) printJson(io, { revoked: tool });
        else io.out(`revoked the pin of ${tool}\n`);
      }),
    );
  cmd
    .command('verify')
    .description('verify a pin export offline: signatures, claims, definitions (exit 0 verified, 1 problems, 2 usage)')
    .argument('<file>', 'an export of `deputy mcp pins`')
    .option('--issuer <iss...>', 'trust only these signers (with --jwks, in the same order)')
    .option('--jwks <file...>', "their JWK Sets (e.g. Deputy's /receipts/jwks saved); default: the export's own signers")
    .action(async (file: string, o: { issuer?: string[]; jwks?: string[] }, c: Command) => {
      done(await verifyPins(io, file, o, globals(c, io).json));
    });
  return cmd;
}

/** `mcp verify FILE`: 0 when every pin verifies, 1 when problems are found. */
async function verifyPins(io: Io, file: string, o: { issuer?: string[]; jwks?: string[] }, json: boolean): Promise<number> {
  const issuers = o.issuer ?? [];
  const jwks = o.jwks ?? [];
  if (issuers.length !== jwks.length) throw new UsageError('give one --jwks per --issuer');
  let exported: PinExport;
  let signers;
  try {
    exported = JSON.parse(readFileSync(file, 'utf8')) as PinExport;
    signers = jwks.map((f, i) => ({ issuer: issuers[i]!, jwks: JSON.parse(readFileSync(f, 'utf8')) as JSONWebKeySet }));
  } catch (err) {
    throw new CliError(`cannot read ${(err as NodeJS.ErrnoException).path ?? file}: ${(err as Error).message.split('\n')[0]}`);
  }
  if (!exported || !Array.isArray(exported.pins) || typeof exported.server !== 'string') throw new CliError(`${file} is not a pin export`);
  // The verifier (jose, canonicalize) loads when a verification runs, not at the CLI's start.
  const { verifyPinExport } = await import('../../mcp/verify.js');
  const report = await verifyPinExport(exported, signers.length ? signers : exported.signers);
  if (json) printJson(io, report);
  else {
    for (const p of report.problems) io.out(`${p.tool}: ${p.code}: ${p.message}\n`);
    io.out(report.ok ? `OK: ${report.verified} pins of "${report.server}" verify\n` : `FAILED: ${report.problems.length} of ${exported.pins.length} pins\n`);
  }
  return report.ok ? EXIT.ok : EXIT.failure;
}
