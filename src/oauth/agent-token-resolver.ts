/**
 * A Deputy agent token presented as the AuthZEN subject (in `subject.properties.token`),
 * verified and turned into a delegation chain the PDP can evaluate link by link.
 *
 * RFC 8693 §4.1 says nested `act` claims are informational only: the token alone proves who
 * holds it, not that every earlier delegation is still good. So the PDP checks the chain
 * against Deputy's own records, at every decision:
 *
 * 1. the token: signature, issuer, `typ: at+jwt`, expiry (RFC 9068 §4) — not the audience,
 *    which belongs to the API the PEP guards, not to the PDP;
 * 2. it was issued by a token exchange (a record exists), and its `act` and `sub` match the
 *    record;
 * 3. every link (each exchange from the user's token to this one) is neither revoked nor
 *    expired, the chain only grows by the exchanging agent, and scopes only narrow;
 * 4. every agent in the chain is registered and active, and each link still passes the
 *    registry's rules (allowed audience and scopes, depth limits) as they are now.
 *
 * The static part (1, 2 and the records) is cached per token; revocation (through the shared
 * RevocationCache) and agent state (through the AgentCache) are checked on every decision.
 *
 * @module
 */
import type { Agent } from '../agents/registry.js';
import { DeputyError } from '../errors/index.js';
import type { AccessTokenClaims, AccessTokenVerifier } from '../oauth/access-token.js';
import { DelegationDenied, RegistryAuthorizer, type DelegatingUser } from '../oauth/delegation-authorizer.js';
import { ChainClaimError, chainFromAct, type DelegationChain } from '../oauth/delegation-chain.js';
import type { RevocationCache, TokenRecord, TokenRecords } from '../oauth/token-records.js';
import type { AgentCache } from './entities.js';

/** One agent's place in the chain: the latest token it held there (its scopes and audience). */
export interface DelegationLink {
  /** 1 = the first agent; the chain's length = the current actor. */
  position: number;
  agent: Agent;
  record: TokenRecord;
}

export interface DelegatedSubject {
  kind: 'delegated';
  user: DelegatingUser;
  chain: DelegationChain;
  links: readonly DelegationLink[];
  /** Every exchange from the user's token to the presented one, root first. */
  records: readonly TokenRecord[];
  /** The presented token's own scopes. */
  scopes: readonly string[];
}

/** Why a presented token cannot stand for a subject. Messages are safe to return (no token data). */
export interface InvalidSubject {
  kind: 'invalid';
  reason: 'invalid_subject' | 'invalid_chain';
  message: string;
  /** The link concerned, when one is, and the chain's length. */
  position?: number;
  depth?: number;
  agentId?: string;
}

export type SubjectResolution = DelegatedSubject | InvalidSubject;

interface Verified {
  claims: AccessTokenClaims;
  chain: DelegationChain;
  records: TokenRecord[];
  expiresAtMs: number;
}

const MAX_TOKEN_LENGTH = 16 * 1024;
const MAX_LINKS = 32;
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

export class DelegatedSubjects {
  readonly #verifier: AccessTokenVerifier;
  readonly #records: TokenRecords;
  readonly #revocations: RevocationCache;
  readonly #agents: AgentCache;
  readonly #registry: RegistryAuthorizer;
  readonly #verified = new Map<string, Verified>();
  static readonly MAX_ENTRIES = 20_000;

  constructor(deps: { verifier: AccessTokenVerifier; records: TokenRecords; revocations: RevocationCache; agents: AgentCache; maxChainDepth: number }) {
    this.#verifier = deps.verifier;
    this.#records = deps.records;
    this.#revocations = deps.revocations;
    this.#agents = deps.agents;
    this.#registry = new RegistryAuthorizer(deps.maxChainDepth);
  }

  async resolve(token: string, now = Date.now()): Promise<SubjectResolution> {
    const verified = await this.#verify(token, now);
    if ('kind' in verified) return verified;
    const { claims, chain, records } = verified;

    // 3. Every link: not revoked, not expired (RevocationCache: a revocation made elsewhere shows within its bound).
    for (const r of records) {
      if (r.expiresAt * 1000 <= now) return invalidLink(r, 'has expired', chain.length);
      if (await this.#revocations.isRevoked(r.jti, now)) return invalidLink(r, 'has been revoked', chain.length);
    }

    // 4. Agents registered and active; each link passes the registry's rules as they are now.
    const agents = new Map<string, Agent>();
    for (const id of new Set(chain)) {
      const agent = await this.#agents.get(id);
      const position = chain.indexOf(id) + 1;
      const depth = chain.length;
      if (!agent) return { kind: 'invalid', reason: 'invalid_chain', message: `agent "${id}" at link ${position} is not registered`, position, depth, agentId: id };
      if (agent.status !== 'active') return { kind: 'invalid', reason: 'invalid_chain', message: `agent "${id}" at link ${position} is disabled`, position, depth, agentId: id };
      agents.set(id, agent);
    }
    const root = records[0]!;
    const user: DelegatingUser = { id: root.userId, issuerId: root.issuerId, ...root.userAttrs };
    for (const r of records) {
      try {
        await this.#registry.authorize({ user, agent: agents.get(r.agentId)!, chain: r.chain, audience: r.audience, scopes: scopesOf(r) });
      } catch (err) {
        if (err instanceof DelegationDenied) {
          return { kind: 'invalid', reason: 'invalid_chain', message: `link ${r.chain.length}: ${err.description}`, position: r.chain.length, depth: chain.length, agentId: r.agentId };
        }
        throw err;
      }
    }
    const links = chain.map((id, i): DelegationLink => ({
      position: i + 1,
      agent: agents.get(id)!,
      record: [...records].reverse().find((r) => r.chain.length === i + 1)!,
    }));
    return { kind: 'delegated', user, chain, links, records, scopes: (claims.scope ?? '').split(' ').filter(Boolean) };
  }

  /** Steps 1 and 2, cached per token until it expires. */
  async #verify(token: string, now: number): Promise<Verified | InvalidSubject> {
    const hit = this.#verified.get(token);
    if (hit && hit.expiresAtMs > now) return hit;
    if (token.length > MAX_TOKEN_LENGTH || !JWT_SHAPE.test(token)) return invalidToken('the subject token is not a JWT');
    let claims: AccessTokenClaims;
    try {
      claims = await this.#verifier.verify(token, undefined);
    } catch (err) {
      if (err instanceof DeputyError) return invalidToken(`the subject token is not valid: ${err.description}`);
      throw err;
    }
    if (claims.act === undefined) return invalidToken('the subject token carries no delegation ("act"): it is not an agent token');
    let chain: DelegationChain;
    try {
      chain = chainFromAct(claims.act);
    } catch (err) {
      if (err instanceof ChainClaimError) return invalidToken(`the subject token's "act" claim is malformed: ${err.message}`);
      throw err;
    }
    const records = await this.#walk(claims.jti!);
    if (!records) return invalidToken('the subject token was not issued by a Deputy token exchange');
    const leaf = records[records.length - 1]!;
    if (leaf.userId !== claims.sub || !sameChain(leaf.chain, chain)) return invalidToken('the subject token does not match its issuance record');
    const problem = checkLinks(records);
    if (problem) return problem;
    const entry: Verified = { claims, chain, records, expiresAtMs: Math.min(claims.exp! * 1000, leaf.expiresAt * 1000) };
    if (this.#verified.size >= DelegatedSubjects.MAX_ENTRIES) this.#verified.clear();
    this.#verified.set(token, entry);
    return entry;
  }

  /** The records from the user's token to `jti`, root first; undefined when one is missing. */
  async #walk(jti: string): Promise<TokenRecord[] | undefined> {
    const out: TokenRecord[] = [];
    let next: string | undefined = jti;
    while (next !== undefined) {
      if (out.length >= MAX_LINKS) return undefined;
      const record = await this.#records.find(next);
      if (!record) return undefined;
      out.push(record);
      next = record.parentJti;
    }
    return out.reverse();
  }
}

/** Step 3's structure: each exchange extends the chain by at most its agent, keeps the user, narrows scopes. */
function checkLinks(records: readonly TokenRecord[]): InvalidSubject | undefined {
  for (let i = 1; i < records.length; i++) {
    const prev = records[i - 1]!;
    const cur = records[i]!;
    const grows = cur.chain.length - prev.chain.length;
    if (cur.userId !== prev.userId || (grows !== 0 && grows !== 1) || !sameChain(prev.chain, cur.chain.slice(0, prev.chain.length)) || cur.chain.at(-1) !== cur.agentId) {
      return invalidLink(cur, 'does not extend the chain it was exchanged from', records.at(-1)!.chain.length);
    }
    const widened = scopesOf(cur).filter((s) => !scopesOf(prev).includes(s));
    if (widened.length > 0) return invalidLink(cur, 'holds scopes its delegator did not have', records.at(-1)!.chain.length);
  }
  return undefined;
}

function invalidLink(r: TokenRecord, what: string, depth: number): InvalidSubject {
  return { kind: 'invalid', reason: 'invalid_chain', message: `link ${r.chain.length} (agent "${r.agentId}") ${what}`, position: r.chain.length, depth, agentId: r.agentId };
}

function invalidToken(message: string): InvalidSubject {
  return { kind: 'invalid', reason: 'invalid_subject', message };
}

function scopesOf(r: TokenRecord): string[] {
  return r.scope.split(' ').filter(Boolean);
}

function sameChain(a: DelegationChain, b: DelegationChain): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
