/**
 * Credential isolation (DESIGN capability 3), assembled: connections, credential sources, the
 * connect flow and the gateway, from configuration and the core services. The composition root
 * (src/main.ts) calls {@link createCredentialIsolation} once.
 *
 * @module
 */
import type { ReceiptAppender } from '../audit/index.js';
import type { BudgetLedger } from '../budgets/index.js';
import type { DeputyConfig } from '../config/schema.js';
import type { KeyStore } from '../keys/index.js';
import type { Logger } from '../log.js';
import type { AccessTokenVerifier } from '../oauth/access-token.js';
import type { RevocationCache, TokenRecords } from '../oauth/token-records.js';
import type { Store } from '../store/index.js';
import { ConnectFlows } from '../vault/connections/connect-flows.js';
import { ApiKeySource, ClientCredentialsSource, CredentialBroker, type CredentialSource } from '../vault/connections/credentials.js';
import { DownstreamClients } from '../vault/connections/oauth-client.js';
import { OnBehalfOfSource } from '../vault/connections/on-behalf-of.js';
import { ConnectionStore } from '../vault/connections/store.js';
import { UserGrants } from '../vault/connections/user-grants.js';
import type { EnvelopeVault } from '../vault/envelope.js';
import type { PolicyDecisionPoint } from '../pdp/pdp.js';
import { ScopeAuthorizer, type GatewayAuthorizer } from './authorizer.js';
import { AllOf, PdpGatewayAuthorizer, type PdpEvaluator } from './pdp-authorizer.js';
import { Forwarder } from './forward.js';
import { Gateway } from './gateway.js';
import { NotAtHttpGateway } from '../llm/credential.js';

export { gatewayAudience, GATEWAY_PREFIX, Gateway, type GatewayCall, type GatewayDeps } from './gateway.js';
export type { GatewayAuthorizer, GatewayAuthorizationRequest, GatewayDecision } from './authorizer.js';

/** The core services {@link createCredentialIsolation} assembles the connections, vault and gateway from. */
export interface CredentialIsolationDeps {
  config: DeputyConfig;
  issuer: string;
  store: Store;
  keys: KeyStore;
  logger: Logger;
  verifier: AccessTokenVerifier;
  records: TokenRecords;
  revocations: RevocationCache;
  /** Where configured connection secrets (`secret: { env }`) are read from. */
  env: Readonly<Record<string, string | undefined>>;
  /** The PDP, asked after the connection's own limits when `gateway.authorizer` is `pdp`. */
  pdp?: PolicyDecisionPoint;
  /**
   * The PDP's remembered decisions (src/pdp/remembered-decisions.ts, `PdpService.remembered`):
   * when given, the gateway's evaluations go through them (a repeated call decided from memory
   * while its basis holds); absent, every call is evaluated by `pdp`.
   */
  remembered?: PdpEvaluator;
  /** Overrides the authorizer entirely (tests, embedding). */
  authorizer?: GatewayAuthorizer;
  receipts?: ReceiptAppender;
  /** The process's vault (src/vault/local-vault.ts), shared with the token exchange. */
  vault: EnvelopeVault;
  /** Budgets' ledger (src/budgets): the gateway's budget step; absent: no budgets apply. */
  budgets?: BudgetLedger;
}

/** The assembled vault, connections, user grants, connect flows and gateway; `close()` stops their timers. */
export interface CredentialIsolation {
  vault: EnvelopeVault;
  connections: ConnectionStore;
  grants: UserGrants;
  flows: ConnectFlows;
  gateway: Gateway;
  /** The credential of each connection kind (the MCP gateway injects them too). */
  credentials: CredentialSource;
  close(): Promise<void>;
}

/**
 * Builds credential isolation from configuration: syncs the configured connections into the
 * store (deleting those removed from it, with their credentials), then wires the credential
 * sources, the connect flow, the forwarder and the {@link Gateway}.
 *
 * @throws TypeError when `gateway.authorizer` is `pdp` and no PDP was given (a boot error).
 */
export async function createCredentialIsolation(deps: CredentialIsolationDeps): Promise<CredentialIsolation> {
  const { config, store, logger } = deps;
  const { vault } = deps;
  const connections = new ConnectionStore(store, vault);
  const { removed } = await connections.syncFromConfig(config.connections, deps.env);
  if (removed.length) logger.info({ removed }, 'connections removed from configuration were deleted with their credentials');

  const gw = config.gateway;
  const clients = new DownstreamClients(connections, { timeoutSeconds: gw.tokenEndpointTimeoutSeconds });
  let flows: ConnectFlows | undefined;
  const grants = new UserGrants({
    store, vault, clients,
    connectUri: (connection, who) => flows!.connectUri(connection, who),
    onRefresh: (e) => logger.info({ connection: e.connectionId, user: e.userId, outcome: e.outcome }, 'user token refresh'),
  });
  flows = new ConnectFlows({ store, vault, connections, clients, grants, issuer: deps.issuer, ticketSeconds: gw.connectTicketSeconds });
  const credentials = new CredentialBroker({
    api_key: new ApiKeySource(connections),
    oauth2_client_credentials: new ClientCredentialsSource(clients),
    oauth2_user: grants,
    on_behalf_of: new OnBehalfOfSource({ store, vault, clients }),
    // Providers are reached through the LLM gateway only (its budget step): src/llm.
    llm: new NotAtHttpGateway(),
  });
  const forwarder = new Forwarder({
    connectionsPerOrigin: gw.connectionsPerOrigin,
    connectTimeoutMs: gw.connectTimeoutSeconds * 1000,
    bodyTimeoutMs: gw.bodyTimeoutSeconds * 1000,
    maxResponseBytes: gw.maxResponseBytes,
  });
  const gateway = new Gateway({
    issuer: deps.issuer,
    verifier: deps.verifier,
    revocations: deps.revocations,
    connections,
    credentials,
    authorizer: deps.authorizer ?? authorizerFor(deps),
    forwarder,
    logger,
    ...(deps.receipts ? { receipts: deps.receipts } : {}),
    ...(deps.budgets ? { budgets: deps.budgets } : {}),
    upstreamTimeoutMs: gw.upstreamTimeoutSeconds * 1000,
    maxRequestBytes: gw.maxRequestBytes,
  });
  return { vault, connections, grants, flows, gateway, credentials, close: () => forwarder.close() };
}

/** The connection's scopes and routes always apply; the PDP decides after them when configured. */
function authorizerFor(deps: CredentialIsolationDeps): GatewayAuthorizer {
  const scopes = new ScopeAuthorizer();
  if (deps.config.gateway.authorizer === 'scopes') return scopes;
  const pdp = deps.pdp;
  if (!pdp) throw new TypeError('gateway.authorizer is "pdp" but no PDP was given');
  return new AllOf(
    scopes,
    new PdpGatewayAuthorizer(deps.remembered ?? pdp, {
      issuer: deps.issuer,
      declaresAction: (name) => pdp.store.current.schema.action(name) !== undefined,
      adminReasons: deps.config.pdp.adminReasons,
    }),
  );
}
