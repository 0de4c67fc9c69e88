/**
 * Red team of issue 16, ninth round (`unexpectedError`: an unexpected 500 is logged by name, code,
 * causes and stack frames, never its message): the PDP logged such an error itself first, whole
 * ('pdp evaluation failed', message and stack — the stack's first line repeats the message),
 * before rethrowing it to the one place that logs it without. The PDP builds Cedar values from
 * the request (a subject's `properties.token` among them), so a bug's message there can quote
 * it. The engine here is a stand-in that fails as such a bug would.
 */
import { Writable } from 'node:stream';
import { beforeAll, describe, expect, it } from 'vitest';
import type { AgentRegistry } from '../../src/agents/registry.js';
import { RegistryAuthorizer, type SubjectResolver } from '../../src/delegation/index.js';
import { createLogger } from '../../src/log.js';
import { CedarEngine } from '../../src/pdp/engine.js';
import { AgentCache } from '../../src/pdp/entities.js';
import { PolicyDecisionPoint } from '../../src/pdp/pdp.js';
import { PolicyStore } from '../../src/pdp/policy-store.js';
import { REPO } from '../support/authzen.js';

const secret = 'sk_live_pdp_0123456789';
let store: PolicyStore;

beforeAll(async () => {
  store = new PolicyStore({ dir: `${REPO}config/policies`, logger: createLogger('silent') });
  await store.load();
});

describe('the PDP\'s own line for an unexpected error', () => {
  it('names it and where it was thrown, never its message (before: the message and the whole stack)', async () => {
    let out = '';
    const sink = new Writable({ write(chunk: Buffer, _enc, done) { out += chunk.toString(); done(); } });
    const logger = createLogger('info', sink);
    const bug = new TypeError(`cannot project "${secret}"`);
    const engine = new CedarEngine({ cacheSize: 0 });
    engine.authorize = () => {
      throw bug;
    };
    const registry = { onChange: () => {}, get: async () => undefined, list: async () => ({ agents: [] }) } as unknown as AgentRegistry;
    const subjects = { resolve: () => Promise.reject(new Error('no delegated subjects here')) } as unknown as SubjectResolver;
    const pdp = new PolicyDecisionPoint({ store, engine, subjects, registry: new RegistryAuthorizer(3), agents: new AgentCache(registry, 5), logger });
    await expect(pdp.evaluate({ subject: { type: 'User', id: 'a', properties: {} }, action: { name: 'read', properties: {} }, resource: { type: 'Resource', id: 'r', properties: {} }, context: {} } as Parameters<PolicyDecisionPoint['evaluate']>[0])).rejects.toBe(bug);
    const lines = out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const line = lines.find((l) => l.msg === 'pdp evaluation failed');
    expect(line).toMatchObject({ level: 'error', err: { cause: 'TypeError', stack: expect.stringMatching(/^\s+at /) } });
    expect(out).not.toContain(secret);
  });
});
