/**
 * Cedar entities for a decision, and the caches that keep the store off the decision path.
 *
 * - Agents come from the registry through {@link AgentCache} (the registry's read cache; the
 *   list for subject search cached here), dropped at once on a change made through this instance.
 * - Users of delegated subjects come from the token record (attributes the IdP asserted at
 *   exchange time), optionally completed by the policy set's own entity data.
 * - Plain subjects and resources come from the policy set's entity data (which wins) completed
 *   by the AuthZEN `properties` the PEP sent, projected onto the schema's attributes.
 *
 * Builders are synchronous and take the policy snapshot they build for (see policy-store.ts).
 *
 * @module
 */
import type { Agent, AgentRegistry } from '../agents/index.js';
import type { DelegatingUser } from '../delegation/index.js';
import type { CedarValueJson, EntityJson, EntityUid } from './cedar.js';
import type { PolicySnapshot } from './policy-store.js';
import { ProjectionError, type EntityTypeInfo } from './schema.js';
import { hasLoneSurrogate } from '../util/i-json.js';
import { withinBound } from '../util/fresh.js';

/** A principal or resource: its uid and the entities Cedar needs for it (itself and its ancestors). */
export interface BuiltEntity {
  uid: EntityUid;
  entities: EntityJson[];
}

/** AuthZEN subject / resource as the PDP reads it (draft-00 top-level members already folded into `properties`). */
export interface EntityInput {
  type: string;
  id: string;
  properties: Readonly<Record<string, unknown>>;
}

/** A request names something the policy set does not know; the message is safe to return. */
export class UnknownEntityType extends Error {
  readonly code = 'ERR_PDP_UNKNOWN_TYPE';
  constructor(message: string) {
    super(message);
    this.name = 'UnknownEntityType';
  }
}

/**
 * Registry agents for the PDP. Single agents come from the registry's own read cache (bounded
 * staleness, dropped at once on a local change: src/agents/registry.ts); the full list (subject
 * search over agents) is cached here for `ttlSeconds` and dropped on any local change.
 */
export class AgentCache {
  readonly #registry: AgentRegistry;
  readonly #ttlMs: number;
  /** The list and when its look-up began (epoch ms): reused only within the bound after it ({@link withinBound}). */
  #all: { agents: Agent[]; lookedUpAt: number } | undefined;

  constructor(registry: AgentRegistry, ttlSeconds: number) {
    this.#registry = registry;
    this.#ttlMs = ttlSeconds * 1000;
    registry.onChange(() => {
      this.#all = undefined;
    });
  }

  get(id: string): Promise<Agent | undefined> {
    return this.#registry.get(id);
  }

  /** What {@link get} would answer at `nowMs` without a store read; undefined when it would read (AgentRegistry.peek). */
  peek(id: string, nowMs: number): { readonly agent: Agent | undefined } | undefined {
    return this.#registry.peek(id, nowMs);
  }

  /** Every registered agent (subject search), up to `max`. */
  async list(max = 10_000, now = Date.now()): Promise<readonly Agent[]> {
    if (this.#all && withinBound(this.#all.lookedUpAt, now, this.#ttlMs)) return this.#all.agents;
    const agents: Agent[] = [];
    let after: string | undefined;
    do {
      const page = await this.#registry.list({ limit: 200, ...(after ? { after } : {}) });
      agents.push(...page.agents);
      after = page.next;
    } while (after !== undefined && agents.length < max);
    this.#all = { agents, lookedUpAt: now };
    return agents;
  }
}

/** The policy set's `User`, `Agent` and `Audience` types (the names Deputy's own entities use). */
export function deputyType(snapshot: PolicySnapshot, name: 'User' | 'Agent' | 'Audience'): EntityTypeInfo | undefined {
  return snapshot.schema.entityType(name);
}

/** The user a delegation acts for, as a Cedar entity of the `User` type. */
export function userEntity(snapshot: PolicySnapshot, type: EntityTypeInfo, user: DelegatingUser): BuiltEntity {
  const pip = snapshot.data.find(type.name, user.id);
  const source: Record<string, unknown> = {
    ...(pip?.attrs ?? {}),
    id: user.id,
    issuer: user.issuerId,
    groups: [...user.groups],
    roles: [...user.roles],
    ...(user.email !== undefined ? { email: user.email } : {}),
    ...(user.tenant !== undefined ? { tenant: user.tenant } : {}),
  };
  const attrs = snapshot.schema.projectAttributes(source, type, 'user');
  const group = type.memberOfTypes.find((t) => t === 'Group' || t.endsWith('::Group'));
  const parents: EntityUid[] = [...(pip?.parents ?? []).map(plainUid), ...(group ? user.groups.map((id) => ({ type: group, id })) : [])];
  return finish(snapshot, { type: type.name, id: user.id }, attrs, parents);
}

/** A registered agent as a Cedar entity of the `Agent` type. */
export function agentEntity(snapshot: PolicySnapshot, type: EntityTypeInfo, agent: Agent): BuiltEntity {
  const pip = snapshot.data.find(type.name, agent.id);
  const source: Record<string, unknown> = {
    ...(pip?.attrs ?? {}),
    id: agent.id,
    name: agent.name,
    owner: agent.owner,
    status: agent.status,
    scopes: agent.scopes,
    audiences: agent.audiences,
    maxDelegationDepth: agent.maxDelegationDepth,
    // "config" | "api" | "client_id_metadata": policies can single out metadata-document clients.
    source: agent.source,
    ...(agent.clientIdUrl !== undefined ? { client_id_url: agent.clientIdUrl } : {}),
  };
  const attrs = snapshot.schema.projectAttributes(source, type, 'agent');
  return finish(snapshot, { type: type.name, id: agent.id }, attrs, (pip?.parents ?? []).map(plainUid));
}

/**
 * A subject or resource the PEP named. The policy set's own data wins over `properties`
 * (the PDP's information is authoritative; the PEP fills in what the PDP does not hold).
 * Throws {@link UnknownEntityType} or a ProjectionError (schema.ts).
 */
export function requestEntity(snapshot: PolicySnapshot, input: EntityInput, role: 'subject' | 'resource'): BuiltEntity {
  const type = snapshot.schema.entityType(input.type);
  if (!type) throw new UnknownEntityType(`${role} type ${JSON.stringify(input.type.slice(0, 80))} is not an entity type of the policy set`);
  // Cedar throws on a lone surrogate (a 500 before): bad input, a deny with a reason.
  if (hasLoneSurrogate(input.id)) throw new ProjectionError(`${role}.id`, 'a string without a lone surrogate (I-JSON)');
  const id = snapshot.data.canonicalId(type.name, input.id);
  const pip = snapshot.data.find(type.name, id);
  const source: Record<string, unknown> = { ...input.properties, ...(pip?.attrs ?? {}), id };
  const attrs = snapshot.schema.projectAttributes(source, type, `${role}.properties`);
  return finish(snapshot, { type: type.name, id }, attrs, (pip?.parents ?? []).map(plainUid));
}

/** A resource known only by type and id (the `delegate` action's audience). */
export function bareEntity(snapshot: PolicySnapshot, type: EntityTypeInfo, id: string): BuiltEntity {
  const attrs = snapshot.schema.projectAttributes({ id }, type, 'resource');
  return finish(snapshot, { type: type.name, id }, attrs, []);
}

function finish(snapshot: PolicySnapshot, uid: EntityUid, attrs: Record<string, CedarValueJson>, parents: EntityUid[]): BuiltEntity {
  return { uid, entities: [{ uid, attrs, parents }, ...snapshot.data.ancestors(parents)] };
}

function plainUid(u: EntityJson['uid']): EntityUid {
  return '__entity' in u ? u.__entity : u;
}
