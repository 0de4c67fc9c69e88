/**
 * The admin commands' shared parts: authenticating as the admin client, JSON bodies, paging,
 * and the list / get / create / update / delete subcommands every `/admin/{collection}` has
 * (agents, connections, budgets, MCP servers). A command file states what differs (paths,
 * descriptions, listing lines, the words of its text output); the requests, the `--json`
 * switch and the exit codes are written once, here.
 *
 * @module
 */
import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import type { AdminClient } from './admin-client.js';
import { EXIT, UsageError } from './errors.js';
import { globals, printJson, resolveUrl, type GlobalOptions, type Io } from './shared.js';

/** `--data` / `--file`: where a write's JSON body comes from. */
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

/** Adds `--data` / `--file` (read by {@link jsonBody}) to `c`. */
export const withBody = (c: Command): Command =>
  c.option('-d, --data <json>', 'the JSON body').option('-f, --file <file>', 'read the JSON body from FILE (- for stdin)');

/** `--limit <n>`: an admin list's page size, 1-200. @throws UsageError (exit 2) outside that range. */
export const limitOption = (): Option =>
  new Option('--limit <n>', 'page size, 1-200 (default 50)').argParser((v: string) => {
    if (!/^\d{1,3}$/.test(v) || Number(v) < 1 || Number(v) > 200) throw new UsageError('--limit must be an integer from 1 to 200');
    return Number(v);
  });

/** What a command does with an authenticated admin client. */
export type Run = (admin: AdminClient, g: GlobalOptions) => Promise<void>;

/**
 * Runs `fn` with an authenticated admin client; the command's global options decide the output.
 * The OAuth client (openid-client, jose) is loaded here, when an admin command runs: the CLI's
 * start (`--help`, offline commands) does not pay for it.
 */
export async function withAdmin(io: Io, done: (code: number) => void, c: Command, fn: Run): Promise<void> {
  const g = globals(c, io);
  const { adminClient } = await import('./admin-client.js');
  await fn(await adminClient(resolveUrl(g, io), g.credentials), g);
  done(EXIT.ok);
}

/** `base/part/part…`, each part after the first percent-encoded (ids are user input). */
export const path = (...parts: string[]) => parts.map((p, i) => (i === 0 ? p : encodeURIComponent(p))).join('/');

/** A listing: the document as sent with `--json`, else one `line` per item of `member` and the next cursor. */
export function printList(io: Io, g: GlobalOptions, doc: unknown, member: string, line: (item: Record<string, unknown>) => string): void {
  if (g.json) return printJson(io, doc);
  const d = doc as Record<string, unknown>;
  const items = (d[member] as Array<Record<string, unknown>>) ?? [];
  io.out(items.map((i) => `${line(i)}\n`).join('') || `(no ${member})\n`);
  if (d.next_cursor) io.out(`more: --cursor ${String(d.next_cursor)}\n`);
}

/** One `/admin/{collection}` as its commands name it. */
export interface AdminCollection {
  /** The collection's path: `/admin/agents`. */
  readonly base: string;
  /** The list document's member holding the items: `agents`. */
  readonly member: string;
  /** The singular in text output: `agent`, `MCP server`. */
  readonly noun: string;
}

/** Where a command writes and how it ends (the CLI's `done(exitCode)`). */
export interface CommandOutput {
  readonly io: Io;
  readonly done: (code: number) => void;
}

/** `list` (or `name`): one page (`--limit`, `--cursor` unless `paged` is false), a `line` per item. */
export function addList(cmd: Command, out: CommandOutput, col: AdminCollection, o: { description: string; line: (item: Record<string, unknown>) => string; name?: string; paged?: boolean }): void {
  const sub = cmd.command(o.name ?? 'list').description(o.description);
  if (o.paged !== false) sub.addOption(limitOption()).option('--cursor <cursor>', 'the next_cursor of the previous page');
  sub.action((p: { limit?: number; cursor?: string }, c: Command) =>
    withAdmin(out.io, out.done, c, async (admin, g) => {
      const q = new URLSearchParams();
      if (p.limit) q.set('limit', String(p.limit));
      if (p.cursor) q.set('cursor', p.cursor);
      printList(out.io, g, await admin.request('GET', `${col.base}${q.size ? `?${q}` : ''}`), col.member, o.line);
    }),
  );
}

/** `get <argument>`: the item as JSON. */
export function addGet(cmd: Command, out: CommandOutput, col: AdminCollection, o: { description: string; argument?: string }): void {
  cmd
    .command('get')
    .description(o.description)
    .argument(`<${o.argument ?? 'id'}>`)
    .action((id: string, _o: unknown, c: Command) => withAdmin(out.io, out.done, c, async (admin) => printJson(out.io, await admin.request('GET', path(col.base, id)))));
}

/**
 * `create` with a JSON body: the created item with `--json`, else `created {noun} {id}`, the id
 * read from the answer or (`idFrom: 'body'`) the body sent.
 */
export function addCreate(cmd: Command, out: CommandOutput, col: AdminCollection, o: { description: string; idFrom: 'answer' | 'body' }): void {
  withBody(cmd.command('create').description(o.description)).action((b: BodyOptions, c: Command) => {
    const body = jsonBody(b);
    return withAdmin(out.io, out.done, c, async (admin, g) => {
      const created = await admin.request('POST', col.base, body);
      if (g.json) return printJson(out.io, created);
      out.io.out(`created ${col.noun} ${String(o.idFrom === 'body' ? body.id : (created as { id: string }).id)}\n`);
    });
  });
}

/** `update <id>` with a partial JSON body (PATCH): the updated item as JSON. */
export function addUpdate(cmd: Command, out: CommandOutput, col: AdminCollection, o: { description: string }): void {
  withBody(cmd.command('update').description(o.description).argument('<id>')).action((id: string, b: BodyOptions, c: Command) => {
    const body = jsonBody(b);
    return withAdmin(out.io, out.done, c, async (admin) => printJson(out.io, await admin.request('PATCH', path(col.base, id), body)));
  });
}

/** `delete <argument>`: `{"deleted": id}` with `--json`, else `deleted {noun} {id}` and `note`. */
export function addDelete(cmd: Command, out: CommandOutput, col: AdminCollection, o: { description: string; argument?: string; note?: (id: string) => string }): void {
  cmd
    .command('delete')
    .description(o.description)
    .argument(`<${o.argument ?? 'id'}>`)
    .action((id: string, _o: unknown, c: Command) =>
      withAdmin(out.io, out.done, c, async (admin, g) => {
        await admin.request('DELETE', path(col.base, id));
        if (g.json) printJson(out.io, { deleted: id });
        else out.io.out(`deleted ${col.noun} ${id}${o.note?.(id) ?? ''}\n`);
      }),
    );
}
