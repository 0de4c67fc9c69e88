/**
 * Commands over the admin API (README "Admin API conventions"): agents, connections and the
 * policy set. Each authenticates once as the admin client of `--credentials` (a `deputy:admin`
 * token through `client_credentials`), sends the request, and prints the answer: the JSON as
 * Deputy sent it with `--json`, a short text otherwise. Bodies are the admin API's own
 * snake_case JSON, given with `--data '<json>'` or `--file FILE` (`-` for stdin). The shared
 * list / get / create / update / delete subcommands are ../admin-resource.ts.
 *
 * @module
 */
import { Command } from 'commander';
import { addCreate, addDelete, addGet, addList, addUpdate, jsonBody, path, withAdmin, withBody, type AdminCollection, type BodyOptions } from '../admin-resource.js';
import { printJson, type Io } from '../shared.js';

const AGENTS: AdminCollection = { base: '/admin/agents', member: 'agents', noun: 'agent' };
const CONNECTIONS: AdminCollection = { base: '/admin/connections', member: 'connections', noun: 'connection' };

/** `deputy agents …`. */
export function agentsCommand(io: Io, done: (code: number) => void): Command {
  const cmd = new Command('agents').description('the agent registry (/admin/agents)');
  const out = { io, done };
  const agentLine = (a: Record<string, unknown>) => `${String(a.id)}\t${String(a.status)}\t${String(a.owner)}\t${(a.scopes as string[] | undefined)?.join(' ') ?? ''}`;
  addList(cmd, out, AGENTS, { description: 'registered agents: id, status, owner, scopes (one page)', line: agentLine });
  addGet(cmd, out, AGENTS, { description: 'one agent' });
  addCreate(cmd, out, AGENTS, { description: 'register an agent (body: id, name, owner, scopes, audiences, jwks or jwks_uri, …)', idFrom: 'answer' });
  addUpdate(cmd, out, AGENTS, { description: 'change an agent (a partial body: scopes, audiences, max_delegation_depth, …)' });
  for (const [name, what] of [
    ['disable', 'disable an agent: it can no longer authenticate, and every token it holds (and everything delegated from them) is revoked'],
    ['enable', 'enable a disabled agent'],
  ] as const) {
    cmd
      .command(name)
      .description(what)
      .argument('<id>')
      .action((id: string, _o: unknown, c: Command) =>
        withAdmin(io, done, c, async (admin, g) => {
          const agent = await admin.request('POST', `${path(AGENTS.base, id)}/${name}`);
          if (g.json) printJson(io, agent);
          else io.out(`agent ${id} is ${String((agent as { status: string }).status)}\n`);
        }),
      );
  }
  addDelete(cmd, out, AGENTS, {
    description: 'delete an agent: every token it holds (and everything delegated from them) is revoked, its receipts are kept; a configured agent is deleted by removing it from the file',
    note: (id) => ` (its receipts are kept: deputy receipts export ${id})`,
  });
  return cmd;
}

/** `deputy connections …`. */
export function connectionsCommand(io: Io, done: (code: number) => void): Command {
  const cmd = new Command('connections').description('gateway connections and their write-only secrets (/admin/connections)');
  const out = { io, done };
  const connectionLine = (x: Record<string, unknown>) => `${String(x.id)}\t${String(x.kind)}\t${String((x.settings as Record<string, unknown> | undefined)?.base_url ?? '')}`;
  addList(cmd, out, CONNECTIONS, { description: 'connections: id, kind, base URL', line: connectionLine });
  addGet(cmd, out, CONNECTIONS, { description: 'one connection (settings and secret metadata; never the secret)' });
  addCreate(cmd, out, CONNECTIONS, { description: 'create a connection (body: id, kind, base_url, secret, required_scopes, routes, …)', idFrom: 'body' });
  withBody(cmd.command('rotate-secret').description('replace the secret (body: {"secret": "…"})').argument('<id>')).action((id: string, o: BodyOptions, c: Command) => {
    const body = jsonBody(o);
    return withAdmin(io, done, c, async (admin, g) => {
      const r = await admin.request('POST', `${path(CONNECTIONS.base, id)}/secret`, body);
      if (g.json) printJson(io, r);
      else io.out(`rotated the secret of ${id}\n`);
    });
  });
  addDelete(cmd, out, CONNECTIONS, { description: 'delete a connection with its secrets, users\' tokens and pending connect links' });
  return cmd;
}

/** `deputy policies show | reload`. */
export function policiesCommand(io: Io, done: (code: number) => void): Command {
  const cmd = new Command('policies').description('the Cedar policy set serving now (/admin/policies)');
  cmd
    .command('show')
    .description('generation, digest, policies and warnings of the set serving now')
    .action((_o: unknown, c: Command) => withAdmin(io, done, c, async (admin) => printJson(io, await admin.request('GET', '/admin/policies'))));
  cmd
    .command('reload')
    .description('reload the policy folder on the instance that receives it (exit 3 with the errors when the set is refused; the previous set keeps serving)')
    .action((_o: unknown, c: Command) => withAdmin(io, done, c, async (admin) => printJson(io, await admin.request('POST', '/admin/policies/reload'))));
  return cmd;
}
