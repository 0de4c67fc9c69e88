/**
 * Inputs that crash Cedar (issue 16, tenth round). Cedar keeps its call stack in its own
 * WebAssembly memory: an expression nested past it (a long `&&`, `||` or `+` chain, nested `if`s,
 * attribute chains, nested records, sets or `.contains`) overflowed it, and the one Cedar instance
 * of the process was left corrupt — every later decision failed or answered from damaged state
 * until a restart. Each policy set is now loaded in an instance of its own (a crash there refuses
 * the set, naming the file, and the set serving keeps serving), policies nested past
 * `MAX_POLICY_DEPTH` are refused, and a crash while deciding fails that decision closed and loads
 * the set again into a fresh instance. Driven over HTTP on the bare AuthZEN routes (pdp-http.test.ts).
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../../src/log.js';
import { MAX_POLICY_DEPTH } from '../../src/pdp/nesting.js';
import { PolicyLoadError, PolicyStore } from '../../src/pdp/policy-store.js';
import { REPO } from '../support/authzen.js';
import { startBarePdp } from '../support/bare-authzen.js';

const dir = mkdtempSync(join(tmpdir(), 'deputy-cedar-crash-'));
const DEFAULT = readFileSync(`${REPO}config/policies/default.cedar`, 'utf8');
const SCHEMA = readFileSync(`${REPO}config/policies/schema.cedarschema`, 'utf8');
const lines: Array<Record<string, unknown>> = [];
let store: PolicyStore;
let server: Server;
let url: string;

/** Conditions nested deeply enough to crash Cedar somewhere: parsing, its JSON form, validation or evaluation. */
const CRASHING: Record<string, string> = {
  'and-chain': Array(3000).fill('true').join(' && '),
  'or-chain': Array(3000).fill('false').join(' || '),
  'plus-chain': `${Array(3000).fill('1').join(' + ')} > 0`,
  'nested-if': `${'if true then '.repeat(1000)}true${' else false'.repeat(1000)}`,
  'attribute-chain': `context.${Array(1000).fill('a').join('.')} == 1`,
  'nested-records': `${'{a: '.repeat(1000)}1${'}'.repeat(1000)} == {}`,
  'nested-sets': `${'['.repeat(1000)}1${']'.repeat(1000)} == []`,
  'nested-contains': `${'[true].contains('.repeat(1000)}true${')'.repeat(1000)}`,
};

/** A flat `&&` chain just past the depth bound: Cedar survives it here, but not under every stack. */
const JUST_PAST_BOUND = Array(Math.ceil(MAX_POLICY_DEPTH / 2) + 1).fill('true').join(' && ');

const ALLOWED = { subject: { type: 'User', id: 'a', properties: { email: 'a@x' } }, action: { name: 'read' }, resource: { type: 'Resource', id: 'r', properties: { owner: 'a@x' } } };
const DENIED = { subject: { type: 'User', id: 'a' }, action: { name: 'read' }, resource: { type: 'Resource', id: 'r' } };

function writeSet(extra?: string): void {
  writeFileSync(join(dir, 'default.cedar'), DEFAULT);
  writeFileSync(join(dir, 'extra.cedar'), extra === undefined ? '// nothing\n' : `@id("extra") forbid (principal, action, resource) when { ${extra} };\n`);
}

async function decide(body: unknown): Promise<boolean | number> {
  const res = await fetch(`${url}/access/v1/evaluation`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return res.status === 200 ? ((await res.json()) as { decision: boolean }).decision : res.status;
}

/** Decisions answered while `during` runs: every one must be right. */
async function decidingThrough(during: () => Promise<unknown>): Promise<Array<boolean | number>> {
  let stop = false;
  const answers: Array<boolean | number> = [];
  const loop = (async () => {
    while (!stop) answers.push(await decide(ALLOWED), await decide(DENIED));
  })();
  try {
    await during();
  } finally {
    stop = true;
    await loop;
  }
  return answers;
}

beforeAll(async () => {
  cpSync(`${REPO}config/policies/schema.cedarschema`, join(dir, 'schema.cedarschema'));
  writeSet();
  const logger = createLogger('info', { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  store = new PolicyStore({ dir, logger });
  await store.load();
  ({ server, url } = await startBarePdp(store, logger, 0));
});
afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

describe('a policy set that crashes Cedar', () => {
  it.each([...Object.entries(CRASHING), ['just-past-the-bound', JUST_PAST_BOUND]])('%s: the reload is refused naming the file; decisions stay right before, during and after', async (_shape, condition) => {
    expect([await decide(ALLOWED), await decide(DENIED)]).toEqual([true, false]);
    const serving = store.current.generation;
    let refused: unknown;
    const answers = await decidingThrough(async () => {
      writeSet(condition);
      refused = await store.reload('signal').catch((e: unknown) => e);
    });
    expect(refused).toBeInstanceOf(PolicyLoadError);
    expect((refused as PolicyLoadError).issues.some((i) => i.startsWith('extra.cedar: '))).toBe(true);
    expect(store.current.generation).toBe(serving);
    expect(answers.every((a, i) => a === (i % 2 === 0))).toBe(true);
    expect([await decide(ALLOWED), await decide(DENIED)]).toEqual([true, false]);
    expect(lines.at(-1)).toMatchObject({ level: 'error', msg: 'policy set refused; the previous set keeps serving', trigger: 'signal', serving });
    // The folder fixed: the next reload loads, and its decisions are right.
    writeSet();
    expect(await store.reload('signal')).toMatchObject({ changed: false, generation: serving });
    expect([await decide(ALLOWED), await decide(DENIED)]).toEqual([true, false]);
  });

  it('at start: the load fails with a PolicyLoadError naming the file', async () => {
    const start = mkdtempSync(join(tmpdir(), 'deputy-cedar-crash-start-'));
    try {
      writeFileSync(join(start, 'schema.cedarschema'), SCHEMA);
      writeFileSync(join(start, 'deep.cedar'), `permit (principal, action, resource) when { ${CRASHING['plus-chain']} };`);
      const err = await new PolicyStore({ dir: start, logger: createLogger('silent') }).load().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PolicyLoadError);
      expect((err as PolicyLoadError).message).toMatch(/deep\.cedar: /);
    } finally {
      rmSync(start, { recursive: true, force: true });
    }
  });
});

describe('a crash while deciding', () => {
  it('fails that decision closed, retires the instance, and serves the same set from a fresh one', async () => {
    writeSet();
    await store.reload('signal');
    const before = store.current;
    expect(await decide(ALLOWED)).toBe(true);
    // Injected: the serving instance's next evaluation traps, as Cedar's does when an input
    // overflows its stack (a real overflow leaves the instance corrupt only sometimes).
    const WasmRuntimeError = (globalThis as unknown as { WebAssembly: { RuntimeError: new (m: string) => Error } }).WebAssembly.RuntimeError;
    vi.spyOn(before.cedar, 'statefulIsAuthorized').mockImplementationOnce(() => {
      throw new WasmRuntimeError('memory access out of bounds');
    });
    // The next decision meets it: denied, and the instance retired (never asked again).
    expect(await decide(ALLOWED)).toBe(false);
    expect(before.usable()).toBe(false);
    await store.reload('recover'); // queued after the recovery the crash started: resolves once it is done
    expect(store.current.generation).toBe(before.generation + 1);
    expect(store.current.digest).toBe(before.digest);
    expect([await decide(ALLOWED), await decide(DENIED)]).toEqual([true, false]);
    const crashed = lines.find((l) => l.msg === 'Cedar crashed evaluating a decision; its instance is retired and the policy set loaded again');
    expect(crashed).toMatchObject({ level: 'error', generation: before.generation });
    expect(lines.some((l) => l.msg === 'policy set loaded' && l.trigger === 'recover')).toBe(true);
  });
});
