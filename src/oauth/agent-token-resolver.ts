/**
 * The OAuth side of subject resolution (delegation/subject-resolution.ts, steps 1–3): a Deputy
 * agent token presented as an AuthZEN subject (in `subject.properties.token`) is verified and
 * matched against Deputy's issuance records, and every link is checked against revocation and
 * expiry. Step 4 (registry agents and rules) is the PDP's, through `checkAgainstRegistry`.
 *
 * The static part (steps 1, 2 and the records' structure) is cached per token until it expires;
 * revocation (through the shared RevocationCache) and expiry are checked on every call.
 *
 * @module
 */
import {
  ChainClaimError,
  chainFromAct,
  checkGrantSequence,
  invalidLink,
  invalidToken,
  sameChain,
  type DelegatingUser,
  type DelegationGrant,
  type DelegationChain,
  type InvalidSubject,
  type SubjectResolver,
  type VerifiedChain,
} from '../delegation/index.js';
import { DeputyError } from '../errors/index.js';
import type { AccessTokenClaims, AccessTokenVerifier } from './access-token.js';
import { recordFootprint, type RevocationCache, type TokenRecord, type TokenRecords } from './token-records.js';
import { SizeBoundedMap } from '../util/bounded-map.js';

/** Steps 1 and 2 of a token, as cached. */
interface Verified {
  claims: AccessTokenClaims;
  chain: DelegationChain;
  records: TokenRecord[];
  expiresAtMs: number;
  /** {@link footprint}, counted against the byte budget. */
  size: number;
}

/** What {@link AgentTokenResolver} is built from. */
export interface AgentTokenResolverOptions {
  verifier: AccessTokenVerifier;
  records: TokenRecords;
  revocations: RevocationCache;
  /** Bytes of cached tokens at most ({@link footprint}); default {@link AgentTokenResolver.BUDGET_BYTES}. */
  budgetBytes?: number;
  /** Cached tokens at most; default {@link AgentTokenResolver.MAX_ENTRIES}. */
  maxEntries?: number;
}

/** The heap an entry costs besides what {@link footprint} counts by size: the map slot, the entry, the chain's array. */
const ENTRY_OVERHEAD_BYTES = 1024;

/**
 * What one cached token keeps on the heap, estimated: the key (the token: ASCII, one byte a
 * character), its verified claims and `act` chain (decoded from the token's payload, at most 3/4
 * of its length, counted twice over for the objects and strings holding it: two bytes a token
 * character) and its issuance records, read from the store for this entry alone (their JSON
 * twice: objects, strings, the user's attributes).
 */
export function footprint(token: string, records: readonly TokenRecord[]): number {
  let size = 3 * token.length + ENTRY_OVERHEAD_BYTES;
  for (const r of records) size += recordFootprint(r);
  return size;
}

const MAX_TOKEN_LENGTH = 16 * 1024;
const MAX_LINKS = 32;
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** {@link SubjectResolver} over Deputy's access tokens, token records and revocation cache. */
export class AgentTokenResolver implements SubjectResolver {
  readonly #verifier: AccessTokenVerifier;
  readonly #records: TokenRecords;
  readonly #revocations: RevocationCache;
  /** By token, in the order verified: the first is forgotten first; bounded by bytes and entries. */
  readonly #verified: SizeBoundedMap<string, Verified>;
  /** Bound on cached tokens' bytes ({@link footprint}): a token may be 16 KiB, its records large. */
  static readonly BUDGET_BYTES = 8 * 1024 * 1024;
  /** Bound on cached tokens; a new one past either bound evicts the ones verified longest ago. */
  static readonly MAX_ENTRIES = 20_000;

  constructor(deps: AgentTokenResolverOptions) {
    this.#verifier = deps.verifier;
    this.#records = deps.records;
    this.#revocations = deps.revocations;
    this.#verified = new SizeBoundedMap(deps.budgetBytes ?? AgentTokenResolver.BUDGET_BYTES, deps.maxEntries ?? AgentTokenResolver.MAX_ENTRIES);
  }

  /** Bytes the cached tokens count ({@link footprint}); never more than the budget. */
  get bytes(): number {
    return this.#verified.bytes;
  }

  /** Tokens cached now; never more than the entry bound. */
  get size(): number {
    return this.#verified.size;
  }

  /** Steps 1–3 (see {@link SubjectResolver.resolve}). */
  async resolve(token: string, now = Date.now()): Promise<VerifiedChain | InvalidSubject> {
    const verified = await this.#verify(token, now);
    if ('kind' in verified) return verified;
    const { claims, chain, records } = verified;

    // 3. Every link: not revoked, not expired (RevocationCache: a revocation made elsewhere shows within its bound).
    for (const r of records) {
      if (expired(r, now)) return invalidLink(r, 'has expired', chain.length);
      if (await this.#revocations.isRevoked(r.jti, now)) return invalidLink(r, 'has been revoked', chain.length);
    }
    const root = records[0]!;
    const user: DelegatingUser = { id: root.userId, issuerId: root.issuerId, ...root.userAttrs };
    return { kind: 'verified', user, chain, grants: records, scopes: (claims.scope ?? '').split(' ').filter(Boolean) };
  }

  /**
   * Whether {@link resolve} would still verify `token` with exactly `grants` (the records it
   * answered with before) at `now`, from cached answers alone: the token's steps 1–2 are cached
   * with these records and unexpired, and every link is unexpired and known live to the
   * revocation cache (a stale revocation answer, which `resolve` would re-read, is a no).
   * Synchronous: the PDP's cached path re-checks a remembered decision's subject with it.
   */
  holds(token: string, grants: readonly DelegationGrant[], now = Date.now()): boolean {
    const hit = this.#verified.get(token);
    if (!hit || hit.expiresAtMs <= now || hit.records !== grants) return false;
    for (const r of hit.records) if (expired(r, now) || !this.#revocations.knownLive(r.jti, now)) return false;
    return true;
  }

  /** Steps 1 and 2, cached per token until it expires. */
  async #verify(token: string, now: number): Promise<Verified | InvalidSubject> {
    const hit = this.#verified.get(token);
    if (hit && hit.expiresAtMs > now) return hit;
    const step1 = await this.#claims(token);
    if ('kind' in step1) return step1;
    const { claims } = step1;
    const chain = actChain(claims);
    if ('kind' in chain) return chain;
    const records = await this.#walk(claims.jti!);
    if (!records) return invalidToken('the subject token was not issued by a Deputy token exchange');
    const leaf = records[records.length - 1]!;
    if (leaf.userId !== claims.sub || !sameChain(leaf.chain, chain)) return invalidToken('the subject token does not match its issuance record');
    const problem = checkGrantSequence(records);
    if (problem) return problem;
    const entry: Verified = { claims, chain, records, expiresAtMs: Math.min(claims.exp! * 1000, leaf.expiresAt * 1000), size: footprint(token, records) };
    this.#remember(token, entry);
    return entry;
  }

  /**
   * Caches `entry` under a copy of `token`, forgetting the tokens verified longest ago as needed;
   * one larger than the whole budget is not cached. The copy is the token's own string: the
   * caller's may be a slice of a larger one (the `Authorization` header, a request body), and a
   * V8 slice keeps its whole parent alive.
   */
  #remember(token: string, entry: Verified): void {
    this.#verified.set(Buffer.from(token, 'latin1').toString('latin1'), entry);
  }

  /** Step 1: the token's signature, issuer, type and expiry (RFC 9068 §4), not its audience. */
  async #claims(token: string): Promise<{ claims: AccessTokenClaims } | InvalidSubject> {
    if (token.length > MAX_TOKEN_LENGTH || !JWT_SHAPE.test(token)) return invalidToken('the subject token is not a JWT');
    try {
      return { claims: await this.#verifier.verify(token, undefined) };
    } catch (err) {
      if (err instanceof DeputyError) return invalidToken(`the subject token is not valid: ${err.description}`);
      throw err;
    }
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

/** Whether a link's token has expired at `now` (epoch milliseconds). */
function expired(record: TokenRecord, now: number): boolean {
  return record.expiresAt * 1000 <= now;
}

/** The chain a verified token's `act` claim names (RFC 8693 §4.1); an agent token must carry one. */
function actChain(claims: AccessTokenClaims): DelegationChain | InvalidSubject {
  if (claims.act === undefined) return invalidToken('the subject token carries no delegation ("act"): it is not an agent token');
  try {
    return chainFromAct(claims.act);
  } catch (err) {
    if (err instanceof ChainClaimError) return invalidToken(`the subject token's "act" claim is malformed: ${err.message}`);
    throw err;
  }
}
