/**
 * @module
 */
import { createServer } from 'node:net';

/**
 * A TCP port that was free a moment ago on 127.0.0.1, for servers whose URL must be known before
 * they start (an issuer that names its port). Another process may take it meanwhile; callers
 * that cannot retry should say so.
 */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as { port: number };
  await new Promise((resolve) => srv.close(resolve));
  return port;
}
