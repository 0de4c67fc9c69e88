/**
 * The store contract (./contract.ts) on embedded PGlite in a worker thread
 * (`store.pglite.thread: worker`, src/store/pglite-thread.ts): every statement, transaction and
 * error crosses the thread boundary, and Deputy must not be able to tell. Runs whatever
 * `DATABASE_URL` says: this store is PGlite either way.
 */
import { migrate, openStore } from '../../src/store/index.js';
import { storeContract } from './contract.js';

storeContract({
  kind: 'pglite',
  async open() {
    const store = await openStore({ dataDir: 'memory://', poolSize: 1, pglite: { thread: 'worker' } });
    await migrate(store);
    return {
      instances: [store],
      close: () => store.close(),
    };
  },
});
