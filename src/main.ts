/**
 * Composition root: config → store → keys → registry → services → Koa app → listen.
 *
 * `startDeputy()` is used by `npm start` (below) and by the tests; it either returns a running
 * server or, on any failure, closes what it opened and throws: nothing is left half-started.
 *
 * @module
 */
import cluster from 'node:cluster';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { AgentRegistry } from './agents/registry.js';
import { TemporarilyUnavailable } from './errors/index.js';
import { ReceiptService } from './audit/receipts.js';
import { createBudgets, type Budgets } from './budgets/index.js';
import { LlmGateway } from './llm/gateway.js';
import { localVault } from './vault/local-vault.js';
import { checkAgentGrants, ConfigError, loadConfig } from './config/load.js';
import type { DeputyConfig } from './config/schema.js';
import { createCredentialIsolation, type CredentialIsolation } from './gateway/index.js';
import { createApp } from './http/app.js';
import { writeError, writeNodeError } from './http/errors.js';
import { RECEIPTS_JWKS_PATH } from './http/receipts.js';
import { KeyError, loadKeyStore, type KeyStore } from './keys/keystore.js';
import { createLogger, type Logger } from './log.js';
import { AccessTokenVerifier } from './oauth/access-token.js';
import { purgeExpired } from './oauth/adapter.js';
import { ADMIN_SCOPE } from './oauth/deputy-own.js';
import { DpopVerifier } from './oauth/dpop.js';
import { agentTokenIntrospection, createProvider, tokenExchangeGrant, type Provider } from './oauth/oidc-provider/index.js';
import { FederationVerifier } from './federation/verify.js';
import { RegistryAuthorizer } from './oauth/delegation-authorizer.js';
import { RevocationCache, TokenRecords } from './oauth/token-records.js';
import { PolicyLoadError, startPdp, type PdpService } from './pdp/service.js';
import { DataDirLocked, migrate, openStore, type Store } from './store/index.js';

export interface StartOptions {
  config: DeputyConfig;
  logger?: Logger;
  env?: Readonly<Record<string, string | undefined>>;
}

export interface DeputyServer {
  /** Base URL the server listens on (loopback form when bound to all interfaces). */
  readonly url: string;
  readonly issuer: string;
  readonly config: DeputyConfig;
  readonly server: Server;
  readonly store: Store;
  readonly keys: KeyStore;
  readonly agents: AgentRegistry;
  readonly provider: Provider;
  readonly records: TokenRecords;
  readonly revocations: RevocationCache;
  /** The AuthZEN PDP (Cedar policies, delegation-chain evaluation). */
  readonly pdp: PdpService;
  readonly logger: Logger;
  /** Signed receipts in per-agent hash chains (DESIGN capability 4). */
  readonly receipts: ReceiptService;
  /** Vault connections, connect flows and the credential-injecting gateway (DESIGN capability 3). */
  readonly isolation: CredentialIsolation;
  /** Budgets: definitions, price table, reserve-then-settle ledger (DESIGN capability 5). */
  readonly budgets: Budgets;
  /** Stops accepting connections, waits for in-flight requests (up to `graceMs`), closes the store. */
  close(graceMs?: number): Promise<void>;
}

const PURGE_INTERVAL_MS = 5 * 60_000;

export async function startDeputy(options: StartOptions): Promise<DeputyServer> {
  const { config } = options;
  const logger = options.logger ?? createLogger(config.log.level);
  const store = await openStore(config.store);
  const server = createServer({ requestTimeout: 30_000, headersTimeout: 15_000 });
  try {
    const applied = await migrate(store);
    if (applied.length) logger.info({ applied, store: store.kind }, 'migrations applied');
    const keys = await loadKeyStore({
      dir: config.keys.dir,
      signingAlg: config.keys.signingAlg,
      generate: config.keys.generate,
      maxTokenLifetime: config.tokens.accessTokenTTL,
      ...(options.env ? { env: options.env } : {}),
    });
    const port = await listen(server, config.server.port, config.server.host);
    const issuer = config.server.issuer ?? `http://localhost:${port}`;
    // Now that the issuer is known: no configured agent may be granted Deputy's own resources.
    checkAgentGrants(config.agents, issuer, 'configuration');
    const agents = new AgentRegistry(store);
    const records = new TokenRecords(store);
    // Disabling an agent revokes its tokens, and so everything delegated from them, in the same
    // transaction as the status change (see TokenRecords.insert for the other side of the race).
    agents.onDisable(async (agentId, tx) => {
      const revoked = await records.revokeByAgent(agentId, 'agent disabled', tx);
      if (revoked.length) logger.info({ agent: agentId, revoked: revoked.length }, 'tokens of disabled agent revoked');
    });
    await agents.syncFromConfig(config.agents);
    const dpop = new DpopVerifier({
      db: store,
      iatWindowSeconds: config.dpop.iatWindowSeconds,
      requireNonce: config.dpop.requireNonce,
      nonceSecret: keys.dpopNonceSecret,
    });
    const verifier = new AccessTokenVerifier({ issuer, keys, dpop });
    const revocations = new RevocationCache(records);
    const pdp = await startPdp({ config, verifier, records, revocations, agents, logger });
    const receipts = new ReceiptService({ store, issuer, key: keys.activeReceiptKey });
    const vault = localVault(keys, logger);
    const exchange = tokenExchangeGrant({
      issuer, store, agents, verifier, records, keys, logger, vault,
      federation: new FederationVerifier(config.trustedIssuers),
      authorizer: pdp.delegationAuthorizer(new RegistryAuthorizer(config.tokens.maxChainDepth)),
      receipts,
      accessTokenTTL: config.tokens.accessTokenTTL,
    });
    const provider = createProvider({
      config, issuer, store, keys, agents, dpop,
      grants: [exchange],
      discovery: { receipts_jwks_uri: `${issuer.replace(/\/$/, '')}${RECEIPTS_JWKS_PATH}` },
      writeError, logger,
    });
    provider.use(agentTokenIntrospection({
      verifier, records, revocations, logger,
      adminClients: new Set(config.admin.clients.map((c) => c.client_id)),
      revokingClients: new Set(config.admin.clients.filter((c) => (c.scopes as readonly string[]).includes(ADMIN_SCOPE)).map((c) => c.client_id)),
    }));
    // Disabled agents' tokens were revoked in the disabling transaction (onDisable above).
    agents.onChange((agent) => {
      if (agent.status === 'disabled') revocations.forget();
    });
    const budgets = await createBudgets(config.budgets, store);
    const isolation = await createCredentialIsolation({
      config, issuer, store, keys, logger, verifier, records, revocations, pdp: pdp.pdp, receipts, vault, env: options.env ?? process.env, budgets: budgets.ledger,
    });
    const llm = new LlmGateway({
      issuer, verifier, revocations, connections: isolation.connections, budgets, logger, receipts,
      ...(config.gateway.authorizer === 'pdp' ? { pdp: { evaluate: (input) => pdp.pdp.evaluate(input), declaresAction: (name) => pdp.pdp.store.current.schema.action(name) !== undefined } } : {}),
      adminReasons: config.pdp.adminReasons,
      upstreamTimeoutMs: config.gateway.upstreamTimeoutSeconds * 1000,
      maxRequestBytes: config.gateway.maxRequestBytes,
      maxResponseBytes: config.gateway.maxResponseBytes,
    });
    const app = createApp({ config, issuer, logger, store, keys, agents, provider, verifier, receipts, pdp, isolation, budgets, llm });
    const lifecycle = new ConnectionLifecycle(server);
    server.removeAllListeners('request');
    server.on('request', lifecycle.track(app.callback()));

    const purge = setInterval(() => {
      Promise.all([purgeExpired(store), records.purgeExpired(), isolation.flows.purgeExpired(), budgets.ledger.releaseExpired()]).catch((err) => logger.warn({ err: String(err) }, 'purge of expired rows failed'));
    }, PURGE_INTERVAL_MS);
    purge.unref();

    logger.info({ issuer, port, store: store.kind, signingKid: keys.activeSigningKey.jwk.kid }, 'deputy started');
    return {
      url: `http://127.0.0.1:${port}`,
      issuer, config, server, store, keys, agents, provider, records, revocations, logger, receipts, pdp, isolation, budgets,
      close: async (graceMs = config.server.shutdownGraceSeconds * 1000) => {
        clearInterval(purge);
        pdp.close();
        await lifecycle.close(graceMs);
        await isolation.close();
        await receipts.flush();
        await store.close();
      },
    };
  } catch (err) {
    server.close();
    await store.close().catch(() => {});
    throw err;
  }
}

/** Listens; until the app is attached, requests get 503 rather than hanging. */
function listen(server: Server, port: number, host: string): Promise<number> {
  server.on('request', (_req, res) => writeNodeError(res, new TemporarilyUnavailable('starting', { retryAfterSeconds: 1 })));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/**
 * Graceful stop of the HTTP server (SIGTERM): no new connections; every response from now on —
 * including those of requests already in flight — carries `Connection: close`, so each
 * keep-alive connection closes after its current response instead of being reused; idle
 * keep-alive connections are closed at once. The server is closed (and the process may exit)
 * as soon as in-flight requests are done; only requests still running after `graceMs` are cut.
 */
class ConnectionLifecycle {
  readonly #server: Server;
  readonly #inFlight = new Set<ServerResponse>();
  #closing = false;

  constructor(server: Server) {
    this.#server = server;
  }

  /** Wraps the request handler: remembers responses in flight, and marks them closing after SIGTERM. */
  track(handler: (req: IncomingMessage, res: ServerResponse) => void): (req: IncomingMessage, res: ServerResponse) => void {
    return (req, res) => {
      if (this.#closing) res.shouldKeepAlive = false;
      this.#inFlight.add(res);
      res.once('close', () => {
        this.#inFlight.delete(res);
        // A streamed response whose headers went out before SIGTERM left its connection
        // keep-alive: once it is idle, close it too.
        if (this.#closing) setImmediate(() => this.#server.closeIdleConnections());
      });
      handler(req, res);
    };
  }

  async close(graceMs: number): Promise<void> {
    this.#closing = true;
    if (!this.#server.listening) return;
    for (const res of this.#inFlight) if (!res.headersSent) res.shouldKeepAlive = false;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeIdleConnections();
    const timer = setTimeout(() => this.#server.closeAllConnections(), graceMs);
    timer.unref();
    await closed;
    clearTimeout(timer);
  }
}

/** `npm start`: load configuration, start, stop gracefully on SIGTERM / SIGINT. */
async function main(): Promise<void> {
  let config: DeputyConfig;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`deputy: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger(config.log.level);
  if (config.server.workers > 1 && cluster.isPrimary) {
    superviseWorkers(config.server.workers, logger);
    return;
  }
  let deputy: DeputyServer;
  try {
    deputy = await startDeputy({ config, logger });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`deputy: ${err.message}\n`);
      process.exit(2);
    }
    if (err instanceof KeyError || err instanceof PolicyLoadError || err instanceof DataDirLocked) process.stderr.write(`deputy: ${err.message}\n`);
    else logger.fatal({ err }, 'start failed');
    process.exit(1);
  }
  if (cluster.isPrimary) process.stdout.write(`Deputy is listening on ${deputy.issuer} (store: ${deputy.store.kind})\n`);
  else process.send?.({ listening: deputy.issuer, store: deputy.store.kind });
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    deputy.close().then(
      () => process.exit(0),
      (err) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // SIGHUP reloads the Cedar policy set; a refused set is logged and the previous one keeps serving.
  process.on('SIGHUP', () => void deputy.pdp.reload('signal').catch(() => undefined));
}

/** Backoff before re-forking a worker that exited: doubles from the first value up to the cap. */
const WORKER_BACKOFF_MS = { first: 500, cap: 30_000 } as const;
/** A worker that served this long is healthy: its next exit restarts the backoff from the start. */
const WORKER_HEALTHY_MS = 10_000;

/**
 * `server.workers > 1`: the primary forks that many workers sharing the port (`node:cluster`
 * round-robins connections) and passes SIGTERM / SIGINT (graceful stop) and SIGHUP (policy
 * reload) on to every worker. Workers start exactly as a single process does; key generation
 * (exclusive create) and migrations (advisory lock) are safe when they race.
 *
 * Each worker slot is supervised on its own: a worker that exits — crashed at runtime, killed,
 * or unable to start (the database is away, a key file is missing) — is replaced after a backoff
 * (0.5 s doubling to 30 s; back to 0.5 s once a replacement has served for 10 s), and the other
 * workers keep serving meanwhile. The primary never gives up on a slot: when the database
 * returns, the next attempt starts. Configuration errors never reach this point (the primary
 * validates the configuration before forking).
 */
function superviseWorkers(count: number, logger: Logger): void {
  let stopping = false;
  let announced = false;
  const fork = (slot: number, backoffMs: number) => {
    if (stopping) return;
    const worker = cluster.fork();
    let listeningAt: number | undefined;
    worker.on('message', (message: { listening?: string; store?: string }) => {
      if (!message.listening) return;
      listeningAt = Date.now();
      logger.info({ worker: worker.process.pid, slot }, 'worker started');
      if (!announced) {
        announced = true;
        process.stdout.write(`Deputy is listening on ${message.listening} (store: ${message.store}, ${count} workers)\n`);
      }
    });
    worker.on('exit', (code, signal) => {
      if (stopping) {
        if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
        return;
      }
      const healthy = listeningAt !== undefined && Date.now() - listeningAt >= WORKER_HEALTHY_MS;
      const delay = healthy ? WORKER_BACKOFF_MS.first : backoffMs;
      logger.error(
        { worker: worker.process.pid, slot, code, signal, started: listeningAt !== undefined, retryInMs: delay },
        listeningAt === undefined ? 'worker could not start; retrying' : 'worker exited; starting a replacement',
      );
      setTimeout(() => fork(slot, Math.min(delay * 2, WORKER_BACKOFF_MS.cap)), delay).unref();
    });
  };
  for (let slot = 0; slot < count; slot += 1) fork(slot, WORKER_BACKOFF_MS.first);
  // The primary serves nothing itself: keep it alive while replacements wait for their backoff.
  const keepAlive = setInterval(() => {}, 1 << 30);
  const forward = (signal: NodeJS.Signals) => {
    if (signal !== 'SIGHUP') {
      stopping = true;
      clearInterval(keepAlive);
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
    }
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill(signal);
  };
  process.on('SIGTERM', () => forward('SIGTERM'));
  process.on('SIGINT', () => forward('SIGINT'));
  process.on('SIGHUP', () => forward('SIGHUP'));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  void main();
}
