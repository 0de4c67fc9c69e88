/**
 * The MCP gateway with signed tool pins (DESIGN capabilities 6 and 7), assembled from
 * configuration and the core services. The composition root (src/main.ts) calls
 * {@link createMcpGateway} once.
 *
 * @module
 */
import type { JSONWebKeySet } from 'jose';
import type { ReceiptAppender } from '../audit/index.js';
import type { DeputyConfig } from '../config/schema.js';
import type { KeyStore } from '../keys/keystore.js';
import type { Logger } from '../log.js';
import type { AccessTokenVerifier } from '../oauth/access-token.js';
import type { RevocationCache } from '../oauth/token-records.js';
import type { Store } from '../store/index.js';
import type { CredentialSource } from '../vault/connections/credentials.js';
import type { ConnectionStore } from '../vault/connections/store.js';
import { PdpMcpAuthorizer, type McpAuthorizer, type PdpBatchEvaluator } from './authorizer.js';
import { McpGateway } from './gateway.js';
import type { BudgetLedger } from '../budgets/index.js';
import { mcpToolBudgeter } from './budget.js';
import { ToolPins } from './pins.js';
import { McpServerStore, PinStore } from './store.js';
import { ToolPinSigner } from './tool-pin.js';

export { MCP_PREFIX, mcpAudience, McpGateway, McpHttpError } from './gateway.js';
export { MCP_DENIED, type McpBudgetContext } from './session.js';
export { mcpToolBudgeter, toolCost } from './budget.js';
export { mcpServerSchema, mcpServersConfigSchema, type McpServerConfig } from './config.js';
export { PIN_META_KEY, TOOL_PIN_TYP, toolDigest, verifyToolPin } from './tool-pin.js';

export interface McpDeps {
  config: DeputyConfig;
  issuer: string;
  store: Store;
  keys: KeyStore;
  logger: Logger;
  verifier: AccessTokenVerifier;
  revocations: RevocationCache;
  connections: ConnectionStore;
  credentials: CredentialSource;
  pdp: PdpBatchEvaluator;
  receipts?: ReceiptAppender;
  /** Overrides the PDP authorizer (tests, embedding). */
  authorizer?: McpAuthorizer;
  /** Budgets' ledger (src/budgets): per-tool budgets (./budget.ts) reserved for each permitted `tools/call`; absent: none apply. */
  budgets?: BudgetLedger;
}

export interface McpSurface {
  gateway: McpGateway;
  servers: McpServerStore;
  pins: ToolPins;
  close(): Promise<void>;
}

export async function createMcpGateway(deps: McpDeps): Promise<McpSurface> {
  const servers = new McpServerStore(deps.store);
  const { removed } = await servers.syncFromConfig(deps.config.mcpServers);
  if (removed.length) deps.logger.info({ removed }, 'MCP servers removed from configuration were deleted with their pins');
  const pins = new ToolPins({
    pins: new PinStore(deps.store),
    signer: new ToolPinSigner(deps.issuer, deps.keys.activeReceiptKey),
    deputyKeys: () => deps.keys.receiptJwks() as JSONWebKeySet,
    issuer: deps.issuer,
  });
  const gateway = new McpGateway({
    issuer: deps.issuer,
    verifier: deps.verifier,
    revocations: deps.revocations,
    servers,
    connections: deps.connections,
    credentials: deps.credentials,
    authorizer: deps.authorizer ?? new PdpMcpAuthorizer(deps.pdp, { issuer: deps.issuer, adminReasons: deps.config.pdp.adminReasons }),
    pins,
    ...(deps.receipts ? { receipts: deps.receipts } : {}),
    ...(deps.budgets ? { budgeter: mcpToolBudgeter({ ledger: deps.budgets, logger: deps.logger, receipts: deps.receipts }) } : {}),
    logger: deps.logger,
  });
  return { gateway, servers, pins, close: () => gateway.close() };
}
