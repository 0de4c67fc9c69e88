/**
 * AuthZEN search (Authorization API 1.0 §8): the subjects, resources or actions for which the
 * evaluation would be a permit. Candidates come from what the PDP holds — the policy set's
 * entity data, the agent registry (for the `Agent` type), and the schema's actions — and each
 * is decided exactly like an evaluation (chain semantics included), so every result, evaluated
 * again, gives `decision: true` (§8.1).
 *
 * Pagination (§8.2): an opaque `next_token` carries the offset, the page size and a digest of
 * the request; a token used with a different request is refused (400), as §8.2 recommends ("PDPs SHOULD return an error").
 * `next_token` is "" on the last page; `count` is the number of results in this page, `total`
 * the number of matches. Search with no candidates (an unknown type, say) is an empty result.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import type { Agent } from '../agents/index.js';
import { InvalidRequest } from '../errors/index.js';
import type { SearchInput } from './authzen.js';
import { uidOf } from './entity-data.js';
import { deputyType, type AgentCache, type EntityInput } from './entities.js';
import type { PolicyDecisionPoint, PreparedSubject } from './pdp.js';
import type { PolicySnapshot } from './policy-store.js';

/** One search result: an entity (subject and resource search) or an action (§8). */
export type SearchResult = { type: string; id: string } | { name: string };

/** A search response page (§8.2): `next_token` is empty on the last page. */
export interface SearchResponse {
  page: { next_token: string; count: number; total: number };
  results: SearchResult[];
}

interface PageToken {
  /** Offset of the next result. */
  o: number;
  /** Page size. */
  l: number;
  /** Digest of the request (everything but the page). */
  d: string;
}

/**
 * AuthZEN search (§8) by evaluation: each candidate is decided like an evaluation, and the
 * permitted ones are returned a page at a time. Page tokens bind to the request's digest.
 */
export class Search {
  readonly #pdp: PolicyDecisionPoint;
  readonly #agents: AgentCache;
  readonly #defaultLimit: number;
  readonly #maxLimit: number;

  constructor(pdp: PolicyDecisionPoint, agents: AgentCache, options: { defaultLimit: number; maxLimit: number }) {
    this.#pdp = pdp;
    this.#agents = agents;
    this.#defaultLimit = options.defaultLimit;
    this.#maxLimit = options.maxLimit;
  }

  /**
   * One page of results.
   *
   * @throws InvalidRequest for a page token of another request, or a changed `page.limit`.
   */
  async run(input: SearchInput): Promise<SearchResponse> {
    const digest = requestDigest(input);
    const page = this.#page(input, digest);
    const all = await this.#matches(input);
    const results = all.slice(page.offset, page.offset + page.limit);
    const next = page.offset + results.length;
    const nextToken = page.limit > 0 && next < all.length ? encodeToken({ o: next, l: page.limit, d: digest }) : '';
    return { page: { next_token: nextToken, count: results.length, total: all.length }, results };
  }

  #page(input: SearchInput, digest: string): { offset: number; limit: number } {
    const requested = input.page.limit === undefined ? undefined : Math.min(input.page.limit, this.#maxLimit);
    if (input.page.token === undefined) return { offset: 0, limit: requested ?? this.#defaultLimit };
    const token = decodeToken(input.page.token);
    if (token.d !== digest) throw new InvalidRequest('page.token belongs to a different search request (AuthZEN 1.0 §8.2: the request must not change between pages)');
    if (requested !== undefined && requested !== token.l) throw new InvalidRequest('page.limit must not change between pages');
    return { offset: token.o, limit: token.l };
  }

  /** Every permitted result, in candidate order (§8). */
  async #matches(input: SearchInput): Promise<SearchResult[]> {
    switch (input.kind) {
      case 'subject':
        return this.#subjects(input);
      case 'resource':
        return this.#resources(input);
      case 'action':
        return this.#actions(input);
    }
  }

  /** Subject search (§8.4): each candidate subject of the type, decided as a plain subject. */
  async #subjects(input: SearchInput): Promise<SearchResult[]> {
    const pdp = this.#pdp;
    const [agents, resourceAgent] = await Promise.all([this.#agentsIfAgentType(input.subject.type), this.#agentIfAgentType(input.resource)]);
    const snapshot = pdp.store.current;
    const resource = { input: input.resource, agent: resourceAgent };
    const byId = new Map(agents.map((a) => [a.id, a]));
    return candidates(snapshot, input.subject.type, agents)
      .filter((id) => {
        const subject: PreparedSubject = { kind: 'plain', input: { ...input.subject, id }, agent: byId.get(id) };
        return pdp.decide(snapshot, subject, { action: input.action!, context: input.context }, resource).decision;
      })
      .map((id) => ({ type: input.subject.type, id }));
  }

  /** Resource search (§8.5): each candidate resource of the type, for the given subject. */
  async #resources(input: SearchInput): Promise<SearchResult[]> {
    const pdp = this.#pdp;
    const [subject, agents] = await Promise.all([pdp.prepareSubject(input.subject, new Map()), this.#agentsIfAgentType(input.resource.type)]);
    const snapshot = pdp.store.current;
    const byId = new Map(agents.map((a) => [a.id, a]));
    return candidates(snapshot, input.resource.type, agents)
      .filter((id) => {
        const resource = { input: { ...input.resource, id }, agent: byId.get(id) };
        return pdp.decide(snapshot, subject, { action: input.action!, context: input.context }, resource).decision;
      })
      .map((id) => ({ type: input.resource.type, id }));
  }

  /** Action search (§8): each action the schema applies to the resource's type. */
  async #actions(input: SearchInput): Promise<SearchResult[]> {
    const pdp = this.#pdp;
    const [subject, resourceAgent] = await Promise.all([pdp.prepareSubject(input.subject, new Map()), this.#agentIfAgentType(input.resource)]);
    const snapshot = pdp.store.current;
    const resourceType = snapshot.schema.entityType(input.resource.type)?.name;
    const resource = { input: input.resource, agent: resourceAgent };
    return snapshot.schema.actions
      .filter((a) => resourceType !== undefined && a.resourceTypes.has(resourceType))
      .filter((a) => pdp.decide(snapshot, subject, { action: { name: a.name, properties: {} }, context: input.context }, resource).decision)
      .map((a) => ({ name: a.name }));
  }

  /** Registry agents, when `type` is the policy set's `Agent` type. */
  async #agentsIfAgentType(type: string): Promise<readonly Agent[]> {
    const snapshot = this.#pdp.store.current;
    const agentType = deputyType(snapshot, 'Agent');
    if (!agentType || snapshot.schema.entityType(type)?.name !== agentType.name) return [];
    return this.#agents.list();
  }

  async #agentIfAgentType(e: EntityInput): Promise<Agent | undefined> {
    const snapshot = this.#pdp.store.current;
    const agentType = deputyType(snapshot, 'Agent');
    if (!agentType || snapshot.schema.entityType(e.type)?.name !== agentType.name) return undefined;
    return this.#agents.get(e.id);
  }
}

/** Candidate ids of an AuthZEN type: the PDP's own entities of that type, and registry agents; in id order. */
function candidates(snapshot: PolicySnapshot, type: string, agents: readonly Agent[]): string[] {
  const t = snapshot.schema.entityType(type);
  if (!t) return [];
  const ids = new Set(snapshot.data.list(t.name).map((e) => uidOf(e).id));
  for (const a of agents) ids.add(a.id);
  return [...ids].sort();
}

/** Everything that must stay the same between pages; the searched entity's id is ignored (§8.4.1, §8.5.1). */
function requestDigest(input: SearchInput): string {
  const subject = input.kind === 'subject' ? { ...input.subject, id: '' } : input.subject;
  const resource = input.kind === 'resource' ? { ...input.resource, id: '' } : input.resource;
  return createHash('sha256')
    .update(JSON.stringify([input.kind, subject, input.action ?? null, resource, input.context]))
    .digest('base64url')
    .slice(0, 22);
}

function encodeToken(t: PageToken): string {
  return Buffer.from(JSON.stringify(t), 'utf8').toString('base64url');
}

function decodeToken(token: string): PageToken {
  let t: unknown;
  try {
    t = /^[A-Za-z0-9_-]{1,512}$/.test(token) ? JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) : undefined;
  } catch {
    t = undefined;
  }
  const v = t as Partial<PageToken> | undefined;
  if (!v || !Number.isSafeInteger(v.o) || v.o! < 0 || !Number.isSafeInteger(v.l) || v.l! < 1 || typeof v.d !== 'string') {
    throw new InvalidRequest('page.token is not a token this PDP issued');
  }
  return v as PageToken;
}
