/**
 * Replays at the token exchange now that its single-use values are not looked up before the
 * grant (issue 16, fifth round): a replayed request gets the replay error it got when they were,
 * and spends nothing it did not spend then — in particular not a fresh `actor_token` it carried
 * (the request was a replay: refused before the actor token was ever considered).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeJwt } from 'jose';
import { actorToken, agentConfig, clientAssertion, dpopKeys, dpopProof, JWT_TYPE } from '../support/agents.js';
import { clientKeys, type ClientKeys } from '../support/clients.js';
import { API, replayedAssertion, replayedProof, replayExchanges } from '../support/exchange-replay.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';

let idp: MockIdp;
let agentKeys: ClientKeys;
let deputy: TestDeputy;
const agent = () => ({ id: 'agent-a', keys: agentKeys });

beforeAll(async () => {
  idp = await startMockIdp();
  agentKeys = await clientKeys();
  deputy = await startTestDeputy({
    config: { trustedIssuers: [idp.issuerConfig('okta')], agents: [agentConfig('agent-a', agentKeys, { scopes: ['deputy.read'], audiences: [API] })] },
  });
});
afterAll(async () => {
  await deputy?.stop();
  await idp?.close();
});

const { send, fresh, written } = replayExchanges(() => deputy, () => idp, agent);
const withActor = async () => ({ actor_token: await actorToken(agent(), deputy.issuer), actor_token_type: JWT_TYPE });

describe('a replayed request carrying a fresh actor_token', () => {
  let used: { assertion: string; proof: string };
  beforeAll(async () => {
    used = await fresh();
    expect((await send(used.assertion, used.proof)).status).toBe(200);
  });

  it('a replayed proof: invalid_dpop_proof, nothing written, the actor token still unspent', async () => {
    const actor = await withActor();
    const before = await written();
    expect(await send((await fresh()).assertion, used.proof, actor)).toMatchObject(replayedProof);
    expect(await written()).toEqual(before);
    const next = await fresh();
    expect((await send(next.assertion, next.proof, actor)).status).toBe(200);
  });

  it('a replayed client assertion: invalid_client, nothing written, the actor token still unspent', async () => {
    const actor = await withActor();
    const before = await written();
    expect(await send(used.assertion, (await fresh()).proof, actor)).toMatchObject(replayedAssertion);
    expect(await written()).toEqual(before);
    const next = await fresh();
    expect((await send(next.assertion, next.proof, actor)).status).toBe(200);
  });

  it('a replayed proof the policy would refuse (a scope the agent may not hold): the replay error, no deny receipt, the actor token unspent', async () => {
    const actor = await withActor();
    const before = await written();
    expect(await send((await fresh()).assertion, used.proof, { ...actor, scope: 'deputy.write' })).toMatchObject(replayedProof);
    expect(await written()).toEqual(before);
    const next = await fresh();
    expect((await send(next.assertion, next.proof, actor)).status).toBe(200);
  });

  it('a replayed proof with a bad audience: the replay error, the actor token unspent', async () => {
    const actor = await withActor();
    const before = await written();
    expect(await send((await fresh()).assertion, used.proof, { ...actor, resource: 'https://elsewhere.example.com' })).toMatchObject(replayedProof);
    expect(await written()).toEqual(before);
    const next = await fresh();
    expect((await send(next.assertion, next.proof, actor)).status).toBe(200);
  });
});

describe('replays of a failed exchange', () => {
  it('a refused exchange (bad audience) sent again as is: the replay error, nothing written, the actor token spent once by the first', async () => {
    const req = await fresh();
    const actor = await withActor();
    const bad = { ...actor, resource: 'https://elsewhere.example.com' };
    const first = await send(req.assertion, req.proof, bad);
    expect(first.body.error).toBe('invalid_target');
    const before = await written();
    expect(await send(req.assertion, req.proof, bad)).toMatchObject(replayedProof);
    expect(await send(req.assertion, req.proof, actor)).toMatchObject(replayedProof);
    expect(await written()).toEqual(before);
    const next = await fresh();
    expect(await send(next.assertion, next.proof, actor)).toMatchObject({ status: 400, body: { error: 'invalid_grant', error_description: expect.stringMatching(/actor_token has already been used/) } });
  });
});

// Red team of the once-keys as a plain INSERT in the receipt statement (issue 16, thirteenth round):
// a key whose row expired but is not purged fails the statement and is taken over by the locked path.
/** Every once-key row recorded so far, expired (kept: no purge). */
const expireAll = () => deputy.store.query(`UPDATE oidc_models SET expires_at = now() - interval '1 second' WHERE model IN ('DPoPProof', 'ReplayDetection', 'ActorToken')`);

describe('the token exchange with once-keys expired but not purged', () => {
  it('a proof and assertion whose records expired are accepted once more (one receipt), then refused as a replay', async () => {
    const used = await fresh();
    expect((await send(used.assertion, used.proof)).status).toBe(200);
    await expireAll();
    const before = await written();
    expect((await send(used.assertion, used.proof)).status).toBe(200);
    expect(await written()).toEqual({ t: before.t + 1, v: before.v + 1, r: before.r + 1 });
    expect(await send(used.assertion, used.proof)).toMatchObject(replayedProof);
    expect(await written()).toEqual({ t: before.t + 1, v: before.v + 1, r: before.r + 1 });
    expect(deputy.logs.join('\n')).not.toContain(used.proof);
  });

  it('two requests racing with the same expired proof, assertion and actor token: exactly one is accepted, the other refused as a replay, one receipt', async () => {
    const used = await fresh();
    const actor = await withActor();
    expect((await send(used.assertion, used.proof, actor)).status).toBe(200);
    await expireAll();
    const before = await written();
    const answers = await Promise.all([send(used.assertion, used.proof, actor), send(used.assertion, used.proof, actor)]);
    expect(answers.map((a) => a.status).sort()).toEqual([200, 400]);
    expect(await written()).toEqual({ t: before.t + 1, v: before.v + 1, r: before.r + 1 });
  });
});

describe('a client assertion and a DPoP proof carrying the same jti', () => {
  it('is one exchange (the two values are recorded under their own keys), then a replay', async () => {
    const assertion = await clientAssertion(agent(), deputy.issuer);
    const proof = await dpopProof(await dpopKeys(), `${deputy.issuer}/token`, { jti: String(decodeJwt(assertion).jti) });
    const before = await written();
    const first = await send(assertion, proof);
    expect(first.status, JSON.stringify(first.body)).toBe(200);
    expect(await written()).toEqual({ t: before.t + 1, v: before.v + 1, r: before.r + 1 });
    expect(await send(assertion, proof)).toMatchObject({ status: 400 });
  });
});
