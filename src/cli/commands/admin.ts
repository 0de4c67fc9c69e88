/**
 * Commands over the admin API (README "Admin API conventions"): agents, connections and the
 * policy set. Each authenticates once as the admin client of `--credentials` (a `deputy:admin`
 * token through `client_credentials`), sends the request, and prints the answer: the JSON as
 * Deputy sent it with `--json`, a short text otherwise. Bodies are the admin API's own
 * snake_case JSON, given with `--data '<json>'` or `--file FILE` (`-` for stdin).
 *
 * @module
 */
import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { adminClient, type AdminClient } from '../admin-client.js';
import { EXIT, UsageError } from '../errors.js';
import { globals, printJson, resolveUrl, type GlobalOptions, type Io } from '../shared.js';

export interface BodyOptions {
  data?: string;
  file?: string;
}

/** The JSON body of a write. @throws UsageError when none or both are given, or it is not a JSON object. */
export function jsonBody(o: BodyOptions): Record<string, unknown> {
  if ((o.data === undefined) === (o.file === undefined)) throw new UsageError('give the body with exactly one of --data JSON or --file FILE');
  let text: string;
  try {
    text = o.data ?? readFileSync(o.file === '-' ? 0 : o.file!, 'utf8');
  } catch (err) {
    throw new UsageError(`${o.file}: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new UsageError(`the body is not valid JSON`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new UsageError('the body must be a JSON object');
  return doc as Record<string, unknown>;
}

export const withBody = (c: Command): Command =>
  c.option('-d, --data <json>', 'the JSON body').option('-f, --file <file>', 'read the JSON body from FILE (- for stdin)');

/** `--limit <n>`: an admin list's page size, 1-200. @throws UsageError (exit 2) outside that range. */
export const limitOption = (): Option =>
  new Option('--limit <n>', 'page size, 1-200 (default 50)').argParser((v: string) => {
    if (!/^\d{1,3}$/.test(v) || Number(v) < 1 || Number(v) > 200) throw new UsageError('--limit must be an integer from 1 to 200');
    return Number(v);
  });

export type Run = (admin: AdminClient, g: GlobalOptions) => Promise<void>;

/** Runs `fn` with an authenticated admin client; the command's global options decide the output. */
export function withAdmin(io: Io, done: (code: number) => void, c: Command, fn: Run): Promise<void> {
  const g = globals(c, io);
  return adminClient(resolveUrl(g, io), g.credentials)
    .then((admin) => fn(admin, g))
    .then(() => done(EXIT.ok));
}

export const path = (...parts: string[]) => parts.map((p, i) => (i === 0 ? p : encodeURIComponent(p))).join('/');

export function printList(io: Io, g: GlobalOptions, doc: unknown, member: string, line: (item: Record<string, unknown>) => string): void {
  if (g.json) return printJson(io, doc);
  const d = doc as Record<string, unknown>;
  const items = (d[member] as Array<Record<string, unknown>>) ?? [];
  io.out(items.map((i) => `${line(i)}\n`).join('') || `(no ${member})\n`);
  if (d.next_cursor) io.out(`more: --cursor ${String(d.next_cursor)}\n`);
}

/** `deputy agents …`. */
export function agentsCommand(io: Io, done: (code: number) => void): Command {
  const cmd = new Command('agents').description('the agent registry (/admin/agents)');
  const agentLine = (a: Record<string, unknown>) => `${String(a.id)}\t${String(a.status)}\t${String(a.owner)}\t${(a.scopes as string[] | undefined)?.join(' ') ?? ''}`;
  cmd
    .command('list')
    .description('registered agents: id, status, owner, scopes (one page)')
    .addOption(limitOption())
    .option('--cursor <cursor>', 'the next_cursor of the previous page')
    .action((o: { limit?: number; cursor?: string }, c: Command) =>
      withAdmin(io, done, c, async (admin, g) => {
        const q = new URLSearchParams();
        if (o.limit) q.set('limit', String(o.limit));
        if (o.cursor) q.set('cursor', o.cursor);
        printList(io, g, await admin.request('GET', `/admin/agents${q.size ? `?${q}` : ''}`), 'agents', agentLine);
      }),
    );
  cmd
    .command('get')
    .description('one agent')
    .argument('<id>')
    .action((id: string, _o: unknown, c: Command) => withAdmin(io, done, c, async (admin) => printJson(io, await admin.request('GET', path('/admin/agents', id)))));
  withBody(cmd.command('create').description('register an agent (body: id, name, owner, scopes, audiences, jwks or jwks_uri, …)')).action((o: BodyOptions, c: Command) => {
    const body = jsonBody(o);
    return withAdmin(io, done, c, async (admin, g) => {
      const agent = await admin.request('POST', '/admin/agents', body);
      if (g.json) printJson(io, agent);
      else io.out(`created agent ${String((agent as { id: string }).id)}\n`);
    });
  });
  withBody(cmd.command('update').description('change an agent (a partial body: scopes, audiences, max_delegation_depth, …)').argument('<id>')).action(
    (id: string, o: BodyOptions, c: Command) => {
      const body = jsonBody(o);
      return withAdmin(io, done, c, async (admin) => printJson(io, await admin.request('PATCH', path('/admin/agents', id), body)));
    },
  );
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
          const agent = await admin.request('POST', `${path('/admin/agents', id)}/${name}`);
          if (g.json) printJson(io, agent);
          else io.out(`agent ${id} is ${String((agent as { status: string }).status)}\n`);
        }),
      );
  }
  cmd
    .command('delete')
    .description('delete an agent: every token it holds (and everything delegated from them) is revoked, its receipts are kept; a configured agent is deleted by removing it from the file')
    .argument('<id>')
    .action((id: string, _o: unknown, c: Command) =>
      withAdmin(io, done, c, async (admin, g) => {
        await admin.request('DELETE', path('/admin/agents', id));
        if (g.json) printJson(io, { deleted: id });
        else io.out(`deleted agent ${id} (its receipts are kept: deputy receipts export ${id})\n`);
      }),
    );
  return cmd;
}

/** `deputy connections …`. */
export function connectionsCommand(io: Io, done: (code: number) => void): Command {
  const cmd = new Command('connections').description('gateway connections and their write-only secrets (/admin/connections)');
  cmd
    .command('list')
    .description('connections: id, kind, base URL')
    .addOption(limitOption())
    .option('--cursor <cursor>', 'the next_cursor of the previous page')
    .action((o: { limit?: number; cursor?: string }, c: Command) =>
      withAdmin(io, done, c, async (admin, g) => {
        const q = new URLSearchParams();
        if (o.limit) q.set('limit', String(o.limit));
        if (o.cursor) q.set('cursor', o.cursor);
        const doc = await admin.request('GET', `/admin/connections${q.size ? `?${q}` : ''}`);
        printList(io, g, doc, 'connections', (x) => `${String(x.id)}\t${String(x.kind)}\t${String((x.settings as Record<string, unknown> | undefined)?.base_url ?? '')}`);
      }),
    );
  cmd
    .command('get')
    .description('one connection (settings and secret metadata; never the secret)')
    .argument('<id>')
    .action((id: string, _o: unknown, c: Command) => withAdmin(io, done, c, async (admin) => printJson(io, await admin.request('GET', path('/admin/connections', id)))));
  withBody(cmd.command('create').description('create a connection (body: id, kind, base_url, secret, required_scopes, routes, …)')).action((o: BodyOptions, c: Command) => {
    const body = jsonBody(o);
    return withAdmin(io, done, c, async (admin, g) => {
      const created = await admin.request('POST', '/admin/connections', body);
      if (g.json) printJson(io, created);
      else io.out(`created connection ${String(body.id)}\n`);
    });
  });
  withBody(cmd.command('rotate-secret').description('replace the secret (body: {"secret": "…"})').argument('<id>')).action((id: string, o: BodyOptions, c: Command) => {
    const body = jsonBody(o);
    return withAdmin(io, done, c, async (admin, g) => {
      const r = await admin.request('POST', `${path('/admin/connections', id)}/secret`, body);
      if (g.json) printJson(io, r);
      else io.out(`rotated the secret of ${id}\n`);
    });
  });
  cmd
    .command('delete')
    .description('delete a connection with its secrets, users\' tokens and pending connect links')
    .argument('<id>')
    .action((id: string, _o: unknown, c: Command) =>
      withAdmin(io, done, c, async (admin, g) => {
        await admin.request('DELETE', path('/admin/connections', id));
        if (g.json) printJson(io, { deleted: id });
        else io.out(`deleted connection ${id}\n`);
      }),
    );
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
