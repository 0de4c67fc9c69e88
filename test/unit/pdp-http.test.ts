/**
 * The AuthZEN routes on a bare Koa app (no store, no OAuth server): the `pdp.auth: none`
 * deployment mode, where decisions carry only end-user reasons.
 */
import type { Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { PolicyStore } from '../../src/pdp/policy-store.js';
import { REPO } from '../support/authzen.js';
import { startBarePdp } from '../support/bare-authzen.js';

let server: Server;
let url: string;

beforeAll(async () => {
  const logger = createLogger('silent');
  const store = new PolicyStore({ dir: `${REPO}config/policies`, logger });
  await store.load();
  ({ server, url } = await startBarePdp(store, logger, 100));
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

const post = async (body: unknown) => {
  const res = await fetch(`${url}/access/v1/evaluation`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
};

describe('pdp.auth: none', () => {
  it('answers without authentication', async () => {
    const res = await post({ subject: { type: 'User', id: 'a', properties: { email: 'a@x' } }, action: { name: 'read' }, resource: { type: 'Resource', id: 'r', properties: { owner: 'a@x' } } });
    expect(res).toEqual({ status: 200, body: { decision: true } });
  });

  it('a deny carries reason_user only: no admin reason, link or policy ids for unauthenticated callers', async () => {
    const res = await post({ subject: { type: 'User', id: 'a' }, action: { name: 'read' }, resource: { type: 'Resource', id: 'r' } });
    expect(res.body).toEqual({ decision: false, context: { id: 'not_permitted', reason_user: { en: 'Access denied.' } } });
  });

  it('a delegated subject that cannot be resolved is an error (500), not a permit', async () => {
    const res = await post({ subject: { type: 'User', id: 'a', properties: { token: 'x.y.z' } }, action: { name: 'read' }, resource: { type: 'Resource', id: 'r' } });
    expect(res.status).toBe(500);
    expect(res.body).toEqual({ error: 'server_error', error_description: 'an unexpected error occurred' });
  });

  it('the metadata names the configured issuer as the PDP', async () => {
    const meta = (await (await fetch(`${url}/.well-known/authzen-configuration`)).json()) as Record<string, unknown>;
    expect(meta.policy_decision_point).toBe('https://pdp.example.com');
    expect(meta.access_evaluation_endpoint).toBe('https://pdp.example.com/access/v1/evaluation');
  });
});
