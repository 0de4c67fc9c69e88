/**
 * Per test file (vitest `setupFiles`): gives the store module the empty cluster made once per run
 * by `./global-setup.ts`, so PGlite databases opened in this file skip `initdb`.
 */
import { readFileSync } from 'node:fs';
import { inject } from 'vitest';
import { provideEmptyCluster } from '../../src/store/pglite.js';

provideEmptyCluster(new Blob([readFileSync(inject('pgliteEmptyCluster'))]));
