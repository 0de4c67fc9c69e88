/**
 * The agent library's `DelegatedToken` (src/agent/agent.ts), now on the one single-flight cache
 * (issue 16, ninth round): concurrent callers share one re-exchange, a failed exchange is not
 * kept, and a wall clock stepped back to before the exchange began re-exchanges (before: the
 * token was kept until Deputy refused it). The agent's session is a stand-in counting
 * exchanges; the clock is `Date.now`, stepped by hand. No timing.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DelegatedToken } from '../../src/agent/agent.js';

/** A stand-in session: the n-th exchange (1-based) issues `t{n}` for 300 s, or fails when `fail(n)`. */
function session(fail: (n: number) => boolean = () => false) {
  let n = 0;
  const grant = async () => {
    const i = ++n;
    if (fail(i)) throw new Error(`exchange ${i} refused`);
    return { value: `t${i}`, expiresAt: Date.now() + 300_000, scope: ['read'], audience: 'https://api.example.com' };
  };
  const agent = { issuer: 'https://deputy.example.com', clientId: 'agent-a', grant, protectedRequest: async () => new Response() };
  return { agent, exchanges: () => n };
}

const token = (s: ReturnType<typeof session>) =>
  new DelegatedToken(s.agent as unknown as ConstructorParameters<typeof DelegatedToken>[0], { subjectToken: 'user-token' }, 30_000);

afterEach(() => {
  vi.restoreAllMocks();
});

describe('DelegatedToken', () => {
  it('concurrent callers share one exchange; a failed one is not kept; the token is reused until its refresh time', async () => {
    let clock = 1_000_000;
    vi.spyOn(Date, 'now').mockImplementation(() => clock);
    const s = session((n) => n === 1);
    const t = token(s);
    const first = await Promise.allSettled([t.accessToken(), t.accessToken()]);
    expect(first.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(s.exchanges()).toBe(1);
    expect(await Promise.all([t.accessToken(), t.accessToken()])).toEqual(['t2', 't2']);
    clock += 269_999;
    expect(await t.accessToken()).toBe('t2');
    clock += 1;
    expect(await t.accessToken()).toBe('t3');
    expect(s.exchanges()).toBe(3);
    expect(t.audience).toBe('https://api.example.com');
  });

  it('a wall clock stepped back to before the exchange began re-exchanges (before: kept until Deputy refused it)', async () => {
    let clock = 1_000_000;
    vi.spyOn(Date, 'now').mockImplementation(() => clock);
    const s = session();
    const t = token(s);
    expect(await t.accessToken()).toBe('t1');
    clock -= 3_600_000;
    expect(await t.accessToken()).toBe('t2');
    expect(s.exchanges()).toBe(2);
  });
});
