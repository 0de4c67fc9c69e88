// Runs ./pglite-worker.ts from source (tsx, tests, `npm start`): tsx's `--import` hook does not
// reach worker threads, so the worker registers it itself. A build runs ./pglite-worker.js instead.
import { register } from 'tsx/esm/api';

register();
await import('./pglite-worker.ts');
