/**
 * The enforcement pipeline (src/enforcement): the runner's order, refusals, `refused` / `settle`
 * hooks (upstream failure, cut stream), and the shared steps' contracts with fake ports.
 */
import { createHook } from 'node:async_hooks';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { AlreadyRecorded, type ReceiptAppender } from '../../src/audit/index.js';
import type { ReceiptInput } from '../../src/audit/receipt.js';
import {
  authenticate,
  budget,
  credential,
  decide,
  dpopChallenger,
  liveChain,
  NOTHING,
  PendingProof,
  Pipeline,
  receipt,
  refuseDenied,
  spendProofOnRefusal,
  streamEnding,
  type Admission,
  type BudgetHold,
  type Ending,
  type Outcome,
  type PepRequest,
  type ProofVerifier,
  type Step,
} from '../../src/enforcement/index.js';
import { fixedCostBudgeter, type BudgetLedger } from '../../src/budgets/index.js';
import { serializeError } from '../../src/errors/serialize.js';
import { AccessDenied, BadGateway, DeputyError, InvalidRequest, InvalidToken, NotFound, TemporarilyUnavailable } from '../../src/errors/index.js';
import type { AuthenticatedRequest } from '../../src/oauth/access-token.js';
import type { OnceKey } from '../../src/oauth/adapter.js';
import { dpopReplayed } from '../../src/oauth/dpop.js';
import type { TokenRecord } from '../../src/oauth/token-records.js';
import type { Connection } from '../../src/vault/connections/store.js';
import { Gateway, type GatewayDeps } from '../../src/gateway/gateway.js';

const logger = pino({ level: 'silent' });

/** The `WWW-Authenticate` value a refusal is rendered with (by the one serializer). */
function challengeOf(err: DeputyError): string | undefined {
  return serializeError(err).headers['WWW-Authenticate'];
}

/** A step that records its name in `log` and adds `{ [name]: true }`. */
function recorder(name: string, log: string[], hooks: Partial<Pick<Step<object>, 'refused' | 'settle'>> = {}): Step<object, Record<string, boolean>> {
  return { name, run: () => (log.push(name), { [name]: true }), ...hooks };
}

function failing(name: string, error: unknown): Step<object, typeof NOTHING> {
  return { name, run: () => { throw error; } };
}

describe('Pipeline runner', () => {
  it('runs the steps in order over one context and returns it with every addition', async () => {
    const log: string[] = [];
    const p = Pipeline.start<{ input: number }>()
      .then({ name: 'a', run: (c) => (log.push('a'), { a: c.input + 1 }) })
      .then({ name: 'b', run: async (c) => (log.push('b'), { b: c.a * 2 }) })
      .then({ name: 'c', run: () => (log.push('c'), NOTHING) });
    const input = { input: 1 };
    const out = await p.run(input);
    expect(p.names()).toEqual(['a', 'b', 'c']);
    expect(log).toEqual(['a', 'b', 'c']);
    expect(out).toEqual({ input: 1, a: 2, b: 4 });
    expect(out).toBe(input); // the input becomes the context: nothing copied
  });

  it("a step's refusal stops the later steps (no upstream call) and leaves the run once, unchanged", async () => {
    const log: string[] = [];
    let upstreamCalls = 0;
    const denied = new AccessDenied('no');
    const p = Pipeline.start<object>()
      .then(recorder('authenticate', log))
      .then(failing('decide', denied))
      .then({ name: 'forward', run: () => (upstreamCalls++, NOTHING) });
    const err = await p.run({}).catch((e: unknown) => e);
    expect(err).toBe(denied);
    expect(log).toEqual(['authenticate']);
    expect(upstreamCalls).toBe(0);
  });

  it("tells the steps that ran of a refusal, latest first, before the error leaves; not the refusing step nor later ones", async () => {
    const told: string[] = [];
    const hooks = (n: string) => ({ refused: (_: object, r: { step: string }) => void told.push(`${n}<-${r.step}`), settle: () => void told.push(`settle ${n}`) });
    const p = Pipeline.start<object>()
      .then(recorder('one', [], hooks('one')))
      .then(recorder('two', [], hooks('two')))
      .then({ name: 'three', run: () => { throw new NotFound('gone'); }, ...hooks('three') })
      .then(recorder('four', [], hooks('four')));
    await expect(p.run({})).rejects.toThrow('gone');
    expect(told).toEqual(['two<-three', 'one<-three']);
  });

  it("a refused hook that throws replaces the error; the earliest step's replacement wins", async () => {
    const replay = dpopReplayed();
    const p = Pipeline.start<object>()
      .then(recorder('proof', [], { refused: () => { throw replay; } }))
      .then(recorder('budget', [], { refused: () => { throw new Error('release failed'); } }))
      .then(failing('decide', new AccessDenied('no')));
    expect(await p.run({}).catch((e: unknown) => e)).toBe(replay);
  });

  it('settles after a success (no `ended`: completed at once), latest first; a settle error goes to onSettleError, never to the caller', async () => {
    const told: string[] = [];
    const reported: Array<[string, string]> = [];
    let settled!: () => void;
    const allSettled = new Promise<void>((resolve) => (settled = resolve));
    const p = Pipeline.start<object>()
      .then(recorder('first', [], { settle: (_c, e) => { told.push(`first ${e.kind}`); settled(); } }))
      .then(recorder('second', [], { settle: () => { told.push('second'); throw new Error('ledger down'); } }));
    await expect(p.run({}, { onSettleError: (err, step) => reported.push([(err as Error).message, step]) })).resolves.toEqual({ first: true, second: true });
    await allSettled;
    expect(told).toEqual(['second', 'first completed']);
    expect(reported).toEqual([['ledger down', 'second']]);
  });
});

/** Promises created while `fn` runs and what it starts settles (`async_hooks` init of type PROMISE). */
async function promisesDuring(fn: () => Promise<unknown>): Promise<number> {
  let n = 0;
  const hook = createHook({ init: (_id, type) => void (type === 'PROMISE' && (n += 1)) }).enable();
  try {
    await fn();
    await new Promise((r) => setImmediate(r)); // every settle hook has run
  } finally {
    hook.disable();
  }
  return n;
}

describe('Pipeline runner: per-call cost of settling (issue 16, tenth round)', () => {
  /** `n` steps without hooks around one whose synchronous settle runs last in the list. */
  const withPlainSteps = (n: number, settled: string[]) => {
    let p = Pipeline.start<object>().then(recorder('held', [], { settle: () => void settled.push('held') })) as Pipeline<object, object>;
    for (let i = 0; i < n; i++) p = p.then(recorder(`plain${i}`, []));
    return p;
  };

  it('steps without a settle hook cost settling nothing: 8 more plain steps create no more promises', async () => {
    const settled: string[] = [];
    const one = withPlainSteps(0, settled);
    const nine = withPlainSteps(8, settled);
    await one.run({}); // warm up (first-call allocations)
    await nine.run({});
    // The least of five runs each: the test runner's own promises (its RPC) may fall into one.
    const least = async (p: Pipeline<object, object>) => {
      let min = Infinity;
      for (let i = 0; i < 5; i++) min = Math.min(min, await promisesDuring(() => p.run({})));
      return min;
    };
    const few = await least(one);
    const many = await least(nine);
    expect(settled).toHaveLength(12);
    expect(many).toBe(few);
  });

  it('an asynchronous settle hook is awaited before the earlier steps settle; a synchronous one costs no wait', async () => {
    const told: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const p = Pipeline.start<object>()
      .then(recorder('first', [], { settle: () => void told.push('first') }))
      .then(recorder('plain', []))
      .then(recorder('second', [], { settle: async () => { await gate; told.push('second'); } }))
      .then(recorder('third', [], { settle: () => void told.push('third') }));
    await p.run({});
    await new Promise((r) => setImmediate(r));
    expect(told).toEqual(['third']); // `second` is waiting: `first` is not told yet
    release();
    await new Promise((r) => setImmediate(r));
    expect(told).toEqual(['third', 'second', 'first']);
  });
});

describe('budget step: a call no budget covers (issue 16, tenth round)', () => {
  const ctx = { decision: { allowed: true } } as never;
  const ledgerThat = (unbudgeted: boolean, reserved: string[]) =>
    ({
      unbudgeted: () => unbudgeted,
      reserve: async () => (reserved.push('reserve'), { id: 'r', items: [], held: {}, expiresAt: new Date() }),
    }) as unknown as BudgetLedger;
  const step = (l: BudgetLedger) => budget(fixedCostBudgeter<never>({ ledger: l, logger, demand: () => ({ scope: { agents: ['a'], user: 'u', connection: 'c' }, amounts: { requests: 1 } }) }));

  it('known free (the ledger\'s memo): the step adds nothing synchronously, asks the ledger nothing, and its settle waits for nothing', () => {
    const reserved: string[] = [];
    const s = step(ledgerThat(true, reserved));
    expect(s.run(ctx)).toBe(NOTHING);
    expect(s.settle!(ctx, { kind: 'completed' })).toBeUndefined();
    expect(reserved).toEqual([]);
  });

  it('not known: the ledger is asked (an empty reservation adds nothing)', async () => {
    const reserved: string[] = [];
    const out = step(ledgerThat(false, reserved)).run(ctx);
    expect(out).toBeInstanceOf(Promise);
    expect(await out).toBe(NOTHING);
    expect(reserved).toEqual(['reserve']);
  });
});

describe('budget hold: released on upstream failure, settled when the stream ends or is cut', () => {
  function holdRecorder() {
    const outcomes: Outcome[] = [];
    let done!: () => void;
    const settled = new Promise<void>((r) => (done = r));
    const hold: BudgetHold = { settle: async (o) => { outcomes.push(o); done(); } };
    return { hold, outcomes, settled };
  }
  function pipelineWith(hold: BudgetHold, forward: Step<object, object>) {
    return Pipeline.start<object>()
      .then({ name: 'decide', run: () => ({ decision: { allowed: true as const } }) })
      .then(budget({ reserve: async () => hold }))
      .then(forward);
  }

  it('the upstream fails: the hold is told `refused` by the forward step before the 502 leaves', async () => {
    const { hold, outcomes } = holdRecorder();
    const upstream = new BadGateway('the upstream could not be reached');
    await expect(pipelineWith(hold, failing('forward', upstream)).run({})).rejects.toBe(upstream);
    expect(outcomes).toEqual([{ kind: 'refused', step: 'forward', error: upstream }]);
  });

  it('the stream is cut (the agent went away): `cut`, after the run returned', async () => {
    const { hold, outcomes, settled } = holdRecorder();
    const body = new PassThrough();
    const out = await pipelineWith(hold, { name: 'forward', run: () => ({ body, ended: () => streamEnding(body) }) }).run({});
    body.write('partial');
    expect(outcomes).toEqual([]);
    (out as unknown as { body: PassThrough }).body.destroy();
    await settled;
    expect(outcomes.map((o) => o.kind)).toEqual(['cut']);
  });

  it('the stream ends normally: `completed`; no body: `completed` at once', async () => {
    for (const withBody of [true, false]) {
      const { hold, outcomes, settled } = holdRecorder();
      const body = withBody ? new PassThrough() : undefined;
      await pipelineWith(hold, { name: 'forward', run: () => ({ ended: () => streamEnding(body) }) }).run({});
      if (body) {
        body.resume();
        body.end('all of it');
      }
      await settled;
      expect(outcomes).toEqual([{ kind: 'completed' }]);
    }
  });

  it('a budget denial replaces the decision: the receipt records it and refuseDenied throws its own refusal', async () => {
    const paymentRequired = new DeputyError(402, 'access_denied', 'budget "daily" is exhausted');
    const receipts: ReceiptInput[] = [];
    const p = actionPipeline(
      { append: async (input) => (receipts.push(input), {} as never) },
      { reserve: async () => ({ allowed: false as const, reason: 'budget "daily" is exhausted', refusal: paymentRequired }) },
    );
    const { admission } = await admitted();
    expect(await p.run({ admission }).catch((e: unknown) => e)).toBe(paymentRequired);
    expect(receipts.map((r) => [r.decision, r.reason])).toEqual([['deny', 'budget "daily" is exhausted']]);
  });
});

// --- the shared steps, with fake ports ------------------------------------------------------

const proofKey: OnceKey = { namespace: 'dpop', key: 'jti-1', ttlSeconds: 300 };

/** A verifier whose proof keys are spent once (a second spend is the replay). */
function fakeVerifier(result: Partial<AuthenticatedRequest> | Error) {
  const spent = new Set<string>();
  const verifier: ProofVerifier = {
    authenticate: async () => {
      if (result instanceof Error) throw result;
      return { token: 'tok', claims: { client_id: 'agent-a', jti: 'at-1' }, scopes: new Set(['read']), scheme: 'DPoP', unspentProof: proofKey, ...result } as AuthenticatedRequest;
    },
    spendProof: async (key) => {
      if (spent.has(key.key)) throw dpopReplayed();
      spent.add(key.key);
    },
  };
  return { verifier, spent };
}

const record = { jti: 'at-1', userId: 'okta:alice', userAttrs: {}, agentId: 'agent-a', chain: ['agent-a'], upstream: undefined } as unknown as TokenRecord;
const request: PepRequest = { audience: 'https://deputy.test/gw/github', url: 'https://deputy.test/gw/github/x', method: 'GET', authorization: 'DPoP tok', dpopProofs: ['p'], requestId: 'req-1' };

function admit(verifier: ProofVerifier, live: TokenRecord | null = record, metadata?: string) {
  const challenge = dpopChallenger(metadata ? () => metadata : undefined);
  return Pipeline.start<PepRequest>()
    .then(authenticate({ verifier, deferProofSpend: true, challenge }))
    .then(liveChain({ revocations: { liveRecord: async () => live ?? undefined }, challenge }));
}

async function admitted(verifier = fakeVerifier({}).verifier): Promise<{ admission: Admission }> {
  return { admission: await admit(verifier).run({ ...request }) };
}

const connection = { id: 'github', kind: 'api_key' } as unknown as Connection;

function actionPipeline(receipts: ReceiptAppender | undefined, budgeter?: Parameters<typeof budget>[0], allowed = true, forwarded: string[] = []) {
  return Pipeline.start<{ admission: Admission }>()
    .then(spendProofOnRefusal())
    .then({ name: 'resolve', run: () => ({ connection, action: { event: 'gateway_call' as const, name: 'http:GET', resource: 'https://deputy.test/gw/github/x', digest: { path: '/x' } } }) })
    .then(decide(async () => (allowed ? { allowed: true as const } : { allowed: false as const, reason: 'not for you' })))
    .then(budget(budgeter))
    .then(receipt({ receipts, logger }))
    .then(refuseDenied({ logger, message: 'call denied' }))
    .then(credential({ credential: async () => ({ headers: [['authorization', 'Bearer up']], query: [], secrets: ['up'], rejected: async () => {} }) }))
    .then({ name: 'forward', run: (c) => (forwarded.push(c.credential.secrets[0]!), NOTHING) });
}

describe('admission: authenticate and liveChain', () => {
  it('adds the verified token, its pending proof and the principal from the live record', async () => {
    const { admission } = await admitted();
    expect(admission.principal).toEqual({ userId: 'okta:alice', userAttrs: {}, agentId: 'agent-a', chain: ['agent-a'], scopes: new Set(['read']), token: 'tok', tokenJti: 'at-1', upstreamHandle: undefined });
    expect(admission.proof.pending).toBe(true);
  });

  it('401s carry one DPoP challenge, with resource_metadata when the PEP names one (RFC 9728 §5.1)', async () => {
    const { verifier } = fakeVerifier(new InvalidToken('access token has expired'));
    const err = (await admit(verifier, record, 'https://deputy.test/.well-known/oauth-protected-resource/mcp/x').run({ ...request }).catch((e: unknown) => e)) as DeputyError;
    expect(err.status).toBe(401);
    expect(challengeOf(err)).toMatch(/^DPoP realm="deputy", error="invalid_token", error_description="access token has expired", resource_metadata="https:\/\/deputy\.test\/\.well-known\/oauth-protected-resource\/mcp\/x", algs="[^"]+"$/);
  });

  it('a Bearer token is refused with the DPoP challenge', async () => {
    const { verifier } = fakeVerifier({ scheme: 'Bearer' });
    const err = (await admit(verifier).run({ ...request }).catch((e: unknown) => e)) as DeputyError;
    expect([err.status, err.code]).toEqual([401, 'invalid_token']);
    expect(challengeOf(err)).toMatch(/^DPoP /);
  });

  it('a revoked chain is 401 and still spends the proof (a replayed proof then wins as invalid_dpop_proof)', async () => {
    const { verifier, spent } = fakeVerifier({});
    const revoked = (await admit(verifier, null).run({ ...request }).catch((e: unknown) => e)) as DeputyError;
    expect([revoked.code, spent.has('jti-1')]).toEqual(['invalid_token', true]);
    const replayed = (await admit(verifier, null).run({ ...request }).catch((e: unknown) => e)) as DeputyError;
    expect(replayed.code).toBe('invalid_dpop_proof');
    expect(challengeOf(replayed)).toMatch(/^DPoP .*error="invalid_dpop_proof"/);
  });
});

describe('per-action steps after one admission (MCP: many messages, one authentication)', () => {
  function appender(options: { once?: boolean; fail?: boolean } = {}) {
    const written: Array<{ input: ReceiptInput; once?: OnceKey }> = [];
    const onceKeys = new Set<string>();
    const a: ReceiptAppender = {
      append: async (input) => {
        if (options.fail) throw new Error('store down');
        written.push({ input });
        return {} as never;
      },
      ...(options.once === false ? {} : {
        appendOnce: async (input: ReceiptInput, once: OnceKey, ready?: Promise<unknown>) => {
          await ready; // the contract: nothing written before it resolves
          if (options.fail) throw new Error('store down');
          if (onceKeys.has(once.key)) throw new AlreadyRecorded(once);
          onceKeys.add(once.key);
          written.push({ input, once });
          return {} as never;
        },
      }),
    };
    return { a, written };
  }

  it('the first receipt spends the proof in its transaction, later ones are plain; each message is decided and forwarded', async () => {
    const { a, written } = appender();
    const forwarded: string[] = [];
    const { admission } = await admitted();
    const p = actionPipeline(a, undefined, true, forwarded);
    for (let i = 0; i < 3; i++) await p.run({ admission });
    expect(written.map((w) => w.once?.key)).toEqual(['jti-1', undefined, undefined]);
    expect(written[0]!.input).toMatchObject({ agent: 'agent-a', user: 'okta:alice', chain: ['agent-a'], event: 'gateway_call', action: 'http:GET', decision: 'permit', scope: 'read', requestId: 'req-1', tokenId: 'at-1' });
    expect(written[0]!.input.requestDigest).toMatch(/^sha-256:/);
    expect(forwarded).toEqual(['up', 'up', 'up']);
    expect(admission.proof.pending).toBe(false);
  });

  it('a denial is receipted, then refused (403); nothing is forwarded', async () => {
    const { a, written } = appender();
    const forwarded: string[] = [];
    const err = await actionPipeline(a, undefined, false, forwarded).run(await admitted()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AccessDenied);
    expect(written.map((w) => [w.input.decision, w.input.reason])).toEqual([['deny', 'not for you']]);
    expect(forwarded).toEqual([]);
  });

  it('a refusal before the receipt spends the pending proof; a replayed proof turns it into invalid_dpop_proof', async () => {
    const { verifier, spent } = fakeVerifier({});
    const { admission } = await admitted(verifier);
    const p = Pipeline.start<{ admission: Admission }>().then(spendProofOnRefusal()).then(failing('resolve', new InvalidRequest('malformed')));
    expect(((await p.run({ admission }).catch((e: unknown) => e)) as DeputyError).code).toBe('invalid_request');
    expect(spent.has('jti-1')).toBe(true);
    const again = await admitted(verifier); // the same proof presented again
    expect(((await p.run(again).catch((e: unknown) => e)) as DeputyError).code).toBe('invalid_dpop_proof');
  });

  it('a replayed proof at the receipt is 401 invalid_dpop_proof and writes nothing; an unwritable receipt is 503 and spends the proof', async () => {
    const { a, written } = appender();
    await actionPipeline(a).run(await admitted());
    const replay = (await actionPipeline(a).run(await admitted()).catch((e: unknown) => e)) as DeputyError;
    expect([replay.status, replay.code]).toEqual([401, 'invalid_dpop_proof']);
    expect(written).toHaveLength(1);

    const { verifier, spent } = fakeVerifier({});
    const down = await actionPipeline(appender({ fail: true }).a).run(await admitted(verifier)).catch((e: unknown) => e);
    expect(down).toBeInstanceOf(TemporarilyUnavailable);
    expect(spent.has('jti-1')).toBe(true);
  });

  it('a proof still verifying (deferProofSignature): the receipt is appended meanwhile, and its write waits for the signature', async () => {
    let verify!: () => void;
    const signature = new Promise<void>((resolve) => (verify = resolve));
    const { verifier, spent } = fakeVerifier({ proofSignature: signature });
    const calls: Array<{ once: OnceKey; ready: Promise<unknown> | undefined }> = [];
    const written: ReceiptInput[] = [];
    const a: ReceiptAppender = {
      append: async () => { throw new Error('not this path'); },
      appendOnce: async (input, once, ready) => {
        calls.push({ once, ready });
        await ready;
        written.push(input);
        return {} as never;
      },
    };
    const forwarded: string[] = [];
    const run = actionPipeline(a, undefined, true, forwarded).run(await admitted(verifier));
    await new Promise((r) => setImmediate(r));
    // Decided and handed to the receipt (signing overlaps the verification); nothing written yet.
    expect(calls.map((c) => c.once.key)).toEqual(['jti-1']);
    expect([written.length, forwarded.length]).toEqual([0, 0]);
    verify();
    await run;
    expect([written.length, forwarded, spent.size]).toEqual([1, ['up'], 0]); // spent by the receipt's statement
  });

  it('a proof whose deferred signature fails: 401 invalid_dpop_proof on every path, nothing written, spent or forwarded', async () => {
    const forged = () => {
      const signature = Promise.reject(new DeputyError(401, 'invalid_dpop_proof', 'DPoP proof signature is invalid'));
      signature.catch(() => {});
      return fakeVerifier({ proofSignature: signature });
    };
    const { a, written } = appender();
    const forwarded: string[] = [];
    const expect401 = (err: unknown) => {
      expect([(err as DeputyError).status, (err as DeputyError).code, (err as DeputyError).message]).toEqual([401, 'invalid_dpop_proof', 'DPoP proof signature is invalid']);
      expect(challengeOf(err as DeputyError)).toMatch(/^DPoP .*error="invalid_dpop_proof"/);
    };
    // Permitted, denied: the receipt step refuses before anything is written.
    for (const allowed of [true, false]) {
      const { verifier, spent } = forged();
      expect401(await actionPipeline(a, undefined, allowed, forwarded).run(await admitted(verifier)).catch((e: unknown) => e));
      expect(spent.size).toBe(0);
    }
    // A refusal before the receipt (404) and a refused admission (revoked): the signature's 401 wins.
    const { verifier, spent } = forged();
    const p = Pipeline.start<{ admission: Admission }>().then(spendProofOnRefusal()).then(failing('resolve', new NotFound('no such connection')));
    expect401(await p.run(await admitted(verifier)).catch((e: unknown) => e));
    expect401(await admit(verifier, null).run({ ...request }).catch((e: unknown) => e));
    expect([written.length, forwarded.length, spent.size]).toEqual([0, 0, 0]);
  });

  it('an appender without appendOnce: the proof is spent first, then the receipt appended', async () => {
    const { a, written } = appender({ once: false });
    const { verifier, spent } = fakeVerifier({});
    await actionPipeline(a).run(await admitted(verifier));
    expect([spent.has('jti-1'), written.length]).toEqual([true, 1]);
  });
});

describe('streamEnding', () => {
  it('completed when read to the end, cut when destroyed first', async () => {
    const whole = new PassThrough();
    const a: Promise<Ending> = streamEnding(whole);
    whole.resume();
    whole.end('x');
    const cut = new PassThrough();
    const b = streamEnding(cut);
    cut.destroy();
    expect((await a).kind).toBe('completed');
    expect((await b).kind).toBe('cut');
  });
});

describe('the HTTP gateway as a composition', () => {
  it('lists its steps in order: admission once, then the call', () => {
    const deps = { issuer: 'https://deputy.test', logger, upstreamTimeoutMs: 1000, maxRequestBytes: 1024 } as unknown as GatewayDeps;
    expect(new Gateway(deps).steps).toEqual({
      admission: ['refuseOversized', 'authenticate', 'liveChain'],
      call: ['spendProofOnRefusal', 'resolveCall', 'decide', 'budget', 'receipt', 'refuseDenied', 'credential', 'forwardUpstream'],
    });
  });
});

describe('import direction', () => {
  it('src/enforcement and src/gateway import neither Koa nor oidc-provider (HTTP → services)', () => {
    const root = fileURLToPath(new URL('../../src', import.meta.url));
    const files = ['enforcement', 'gateway'].flatMap((dir) => readdirSync(join(root, dir), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts')).map((f) => join(root, dir, f)));
    expect(files.length).toBeGreaterThan(10);
    const offending = files.filter((f) => /from\s+'(koa|@koa\/[^']+|oidc-provider(\/[^']*)?)'/.test(readFileSync(f, 'utf8')));
    expect(offending).toEqual([]);
  });
});

describe('PendingProof', () => {
  it('spends once; a caller arriving while that spend runs waits for it and gets its replay error', async () => {
    let release!: (err?: unknown) => void;
    const spends: OnceKey[] = [];
    const proof = new PendingProof({ namespace: 'dpop', key: 'jti-1', ttlSeconds: 60 }, (key) => {
      spends.push(key);
      return new Promise<void>((resolve, reject) => (release = (err) => (err ? reject(err) : resolve())));
    });
    const first = proof.spendIfPending();
    let secondDone = false;
    const second = proof.spendIfPending().finally(() => (secondDone = true));
    await new Promise((r) => setImmediate(r));
    expect(secondDone).toBe(false);
    expect(proof.take()).toBeUndefined();
    release(dpopReplayed());
    await expect(first).rejects.toMatchObject({ code: 'invalid_dpop_proof' });
    await expect(second).rejects.toMatchObject({ code: 'invalid_dpop_proof' });
    expect(spends).toHaveLength(1);
  });

  it('a key taken for a transaction is not spent again', async () => {
    const spends: OnceKey[] = [];
    const proof = new PendingProof({ namespace: 'dpop', key: 'jti-2', ttlSeconds: 60 }, async (key) => void spends.push(key));
    expect(proof.take()?.key).toBe('jti-2');
    await proof.spendIfPending();
    expect(spends).toHaveLength(0);
    expect(proof.pending).toBe(false);
  });
});
