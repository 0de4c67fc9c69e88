/**
 * Ports for test servers whose URL must be known before they start (an issuer that names its
 * port).
 *
 * A port the kernel hands out for `listen(0)` comes from its ephemeral range, the same range every
 * outgoing connection's local port comes from: between the moment it is free and the moment the
 * server binds it, a database connection or a fetch of another test file can take it
 * (`EADDRINUSE`). So tests take ports **below** the ephemeral range, where no outgoing
 * connection lands, each vitest worker (`VITEST_POOL_ID`) in its own slice, so files running at
 * the same time never pick the same port. Each candidate is still checked by binding it.
 *
 * @module
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { freePort as kernelPort } from '../../src/util/net.js';

const SLICES = 8;
const SLICE_MIN = 400;

/** `[first, last]` of this process's slice, or undefined when the machine leaves no room below its ephemeral range. */
function slice(): [number, number] | undefined {
  let ephemeralLow = 32768;
  try {
    ephemeralLow = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || ephemeralLow;
  } catch {
    // Not Linux: keep the usual default.
  }
  const first = Math.max(10_000, ephemeralLow - 12_768);
  const size = Math.floor((ephemeralLow - first) / SLICES);
  if (size < SLICE_MIN) return undefined;
  const id = Number(process.env.VITEST_POOL_ID ?? process.env.VITEST_WORKER_ID ?? 0) % SLICES;
  return [first + id * size, first + (id + 1) * size - 1];
}

const range = slice();
// Start at a random place in the slice: a worker slot runs many files one after another.
let next = range ? range[0] + Math.floor(Math.random() * (range[1] - range[0] + 1)) : 0;

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** A TCP port free a moment ago on 127.0.0.1, outside the kernel's ephemeral range (see the module doc). */
export async function freePort(): Promise<number> {
  if (!range) return kernelPort();
  const span = range[1] - range[0] + 1;
  for (let tries = 0; tries < span; tries++) {
    const port = range[0] + ((next - range[0]) % span);
    next = port + 1;
    if (await bindable(port)) return port;
  }
  return kernelPort();
}
