/**
 * CPU time spent outside the server under test during a bench point, so that a scenario's whole
 * cost per request can be read, not only its server process's: the load generator (this process)
 * and, on a PostgreSQL server running on this machine, the backends serving the bench's database
 * and the cluster's background processes (WAL writer, checkpointer, …). On 2 shared cores a
 * scenario's rate is bounded by the sum, so the part spent in PostgreSQL matters as much as
 * Deputy's own (issue 16, seventh round).
 *
 * Read from `/proc/<pid>/stat` (utime + stime, clock ticks of 10 ms: meaningful over a point of
 * thousands of requests, not per request). Backends of other databases (other work on the same
 * server) are left out; background processes are shared by the whole cluster, so their figure is
 * only clean on an otherwise idle server.
 *
 * @module
 */
import pg from 'pg';
import { backendCpuUs } from './micro-store.js';

/** CPU microseconds per process id, split by what the process is. */
interface Snapshot {
  loadGeneratorUs: number;
  backends: Map<number, number>;
  background: Map<number, number>;
}

/** CPU spent during a window, in milliseconds: the load generator, the database's backends, the cluster's background processes. */
export interface HostCpu {
  loadGeneratorMs: number;
  pgBackendsMs?: number;
  pgBackgroundMs?: number;
}

/** Samples CPU around bench windows; {@link close} when done. */
export class HostCpuSampler {
  readonly #client: pg.Client | undefined;
  #own = -1;

  private constructor(client: pg.Client | undefined) {
    this.#client = client;
  }

  /** A sampler for the load generator alone (`databaseUrl` undefined: PGlite) or with the PostgreSQL database at `databaseUrl`. */
  static async open(databaseUrl: string | undefined): Promise<HostCpuSampler> {
    if (!databaseUrl) return new HostCpuSampler(undefined);
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    const sampler = new HostCpuSampler(client);
    sampler.#own = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    return sampler;
  }

  /** Now's CPU counters. */
  async snapshot(): Promise<Snapshot> {
    const used = process.cpuUsage();
    const snap: Snapshot = { loadGeneratorUs: used.user + used.system, backends: new Map(), background: new Map() };
    if (!this.#client) return snap;
    const rows = await this.#client.query<{ pid: number; mine: boolean; background: boolean }>(
      `SELECT pid, datname = current_database() AS mine, backend_type <> 'client backend' AS background FROM pg_stat_activity`,
    );
    for (const r of rows.rows) {
      if (r.pid === this.#own) continue;
      if (r.background) snap.background.set(r.pid, backendCpuUs(r.pid));
      else if (r.mine) snap.backends.set(r.pid, backendCpuUs(r.pid));
    }
    return snap;
  }

  /** What was spent between `before` and now (a process that started in between counts whole). */
  async since(before: Snapshot): Promise<HostCpu> {
    const after = await this.snapshot();
    const spent = (a: Map<number, number>, b: Map<number, number>) => [...a].reduce((sum, [pid, us]) => sum + us - (b.get(pid) ?? 0), 0) / 1000;
    return {
      loadGeneratorMs: (after.loadGeneratorUs - before.loadGeneratorUs) / 1000,
      ...(this.#client ? { pgBackendsMs: spent(after.backends, before.backends), pgBackgroundMs: spent(after.background, before.background) } : {}),
    };
  }

  async close(): Promise<void> {
    await this.#client?.end();
  }
}
