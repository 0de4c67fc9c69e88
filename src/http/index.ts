/**
 * The HTTP surface: the Koa application (Deputy's routes, then oidc-provider's endpoints), the
 * one place errors are written, and the request state typed once. This folder, the oidc-provider
 * folder and the composition root are the only code that imports Koa.
 *
 * @module
 */
export { createApp, type AppDeps } from './app.js';
export { classifyError, errorBoundary, logError, writeError, writeNodeError } from './errors.js';
export type { DeputyState } from './state.js';
export { RECEIPTS_JWKS_PATH } from './receipts.js';
export { ADMIN_PREFIX } from './admin-api.js';
