/**
 * Deputy's services, wired: the protocol half of the composition root (src/main.ts).
 *
 * main.ts opens the store (taking the data-folder lock), loads the keys and binds the port, then
 * imports this module lazily: a process that stops early — a data folder locked by another
 * Deputy, a missing key file — never loads oidc-provider, Cedar, the MCP SDK or openid-client.
 *
 * The order is the one of {@link composeServices}: agent registry and token records → DPoP and
 * access-token verification → PDP → receipts and vault → enterprise sign-in → the token exchange
 * and the authorization server (with the code flow) → credential isolation → the MCP gateway → the Koa app.
 *
 * @module
 */
import type Koa from 'koa';
import { AgentRegistry, type AgentDeletion } from './agents/registry.js';
import type { ReceiptInput } from './audit/receipt.js';
import { ReceiptService } from './audit/receipts.js';
import { createBudgets, type Budgets } from './budgets/index.js';
import type { DeputyConfig } from './config/schema.js';
import { RegistryAuthorizer } from './delegation/index.js';
import { FederationVerifier } from './federation/verify.js';
import { createCredentialIsolation, type CredentialIsolation } from './gateway/index.js';
import { createApp } from './http/app.js';
import { createMcpGateway, type McpSurface } from './mcp/index.js';
import { writeError } from './http/errors.js';
import { RECEIPTS_JWKS_PATH } from './http/receipts.js';
import type { KeyStore } from './keys/keystore.js';
import type { Logger } from './log.js';
import { AccessTokenVerifier } from './oauth/access-token.js';
import { purgeExpired } from './oauth/adapter.js';
import { ADMIN_SCOPE } from './oauth/deputy-own.js';
import { AgentTokenResolver } from './oauth/agent-token-resolver.js';
import { DpopVerifier } from './oauth/dpop.js';
import { agentTokenIntrospection, createProvider, deleteClientGrants, enableCodeFlow, jwtBearerGrant, REFRESH_TOKEN_SECONDS, tokenExchangeGrant, type Provider, type TokenExchangeGrantDeps } from './oauth/oidc-provider/index.js';
import { OperatorTokenRevocations } from './oauth/operator-token-revocation.js';
import { RevocationCache, TokenRecords } from './oauth/token-records.js';
import { purgeExpiredUpstream } from './oauth/token-exchange.js';
import { CapturedUpstreamTokens } from './oauth/upstream-capture.js';
import { instrumentPdp } from './observability/instrument.js';
import { startPdp, type PdpService } from './pdp/service.js';
import { CookieSealer, SESSION_SECONDS, SignIn } from './signin/index.js';
import type { Store } from './store/index.js';
import { localVault } from './vault/local-vault.js';
import type { EnvelopeVault } from './vault/envelope.js';
import { LlmGateway } from './llm/gateway.js';

/** What the services are built from: everything main.ts opened before loading them. */
export interface ServiceBase {
  config: DeputyConfig;
  logger: Logger;
  store: Store;
  keys: KeyStore;
  /** The issuer identifier, without a trailing slash (src/config/schema.ts). */
  issuer: string;
  /** Environment for connection secrets (`{ env: NAME }`); `process.env` in production. */
  env: Readonly<Record<string, string | undefined>>;
}

/** Deputy's running services and the Koa app that serves them. */
export interface Services {
  agents: AgentRegistry;
  records: TokenRecords;
  revocations: RevocationCache;
  provider: Provider;
  pdp: PdpService;
  receipts: ReceiptService;
  isolation: CredentialIsolation;
  /** The MCP gateway with signed tool pins (DESIGN capabilities 6, 7). */
  mcp: McpSurface;
  /** Budgets (src/budgets): definitions, price table, ledger. */
  budgets: Budgets;
  /** The LLM gateway (`/llm/{connection}`, src/llm). */
  llm: LlmGateway;
  app: Koa;
  /** Deletes expired rows (oidc-provider models, token records, captured upstream tokens, connect flows); the caller schedules it. */
  purgeExpired(): Promise<void>;
}

/**
 * Builds every service over an open store and loaded keys, and the Koa app.
 *
 * @throws PolicyLoadError when the Cedar policy set does not load; ConfigError for a
 *   configuration that only fails against the running services (e.g. a connection secret).
 */
export async function composeServices(base: ServiceBase): Promise<Services> {
  const { config, logger, store, keys, issuer } = base;
  const records = new TokenRecords(store);
  const vault = localVault(keys, logger);
  const receipts = new ReceiptService({ store, issuer, key: keys.activeReceiptKey });
  const agents = await agentRegistry(base, records, vault, receipts);
  const { dpop, verifier } = accessTokenVerification(base);
  const revocations = new RevocationCache(records);
  // Revoked client_credentials tokens of the operator clients (PEPs, admins): refused by every operator surface.
  const operatorTokens = new OperatorTokenRevocations(store);
  const pdp = await startPdp({ config, subjects: new AgentTokenResolver({ verifier, records, revocations }), agents, logger });
  // Decisions, cache, reloads and policy gauges: wrappers, so the PDP carries no metrics code.
  instrumentPdp(pdp.pdp, pdp.remembered);
  const federation = new FederationVerifier(config.trustedIssuers);
  // Enterprise sign-in reuses the federation verifier: a signed-in user is the user their subject tokens name.
  const signIn = new SignIn({ issuer, trustedIssuers: config.trustedIssuers, federation, keys, store, vault, env: base.env, logger });
  await signIn.storeSecrets();
  const authorizer = pdp.delegationAuthorizer(new RegistryAuthorizer(config.tokens.maxChainDepth));
  const grantDeps = {
    issuer, store, agents, verifier, records, keys, logger, vault,
    federation,
    authorizer,
    receipts,
    accessTokenTTL: config.tokens.accessTokenTTL,
    // One agent's repeated exchanges of one user's IdP token share its vault row (issue 16, seventh round).
    capturedUpstream: new CapturedUpstreamTokens(),
  };
  const provider = oauthProvider(base, grantDeps, dpop);
  const interactions = enableCodeFlow(provider, {
    config: config.oauth.authorizationCode, issuer, store, records, receipts, logger, authorizer, agents,
    sessionSeconds: SESSION_SECONDS, refreshTokenSeconds: REFRESH_TOKEN_SECONDS, accessTokenSeconds: config.tokens.accessTokenTTL,
  });
  addIntrospection(base, provider, { verifier, records, revocations, operatorTokens });
  // Disabled or deleted agents' tokens were revoked in that transaction (agentRegistry below).
  agents.onChange((agent, change) => {
    if (agent.status === 'disabled' || change === 'deleted') revocations.forget();
  });
  const budgets = await createBudgets(config.budgets, store);
  const isolation = await createCredentialIsolation({
    config, issuer, store, keys, logger, verifier, records, revocations, pdp: pdp.pdp, remembered: pdp.remembered, receipts, vault, env: base.env, budgets: budgets.ledger,
  });
  const mcp = await createMcpGateway({
    config, issuer, store, keys, logger, verifier, revocations, receipts, pdp: pdp.pdp, connections: isolation.connections, credentials: isolation.credentials, budgets: budgets.ledger,
  });
  const llm = llmGateway(base, { verifier, revocations, isolation, budgets, receipts, pdp });
  const app = createApp({
    config, issuer, logger, store, keys, agents, provider, verifier, operatorTokens, receipts, pdp, isolation, mcp, budgets, llm,
    signIn: { service: signIn, sealer: new CookieSealer(keys.cookieKeys), sessionSeconds: SESSION_SECONDS },
    ...(interactions ? { interactions } : {}),
  });
  return {
    agents, records, revocations, provider, pdp, receipts, isolation, mcp, budgets, llm, app,
    purgeExpired: async () => {
      await Promise.all([
        purgeExpired(store), records.purgeExpired(), purgeExpiredUpstream(vault, store), isolation.flows.purgeExpired(), budgets.ledger.releaseExpired(),
      ]);
    },
  };
}

/** oidc-provider with Deputy's grants: token exchange, and jwt-bearer (ID-JAG) when ID-JAG issuers are configured. */
function oauthProvider(base: ServiceBase, grantDeps: TokenExchangeGrantDeps, dpop: DpopVerifier): Provider {
  const { config, issuer, store, keys, logger } = base;
  // The jwt-bearer grant exists (registered, advertised in grant_types_supported) only when ID-JAGs are accepted.
  const idJag = config.oauth.idJag;
  return createProvider({
    config, issuer, store, keys, agents: grantDeps.agents, dpop,
    grants: [tokenExchangeGrant(grantDeps), ...(idJag.issuers.length > 0 ? [jwtBearerGrant({ ...grantDeps, idJag })] : [])],
    discovery: { receipts_jwks_uri: `${issuer}${RECEIPTS_JWKS_PATH}` },
    writeError, logger,
  });
}

/** The LLM gateway over the shared verifier, connections, budgets, receipts and (with `gateway.authorizer: pdp`) the PDP. */
function llmGateway(
  base: ServiceBase,
  deps: { verifier: AccessTokenVerifier; revocations: RevocationCache; isolation: CredentialIsolation; budgets: Budgets; receipts: ReceiptService; pdp: PdpService },
): LlmGateway {
  const { config, issuer, logger } = base;
  const pdp = deps.pdp.pdp;
  return new LlmGateway({
    issuer, logger, verifier: deps.verifier, revocations: deps.revocations, connections: deps.isolation.connections, budgets: deps.budgets, receipts: deps.receipts,
    ...(config.gateway.authorizer === 'pdp' ? { pdp: { evaluate: (input) => pdp.evaluate(input), declaresAction: (name) => pdp.store.current.schema.action(name) !== undefined } } : {}),
    adminReasons: config.pdp.adminReasons,
    upstreamTimeoutMs: config.gateway.upstreamTimeoutSeconds * 1000,
    maxRequestBytes: config.gateway.maxRequestBytes,
    maxResponseBytes: config.gateway.maxResponseBytes,
  });
}

/**
 * The agent registry, synchronised with the configured agents. Disabling or deleting an agent
 * revokes its tokens, and so everything delegated from them, in the same transaction as the
 * change (see TokenRecords.insert for the other side of the race). Deleting also drops its OAuth
 * grants (refresh tokens, codes) and the upstream subject tokens its exchanges captured; its
 * receipts stay, closed by an `agent_deleted` one (so `receipts` exists before the registry:
 * the configuration sync at start deletes too). Connections and users' connect grants belong to the connection and the user,
 * not the agent, and stay.
 */
async function agentRegistry(base: ServiceBase, records: TokenRecords, vault: EnvelopeVault, receipts: ReceiptService): Promise<AgentRegistry> {
  const agents = new AgentRegistry(base.store);
  agents.onDisable(async (agentId, tx, why) => {
    const revoked = await records.revokeByAgent(agentId, `agent ${why}`, tx);
    if (revoked.length) base.logger.info({ agent: agentId, revoked: revoked.length }, `tokens of ${why} agent revoked`);
  });
  agents.onDelete(async (agent, tx) => {
    const grants = await deleteClientGrants(tx, agent.clientIdUrl ?? agent.id);
    const upstream = await records.detachUpstream(agent.id, tx);
    if (upstream.length) await vault.delete(tx, ...upstream);
    base.logger.info({ agent: agent.id, grants, upstream: upstream.length }, 'agent deleted; its receipts are kept');
  });
  // Last, in the same transaction: the deletion is the end of the agent's chain, or nothing happened.
  agents.onDelete((agent, tx, deletion) => receipts.append(deletionReceipt(base.issuer, agent.id, deletion), tx).then(() => undefined));
  const { removed } = await agents.syncFromConfig(base.config.agents);
  if (removed.length) base.logger.info({ removed }, 'agents removed from configuration were deleted (their receipts are kept)');
  return agents;
}

/**
 * The `agent_deleted` receipt that closes a deleted agent's chain: action `delete` on the
 * agent's admin resource, `permit` (the deletion happened), the reason saying how (admin API
 * with the request id, or removal from the configuration at start).
 */
export function deletionReceipt(issuer: string, agentId: string, deletion: AgentDeletion): ReceiptInput {
  const byApi = deletion.via === 'admin_api';
  return {
    agent: agentId,
    chain: [agentId],
    event: 'agent_deleted',
    action: 'delete',
    resource: `${issuer}/admin/agents/${encodeURIComponent(agentId)}`,
    decision: 'permit',
    reason: byApi ? 'deleted through the admin API' : 'removed from the configuration',
    ...(byApi && deletion.requestId !== undefined ? { requestId: deletion.requestId } : {}),
  };
}

/** DPoP proof checks (RFC 9449) and the access-token verifier of Deputy's own resources. */
function accessTokenVerification(base: ServiceBase): { dpop: DpopVerifier; verifier: AccessTokenVerifier } {
  const { config, store, keys, issuer } = base;
  const dpop = new DpopVerifier({
    db: store,
    iatWindowSeconds: config.dpop.iatWindowSeconds,
    requireNonce: config.dpop.requireNonce,
    nonceSecret: keys.dpopNonceSecret,
  });
  return { dpop, verifier: new AccessTokenVerifier({ issuer, keys, dpop }) };
}

/** Adds agent-token introspection to the authorization server. */
function addIntrospection(
  base: ServiceBase,
  provider: Provider,
  tokens: { verifier: AccessTokenVerifier; records: TokenRecords; revocations: RevocationCache; operatorTokens: OperatorTokenRevocations },
): void {
  const { config, logger } = base;
  provider.use(agentTokenIntrospection({
    ...tokens, logger,
    adminClients: new Set(config.admin.clients.map((c) => c.client_id)),
    revokingClients: new Set(config.admin.clients.filter((c) => (c.scopes as readonly string[]).includes(ADMIN_SCOPE)).map((c) => c.client_id)),
  }));
}
