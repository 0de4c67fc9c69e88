/** A TCP port that was free a moment ago on 127.0.0.1 (for servers whose URL must be known before they start). */
export { freePort } from '../../src/util/net.js';
