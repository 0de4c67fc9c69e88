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
import type { EvaluationInput } from '../pdp/authzen.js';
import type { Decision } from '../pdp/decision.js';
import { gatewayAudience } from './gateway.js';
import type { GatewayAuthorizationRequest, GatewayAuthorizer, GatewayDecision } from './authorizer.js';

/** What the adapter needs from the PDP (src/pdp/pdp.ts `PolicyDecisionPoint` fits). */
export interface PdpEvaluator {
  evaluate(input: EvaluationInput): Promise<Decision>;
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

  async authorize(req: GatewayAuthorizationRequest): Promise<GatewayDecision> {
    const decision = await this.pdp.evaluate(this.evaluation(req));
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
  async authorize(req: GatewayAuthorizationRequest): Promise<GatewayDecision> {
    let last: GatewayDecision = { allowed: true };
    for (const a of this.#all) {
      last = await a.authorize(req);
      if (!last.allowed) return last;
    }
    return last;
  }
}
