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
import type { AgentRegistry } from './agents/registry.js';
import type { Budgets } from './budgets/index.js';
import type { ReceiptService } from './audit/receipts.js';
import { checkAgentGrants, ConfigError, loadConfig } from './config/load.js';
import type { DeputyConfig } from './config/schema.js';
import { TemporarilyUnavailable } from './errors/index.js';
import type { CredentialIsolation } from './gateway/index.js';
import type { McpSurface } from './mcp/index.js';
import { writeNodeError } from './http/errors.js';
import { metricsListener } from './http/metrics.js';
import { checkpointObserver } from './observability/instrument.js';
import { clusterExposition, metrics, shareWithClusterPrimary } from './observability/metrics.js';
import { startTracing, type TracingHandle } from './observability/tracing.js';
import { KeyError, loadKeyStore, type KeyStore } from './keys/keystore.js';
import { createLogger, type Logger } from './log.js';
import type { Provider } from './oauth/oidc-provider/index.js';
import type { RevocationCache, TokenRecords } from './oauth/token-records.js';
import type { PdpService } from './pdp/service.js';
import type { Services } from './services.js';
import { startupSummary } from './startup-summary.js';
import { DataDirLocked, migrate, openStore, type Store } from './store/index.js';

export interface StartOptions {
  config: DeputyConfig;
  logger?: Logger;
  env?: Readonly<Record<string, string | undefined>>;
}

export interface DeputyServer {
  /** Base URL the server listens on (loopback form when bound to all interfaces). */
  readonly url: string;
  /** Base URL of the separate metrics listener (`metrics.listen`; loopback form when bound to all interfaces), when configured. */
  readonly metricsUrl: string | undefined;
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
  /** The MCP gateway with signed tool pins (DESIGN capabilities 6, 7). */
  readonly mcp: McpSurface;
  /** Budgets: definitions, price table, reserve-then-settle ledger (DESIGN capability 5). */
  readonly budgets: Budgets;
  /** One pass of the purge the server runs every five minutes (expired rows; operators, tests). */
  purgeExpired(): Promise<void>;
  /** Stops accepting connections, waits for in-flight requests (up to `graceMs`), closes the store. */
  close(graceMs?: number): Promise<void>;
}

const PURGE_INTERVAL_MS = 5 * 60_000;

/**
 * Starts Deputy: store (data-folder lock, migrations) → keys → listen (503 until ready) → the
 * issuer → services and app (src/services.ts, loaded only now) → serve.
 *
 * @throws DataDirLocked when another process holds the embedded data folder; KeyError for a
 *   missing or damaged key file; ConfigError for a configured agent granted Deputy's own
 *   resources; PolicyLoadError for a Cedar policy set that does not load. Whatever was opened
 *   is closed before the error propagates.
 */
export async function startDeputy(options: StartOptions): Promise<DeputyServer> {
  const { config } = options;
  const logger = options.logger ?? createLogger(config.log.level);
  const store = await openStore(config.store, {
    ...checkpointObserver(logger),
    // The worker-thread store's worker died: its cause is the worker error's name and code or its exit code (never a message).
    lost: (err) => logger.fatal({ err: { message: err.message, cause: err.cause } }, 'embedded store lost: every call answers 503 and /healthz fails until Deputy is restarted'),
  });
  const server = createServer({ requestTimeout: 30_000, headersTimeout: 15_000 });
  // A cluster worker's metrics are served by the primary's listener, summed over the workers.
  if (cluster.isWorker) shareWithClusterPrimary();
  const metricsServer = config.metrics.listen === undefined || cluster.isWorker ? undefined : createServer({ requestTimeout: 10_000, headersTimeout: 10_000 }, metricsListener());
  try {
    await migrateStore(store, logger);
    const keys = await loadKeys(config, options.env);
    const port = await listen(server, config.server.port, config.server.host);
    const metricsUrl = metricsServer && (await listenForMetrics(metricsServer, config.metrics.listen!));
    metrics.observeStore(store);
    metrics.observeSigningKey(() => keys.activeSigningKey.createdAt);
    const issuer = config.server.issuer ?? `http://localhost:${port}`;
    // Now that the issuer is known: no configured agent may be granted Deputy's own resources.
    checkAgentGrants(config.agents, issuer, 'configuration');
    // Loaded only now: a process refused above never loads the protocol stack.
    const { composeServices } = await import('./services.js');
    const services = await composeServices({ config, logger, store, keys, issuer, env: options.env ?? process.env });
    const lifecycle = new ConnectionLifecycle(server);
    server.removeAllListeners('request');
    server.on('request', lifecycle.track(services.app.callback()));
    const purge = schedulePurge(services, logger);
    logger.info({ issuer, port, store: store.kind, signingKid: keys.activeSigningKey.jwk.kid, ...(metricsUrl ? { metrics: metricsUrl } : {}) }, 'deputy started');
    const { app: _app, ...running } = services;
    return {
      url: `http://127.0.0.1:${port}`,
      issuer, config, server, store, keys, logger, metricsUrl, ...running,
      close: async (graceMs = config.server.shutdownGraceSeconds * 1000) => {
        clearInterval(purge);
        services.pdp.close();
        // MCP sessions first: their open SSE streams would hold the graceful stop for its whole grace.
        await services.mcp.close();
        await lifecycle.close(graceMs);
        await services.isolation.close();
        await services.receipts.flush();
        await store.close();
        await closeMetricsServer(metricsServer);
      },
    };
  } catch (err) {
    server.close();
    await closeMetricsServer(metricsServer);
    await store.close().catch(() => {});
    throw err;
  }
}

/** Binds the separate metrics listener (`host:port`, IPv6 in brackets); returns its base URL. */
async function listenForMetrics(server: Server, listen: string): Promise<string> {
  const colon = listen.lastIndexOf(':');
  const host = listen.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(listen.slice(colon + 1)), host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
  const shown = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  return `http://${shown}:${port}`;
}

async function closeMetricsServer(server: Server | undefined): Promise<void> {
  if (!server?.listening) return;
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  // Scrapers keep connections alive: nothing in flight there is worth waiting for.
  server.closeAllConnections();
  await closed;
}

/** Applies pending migrations (advisory-locked: workers starting together apply each once). */
async function migrateStore(store: Store, logger: Logger): Promise<void> {
  const applied = await migrate(store);
  if (applied.length) logger.info({ applied, store: store.kind }, 'migrations applied');
}

/** The token-signing, receipt, DPoP-nonce and vault keys (`keys.dir`; generated on first start when allowed). */
function loadKeys(config: DeputyConfig, env: StartOptions['env']): Promise<KeyStore> {
  return loadKeyStore({
    dir: config.keys.dir,
    signingAlg: config.keys.signingAlg,
    generate: config.keys.generate,
    maxTokenLifetime: config.tokens.accessTokenTTL,
    ...(env ? { env } : {}),
  });
}

/** Deletes expired rows every {@link PURGE_INTERVAL_MS}; a failed purge is logged and retried next time. */
function schedulePurge(services: Pick<Services, 'purgeExpired'>, logger: Logger): NodeJS.Timeout {
  const purge = setInterval(() => {
    services.purgeExpired().catch((err) => logger.warn({ err: String(err) }, 'purge of expired rows failed'));
  }, PURGE_INTERVAL_MS);
  purge.unref();
  return purge;
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
    if (config.metrics.listen !== undefined) await serveClusterMetrics(config.metrics.listen, logger);
    return;
  }
  let tracing: TracingHandle;
  try {
    // Before the services load: off unless OTEL_* configure it (src/observability/tracing.ts).
    tracing = await startTracing({ env: process.env });
  } catch (err) {
    process.stderr.write(`deputy: ${(err as Error).message}\n`);
    process.exit(2);
  }
  let deputy: DeputyServer;
  try {
    deputy = await startDeputy({ config, logger });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`deputy: ${err.message}\n`);
      process.exit(2);
    }
    if (await isOperatorError(err)) process.stderr.write(`deputy: ${(err as Error).message}\n`);
    else logger.fatal({ err }, 'start failed');
    process.exit(1);
  }
  if (cluster.isPrimary) process.stdout.write(`Deputy is listening on ${deputy.issuer} (store: ${deputy.store.kind})\n${startupSummary(config, deputy.issuer)}`);
  else process.send?.({ listening: deputy.issuer, store: deputy.store.kind });
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    deputy.close().then(
      () => tracing.shutdown().catch(() => undefined).then(() => process.exit(0)),
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

/**
 * Start failures whose message is written for the operator (a locked data folder, a key file, a
 * policy set), printed as they are rather than logged with a stack. PolicyLoadError is imported
 * only here, on the failure path: its module loads Cedar.
 */
async function isOperatorError(err: unknown): Promise<boolean> {
  if (err instanceof KeyError || err instanceof DataDirLocked) return true;
  const { PolicyLoadError } = await import('./pdp/service.js');
  return err instanceof PolicyLoadError;
}

/**
 * The primary's metrics listener (`metrics.listen` with `server.workers > 1`): every worker's
 * metrics summed, through prom-client's cluster aggregation. Closed on SIGTERM / SIGINT with
 * the workers. A listener that cannot bind stops the primary (exit 1), like a worker that cannot.
 */
async function serveClusterMetrics(listen: string, logger: Logger): Promise<void> {
  const server = createServer({ requestTimeout: 10_000, headersTimeout: 10_000 }, metricsListener(clusterExposition()));
  try {
    const url = await listenForMetrics(server, listen);
    logger.info({ metrics: url }, 'metrics listener started (all workers)');
  } catch (err) {
    logger.fatal({ err }, 'metrics listener could not start');
    process.exit(1);
  }
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => void closeMetricsServer(server));
  server.unref();
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
