/**
 * Enterprise sign-in: Deputy as the OpenID Connect relying party of the trusted IdPs
 * (./relying-party.ts), the session and transaction cookies (./session.ts), per-issuer client
 * settings (./config.ts). The HTTP routes are in src/http/signin.ts.
 *
 * @module
 */
export { signInClientSchema, type SignInClientConfig } from './config.js';
export { SignIn, SIGNIN_SECRET_KIND, type SignInDeps, type StartedSignIn } from './relying-party.js';
export { CookieSealer, safeReturnPath, type SignInSession, type SignInTransaction } from './session.js';

/** How long a sign-in session lasts, seconds: short, as the IdP's own session is what users keep. */
export const SESSION_SECONDS = 15 * 60;
