/**
 * Types for the oidc-provider internals Deputy reaches into (no public API exists for them). The
 * version is pinned exactly in package.json; test/unit/dpop-urls.test.ts fails if this changes.
 * Only this folder (src/oauth/oidc-provider/) and that test may use them.
 */

/** oidc-provider's stateless server challenges (DPoP nonces): Deputy's nonces must equal them. */
declare module 'oidc-provider/lib/helpers/challenge.js' {
  export default class ServerChallenge {
    constructor(secret: Buffer, info: string);
    nextChallenge(): string;
    checkChallenge(challenge: string): boolean;
  }
}
