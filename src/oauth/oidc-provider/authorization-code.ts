/**
 * The authorization endpoint (RFC 6749 §4.1) as oidc-provider serves it for Deputy: only
 * `response_type=code` with PKCE S256 (RFC 7636, RFC 9700 §2.1.1), `resource` required and
 * within the client's allowed audiences (RFC 8707), RFC 9207 `iss` in every response, DPoP
 * (RFC 9449 §10 `dpop_jkt`; required for public clients), refresh tokens rotating and — for
 * public clients — DPoP-bound. Users are identified by Deputy's enterprise sign-in; the
 * interaction (sign-in, consent) is Deputy's own (src/http/interaction.ts over
 * {@link Interactions}).
 *
 * The issued access token has the shape of an exchanged one: `sub` the user, `act.sub` the client
 * (a one-link delegation chain, RFC 8693 §4.1), `cnf.jkt`, one audience; it is recorded and
 * receipted through the exchange's own `recordIssuedToken` (../token-exchange.ts).
 *
 * Clients: registered agents listed in `oauth.authorizationCode.clients`, and Client ID Metadata
 * Documents (../client-id-metadata.ts). A metadata-document client is the registry agent
 * `documentAgentId(url)` (src/agents/document-client.ts), created or updated at consent and at
 * `/token` with the operator's limits: `act.sub`, the token record, the receipt and the PDP name
 * that agent, never the URL, so everything downstream of `/token` treats it as any agent.
 *
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type Koa from 'koa';
import Provider, { errors as providerErrors, interactionPolicy, type Adapter, type AdapterPayload, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';
import type { Agent } from '../../agents/registry.js';
import { documentAgentId, type DocumentClient } from '../../agents/document-client.js';
import { requestDigest } from '../../audit/digest.js';
import { receiptText, type ReceiptInput } from '../../audit/receipt.js';
import type { ReceiptAppender } from '../../audit/receipts.js';
import { documentClientLimits, type AuthorizationCodeConfig } from '../authorization-code/config.js';
import { InvalidDpopProof, InvalidGrant, InvalidRequest, UnauthorizedClient } from '../../errors/index.js';
import { unexpectedError, type Logger } from '../../log.js';
import type { Store } from '../../store/index.js';
import { isDeputyResource, isDeputyScope } from '../deputy-own.js';
import { recordIssuedToken, userAttributes } from '../token-exchange.js';
import { AgentNotActive, type NewTokenRecord, type TokenRecords } from '../token-records.js';
import { DelegationDenied, type DelegatingUser, type DelegationAuthorizer } from '../../delegation/index.js';
import { StoreAdapter } from './adapter.js';
import { DOCUMENT_SCOPE_MEMBER, documentFetch, documentScopeCeiling, isAllowedDocumentUrl, isDocumentClientId } from '../client-id-metadata.js';

/** The grant type and `gty` of the code flow (RFC 6749 §4.1.3). */
export const AUTHORIZATION_CODE_GRANT = 'authorization_code';
/** Where oidc-provider sends the browser for Deputy's interaction: `/interaction/{uid}`. */
export const INTERACTION_PATH = '/interaction';
/** oidc-provider model under which the signed-in user's attributes are kept for the token records. */
const ACCOUNT_MODEL = 'DeputyAccount';

/** A client of the code flow, as Deputy configured or fetched it. */
export interface CodeFlowClient {
  clientId: string;
  /** Audiences (RFC 8707 resources) it may obtain tokens for. */
  audiences: readonly string[];
  /** Scopes it may be granted. */
  scopes: readonly string[];
  preApproved: boolean;
}

/** What the code flow needs of the agent registry (src/agents/registry.ts). */
export interface CodeFlowAgents {
  get(id: string): Promise<Agent | undefined>;
  upsertDocumentClient(client: DocumentClient): Promise<Agent>;
}

/**
 * The registry agent id of a code-flow client: the `client_id` itself for a registered agent,
 * the derived `cimd-…` id for a metadata-document client (its `client_id` is a URL).
 */
export function codeFlowAgentId(clientId: string): string {
  return isDocumentClientId(clientId) ? documentAgentId(clientId) : clientId;
}

/**
 * The agent of a metadata-document client as the registry should hold it: the document's
 * `client_name` (display only) and the operator's limits, never the document's.
 */
export function documentClientAgent(config: AuthorizationCodeConfig, url: string, clientName: string | undefined): DocumentClient {
  const name = (clientName ?? '').trim().slice(0, 200) || url.slice(0, 200);
  return { url, name, ...documentClientLimits(config.clientIdMetadataDocuments, url) };
}

/** The agents (and their code-flow settings) the code flow knows. */
export interface CodeFlowDeps {
  config: AuthorizationCodeConfig;
  issuer: string;
  store: Store;
  records: TokenRecords;
  receipts: ReceiptAppender;
  logger: Logger;
  /** The `delegate` decision every agent token passes (registry rules, then Cedar): a one-link chain here. */
  authorizer: DelegationAuthorizer;
  /** The agent registry: the client of a code-flow token is a registered agent (or becomes one: a metadata-document client). */
  agents: CodeFlowAgents;
  /** Session and refresh-token lifetimes, seconds. */
  sessionSeconds: number;
  refreshTokenSeconds: number;
  accessTokenSeconds: number;
}

/**
 * An agent's client metadata with the code flow added, when `oauth.authorizationCode.clients`
 * lists it: its redirect URIs, `response_types: ["code"]`, and the `authorization_code` and
 * `refresh_token` grants besides the ones it already has (token exchange stays).
 */
export function withCodeFlow(config: AuthorizationCodeConfig, agent: Agent, metadata: AdapterPayload): AdapterPayload {
  const entry = config.enabled ? config.clients.find((c) => c.clientId === agent.id) : undefined;
  if (!entry) return metadata;
  const grants = new Set([...((metadata.grant_types as string[] | undefined) ?? []), AUTHORIZATION_CODE_GRANT, 'refresh_token']);
  return { ...metadata, response_types: ['code'], redirect_uris: [...entry.redirectUris], grant_types: [...grants] };
}

/**
 * The code-flow client `clientId` is, reading its agent from the registry: `undefined` when it is
 * none, or when its agent (registered, or a metadata-document client's) is disabled. `ceiling`:
 * a metadata document's `scope` ({@link documentScopeCeiling}).
 */
export async function resolveCodeFlowClient(
  config: AuthorizationCodeConfig,
  agents: Pick<CodeFlowAgents, 'get'>,
  clientId: string,
  ceiling?: readonly string[],
): Promise<CodeFlowClient | undefined> {
  const agent = await agents.get(codeFlowAgentId(clientId));
  if (agent && agent.status !== 'active') return undefined;
  return codeFlowClient(config, clientId, agent, ceiling);
}

/**
 * The code-flow client `clientId` is: a listed agent, a metadata-document client, or none. A
 * metadata-document client's scopes are the operator's, narrowed to its document's `scope`
 * (`ceiling`) when it lists one: a document can only ask for less.
 */
export function codeFlowClient(config: AuthorizationCodeConfig, clientId: string, agent: Agent | undefined, ceiling?: readonly string[]): CodeFlowClient | undefined {
  if (!config.enabled) return undefined;
  const entry = config.clients.find((c) => c.clientId === clientId);
  if (entry && agent) return { clientId, audiences: agent.audiences, scopes: agent.scopes, preApproved: entry.preApproved };
  const documents = config.clientIdMetadataDocuments;
  if (documents.enabled && isDocumentClientId(clientId) && isAllowedDocumentUrl(clientId, documents)) {
    // Never pre-approved: anyone can publish a document; the user consents every time.
    const { audiences, scopes } = documentClientLimits(documents, clientId);
    return { clientId, audiences, scopes: ceiling ? scopes.filter((s) => ceiling.includes(s)) : scopes, preApproved: false };
  }
  return undefined;
}

/**
 * A Check that always asks for Deputy's interaction, unless this very request is resuming from it:
 * whatever oidc-provider's own session says, the user signed in at Deputy *now* is who authorizes
 * (no grant from an earlier session is reused silently), and every client gets its consent page.
 */
function deputyInteractionRequired(): interactionPolicy.Check {
  return new interactionPolicy.Check('deputy_interaction', 'Deputy signs the user in and asks for consent', (ctx) =>
    ctx.oidc.result?.login && ctx.oidc.result?.consent ? interactionPolicy.Check.NO_NEED_TO_PROMPT : interactionPolicy.Check.REQUEST_PROMPT,
  );
}

/**
 * The configuration members the code flow sets (merged into ./provider.ts's). `agents` lets a
 * disabled metadata-document client be refused wherever oidc-provider resolves it.
 */
export function codeFlowConfiguration(deps: Pick<CodeFlowDeps, 'config' | 'logger'> & { agents?: Pick<CodeFlowAgents, 'get'> }): Partial<Configuration> {
  if (!deps.config.enabled) return { responseTypes: ['none'] };
  const documents = deps.config.clientIdMetadataDocuments;
  const policy = interactionPolicy.base();
  policy.get('login')!.checks.add(deputyInteractionRequired(), 0);
  // Consent is Deputy's own page, on every authorization (the check above). oidc-provider's
  // consent prompt would ask again for what Deputy never grants — OpenID Connect scopes (`openid`:
  // Deputy issues no ID tokens) — and so loop; the grant made at approval is the whole consent.
  policy.remove('consent');
  return {
    responseTypes: ['code'],
    // PKCE for every client; oidc-provider accepts only S256 (RFC 9700 §2.1.1).
    pkce: { required: () => true },
    interactions: { url: (_ctx, interaction) => `${INTERACTION_PATH}/${interaction.uid}`, policy },
    findAccount: async (_ctx, id) => ({ accountId: id, claims: () => ({ sub: id }) }),
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    // Rotation at every use (RFC 9700 §4.14.2): a reused refresh token revokes the grant.
    rotateRefreshToken: () => true,
    // A new authorization always asks (policy above); the grant of this interaction is the one used.
    loadExistingGrant: async (ctx) => {
      const grantId = ctx.oidc.result?.consent?.grantId;
      return grantId ? ctx.oidc.provider.Grant.find(grantId) : undefined;
    },
    ...(documents.enabled ? documentClients(documents, deps.logger, deps.agents) : {}),
  };
}

/** oidc-provider's Client ID Metadata Document support (draft-02), under Deputy's policy (../client-id-metadata.ts). */
function documentClients(documents: AuthorizationCodeConfig['clientIdMetadataDocuments'], logger: Logger, agents: Pick<CodeFlowAgents, 'get'> | undefined): Partial<Configuration> {
  return {
    fetch: documentFetch(documents, logger) as unknown as Configuration['fetch'],
    fetchResponseBodyLimits: { 'client_id metadata document': documents.maxBytes },
    // A document's `scope`, renamed by documentFetch: its ceiling, read back by documentScopeCeiling.
    extraClientMetadata: { properties: [DOCUMENT_SCOPE_MEMBER], validator: documentScopeValidator },
    features: {
      clientIdMetadataDocument: {
        enabled: true,
        ack: 'draft-02',
        allowFetch: (_ctx, clientId) => isAllowedDocumentUrl(clientId, documents),
        // Runs on every resolution, cached documents included (/auth, /token, refresh): an operator's
        // `disabled` on the client's agent holds however often the document is fetched again.
        // (The document itself was checked when fetched: documentFetch → providerDocument.)
        allowClient: async (_ctx, client) => {
          const agent = await agents?.get(documentAgentId(client.clientId));
          if (agent && agent.status !== 'active') logger.info({ client_id: client.clientId, agent: agent.id }, 'client metadata document client refused: its agent is disabled');
          return !agent || agent.status === 'active';
        },
        cacheDuration: { min: 60, max: 3600 },
      },
    } as Configuration['features'],
  };
}

/**
 * oidc-provider's `extraClientMetadata.validator` for {@link DOCUMENT_SCOPE_MEMBER}: only a
 * metadata-document client carries it (set from its document by Deputy's fetch, a string of
 * scope values); any other client with it is refused.
 */
function documentScopeValidator(_ctx: unknown, key: string, value: unknown, metadata: Record<string, unknown>): void {
  if (key !== DOCUMENT_SCOPE_MEMBER || value === undefined) return;
  if (typeof value !== 'string' || !isDocumentClientId(String(metadata.client_id))) {
    throw new providerErrors.InvalidClientMetadata(`${key} is set by Deputy for metadata-document clients only`);
  }
}

/**
 * Extra claims of code-flow tokens: `act` names the agent acting for the user (RFC 8693 §4.1) —
 * for a metadata-document client its derived agent id, as the registry and the PDP know it.
 */
export function codeFlowTokenClaims(token: { gty?: string; clientId?: string }): Record<string, unknown> | undefined {
  if (!token.gty?.split(' ').includes(AUTHORIZATION_CODE_GRANT) || !token.clientId) return undefined;
  return { act: { sub: codeFlowAgentId(token.clientId) } };
}

/**
 * RFC 8707 for the code flow: `resource` must be one of the client's allowed audiences and never
 * one of Deputy's own; the token's scopes are those the client may hold. `undefined` when the
 * resource is not for this client (the caller refuses it).
 */
export function codeFlowResourceScopes(client: CodeFlowClient, resource: string, issuer: string): string | undefined {
  if (isDeputyResource(resource, issuer) || !client.audiences.includes(resource)) return undefined;
  return client.scopes.filter((s) => !isDeputyScope(s)).join(' ');
}

/** What the consent page shows (all from the authorization request, checked by oidc-provider). */
export interface ConsentRequest {
  uid: string;
  clientId: string;
  clientName: string | undefined;
  /** Where the client receives the code (its host is shown). */
  redirectUri: string;
  scopes: string[];
  resource: string;
  preApproved: boolean;
}

/**
 * Deputy's side of oidc-provider's interactions (node-oidc-provider "User flows":
 * `interactionDetails`, `interactionResult`, the Grant API). Works on Node's `req`/`res`.
 */
export class Interactions {
  readonly #accounts: Adapter;

  constructor(
    private readonly provider: Provider,
    private readonly deps: CodeFlowDeps,
    private readonly clientOf: (clientId: string) => Promise<CodeFlowClient | undefined>,
  ) {
    this.#accounts = new StoreAdapter(ACCOUNT_MODEL, deps.store);
  }

  /**
   * The pending authorization request of this browser.
   * @throws InvalidRequest when there is none (expired, or another browser's)
   */
  async details(req: IncomingMessage, res: ServerResponse): Promise<ConsentRequest> {
    let details;
    try {
      details = await this.provider.interactionDetails(req, res);
    } catch {
      throw new InvalidRequest('this authorization request has expired or belongs to another browser: start again from the application');
    }
    const params = details.params as Record<string, unknown>;
    const clientId = String(params.client_id);
    const client = await this.provider.Client.find(clientId);
    const codeFlow = await this.clientOf(clientId);
    const resource = typeof params.resource === 'string' ? params.resource : '';
    // The page shows what the approval grants: the requested scopes this client may hold for this resource.
    const allowed = new Set(codeFlow ? (codeFlowResourceScopes(codeFlow, resource, this.deps.issuer) ?? '').split(' ') : []);
    return {
      uid: details.uid,
      clientId,
      clientName: client?.clientName,
      redirectUri: String(params.redirect_uri),
      scopes: String(params.scope ?? '').split(' ').filter((s) => s && allowed.has(s)),
      resource,
      preApproved: codeFlow?.preApproved ?? false,
    };
  }

  /**
   * The user approved (or the client is pre-approved): a Grant for the requested resource and
   * scopes, the login of the signed-in user. Returns where to send the browser (back to the
   * authorization endpoint, which redirects to the client with the code).
   */
  async approve(req: IncomingMessage, res: ServerResponse, request: ConsentRequest, user: DelegatingUser): Promise<string> {
    if (isDocumentClientId(request.clientId)) {
      // First successful authorization: the client becomes (or stays) a registry agent the operator can see and disable.
      const agent = await this.deps.agents.upsertDocumentClient(documentClientAgent(this.deps.config, request.clientId, request.clientName));
      if (agent.status !== 'active') throw new UnauthorizedClient('the client is disabled');
    }
    const grant = new this.provider.Grant({ accountId: user.id, clientId: request.clientId });
    const client = await this.clientOf(request.clientId);
    const allowed = client ? new Set((codeFlowResourceScopes(client, request.resource, this.deps.issuer) ?? '').split(' ')) : new Set<string>();
    const granted = request.scopes.filter((s) => allowed.has(s));
    if (request.resource) grant.addResourceScope(request.resource, granted.join(' '));
    const grantId = await grant.save();
    await this.#accounts.upsert(user.id, { issuerId: user.issuerId, ...userAttributes(user) } as unknown as AdapterPayload, this.deps.refreshTokenSeconds);
    return this.provider.interactionResult(req, res, { login: { accountId: user.id }, consent: { grantId } }, { mergeWithLastSubmission: false });
  }

  /** The user declined: the client gets `error=access_denied` (RFC 6749 §4.1.2.1). */
  deny(req: IncomingMessage, res: ServerResponse): Promise<string> {
    return this.provider.interactionResult(req, res, { error: 'access_denied', error_description: 'the user declined' }, { mergeWithLastSubmission: false });
  }

  /** The signed-in user's attributes as kept at approval, for the token record. */
  async account(userId: string): Promise<DelegatingUser | undefined> {
    const payload = (await this.#accounts.find(userId)) as unknown as (Omit<DelegatingUser, 'id'> & { issuerId: string }) | undefined;
    return payload ? { ...payload, id: userId } : undefined;
  }
}

/** A code-flow token just minted at `/token`, as plain values. */
interface CodeFlowIssuance {
  jti: string;
  /** The OAuth `client_id` (a metadata document's URL, or the agent id). */
  clientId: string;
  /** The document's `client_name`, for a metadata-document client. */
  clientName: string | undefined;
  /** The registry agent acting for the user ({@link codeFlowAgentId}). */
  agentId: string;
  user: DelegatingUser;
  audience: string;
  scope: string;
  /** `cnf.jkt`, when DPoP-bound. */
  jkt: string | undefined;
  /** Lifetime, seconds. */
  expiresIn: number;
  grantType: string;
}

/**
 * Provider middleware: after `/token` issued a code-flow token (authorization code or refresh),
 * checks it (DPoP for public clients), runs the `delegate` decision, and records it and its
 * receipt in one transaction (`recordIssuedToken`). A token refused or not recorded is not
 * delivered: the response becomes the error (fail closed).
 */
export function recordCodeFlowTokens(interactions: Interactions, deps: CodeFlowDeps): Koa.Middleware {
  return async function recordCodeFlowToken(ctx, next) {
    await next();
    const oidc = (ctx as unknown as KoaContextWithOIDC).oidc;
    if (oidc?.route !== 'token' || ctx.status !== 200) return;
    const issued = await codeFlowIssuance(oidc, interactions);
    if (!issued) return;
    // RFC 9449 / MCP authorization: a public client's token is only ever sender-constrained.
    if (oidc.client?.clientAuthMethod === 'none' && !issued.jkt) {
      throw new InvalidDpopProof('a DPoP proof is required: tokens of public clients are always bound to the client\'s key (RFC 9449)', { status: 400 });
    }
    const requestId = typeof ctx.state.requestId === 'string' ? ctx.state.requestId : undefined;
    const receipt = await decideDelegation(deps, issued, codeFlowReceipt(issued, requestId));
    await recordIssuance(deps, issued, receipt);
    deps.logger.info({ client_id: issued.clientId, user: issued.user.id, audience: issued.audience, scope: issued.scope }, 'code flow token issued');
  };
}

/** The code-flow token of this `/token` response, or undefined when it issued another kind. */
async function codeFlowIssuance(oidc: KoaContextWithOIDC['oidc'], interactions: Interactions): Promise<CodeFlowIssuance | undefined> {
  const at = oidc.entities.AccessToken;
  if (!at?.clientId || !at.gty?.split(' ').includes(AUTHORIZATION_CODE_GRANT)) return undefined;
  const user = await interactions.account(at.accountId);
  if (!user) throw new InvalidGrant('the user of this grant is no longer known: authorize again');
  return {
    jti: at.jti,
    clientId: at.clientId,
    clientName: oidc.client?.clientName,
    agentId: codeFlowAgentId(at.clientId),
    user,
    audience: String(at.aud ?? at.resourceServer?.audience ?? ''),
    scope: at.scope ?? '',
    jkt: (at as unknown as { jkt?: string }).jkt,
    expiresIn: at.expiration,
    grantType: String((oidc.params as Record<string, unknown>).grant_type),
  };
}

/**
 * The `permit` receipt of a code-flow token (its request digest names no token). Audience and
 * scope are reduced to fit a receipt ({@link receiptText}): an agent may hold many long scopes,
 * and a refused grant's receipt must still be written (the token's own `scope` stays whole).
 */
function codeFlowReceipt(issued: CodeFlowIssuance, requestId: string | undefined): ReceiptInput {
  const request = { grant_type: issued.grantType, client_id: issued.clientId, ...(issued.jkt ? { dpop_jkt: issued.jkt } : {}), resource: issued.audience, scope: issued.scope };
  return {
    agent: issued.agentId,
    user: issued.user.id,
    chain: [issued.agentId],
    event: 'authorization_code',
    action: 'delegate',
    resource: receiptText(issued.audience),
    decision: 'permit',
    ...(issued.scope ? { scope: receiptText(issued.scope) } : {}),
    requestDigest: requestDigest(request),
    ...(requestId !== undefined ? { requestId } : {}),
  };
}

/** The token record (a root: a one-link chain) and its receipt, in one transaction. */
async function recordIssuance(deps: CodeFlowDeps, issued: CodeFlowIssuance, receipt: ReceiptInput): Promise<void> {
  const now = Math.floor(Date.now() / 1000);
  const record: NewTokenRecord = {
    jti: issued.jti,
    parentJti: undefined,
    rootJti: issued.jti,
    agentId: issued.agentId,
    userId: issued.user.id,
    userAttrs: userAttributes(issued.user),
    issuerId: issued.user.issuerId,
    audience: issued.audience,
    scope: issued.scope,
    chain: [issued.agentId],
    cnfJkt: issued.jkt,
    mayAct: undefined,
    upstream: undefined,
    issuedAt: now,
    expiresAt: now + issued.expiresIn,
  };
  try {
    await deps.store.transaction((tx) => recordIssuedToken(deps, tx, record, receipt), { retryConflicts: true });
  } catch (err) {
    // Disabled while this request ran (decideDelegation read it active).
    if (err instanceof AgentNotActive) throw new UnauthorizedClient('the client is not an active agent');
    throw err;
  }
}

/**
 * The `delegate` decision for a code-flow token, as for an exchanged one (a one-link chain: the
 * client acting for the user). Returns the receipt completed with the deciding policies; a
 * refusal writes a `deny` receipt and is the grant's error (nothing is delivered).
 */
async function decideDelegation(deps: CodeFlowDeps, issued: CodeFlowIssuance, receipt: ReceiptInput): Promise<ReceiptInput> {
  const { clientId, agentId, user, audience, scope } = issued;
  // A metadata-document client is created lazily here too (consent may predate this registry), with today's limits.
  const agent = isDocumentClientId(clientId) ? await deps.agents.upsertDocumentClient(documentClientAgent(deps.config, clientId, issued.clientName)) : await deps.agents.get(clientId);
  if (!agent) throw new UnauthorizedClient('the client is not a registered agent');
  if (agent.status !== 'active') throw new UnauthorizedClient('the client is disabled');
  try {
    const permit = await deps.authorizer.authorize({ user, agent, chain: [agentId], audience, scopes: scope.split(' ').filter(Boolean) });
    return permit ? { ...receipt, policies: permit.policies } : receipt;
  } catch (err) {
    if (!(err instanceof DelegationDenied)) throw err;
    await deps.receipts.append({ ...receipt, decision: 'deny', reason: receiptText(err.description), policies: err.policies }).catch((e: unknown) => deps.logger.error({ err: unexpectedError(e) }, 'deny receipt not written'));
    throw err.error === 'unauthorized_client' ? new UnauthorizedClient(err.description) : new InvalidGrant(err.description);
  }
}

/**
 * The scope ceiling of the metadata-document client `clientId` (its document's `scope`, through
 * oidc-provider's cached resolution); `undefined` for any other client or a document without one.
 */
async function clientScopeCeiling(provider: Provider, clientId: string): Promise<readonly string[] | undefined> {
  if (!isDocumentClientId(clientId)) return undefined;
  // Not caught: a document that cannot be resolved now gives no ceiling-less answer (fail closed).
  const client = await provider.Client.find(clientId);
  return client ? documentScopeCeiling(client.metadata() as Record<string, unknown>) : undefined;
}

/**
 * Turns the code flow on for `provider` (configured by ./provider.ts with `codeFlowConfiguration`):
 * installs the recording of its tokens and returns the interaction service for the HTTP routes.
 * `undefined` when `oauth.authorizationCode` is off.
 */
export function enableCodeFlow(provider: Provider, deps: CodeFlowDeps): Interactions | undefined {
  if (!deps.config.enabled) return undefined;
  const interactions = new Interactions(provider, deps, async (clientId) => resolveCodeFlowClient(deps.config, deps.agents, clientId, await clientScopeCeiling(provider, clientId)));
  provider.use(recordCodeFlowTokens(interactions, deps));
  return interactions;
}
