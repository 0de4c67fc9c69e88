/**
 * Deputy as an external policy backend of Microsoft's Agent Governance Toolkit
 * (`@microsoft/agent-governance-sdk`, `ExternalPolicyBackend`): the toolkit's in-process
 * decision (the seatbelt) is combined with Deputy's PDP over the agent's whole delegation chain
 * (the traffic system). The toolkit denies when any backend denies or fails, and this backend
 * itself fails closed (see {@link AuthZenPep}).
 *
 * The mapping of a toolkit action onto AuthZEN (§5):
 *
 * | AuthZEN | from |
 * | --- | --- |
 * | `subject` | `{type: "Agent", id: <the token's client_id>, properties: {token: <the agent's Deputy token>}}` — Deputy verifies the token and evaluates the user and every agent of its chain |
 * | `action` | `{name: <the toolkit action>}`, renamed through `actions` when given (e.g. `{"crm.lookup": "read"}`) |
 * | `resource` | `context.resource`: a string is `{type: resourceType, id}`; an object `{type?, id, properties?}` is taken as is |
 * | `context` | every other member of the toolkit context (JSON values only); `evaluatePolicy` adds `agent_did` |
 *
 * A toolkit context without a resource, or without an action for `evaluatePolicy`
 * (`context.action`), is a deny naming what is missing.
 *
 * @module
 */
import type { BackendEvaluationOutcome, ExternalPolicyBackend } from '@microsoft/agent-governance-sdk';
import { decodeJwt } from 'jose';
import { AuthZenPep, type AuthZenAction, type AuthZenEntity, type AuthZenEvaluation, type AuthZenPepOptions, type PepDecision } from './authzen-pep.js';
import { setMember } from '../../util/own-member.js';

/** Anything that yields the agent's current Deputy token (a `DeputyAgent` does: `agent.token(resource)`). */
export interface TokenHolder {
  /** Deputy's issuer (a `DeputyAgent` has it). */
  readonly issuer?: string;
  token(resource?: string | URL): Promise<string>;
}

/** Options of {@link DeputyPolicyBackend}: the PEP's (issuer, credentials, timeout, cache) plus the mapping. */
export interface DeputyPolicyBackendOptions extends Omit<AuthZenPepOptions, 'issuer'> {
  /** Deputy's issuer; default the agent's. */
  issuer?: string | URL;
  /** The agent whose delegation chain is evaluated: a `DeputyAgent`, or a function returning its current token. */
  agent: TokenHolder | (() => string | Promise<string>);
  /** Which of the agent's tokens is the subject, when it holds several (a resource URL). */
  tokenResource?: string | URL;
  /** Backend name reported to the toolkit. Default `deputy`. */
  name?: string;
  /** Toolkit action → AuthZEN action name (e.g. `{"crm.lookup": "read"}`), or a function. Default: unchanged. */
  actions?: Readonly<Record<string, string>> | ((action: string, context: Readonly<Record<string, unknown>>) => string | AuthZenAction);
  /** Entity type of a resource given as a plain id. Default `Resource`. */
  resourceType?: string;
  /** Called with every decision (for logs or audit: `decision.receipt` names Deputy's receipt). */
  onDecision?: (decision: PepDecision, request: AuthZenEvaluation) => void;
}

/** Context members the mapping consumes rather than forwarding. */
const MAPPED = new Set(['resource', 'action']);

/**
 * An `ExternalPolicyBackend` that asks Deputy. Register it with
 * `policyEngine.registerBackend(new DeputyPolicyBackend({...}))`; the toolkit calls
 * {@link evaluateAction} from `evaluateWithBackends` and {@link evaluatePolicy} from
 * `evaluatePolicyWithBackends`. Answers `allow` or `deny` (AuthZEN has no "review"), with the
 * PDP's reason.
 */
export class DeputyPolicyBackend implements ExternalPolicyBackend {
  readonly name: string;
  readonly #pep: AuthZenPep;
  readonly #options: DeputyPolicyBackendOptions;

  constructor(options: DeputyPolicyBackendOptions) {
    const issuer = options.issuer ?? (typeof options.agent === 'function' ? undefined : options.agent.issuer);
    if (issuer === undefined) throw new TypeError('DeputyPolicyBackend needs "issuer" (or a DeputyAgent as "agent")');
    this.name = options.name ?? 'deputy';
    this.#options = options;
    this.#pep = new AuthZenPep({ ...options, issuer });
  }

  /** The toolkit's action check: may the agent do `action` (on `context.resource`)? Never throws. */
  async evaluateAction(action: string, context: Record<string, unknown>): Promise<BackendEvaluationOutcome> {
    return this.#decide(action, context, {});
  }

  /** The toolkit's policy check for an agent (its DID): the action is `context.action`. Never throws. */
  async evaluatePolicy(agentDid: string, context: Record<string, unknown>): Promise<BackendEvaluationOutcome> {
    const action = context.action;
    if (typeof action !== 'string' || action === '') return this.#deny('the toolkit context names no action (context.action)');
    return this.#decide(action, context, { agent_did: agentDid });
  }

  async #decide(action: string, context: Record<string, unknown>, extra: Record<string, unknown>): Promise<BackendEvaluationOutcome> {
    const resource = this.#resource(context);
    if (!resource) return this.#deny('the toolkit context names no resource (context.resource)');
    let token: string;
    let agentId: string;
    try {
      token = await this.#token();
      const clientId = decodeJwt(token).client_id;
      agentId = typeof clientId === 'string' ? clientId : 'unknown';
    } catch (err) {
      return this.#deny(`no Deputy token for the agent: ${err instanceof Error ? err.message : 'unknown error'}`, true);
    }
    const request: AuthZenEvaluation = {
      subject: { type: 'Agent', id: agentId, properties: { token } },
      action: this.#action(action, context),
      resource,
      context: { ...jsonMembers(context), ...extra },
    };
    const decision = await this.#pep.evaluate(request);
    this.#options.onDecision?.(decision, request);
    if (decision.decision) return { backend: this.name, decision: 'allow' };
    return { backend: this.name, decision: 'deny', ...(decision.reason ? { reason: decision.reason } : {}), ...(decision.error ? { error: decision.error } : {}) };
  }

  #token(): Promise<string> {
    const agent = this.#options.agent;
    return Promise.resolve(typeof agent === 'function' ? agent() : agent.token(this.#options.tokenResource));
  }

  #action(action: string, context: Record<string, unknown>): AuthZenAction {
    const map = this.#options.actions;
    const mapped = typeof map === 'function' ? map(action, context) : (map?.[action] ?? action);
    return typeof mapped === 'string' ? { name: mapped } : mapped;
  }

  #resource(context: Record<string, unknown>): AuthZenEntity | undefined {
    const r = context.resource;
    const type = this.#options.resourceType ?? 'Resource';
    if (typeof r === 'string' && r !== '') return { type, id: r };
    if (typeof r !== 'object' || r === null || Array.isArray(r)) return undefined;
    const { type: t, id, properties } = r as { type?: unknown; id?: unknown; properties?: unknown };
    if (typeof id !== 'string' || id === '') return undefined;
    const props = typeof properties === 'object' && properties !== null && !Array.isArray(properties) ? (properties as Record<string, unknown>) : undefined;
    return { type: typeof t === 'string' && t !== '' ? t : type, id, ...(props ? { properties: props } : {}) };
  }

  #deny(reason: string, error = false): BackendEvaluationOutcome {
    return { backend: this.name, decision: 'deny', reason, ...(error ? { error: reason } : {}) };
  }
}

/** The context members forwarded to AuthZEN: JSON values only (functions, symbols… dropped). */
function jsonMembers(context: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(context)) {
    if (MAPPED.has(k)) continue;
    try {
      const json = JSON.stringify(v);
      // setMember: a member named `__proto__` stays a member (the PDP may read it), not the prototype.
      if (json !== undefined) setMember(out, k, JSON.parse(json) as unknown);
    } catch {
      // A cyclic or BigInt value cannot be sent: left out.
    }
  }
  return out;
}
