/**
 * The MCP gateway when the store cannot write (issue 16, eleventh round; the mapping itself is
 * unit-tested in test/unit/mcp-jsonrpc-store-errors.test.ts): an agent on the official MCP SDK,
 * with a session open, calls a tool while the database is read-only (a standby after a failover:
 * SQLSTATE 25006, for real) or aborts every write to the receipts for a conflict (40001, raised
 * by the server through a trigger, past the bound of retries). The agent sees a JSON-RPC error
 * that says the store is unavailable and to retry (or the HTTP 503 `temporarily_unavailable`
 * with `Retry-After`, when the refusal comes before the JSON-RPC layer) — never the database's
 * words — and nothing reaches the upstream MCP server. Once the database writes again, the same
 * session's call goes through. Both stores: PGlite's one session is made read-only with `SET`,
 * PostgreSQL's database with `ALTER DATABASE` (its sessions ended).
 */
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RETRY_AFTER_SECONDS } from '../../src/errors/index.js';
import { usingPostgres } from '../support/database.js';
import type { McpUpstream } from '../support/mcp.js';
import { connectMcp, startMcpDeputy, type McpDeputy } from '../support/mcp-deputy.js';
import type { TestDeputy } from '../support/server.js';

let mcp: McpDeputy;
let up: McpUpstream;
let deputy: TestDeputy;

beforeAll(async () => {
  mcp = await startMcpDeputy();
  ({ up, deputy } = mcp);
  await deputy.store.exec(`
    CREATE SEQUENCE conflict_fault_seq;
    CREATE FUNCTION conflict_fault() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF EXISTS (SELECT 1 FROM pg_class WHERE relname = 'conflict_fault_on') THEN
        PERFORM nextval('conflict_fault_seq');
        RAISE EXCEPTION 'injected conflict' USING ERRCODE = '40001';
      END IF;
      RETURN NEW;
    END $$;
    CREATE TRIGGER conflict_fault BEFORE INSERT ON receipts FOR EACH ROW EXECUTE FUNCTION conflict_fault();`);
}, 120_000);
afterAll(async () => {
  await mcp?.stop();
});

/** Makes the database read-only for Deputy's sessions (`on`) or writable again. */
async function setReadOnly(on: boolean): Promise<void> {
  if (!usingPostgres) {
    // PGlite is one session: this is every transaction's default from now on.
    await deputy.store.exec(on ? 'SET default_transaction_read_only = on' : 'RESET default_transaction_read_only');
    return;
  }
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await client.connect();
  try {
    const name = new URL(deputy.database.url!).pathname.slice(1);
    await client.query(on ? `ALTER DATABASE ${name} SET default_transaction_read_only = on` : `ALTER DATABASE ${name} RESET default_transaction_read_only`);
    await endSessions(client, name);
  } finally {
    await client.end();
  }
}

/**
 * Ends Deputy's sessions on database `name` (a database setting applies to sessions started after
 * it) and waits until its pool holds none of them. `pg_terminate_backend` only signals a backend:
 * it exits, and its FATAL 57P01 (admin shutdown) reaches Deputy's idle pooled client, later. A
 * statement sent on such a client in between met 57P01 instead of the new setting's error (25006):
 * the test flaked so once. Waited on by counts (backends gone; pool size = sessions started since),
 * not by time.
 */
async function endSessions(client: import('pg').Client, name: string): Promise<void> {
  const others = 'SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()';
  const ended = (await client.query<{ pid: number }>(others, [name])).rows.map((r) => r.pid);
  await client.query('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [ended]);
  let settled = false;
  for (let i = 0; i < 500 && !settled; i += 1) {
    const now = (await client.query<{ pid: number }>(others, [name])).rows.map((r) => r.pid);
    const started = now.filter((pid) => !ended.includes(pid)).length;
    settled = now.length === started && deputy.store.poolStats!().total === started;
    if (!settled) await new Promise((r) => setTimeout(r, 10));
  }
  expect(settled, 'the ended sessions left Deputy\'s pool').toBe(true);
}

/** Every receipt insert aborts with 40001 (`on`: a marker table the trigger looks for), or none. */
async function setConflicting(on: boolean): Promise<void> {
  await deputy.store.exec(on ? 'CREATE TABLE conflict_fault_on ()' : 'DROP TABLE IF EXISTS conflict_fault_on');
}

const connect = () => connectMcp(mcp, 'open');

/** What the agent's SDK reports for a refused call: the JSON-RPC error, or the HTTP error the transport threw. */
function refusalOf(err: unknown): { jsonRpc?: { code: number; message: string; data: unknown }; http?: string } {
  if (err instanceof McpError) return { jsonRpc: { code: err.code, message: err.message, data: err.data } };
  return { http: String((err as Error).message) };
}

describe('MCP tools/call while the store cannot write', { timeout: 120_000 }, () => {
  for (const [what, code, fail] of [
    ['the database is read-only (25006, a standby after a failover)', '25006', setReadOnly],
    ['every receipt write aborts for a conflict (40001, past the retries)', '40001', setConflicting],
  ] as const) {
    it(`${what}: the agent is told the store is unavailable, nothing reaches the upstream; the same session works once it writes again`, async () => {
      const { client } = await connect();
      expect((await client.callTool({ name: 'echo', arguments: { text: 'before' } })).content).toEqual([{ type: 'text', text: 'echo: {"text":"before"}' }]);
      const hits = up.hits.get('echo') ?? 0;
      const requests = up.requests;
      const logged = deputy.logs.length;
      await fail(true);
      let err: unknown;
      try {
        // The sessions that predate the setting are out of Deputy's pool (endSessions): the receipt write meets 25006 itself.
        err = await client.callTool({ name: 'echo', arguments: { text: 'during' } }).then(() => undefined, (e: unknown) => e);
      } finally {
        await fail(false);
      }
      const seen = refusalOf(err);
      // The receipt step (the call's one write before forwarding) refuses it: JSON-RPC InternalError
      // (-32603) in Deputy's words, never the database's, with the HTTP gateways' 503 as `data`.
      expect(seen.http, seen.http).toBeUndefined();
      expect(seen.jsonRpc!.code).toBe(-32603);
      expect(seen.jsonRpc!.message).toMatch(/the call could not be recorded; it was not forwarded$/);
      expect(seen.jsonRpc!.data).toEqual({ status: 503, error: 'temporarily_unavailable', retry_after: RETRY_AFTER_SECONDS });
      expect(JSON.stringify(seen)).not.toMatch(/read-only|standby|25006|40001|serializ|injected|postgres|store/i);
      expect(up.hits.get('echo') ?? 0).toBe(hits);
      expect(up.requests).toBe(requests);
      const lines = deputy.logs.slice(logged).join('');
      expect(lines).not.toMatch(/"msg":"unhandled error"/);
      // The operator's line names why, down to the SQLSTATE.
      const line = deputy.logs.slice(logged).find((l) => l.includes('"msg":"gateway receipt could not be written"'))!;
      expect(JSON.parse(line)).toMatchObject({ level: 'warn', err: { code: 'temporarily_unavailable' } });
      expect(line).toMatch(new RegExp(`StoreUnavailableError: the database [^"]* ← [^"]*\\(${code}\\)`));
      expect(line).not.toMatch(/"stack"/);

      for (let i = 0; i < 50 && (await fetch(`${deputy.url}/readyz`)).status !== 200; i += 1) await new Promise((r) => setTimeout(r, 200));
      expect((await client.callTool({ name: 'echo', arguments: { text: 'after' } })).content).toEqual([{ type: 'text', text: 'echo: {"text":"after"}' }]);
      expect(up.hits.get('echo')).toBe(hits + 1);
      await client.close();
    });
  }
});
