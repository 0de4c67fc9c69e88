/**
 * One trusted issuer: recognises its `iss` values and lazily obtains its signing keys through
 * discovery (OpenID Connect Discovery 1.0 §4, RFC 8414 §3) and a remote JWK Set (RFC 7517 §5).
 *
 * @module
 */
import { decodeJwt, type JWTVerifyGetKey } from 'jose';
import * as client from 'openid-client';
import { TENANT_PLACEHOLDER, type TrustedIssuerConfig } from './config.js';
import { FederationError, refuse } from './errors.js';
import { CachedJwks, within } from './jwks.js';
import { entraIssuerPatterns, entraTenantOf, type EntraIssuerPatterns } from './presets/entra.js';

/**
 * The token's `iss`, **unverified**: only to pick the verifier (Deputy's own tokens or a
 * trusted issuer's) or to refuse an issuer before any key is fetched; never an identity.
 *
 * @returns the `iss` claim when `token` is a JWT whose claims set is a JSON object with a string
 *   `iss`; `undefined` for anything else (not a JWT, claims not JSON, no `iss`, a non-string
 *   `iss`). Never throws: each caller refuses `undefined` with its own protocol error.
 */
export function peekIssuer(token: string): string | undefined {
  try {
    const iss = decodeJwt(token).iss;
    return typeof iss === 'string' ? iss : undefined;
  } catch {
    return undefined;
  }
}

/** Timeout of discovery and JWKS requests. */
const FETCH_TIMEOUT_SECONDS = 5;

/** The issuer's verification key resolver ({@link CachedJwks}: cached, rotation-aware). */
export type RemoteKeySet = JWTVerifyGetKey;

/** How a token's `iss` relates to one trusted issuer. */
export type IssuerMatch =
  /** `iss` is this issuer (for Entra: an accepted v2.0/v1.0 shape of an allowed tenant). */
  | { readonly kind: 'trusted'; readonly iss: string; readonly tenant?: string }
  /** Entra: `iss` has this issuer's shape, but for a tenant that is not allowed. */
  | { readonly kind: 'tenant_not_allowed' }
  | { readonly kind: 'no_match' };

const NO_MATCH: IssuerMatch = { kind: 'no_match' };

/**
 * The discovery document URL: `metadataUrl`, else `{issuer}/.well-known/openid-configuration`
 * (OpenID Connect Discovery 1.0 §4.1), with an Entra `{tenantid}` template read through `common`.
 */
export function discoveryUrl(config: TrustedIssuerConfig): URL {
  if (config.metadataUrl !== undefined) return new URL(config.metadataUrl);
  const issuer = config.issuer.replaceAll(TENANT_PLACEHOLDER, 'common').replace(/\/$/, '');
  return new URL(`${issuer}/.well-known/openid-configuration`);
}

/** A `jwks_uri` is usable when it is https (or http with `allowInsecureHttp`). */
function parseJwksUri(config: TrustedIssuerConfig, value: unknown): URL {
  const url = typeof value === 'string' && URL.canParse(value) ? new URL(value) : undefined;
  if (url === undefined) throw refuse('ERR_FEDERATION_ISSUER_UNAVAILABLE', `the discovery document of trusted issuer "${config.id}" has no valid jwks_uri`);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && config.allowInsecureHttp)) {
    throw refuse('ERR_FEDERATION_ISSUER_UNAVAILABLE', `the jwks_uri of trusted issuer "${config.id}" is not https`);
  }
  return url;
}

/**
 * Fetches the discovery document with openid-client and returns its `jwks_uri`.
 *
 * The URL given to `client.discovery` always contains `/.well-known/`, so openid-client fetches
 * it as is (https enforced, redirects refused, JSON validated) but skips its own issuer
 * comparison, which tolerates Entra `{tenantid}` templates only on `login.microsoftonline.com`
 * (`handleEntraId`) and so would refuse the template of a test IdP. The comparison is done here
 * instead, against `acceptedIssuers`.
 */
async function discoverJwksUri(config: TrustedIssuerConfig, acceptedIssuers: readonly string[]): Promise<URL> {
  const options: client.DiscoveryRequestOptions = { timeout: FETCH_TIMEOUT_SECONDS, execute: config.allowInsecureHttp ? [client.allowInsecureRequests] : [] };
  let metadata: client.ServerMetadata;
  try {
    metadata = (await client.discovery(discoveryUrl(config), 'deputy', undefined, undefined, options)).serverMetadata();
  } catch (cause) {
    throw refuse('ERR_FEDERATION_ISSUER_UNAVAILABLE', `the discovery document of trusted issuer "${config.id}" could not be fetched`, cause);
  }
  if (!acceptedIssuers.includes(metadata.issuer)) {
    throw refuse('ERR_FEDERATION_ISSUER_UNAVAILABLE', `the discovery document of trusted issuer "${config.id}" names a different issuer`);
  }
  return parseJwksUri(config, metadata.jwks_uri);
}

/**
 * A trusted issuer built from one {@link TrustedIssuerConfig} entry.
 *
 * Keys come from a {@link CachedJwks}, which caches the JWK Set for `jwksCacheMaxAgeSeconds`
 * and refetches it once when a token names an unknown `kid` — at once, however recent the last
 * fetch; only another unknown-`kid` refetch within `jwksCooldownSeconds` prevents it — and so
 * follows key rotation without a wait or a restart. The `jwks_uri` itself
 * is discovered once per process; a failed discovery is retried by a later call, no sooner than
 * `jwksCooldownSeconds` after the failure. Concurrent callers share one discovery request.
 */
export class TrustedIssuer {
  readonly #entra: EntraIssuerPatterns | undefined;
  #keys: Promise<RemoteKeySet> | undefined;
  #failure: { readonly at: number; readonly error: FederationError } | undefined;

  constructor(readonly config: TrustedIssuerConfig) {
    this.#entra = config.preset === 'entra' ? entraIssuerPatterns(config) : undefined;
  }

  /** The configuration `id`. */
  get id(): string {
    return this.config.id;
  }

  /** Compares a token's (unverified) `iss` with this issuer (exact match, or Entra templates). */
  match(iss: string): IssuerMatch {
    if (this.#entra === undefined) return iss === this.config.issuer ? { kind: 'trusted', iss } : NO_MATCH;
    const tenant = entraTenantOf(this.#entra, iss);
    if (tenant === undefined) return NO_MATCH;
    return this.#entra.tenants.has(tenant.toLowerCase()) ? { kind: 'trusted', iss, tenant } : { kind: 'tenant_not_allowed' };
  }

  /** The issuer's key resolver, running discovery first when needed. */
  keySet(): Promise<RemoteKeySet> {
    if (this.#keys !== undefined) return this.#keys;
    const failure = this.#failure;
    if (failure !== undefined && within(Date.now() - failure.at, this.config.jwksCooldownSeconds * 1000)) return Promise.reject(failure.error);
    const pending = this.#discover().catch((cause: unknown) => {
      const error = cause instanceof FederationError ? cause : refuse('ERR_FEDERATION_ISSUER_UNAVAILABLE', `the keys of trusted issuer "${this.id}" could not be obtained`, cause);
      this.#keys = undefined;
      this.#failure = { at: Date.now(), error };
      throw error;
    });
    this.#keys = pending;
    return pending;
  }

  async #discover(): Promise<RemoteKeySet> {
    const accepted = this.#entra === undefined ? [this.config.issuer] : [this.config.issuer, this.#entra.v2Template];
    const jwksUri = await discoverJwksUri(this.config, accepted);
    this.#failure = undefined;
    return new CachedJwks(jwksUri, {
      cacheMaxAgeMs: this.config.jwksCacheMaxAgeSeconds * 1000,
      unknownKidCooldownMs: this.config.jwksCooldownSeconds * 1000,
      timeoutMs: FETCH_TIMEOUT_SECONDS * 1000,
    }).getKey;
  }
}
