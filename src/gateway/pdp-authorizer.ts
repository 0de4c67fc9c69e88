/**
 * The gateway asking the PDP (src/pdp, Cedar behind AuthZEN's evaluation model) — the PEP side
 * of DESIGN capability 2 for gateway calls.
 *
 * The AuthZEN evaluation the gateway makes for a call:
 *
 * | member | value |
 * | --- | --- |
 * | `subject` | `Agent` {current agent}, `properties.token` = the agent token: the PDP verifies it and evaluates the **whole chain** (the user and every agent, each on its own) |
 * | `action` | the route's `action` when the policy set declares it (a tool name), otherwise by method: `read` (GET, HEAD, OPTIONS), `write` (POST, PUT, PATCH), `delete`; `properties` = `{ method, path, connection, tool? }` (Cedar `context.action` where declared) |
 * | `resource` | `Resource` {connection id} with `audience` = `{issuer}/gw/{connection}` (the token's audience), `scope` = the route's first scope or else the connection's first required scope, `owner` = the user (the call acts for them) |
 *
 * With Deputy's default policies this means: the user may use connections for themselves, and an
 * agent only with the connection's scope delegated to it and — for the agent acting now — a
 * token for that connection; sub-agents may not `delete`. Deployments add `forbid` / `permit`
 * rules keyed on `resource` (the connection) and `action` (the tool).
 *
 * @module
 */
import { isThenable } from '../enforcement/index.js';
import type { EvaluationInput } from '../pdp/authzen.js';
import type { Decision } from '../pdp/decision.js';
import { gatewayAudience } from './gateway.js';
import type { GatewayAuthorizationRequest, GatewayAuthorizer, GatewayDecision } from './authorizer.js';

/**
 * What the adapter needs from the PDP: src/pdp/remembered-decisions.ts `RememberedDecisions`
 * (a remembered decision answered synchronously while its basis holds) or src/pdp/pdp.ts
 * `PolicyDecisionPoint` (always the full evaluation) fit.
 */
export interface PdpEvaluator {
  evaluate(input: EvaluationInput): Decision | Promise<Decision>;
}

export interface PdpGatewayAuthorizerOptions {
  issuer: string;
  /** Whether the active policy set declares an action (route actions are used only then). */
  declaresAction: (name: string) => boolean;
  /** Give agents the administrator reason (which link, which policies) rather than the user-facing one. */
  adminReasons: boolean;
}

const METHOD_ACTIONS: Readonly<Record<string, string>> = {
  GET: 'read', HEAD: 'read', OPTIONS: 'read', POST: 'write', PUT: 'write', PATCH: 'write', DELETE: 'delete',
};

export class PdpGatewayAuthorizer implements GatewayAuthorizer {
  constructor(
    readonly pdp: PdpEvaluator,
    readonly options: PdpGatewayAuthorizerOptions,
  ) {}

  /** The AuthZEN evaluation for a gateway call (exported for tests and documentation). */
  evaluation(req: GatewayAuthorizationRequest): EvaluationInput {
    const { subject, action, resource } = req;
    const routeAction = action.route?.action;
    const name = routeAction !== undefined && this.options.declaresAction(routeAction) ? routeAction : (METHOD_ACTIONS[action.method] ?? 'write');
    const scope = action.route?.scopes[0] ?? resource.connection.settings.requiredScopes[0];
    return {
      subject: { type: 'Agent', id: subject.agentId, properties: { token: subject.token } },
      action: { name, properties: { method: action.method, path: action.path, connection: resource.id, ...(routeAction ? { tool: routeAction } : {}) } },
      resource: {
        type: 'Resource',
        id: resource.id,
        properties: { audience: gatewayAudience(this.options.issuer, resource.id), owner: subject.userId, ...(scope ? { scope } : {}) },
      },
      context: {},
    };
  }

  /** The PDP's decision as the gateway's: synchronous when the PDP answers from memory, else a promise. */
  authorize(req: GatewayAuthorizationRequest): GatewayDecision | Promise<GatewayDecision> {
    const decision = this.pdp.evaluate(this.evaluation(req));
    return isThenable(decision) ? decision.then((d) => this.#gatewayDecision(d)) : this.#gatewayDecision(decision);
  }

  /** A PDP decision as the pipeline's: the permitting policies, or the denial's reason (admin or user wording), policies and kind. */
  #gatewayDecision(decision: Decision): GatewayDecision {
    if (decision.decision) return { allowed: true, context: { policies: decision.policies } };
    const d = decision.denial;
    return { allowed: false, reason: this.options.adminReasons ? d.admin : d.user, context: { policies: d.policies, kind: d.kind } };
  }
}

/** Every authorizer must allow (first refusal wins): config-level limits, then policy. */
export class AllOf implements GatewayAuthorizer {
  readonly #all: readonly GatewayAuthorizer[];
  constructor(...all: GatewayAuthorizer[]) {
    this.#all = all;
  }
  /** Synchronous while every authorizer answers synchronously; from the first that answers with a promise on, a promise. */
  authorize(req: GatewayAuthorizationRequest): GatewayDecision | Promise<GatewayDecision> {
    return this.#from(0, req, { allowed: true });
  }

  /** The authorizers from index `i` on, `last` the answer so far. */
  #from(i: number, req: GatewayAuthorizationRequest, last: GatewayDecision): GatewayDecision | Promise<GatewayDecision> {
    for (; i < this.#all.length; i++) {
      const answer = this.#all[i]!.authorize(req);
      if (isThenable(answer)) {
        const next = i + 1;
        return answer.then((d) => (d.allowed ? this.#from(next, req, d) : d));
      }
      if (!answer.allowed) return answer;
      last = answer;
    }
    return last;
  }
}

