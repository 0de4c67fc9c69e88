/**
 * The RFC 8693 exchange as a plain function (src/oauth/token-exchange.ts): no HTTP server, no
 * Koa, no oidc-provider — fake dependencies and a fake minter stand in for the store, the IdP
 * verifier and oidc-provider's `AccessToken` model.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { Agent, AgentRegistry } from '../../src/agents/registry.js';
import type { ReceiptInput } from '../../src/audit/receipt.js';
import type { AttestedWrites, ReceiptAppender } from '../../src/audit/receipts.js';
import { DeputyError } from '../../src/errors/index.js';
import type { FederatedIdentity } from '../../src/federation/identity.js';
import type { FederationVerifier } from '../../src/federation/verify.js';
import type { Logger } from '../../src/log.js';
import type { AccessTokenVerifier } from '../../src/oauth/access-token.js';
import type { DelegationAuthorizer } from '../../src/delegation/index.js';
import { DelegationDenied, RegistryAuthorizer } from '../../src/delegation/index.js';
import {
  exchange,
  type AccessTokenMinter,
  type ExchangeDeps,
  type ExchangeInput,
  type MintRequest,
} from '../../src/oauth/token-exchange.js';
import type { TokenRecords } from '../../src/oauth/token-records.js';
import type { Store } from '../../src/store/index.js';
import type { EnvelopeVault } from '../../src/vault/envelope.js';

const ISSUER = 'https://deputy.example';
const IDP = 'https://idp.example';
const AUDIENCE = 'https://api.example';
const NOW = Math.floor(Date.now() / 1000);

/** An unsigned JWT: the fake federation verifier decides, `resolveSubject` only peeks at `iss`. */
function idpToken(): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'RS256', typ: 'JWT' })}.${part({ iss: IDP, sub: 'alice' })}.sig`;
}

const agent: Agent = {
  id: 'agent-1', name: 'Agent', owner: 'ops', scopes: ['read', 'write'], audiences: [AUDIENCE], maxDelegationDepth: 3,
  status: 'active', jwks: { keys: [] }, source: 'config', createdAt: '', updatedAt: '',
};

const identity: FederatedIdentity = {
  userId: 'idp#alice', issuer: IDP, issuerId: 'idp', preset: 'oidc', tokenKind: 'access_token', subject: 'alice',
  groups: [], roles: [], scopes: ['read'], expiresAt: NOW + 3600, claims: {},
} as FederatedIdentity;

const silent = { info: () => {}, warn: () => {}, error: () => {}, debug: () => {} } as unknown as Logger;

interface Fakes {
  deps: ExchangeDeps;
  minted: MintRequest[];
  receipts: ReceiptInput[];
  records: unknown[];
}

function fakes(overrides: { authorizer?: DelegationAuthorizer } = {}): Fakes {
  const minted: MintRequest[] = [];
  const receipts: ReceiptInput[] = [];
  const records: unknown[] = [];
  const minter: AccessTokenMinter = {
    mint(request) {
      minted.push(request);
      return { value: Promise.resolve('signed.jwt.value'), jti: 'jti-1' };
    },
  };
  const tx = {};
  const deps: ExchangeDeps = {
    issuer: ISSUER,
    store: { transaction: async (fn: (t: unknown) => Promise<unknown>) => fn(tx) } as unknown as Store,
    agents: { get: async (id: string) => (id === agent.id ? agent : undefined) } as unknown as AgentRegistry,
    federation: { verify: async () => identity } as unknown as FederationVerifier,
    verifier: {} as AccessTokenVerifier,
    records: { insert: async (_tx: unknown, r: unknown) => void records.push(r) } as unknown as TokenRecords,
    authorizer: overrides.authorizer ?? new RegistryAuthorizer(5),
    receipts: { append: async (r: ReceiptInput) => void receipts.push(r) } as unknown as ReceiptAppender,
    vault: { putPart: async () => ({ sql: () => 'INSERT INTO vault_secrets …', params: [] }) } as unknown as EnvelopeVault,
    accessTokenTTL: 300,
    logger: silent,
    minter,
  };
  return { deps, minted, receipts, records };
}

function input(params: Record<string, string>, withProof = true): ExchangeInput {
  const dpop = withProof ? { jkt: 'thumb', jti: 'proof-1' } : undefined;
  return {
    params: { subject_token: idpToken(), subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', resource: AUDIENCE, ...params },
    clientId: agent.id,
    dpop,
    requestId: 'req-1',
  };
}

describe('exchange(input, deps) without Koa', () => {
  it('returns the RFC 8693 §2.2.1 response and mints a DPoP-bound token through the port', async () => {
    const f = fakes();
    const response = await exchange(input({}), f.deps);
    expect(response).toEqual({
      access_token: 'signed.jwt.value',
      issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      token_type: 'DPoP',
      expires_in: 300,
      scope: 'read',
    });
    expect(f.minted).toEqual([expect.objectContaining({ clientId: agent.id, accountId: 'idp#alice', audience: AUDIENCE, scope: 'read', jkt: 'thumb', extra: { act: { sub: agent.id } } })]);
    expect(f.records).toEqual([expect.objectContaining({ jti: 'jti-1', agentId: agent.id, cnfJkt: 'thumb', chain: [agent.id] })]);
    expect(f.receipts).toEqual([expect.objectContaining({ decision: 'permit', tokenId: 'jti-1', requestId: 'req-1' })]);
  });

  it.each<[string, Record<string, string>, boolean, string, number]>([
    ['no subject_token', { subject_token: '' }, true, 'invalid_request', 400],
    ['an unsupported subject_token_type', { subject_token_type: 'urn:x' }, true, 'invalid_request', 400],
    ['no DPoP proof', {}, false, 'invalid_dpop_proof', 400],
    ['a scope the subject token does not grant', { scope: 'write' }, true, 'invalid_scope', 400],
    ['an audience the agent may not target', { resource: 'https://other.example' }, true, 'invalid_target', 400],
    ["one of Deputy's own scopes", { scope: 'deputy:admin' }, true, 'invalid_scope', 400],
    ['two audiences', { audience: 'https://two.example' }, true, 'invalid_target', 400],
  ])('refuses %s with a typed error and mints nothing', async (_name, params, withProof, code, status) => {
    const f = fakes();
    const err = await exchange(input(params, withProof), f.deps).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeputyError);
    expect(err).toMatchObject({ code, status });
    expect(f.minted).toEqual([]);
  });

  it('with a group writer (appendWith): hands it the token record, the vault row and the replay keys with the receipt; a failed append returns no token', async () => {
    const f = fakes();
    const spends = [{ once: { namespace: 'ReplayDetection', key: 'k1', ttlSeconds: 60 }, replayed: () => new Error('replayed') }];
    const handed: Array<{ input: ReceiptInput; writes: AttestedWrites }> = [];
    const insertPart = (r: { jti: string }) => ({ sql: () => `INSERT INTO token_records … ${r.jti}`, params: [] });
    const deps: ExchangeDeps = {
      ...f.deps,
      records: { ...f.deps.records, insertPart } as unknown as TokenRecords,
      receipts: { append: async () => undefined, appendWith: async (i: ReceiptInput, writes: AttestedWrites) => void handed.push({ input: i, writes }) } as unknown as ReceiptAppender,
    };
    await expect(exchange({ ...input({}), spends }, deps)).resolves.toMatchObject({ access_token: 'signed.jwt.value' });
    expect(handed).toHaveLength(1);
    expect(handed[0]!.input).toMatchObject({ decision: 'permit', tokenId: 'jti-1' });
    expect(handed[0]!.writes.once).toEqual([spends[0]!.once]);
    expect(handed[0]!.writes.parts.map((p) => p.sql(1))).toEqual(['INSERT INTO vault_secrets …', 'INSERT INTO token_records … jti-1']);
    // The receipt (and with it every write it attests) could not be written: no token.
    const failing = { ...deps, receipts: { append: async () => undefined, appendWith: async () => { throw new Error('store down'); } } as unknown as ReceiptAppender };
    await expect(exchange({ ...input({}), spends }, failing)).rejects.toThrow('store down');
  });

  it('turns a policy denial into its code and writes a deny receipt', async () => {
    const f = fakes({ authorizer: { authorize: async () => { throw new DelegationDenied('invalid_scope', 'no', ['p1']); } } });
    await expect(exchange(input({}), f.deps)).rejects.toMatchObject({ code: 'invalid_scope', status: 400, description: 'no' });
    expect(f.receipts).toEqual([expect.objectContaining({ decision: 'deny', policies: ['p1'] })]);
    expect(f.minted).toEqual([]);
  });

  it('refuses a client that is not a registered agent as unauthorized_client', async () => {
    const f = fakes();
    await expect(exchange({ ...input({}), clientId: 'stranger' }, f.deps)).rejects.toMatchObject({ code: 'unauthorized_client', status: 400 });
  });

  it('imports neither Koa nor oidc-provider', () => {
    const source = readFileSync(new URL('../../src/oauth/token-exchange.ts', import.meta.url), 'utf8');
    expect(source).not.toMatch(/from '(koa|oidc-provider)[/']/);
  });
});
