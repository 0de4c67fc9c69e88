/**
 * Enterprise sign-in: Deputy as the OpenID Connect relying party of each trusted IdP that has a
 * `signIn` client (./config.ts). Authorization code flow (OpenID Connect Core §3.1) with PKCE
 * S256 (RFC 7636), `state` and `nonce`, through openid-client; RFC 9207 `iss` checked when the IdP
 * sends it.
 *
 * The ID token openid-client validated is then verified again by the federation code
 * (src/federation/verify.ts, `signInClientId`), so the user is identified exactly as a subject
 * token from that IdP identifies them: same `userId` format, attributes, tenant rules.
 *
 * @module
 */
import { importJWK, type CryptoKey } from 'jose';
import * as client from 'openid-client';
import { AccessDenied, InvalidRequest, NotFound, TemporarilyUnavailable } from '../errors/index.js';
import type { TrustedIssuerConfig } from '../federation/config.js';
import { FederationError } from '../federation/errors.js';
import type { FederatedIdentity } from '../federation/identity.js';
import { discoveryUrl } from '../federation/issuer.js';
import type { FederationVerifier } from '../federation/verify.js';
import type { KeyStore } from '../keys/keystore.js';
import type { Logger } from '../log.js';
import type { Store } from '../store/index.js';
import type { EnvelopeVault } from '../vault/envelope.js';
import { ERROR_CODE } from '../util/scope.js';
import { BoundedReadCache } from '../util/single-flight.js';
import { ConnectionSecretUnavailable, readSecretSource } from '../vault/connections/store.js';
import { ConfigError } from '../config/load.js';
import type { SignInClientConfig } from './config.js';
import type { SignInTransaction } from './session.js';

/** Vault `kind` of a sign-in client secret. */
export const SIGNIN_SECRET_KIND = 'signin_client_secret';
/** Timeout of discovery and token requests to the IdP, seconds. */
const IDP_TIMEOUT_SECONDS = 10;

/** A trusted issuer with a sign-in client. */
type SignInIssuer = TrustedIssuerConfig & { signIn: SignInClientConfig };

export interface SignInDeps {
  /** Deputy's issuer; the redirect URI is `{issuer}/signin/callback`. */
  issuer: string;
  trustedIssuers: readonly TrustedIssuerConfig[];
  federation: FederationVerifier;
  keys: KeyStore;
  store: Store;
  vault: EnvelopeVault;
  /** Where `signIn.secret: { env }` is read from. */
  env: Readonly<Record<string, string | undefined>>;
  logger: Logger;
}

/** What a started sign-in returns: the IdP URL to send the browser to and the transaction to keep in its cookie. */
export interface StartedSignIn {
  redirectTo: string;
  transaction: SignInTransaction;
}

/** Sign-in at the trusted IdPs that have a `signIn` client. */
export class SignIn {
  readonly #d: SignInDeps;
  readonly #issuers: ReadonlyMap<string, SignInIssuer>;
  /**
   * openid-client's configuration per issuer, discovered once on the one single-flight cache:
   * concurrent sign-ins share one discovery (joined only within its timeout), a failed one is not
   * kept (the next sign-in discovers again).
   */
  readonly #configs = new BoundedReadCache<string, client.Configuration>(() => Promise.reject(new TypeError('SignIn: no discovery given')), {
    ttlMs: Number.POSITIVE_INFINITY,
    joinWithinMs: IDP_TIMEOUT_SECONDS * 1000,
    maxEntries: 1000,
  });
  /** Deputy's signing key as imported for client assertions, by `kid`. */
  #imported: { kid: string; key: Promise<CryptoKey> } | undefined;

  constructor(deps: SignInDeps) {
    this.#d = deps;
    this.#issuers = new Map(deps.trustedIssuers.filter((i): i is SignInIssuer => i.signIn !== undefined).map((i) => [i.id, i]));
  }

  /** Where IdPs send the browser back: register it as the redirect URI of Deputy's client there. */
  get redirectUri(): string {
    return `${this.#d.issuer}/signin/callback`;
  }

  /** The ids of the issuers users can sign in at, in configuration order. */
  get issuerIds(): readonly string[] {
    return [...this.#issuers.keys()];
  }

  /**
   * Copies configured client secrets into the vault (replacing older values), so the running
   * server reads them only from there. Call once at start.
   * @throws ConfigError naming the option, the variable or the file when a secret is missing (exit 2)
   */
  async storeSecrets(): Promise<void> {
    for (const i of this.#issuers.values()) {
      if (i.signIn.secret === undefined) continue;
      let plaintext: string;
      try {
        plaintext = readSecretSource(`trusted issuer ${i.id} (signIn.secret)`, i.signIn.secret, this.#d.env);
      } catch (err) {
        if (err instanceof ConnectionSecretUnavailable) throw new ConfigError('environment', [`trustedIssuers.${i.id}.signIn.secret: ${err.message}`]);
        throw err;
      }
      await this.#d.vault.replace(this.#d.store, { handle: secretHandle(i.id), kind: SIGNIN_SECRET_KIND, plaintext });
    }
  }

  /**
   * Starts a sign-in at `issuerId`: fresh `state`, `nonce` and PKCE verifier.
   * @throws NotFound when the issuer has no sign-in client; TemporarilyUnavailable when its discovery fails
   */
  async start(issuerId: string, returnTo: string): Promise<StartedSignIn> {
    const issuer = this.#issuers.get(issuerId);
    if (!issuer) throw new NotFound(`no sign-in is configured for trusted issuer "${issuerId.slice(0, 64)}"`);
    const config = await this.#configuration(issuer);
    const transaction: SignInTransaction = {
      issuerId,
      state: client.randomState(),
      nonce: client.randomNonce(),
      codeVerifier: client.randomPKCECodeVerifier(),
      returnTo,
    };
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: this.redirectUri,
      response_type: 'code',
      scope: [...new Set(['openid', ...issuer.signIn.scopes])].join(' '),
      state: transaction.state,
      nonce: transaction.nonce,
      code_challenge: await client.calculatePKCECodeChallenge(transaction.codeVerifier),
      code_challenge_method: 'S256',
    });
    return { redirectTo: url.href, transaction };
  }

  /**
   * The IdP's redirect back (`callback`: the full callback URL, `transaction`: from its cookie):
   * redeems the code, validates the ID token (openid-client: signature, `iss`, `aud`, `nonce`,
   * `exp`; RFC 9207 `iss`), and identifies the user through the federation code.
   *
   * @throws InvalidRequest when the response does not belong to this browser's sign-in or fails
   *   validation; AccessDenied when the user declined or the federation code refuses the ID token;
   *   TemporarilyUnavailable when the IdP cannot be reached.
   */
  async complete(callback: URL, transaction: SignInTransaction): Promise<FederatedIdentity> {
    const issuer = this.#issuers.get(transaction.issuerId);
    if (!issuer) throw new InvalidRequest('this sign-in was started at an issuer that is no longer configured');
    const error = callback.searchParams.get('error');
    if (error !== null) {
      const code = ERROR_CODE.test(error) ? error : 'error';
      throw new AccessDenied(`the identity provider did not sign you in ("${code}")`);
    }
    const config = await this.#configuration(issuer);
    let tokens: client.TokenEndpointResponse & client.TokenEndpointResponseHelpers;
    try {
      tokens = await client.authorizationCodeGrant(config, callback, {
        pkceCodeVerifier: transaction.codeVerifier,
        expectedState: transaction.state,
        expectedNonce: transaction.nonce,
        idTokenExpected: true,
      });
    } catch (err) {
      if (err instanceof client.AuthorizationResponseError || err instanceof client.ClientError || err instanceof client.ResponseBodyError) {
        throw new InvalidRequest('the identity provider\'s sign-in response failed validation', { cause: err });
      }
      throw new TemporarilyUnavailable(`the identity provider "${issuer.id}" could not be reached to complete sign-in`, { cause: err });
    }
    const idToken = tokens.id_token;
    if (idToken === undefined) throw new InvalidRequest('the identity provider returned no ID token');
    try {
      return await this.#d.federation.verify(idToken, 'id_token', { signInClientId: issuer.signIn.clientId });
    } catch (err) {
      if (err instanceof FederationError) {
        this.#d.logger.info({ issuer: issuer.id, code: err.code, reason: err.message }, 'sign-in ID token refused');
        throw new AccessDenied(`sign-in refused: ${err.message}`);
      }
      throw err;
    }
  }

  /** openid-client's configuration for one IdP, discovered once (a failure is retried next time). */
  async #configuration(issuer: SignInIssuer): Promise<client.Configuration> {
    try {
      return await this.#configs.get(issuer.id, Date.now(), () => this.#discover(issuer));
    } catch (err) {
      throw new TemporarilyUnavailable(`the identity provider "${issuer.id}" could not be reached to sign in`, { cause: err });
    }
  }

  async #discover(issuer: SignInIssuer): Promise<client.Configuration> {
    const auth = await this.#clientAuth(issuer);
    const options: client.DiscoveryRequestOptions = { timeout: IDP_TIMEOUT_SECONDS, execute: issuer.allowInsecureHttp ? [client.allowInsecureRequests] : [] };
    const config = await client.discovery(discoveryUrl(issuer), issuer.signIn.clientId, { redirect_uris: [this.redirectUri], id_token_signed_response_alg: issuer.algorithms[0] }, auth, options);
    config.timeout = IDP_TIMEOUT_SECONDS;
    return config;
  }

  #signingKey(jwk: KeyStore['activeSigningKey']['jwk']): Promise<CryptoKey> {
    if (this.#imported?.kid !== jwk.kid) this.#imported = { kid: jwk.kid, key: importJWK(jwk, jwk.alg) as Promise<CryptoKey> };
    return this.#imported.key;
  }

  async #clientAuth(issuer: SignInIssuer): Promise<client.ClientAuth> {
    const { signIn } = issuer;
    if (signIn.clientAuth === 'private_key_jwt') {
      // The active key at each request: a rotated key signs the next assertion without a restart.
      return async (as, c, body, headers) => {
        const { jwk } = this.#d.keys.activeSigningKey;
        return client.PrivateKeyJwt({ key: await this.#signingKey(jwk), kid: jwk.kid })(as, c, body, headers);
      };
    }
    const secret = await this.#d.vault.get(this.#d.store, secretHandle(issuer.id), SIGNIN_SECRET_KIND);
    if (secret === undefined) throw new Error(`the sign-in client secret of trusted issuer "${issuer.id}" is not in the vault`);
    return signIn.clientAuth === 'client_secret_basic' ? client.ClientSecretBasic(secret) : client.ClientSecretPost(secret);
  }
}

function secretHandle(issuerId: string): string {
  return `signin_secret_${issuerId}`;
}
