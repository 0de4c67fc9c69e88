/**
 * Process lifecycle (issue 11 part 9):
 * - a graceful stop (what SIGTERM runs) closes idle keep-alive connections at once, lets the
 *   request in flight finish with `Connection: close` (never cut), and completes as soon as it
 *   is done — not at the end of the grace period;
 * - cluster mode on PostgreSQL: with the database away, `kill -9` of one worker leaves the
 *   other serving, the replacement is retried (with backoff) until the database is back, and
 *   then serves too.
 */
import { connect, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, usingPostgres } from '../support/database.js';
import { freePort } from '../support/net.js';
import { isListening, killAll, logLines, startDeputyProcess } from '../support/process.js';
import { parseResponse } from '../support/raw-http.js';
import { startTestDeputy } from '../support/server.js';
import { startTcpProxy } from '../support/tcp-proxy.js';

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'deputy-life-'));
});
afterEach(() => killAll());
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A raw keep-alive connection: collects what the server sends and when it closes. */
function openConnection(port: number): Promise<{ socket: Socket; received: () => Buffer; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.on('data', (b: Buffer) => chunks.push(b));
    socket.once('error', reject);
    socket.once('connect', () => resolve({ socket, received: () => Buffer.concat(chunks), closed }));
  });
}

async function untilReceived(conn: { received: () => Buffer }, what: RegExp): Promise<void> {
  while (!what.test(conn.received().toString('latin1'))) await new Promise((r) => setTimeout(r, 10));
}

describe('graceful stop with keep-alive connections', () => {
  it('closes idle connections at once, finishes the request in flight with Connection: close, and stops as soon as it is done', async () => {
    // A grace period far longer than the test may run: the stop must not wait for it.
    const deputy = await startTestDeputy({ config: { server: { shutdownGraceSeconds: 600 } } });
    const port = Number(new URL(deputy.url).port);
    let stopped = false;
    try {
      // An idle keep-alive connection: one request answered, connection left open.
      const idle = await openConnection(port);
      idle.socket.write(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n`);
      await untilReceived(idle, /"status":"ok"/);
      expect(idle.received().toString('latin1')).toMatch(/Connection: keep-alive/i);

      // A request in flight: its head is still arriving when the stop begins (the connection is
      // busy, not idle). Plain Node would answer it keep-alive and go on serving that connection.
      const busy = await openConnection(port);
      busy.socket.write(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n`);
      await new Promise((r) => setTimeout(r, 50)); // let the server see the bytes (not an assertion)

      const stopping = deputy.close().then(() => {
        stopped = true;
      });
      await idle.closed; // idle keep-alive connections are closed at once
      expect(stopped).toBe(false); // the request in flight holds the stop
      expect(await isListening(port)).toBe(false); // no new connections

      busy.socket.write('\r\n');
      await busy.closed; // answered, then closed by the server: no second request on it
      const res = parseResponse(busy.received());
      expect(res?.status).toBe(200); // complete, not cut
      expect(res?.headers.connection).toBe('close');
      expect(JSON.parse(res!.body)).toEqual({ status: 'ok' });
      await stopping; // done as soon as the request was: far inside the 600 s grace
      expect(stopped).toBe(true);
    } finally {
      if (!stopped) await deputy.close(0);
      await deputy.database.drop();
      rmSync(deputy.keysDir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe.skipIf(!usingPostgres)('cluster mode on PostgreSQL with the database away', () => {
  it('kill -9 of one worker leaves the other serving; the replacement is retried until the database is back, then serves', async () => {
    const db = await createTestDatabase();
    const real = new URL(db.url!);
    const proxy = await startTcpProxy({ host: real.hostname, port: Number(real.port || 5432) });
    const proxied = new URL(db.url!);
    proxied.hostname = '127.0.0.1';
    proxied.port = String(proxy.port);
    const port = await freePort();
    try {
      const proc = startDeputyProcess({
        DEPUTY_WORKERS: '2', PORT: String(port), HOST: '127.0.0.1', DATABASE_URL: proxied.toString(), DEPUTY_KEYS_DIR: join(tmp, 'cluster-keys'), LOG_LEVEL: 'info',
      });
      const workersStarted = () => logLines(proc.stdout()).filter((l) => l.msg === 'worker started');
      await proc.until(() => workersStarted().length >= 2, 'two workers started');
      const [victim, survivor] = workersStarted().map((l) => Number(l.worker));

      await proxy.down();
      process.kill(victim!, 'SIGKILL');
      // The replacement cannot start while the database is away: it is retried, not given up on.
      await proc.until(() => logLines(proc.stdout()).filter((l) => l.msg === 'worker could not start; retrying').length >= 2, 'two failed starts of the replacement');
      expect(proc.child.exitCode).toBeNull(); // the primary keeps running
      const retries = logLines(proc.stdout()).filter((l) => l.msg === 'worker could not start; retrying').map((l) => Number(l.retryInMs));
      expect(retries[1]).toBeGreaterThan(retries[0]!); // backoff grows
      // The healthy worker keeps serving on the port (it is the only one listening now).
      for (let i = 0; i < 4; i += 1) {
        const res = await fetch(`http://127.0.0.1:${port}/healthz`);
        expect(res.status).toBe(200);
        expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(503); // honest about the store
      }
      expect(() => process.kill(survivor!, 0)).not.toThrow();

      await proxy.up();
      await proc.until(() => workersStarted().length >= 3, 'the replacement started once the database was back');
      for (let i = 0; i < 6; i += 1) expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);

      proc.child.kill('SIGTERM');
      expect((await proc.exited).code).toBe(0);
      expect(await isListening(port)).toBe(false);
    } finally {
      await proxy.close();
      await db.drop();
    }
  }, 240_000);
});
