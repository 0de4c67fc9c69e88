/**
 * Per test file (vitest `setupFiles`): gives the store module the empty cluster made once per run
 * by `./global-setup.ts`, so PGlite databases opened in this file skip `initdb`.
 */
import { readFileSync } from 'node:fs';
import { inject } from 'vitest';
import { provideEmptyCluster } from '../../src/store/pglite.js';

/**
 * A dump held as bytes, handed to PGlite (which only calls `arrayBuffer()`) as a copy each time.
 * Node 20's `Blob.arrayBuffer()` reads a 40 MB blob in small chunks and concatenates them: ~1 s
 * of CPU per database opened, where copying the bytes takes a few milliseconds.
 */
class DumpBytes extends Blob {
  readonly #dump: Uint8Array;
  constructor(dump: Uint8Array) {
    super([]);
    this.#dump = dump;
  }
  override arrayBuffer(): Promise<ArrayBuffer> {
    return Promise.resolve(this.#dump.slice().buffer);
  }
}

provideEmptyCluster(new DumpBytes(readFileSync(inject('pgliteEmptyCluster'))));
