/**
 * Facts used in several places, each spelled out once (issue 12 item 5;
 * `test/unit/one-source.test.ts` holds it): JOSE algorithm lists by use, the constant-time
 * comparison, the RFC 6749 §3.3 scope-token grammar, `no-store`, the complete-file write, the
 * size bound of in-memory caches, and single flight with the bounded read cache built on it.
 *
 * @module
 */
export {
  ACCESS_TOKEN_ALGS,
  ACTOR_TOKEN_ALGS,
  CLIENT_AUTH_ALGS,
  DEFAULT_IDP_TOKEN_ALGS,
  DPOP_ALGS,
  IDP_TOKEN_ALGS,
  RECEIPT_ALGS,
  SIGNING_ALGS,
  type ReceiptAlg,
  type SigningAlg,
} from './algorithms.js';
export { constantTimeEqual } from './constant-time.js';
export { ERROR_CODE, isScopeToken, SCOPE_TOKEN } from './scope.js';
export { NO_STORE, noStore } from './http.js';
export { writeCompleteFile } from './complete-file.js';
export { setBounded } from './bounded-map.js';
export { isOperatorWorded, OPERATOR_WORDED } from './operator-worded.js';
export { BoundedReadCache, SingleFlight, type BoundedReadCacheOptions, type Lifetime } from './single-flight.js';
export { withinBound } from './fresh.js';
