/**
 * Red team (issue 16, eleventh round): over HTTP, an AuthZEN subject property or context member
 * the schema declares as `"__proto__"` reaches Cedar. It was lost three times on the way (the
 * parser's `Object.assign`, the projection's and the slice's assignments all set the prototype
 * instead), so a `forbid` reading it never denied.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { PolicyStore } from '../../src/pdp/policy-store.js';
import { startBarePdp } from '../support/bare-authzen.js';

let server: Server;
let url: string;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'deputy-proto-member-'));
  writeFileSync(join(dir, 'schema.cedarschema'), `entity User = { "__proto__"?: String, level?: Long };
entity Doc;
action read appliesTo { principal: User, resource: Doc, context: { "__proto__"?: String } };`);
  writeFileSync(join(dir, 'p.cedar'), `permit (principal, action, resource);
@id("attr") forbid (principal, action, resource) when { principal has "__proto__" && principal["__proto__"] == "blocked" };
@id("ctx") forbid (principal, action, resource) when { context has "__proto__" && context["__proto__"] == "blocked" };`);
  const logger = createLogger('silent');
  const store = new PolicyStore({ dir, logger });
  await store.load();
  ({ server, url } = await startBarePdp(store, logger, 0));
});
afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

/** The body as raw JSON text, as a client sends it (`"__proto__"` an ordinary member name). */
const post = async (text: string) => {
  const res = await fetch(`${url}/access/v1/evaluation`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: text });
  return (await res.json()) as { decision: boolean };
};

describe('a member named "__proto__" over HTTP', () => {
  it('a subject property denies as declared; without it, allowed', async () => {
    const req = (props: string) => `{"subject": {"type": "User", "id": "alice", "properties": ${props}}, "action": {"name": "read"}, "resource": {"type": "Doc", "id": "d"}}`;
    expect((await post(req('{"level": 1}'))).decision).toBe(true);
    expect((await post(req('{"__proto__": "blocked", "level": 1}'))).decision).toBe(false);
  });

  it('a context member denies as declared', async () => {
    const body = `{"subject": {"type": "User", "id": "alice"}, "action": {"name": "read"}, "resource": {"type": "Doc", "id": "d"}, "context": {"__proto__": "blocked"}}`;
    expect((await post(body)).decision).toBe(false);
  });
});
