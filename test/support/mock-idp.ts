/**
 * A local mock enterprise IdP over real HTTP (127.0.0.1, random port), shaped like the real
 * ones so Deputy's federation code runs its production path (openid-client discovery, jose
 * remote JWKS) against it:
 *
 * | what | discovery | issuer | jwks_uri |
 * |------|-----------|--------|----------|
 * | Okta custom AS | `/oauth2/default/.well-known/openid-configuration` | `${base}/oauth2/default` | `${base}/oauth2/default/v1/keys` |
 * | Okta org AS | `/.well-known/openid-configuration` | `${base}` | `${base}/oauth2/v1/keys` |
 * | Entra v2 (tenant) | `/{tid}/v2.0/.well-known/openid-configuration` | `${base}/{tid}/v2.0` | `${base}/discovery/v2.0/keys` |
 * | Entra v2 (multi-tenant) | `/common/v2.0/…`, `/organizations/v2.0/…` | `${base}/{tenantid}/v2.0` (template) | same |
 * | generic OIDC | `/oidc/.well-known/openid-configuration` | `${base}/oidc` | `${base}/oidc/jwks` |
 *
 * Entra v1.0 access tokens use `iss = ${base}/sts/{tid}/`; Deputy's entra configuration points
 * `v1Issuer` at `${base}/sts/{tenantid}/` (see {@link MockIdp.issuerConfig}).
 *
 * Every endpoint publishes the same signing keys (RS256 by default, like Okta and Entra).
 * {@link MockIdp.issuerConfig} accepts ID tokens for {@link OKTA_CLIENT_ID},
 * {@link ENTRA_CLIENT_APP_ID} and {@link OIDC_CLIENT_ID} (`idToken.clientId`), delegating no scope.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTHeaderParameters } from 'jose';
import { rsaKeyPair } from './rsa-keys.js';
import type { FederationPreset, TrustedIssuerConfigInput } from '../../src/federation/config.js';
import { mockOktaSignIn, type MockOktaSignIn } from './mock-idp-signin.js';

/** Asymmetric algorithms the mock can generate keys for. */
export type MockKeyAlg = 'RS256' | 'PS256' | 'ES256' | 'EdDSA';

/** One signing key of the mock IdP. */
export interface MockKey {
  kid: string;
  alg: MockKeyAlg;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  /** The public JWK as published (`kid`, `alg`, `use: sig`). */
  publicJwk: JWK;
}

export interface MockIdpOptions {
  /** Algorithm of the generated keys. Default RS256. */
  alg?: MockKeyAlg;
  /** Whether {@link MockIdp.rotate} keeps publishing the previous key. Default false. */
  keepOldKeysOnRotate?: boolean;
}

export interface SignOptions {
  /** Header `kid`; default the signing key's kid (when signing with a {@link MockKey}). */
  kid?: string;
  /** Header `alg`; default the key's alg. `none` produces an unsecured JWT (empty signature). */
  alg?: string;
  /** Extra (or overriding) protected header members, e.g. `{ nonce: '…' }`, `{ typ: 'at+jwt' }`. */
  header?: Record<string, unknown>;
  /** Signing key: a {@link MockKey} (default: the active key), a CryptoKey, or HMAC secret bytes. */
  key?: MockKey | CryptoKey | Uint8Array;
}

/**
 * Claim overrides: merged last. A value of `undefined` removes the claim of that name, also for
 * the named options (`{ sub: undefined }` gives a token without `sub`).
 */
export type ClaimOverrides = Record<string, unknown>;

interface TimeOptions {
  /** `exp` = now + expiresIn (seconds; negative for an expired token). Default 3600. */
  expiresIn?: number;
  /** `nbf`, epoch seconds (absolute). Omitted by default (Entra sets it: to `iat`). */
  nbf?: number;
  /** `iat`, epoch seconds. Default now. */
  iat?: number;
  /** Signing options for this token. */
  sign?: SignOptions;
}

export type OktaAccessTokenOptions = TimeOptions & {
  /** `custom` (default): `${base}/oauth2/default`; `org`: the org AS, `${base}`. */
  server?: 'custom' | 'org';
  /** Okta user id. Default `00u1a2b3c4d5e6f7g8h9`. */
  uid?: string;
  /** Default the user's login, `alice@example.com`. */
  sub?: string;
  /** Default `['openid', 'profile', 'deputy.read']`. */
  scp?: string[];
  /** Default `api://deputy` (custom AS) or `${base}` (org AS). */
  aud?: string | string[];
  /** Client id. Default `0oa1clientid2345678`. */
  cid?: string;
} & ClaimOverrides;

export type OktaIdTokenOptions = TimeOptions & {
  server?: 'custom' | 'org';
  /** The Okta user id (ID tokens carry it in `sub`). Default `00u1a2b3c4d5e6f7g8h9`. */
  sub?: string;
  /** The OIDC client id. Default `0oa1clientid2345678`. */
  aud?: string | string[];
  email?: string;
  name?: string;
} & ClaimOverrides;

export type EntraAccessTokenOptions = TimeOptions & {
  /** 2 (default): `iss = ${base}/{tid}/v2.0`, `azp`; 1: `iss = ${base}/sts/{tid}/`, `appid`, `upn`. */
  version?: 1 | 2;
  /** Tenant id. Default {@link ENTRA_TENANT}. */
  tid?: string;
  /** User object id. Default a fixed GUID. */
  oid?: string;
  /** Space-separated delegated scopes. Default `Deputy.Read Deputy.Write`. */
  scp?: string;
  roles?: string[];
  /** Default: {@link ENTRA_API_CLIENT_ID} (v2) or {@link ENTRA_APP_ID_URI} (v1). */
  aud?: string | string[];
  /** The calling client's id (`azp` in v2, `appid` in v1). */
  clientId?: string;
  /** `preferred_username` (v2) or `upn` (v1). Default `alice@contoso.example`. */
  username?: string;
} & ClaimOverrides;

export type OidcTokenOptions = TimeOptions & {
  sub?: string;
  /** Default `deputy`. */
  aud?: string | string[];
  /** Default `openid deputy.read`. */
  scope?: string;
} & ClaimOverrides;

export type EntraIdTokenOptions = TimeOptions & {
  /** 2 (default): `iss = ${base}/{tid}/v2.0`; 1: `iss = ${base}/sts/{tid}/`, `upn`. */
  version?: 1 | 2;
  tid?: string;
  oid?: string;
  /** The client app the ID token is for. Default {@link ENTRA_CLIENT_APP_ID}. */
  aud?: string | string[];
  username?: string;
} & ClaimOverrides;

export type OidcIdTokenOptions = TimeOptions & {
  sub?: string;
  /** Default {@link OIDC_CLIENT_ID}. */
  aud?: string | string[];
} & ClaimOverrides;

/** Default audiences / ids the token builders and {@link MockIdp.issuerConfig} agree on. */
export const OKTA_AUDIENCE = 'api://deputy';
export const OKTA_CLIENT_ID = '0oa1clientid2345678';
export const OKTA_USER_ID = '00u1a2b3c4d5e6f7g8h9';
export const ENTRA_TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47';
export const ENTRA_OTHER_TENANT = '0b7d3a4e-1c2f-4e5a-9b8c-7d6e5f4a3b2c';
export const ENTRA_API_CLIENT_ID = '6e74172b-be56-4843-9ff4-e66a39bb12e3';
export const ENTRA_APP_ID_URI = 'api://deputy';
export const ENTRA_CLIENT_APP_ID = '3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f';
export const ENTRA_USER_OID = '11111111-2222-4333-8444-555555555555';
export const OIDC_AUDIENCE = 'deputy';
/** The OIDC client id ID tokens of the generic issuer are issued to. */
export const OIDC_CLIENT_ID = 'deputy-web';

export type MockUnavailable = false | 'all' | 'discovery' | 'jwks';

export interface MockIdpRequests {
  /** Requests to any discovery document. */
  discovery: number;
  /** Requests to any JWKS endpoint. */
  jwks: number;
  /** Every request, by path. */
  byPath: Record<string, number>;
}

export interface MockIdp {
  /** `http://127.0.0.1:{port}`. */
  readonly base: string;
  /** `${base}/oauth2/default`. */
  readonly oktaIssuer: string;
  /** `${base}` (the Okta org authorization server). */
  readonly oktaOrgIssuer: string;
  /** `${base}/{tenantid}/v2.0`. */
  readonly entraIssuerTemplate: string;
  /** `${base}/sts/{tenantid}/`. */
  readonly entraV1IssuerTemplate: string;
  /** `${base}/oidc`. */
  readonly oidcIssuer: string;
  /** The key new tokens are signed with. */
  readonly activeKey: MockKey;
  /** The keys the JWKS endpoints publish. */
  readonly publishedKeys: readonly MockKey[];
  /** Request counters (mutable; compare before/after). */
  readonly requests: MockIdpRequests;
  /** The Entra issuer of a tenant: v2 `${base}/{tid}/v2.0`, v1 `${base}/sts/{tid}/`. */
  entraIssuer(tid: string, version?: 1 | 2): string;
  /** Signs `claims` as they are (no defaults added). */
  sign(claims: Record<string, unknown>, options?: SignOptions): Promise<string>;
  oktaAccessToken(options?: OktaAccessTokenOptions): Promise<string>;
  oktaIdToken(options?: OktaIdTokenOptions): Promise<string>;
  entraAccessToken(options?: EntraAccessTokenOptions): Promise<string>;
  /** An Entra ID token (v2 by default) for the client app {@link ENTRA_CLIENT_APP_ID}. */
  entraIdToken(options?: EntraIdTokenOptions): Promise<string>;
  /** A generic OIDC access token (RFC 9068 claims, `scope`). */
  oidcToken(options?: OidcTokenOptions): Promise<string>;
  /** A generic OIDC ID token for {@link OIDC_CLIENT_ID}. */
  oidcIdToken(options?: OidcIdTokenOptions): Promise<string>;
  /** A new key of the IdP's algorithm that is not published. */
  createKey(alg?: MockKeyAlg): Promise<MockKey>;
  /** Publishes `jwk` too (before the keys published so far), as it is: a key the IdP does not sign with (a legacy 1024-bit RSA key, say). */
  publishJwk(jwk: JWK): void;
  /**
   * Makes a new key active; the previous key stays published only when `keepOld` (default:
   * `keepOldKeysOnRotate`). Returns the previous and the new key.
   */
  rotate(options?: { keepOld?: boolean }): Promise<{ previous: MockKey; current: MockKey }>;
  /** SPKI PEM of a key's public part (default the active key), e.g. for HS256 confusion tests. */
  publicKeyPem(key?: MockKey): Promise<string>;
  /** Answers 503 for discovery, JWKS, or everything, until set back to false. */
  setUnavailable(what: MockUnavailable): void;
  /** Browser sign-in at the Okta custom authorization server (./mock-idp-signin.ts). */
  readonly oktaSignIn: MockOktaSignIn;
  /**
   * Browser sign-in at the Entra v2 tenant {@link ENTRA_TENANT} (`/{tid}/oauth2/v2.0/…`): the
   * `entra_user` cookie names the user's object id (`oid`).
   */
  readonly entraSignIn: MockOktaSignIn;
  /** A Deputy trusted-issuer entry for this IdP (http allowed, no JWKS cooldown). */
  issuerConfig<P extends FederationPreset>(preset: P, overrides?: Partial<Extract<TrustedIssuerConfigInput, { preset: P }>>): Extract<TrustedIssuerConfigInput, { preset: P }>;
  close(): Promise<void>;
}

const encoder = new TextEncoder();

function b64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

async function newKey(alg: MockKeyAlg): Promise<MockKey> {
  const { privateKey, publicKey } = alg === 'RS256' || alg === 'PS256' ? await rsaKeyPair(alg) : await generateKeyPair(alg, { extractable: true });
  const kid = randomBytes(16).toString('base64url');
  const publicJwk: JWK = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { kid, alg, privateKey, publicKey, publicJwk };
}

function isMockKey(key: SignOptions['key']): key is MockKey {
  return typeof key === 'object' && key !== null && 'privateKey' in key && 'kid' in key;
}

/** `{...base, ...overrides}` where an `undefined` override removes the claim. */
function merge(base: Record<string, unknown>, overrides: ClaimOverrides): Record<string, unknown> {
  const result: Record<string, unknown> = { ...base };
  for (const [name, value] of Object.entries(overrides)) {
    if (value === undefined) delete result[name];
    else result[name] = value;
  }
  return result;
}

function times(options: TimeOptions, now: number): Record<string, unknown> {
  return { iat: options.iat ?? now, exp: now + (options.expiresIn ?? 3600), ...(options.nbf === undefined ? {} : { nbf: options.nbf }) };
}

/** Splits builder options into the named ones (`known`) and claim overrides (the rest). */
function split<T extends Record<string, unknown>>(options: T, known: readonly string[]): ClaimOverrides {
  const rest: ClaimOverrides = {};
  for (const [name, value] of Object.entries(options)) if (!known.includes(name) || value === undefined) rest[name] = value;
  return rest;
}

const TIME_KEYS = ['expiresIn', 'nbf', 'iat', 'sign'] as const;

export async function startMockIdp(options: MockIdpOptions = {}): Promise<MockIdp> {
  const alg = options.alg ?? 'RS256';
  let active = await newKey(alg);
  let published: MockKey[] = [active];
  /** Extra JWKs published before the keys ({@link MockIdp.publishJwk}). */
  const extraJwks: JWK[] = [];
  let unavailable: MockUnavailable = false;
  const requests: MockIdpRequests = { discovery: 0, jwks: 0, byPath: {} };

  const server = createServer((req, res) => handle(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const oktaIssuer = `${base}/oauth2/default`;
  const entraTemplate = `${base}/{tenantid}/v2.0`;
  const entraV1Template = `${base}/sts/{tenantid}/`;
  const oidcIssuer = `${base}/oidc`;
  const entraJwksUri = `${base}/discovery/v2.0/keys`;

  function discoveryDocument(issuer: string, jwksUri: string, prefix: string): Record<string, unknown> {
    return {
      issuer,
      authorization_endpoint: `${prefix}/v1/authorize`,
      token_endpoint: `${prefix}/v1/token`,
      jwks_uri: jwksUri,
      response_types_supported: ['code', 'id_token', 'code id_token'],
      subject_types_supported: ['public'],
      id_token_signing_alg_values_supported: [alg],
      scopes_supported: ['openid', 'profile', 'email'],
    };
  }

  function route(path: string): { kind: 'discovery' | 'jwks'; body: unknown } | undefined {
    const wellKnown = '/.well-known/openid-configuration';
    if (path === `/oauth2/default${wellKnown}`) return { kind: 'discovery', body: discoveryDocument(oktaIssuer, `${oktaIssuer}/v1/keys`, oktaIssuer) };
    if (path === wellKnown) return { kind: 'discovery', body: discoveryDocument(base, `${base}/oauth2/v1/keys`, `${base}/oauth2`) };
    if (path === `/oidc${wellKnown}`) return { kind: 'discovery', body: discoveryDocument(oidcIssuer, `${oidcIssuer}/jwks`, oidcIssuer) };
    const entra = /^\/([^/]+)\/v2\.0\/\.well-known\/openid-configuration$/.exec(path);
    if (entra) {
      const tenant = entra[1]!;
      const multi = tenant === 'common' || tenant === 'organizations';
      const issuer = multi ? entraTemplate : `${base}/${tenant}/v2.0`;
      return { kind: 'discovery', body: { ...discoveryDocument(issuer, entraJwksUri, `${base}/${tenant}/oauth2/v2.0`), tenant_region_scope: 'EU' } };
    }
    const jwks = (keys: JWK[]) => ({ kind: 'jwks' as const, body: { keys } });
    if (path === '/oauth2/default/v1/keys' || path === '/oauth2/v1/keys' || path === '/oidc/jwks') return jwks([...extraJwks, ...published.map((k) => k.publicJwk)]);
    if (path === '/discovery/v2.0/keys') {
      // Entra's JWKS has no `alg` and names the issuer template per key.
      return jwks(published.map(({ publicJwk: { alg: _alg, ...jwk } }) => ({ ...jwk, x5t: jwk.kid, issuer: entraTemplate })));
    }
    return undefined;
  }

  function handle(req: IncomingMessage, res: ServerResponse): void {
    const path = new URL(req.url ?? '/', base).pathname;
    requests.byPath[path] = (requests.byPath[path] ?? 0) + 1;
    if (oktaSignIn.handle(req, res, path) || entraSignIn.handle(req, res, path)) return;
    const found = req.method === 'GET' ? route(path) : undefined;
    if (found) requests[found.kind] += 1;
    if (found && (unavailable === 'all' || unavailable === found.kind)) {
      res.writeHead(503, { 'content-type': 'text/plain' }).end('unavailable');
      return;
    }
    if (!found) {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'not_found' }));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=86400' }).end(JSON.stringify(found.body));
  }

  async function sign(claims: Record<string, unknown>, signOptions: SignOptions = {}): Promise<string> {
    const key = signOptions.key ?? active;
    const mockKey = isMockKey(key) ? key : undefined;
    const algorithm = signOptions.alg ?? mockKey?.alg ?? alg;
    const kid = signOptions.kid ?? mockKey?.kid;
    const header = { alg: algorithm, typ: 'JWT', ...(kid === undefined ? {} : { kid }), ...signOptions.header } as JWTHeaderParameters;
    if (algorithm === 'none') return `${b64url(header)}.${b64url(claims)}.`;
    const signingKey = mockKey ? mockKey.privateKey : (key as CryptoKey | Uint8Array);
    return new SignJWT(claims).setProtectedHeader(header).sign(signingKey);
  }

  const now = () => Math.floor(Date.now() / 1000);
  const entraSignIn = mockOktaSignIn({
    issuer: `${base}/${ENTRA_TENANT}/v2.0`,
    // As the mock's Entra discovery document names them.
    paths: { authorize: `/${ENTRA_TENANT}/oauth2/v2.0/v1/authorize`, token: `/${ENTRA_TENANT}/oauth2/v2.0/v1/token` },
    cookie: 'entra_user',
    idToken: ({ sub, aud, nonce, email }) => idp.entraIdToken({ oid: sub, aud, ...(email ? { username: email } : {}), ...(nonce ? { nonce } : {}) }),
  });
  const oktaSignIn = mockOktaSignIn({
    issuer: oktaIssuer,
    idToken: ({ sub, aud, nonce, email, name, groups }) =>
      idp.oktaIdToken({ sub, aud, ...(email ? { email } : {}), ...(name ? { name } : {}), ...(nonce ? { nonce } : {}), ...(groups ? { groups } : {}) }),
  });

  const idp: MockIdp = {
    base,
    oktaIssuer,
    oktaOrgIssuer: base,
    entraIssuerTemplate: entraTemplate,
    entraV1IssuerTemplate: entraV1Template,
    oidcIssuer,
    get activeKey() {
      return active;
    },
    get publishedKeys() {
      return published;
    },
    requests,
    oktaSignIn,
    entraSignIn,
    entraIssuer(tid, version = 2) {
      return (version === 1 ? entraV1Template : entraTemplate).replace('{tenantid}', tid);
    },
    sign,

    oktaAccessToken(o = {}) {
      const org = o.server === 'org';
      const iss = org ? base : oktaIssuer;
      const claims = {
        ver: 1,
        jti: `AT.${randomBytes(24).toString('base64url')}`,
        iss,
        aud: o.aud ?? (org ? base : OKTA_AUDIENCE),
        ...times(o, now()),
        cid: o.cid ?? OKTA_CLIENT_ID,
        uid: o.uid ?? OKTA_USER_ID,
        scp: o.scp ?? ['openid', 'profile', 'deputy.read'],
        auth_time: now() - 60,
        sub: o.sub ?? 'alice@example.com',
      };
      return sign(merge(claims, split(o, [...TIME_KEYS, 'server', 'uid', 'sub', 'scp', 'aud', 'cid'])), o.sign);
    },

    oktaIdToken(o = {}) {
      const iss = o.server === 'org' ? base : oktaIssuer;
      const claims = {
        sub: o.sub ?? OKTA_USER_ID,
        name: o.name ?? 'Alice Example',
        email: o.email ?? 'alice@example.com',
        ver: 1,
        iss,
        aud: o.aud ?? OKTA_CLIENT_ID,
        ...times(o, now()),
        jti: `ID.${randomBytes(24).toString('base64url')}`,
        amr: ['pwd'],
        idp: '00o1idp2345678',
        preferred_username: o.email ?? 'alice@example.com',
        auth_time: now() - 60,
      };
      return sign(merge(claims, split(o, [...TIME_KEYS, 'server', 'sub', 'aud', 'email', 'name'])), o.sign);
    },

    entraAccessToken(o = {}) {
      const version = o.version ?? 2;
      const tid = o.tid ?? ENTRA_TENANT;
      const iat = o.iat ?? now();
      const username = o.username ?? 'alice@contoso.example';
      const clientId = o.clientId ?? ENTRA_CLIENT_APP_ID;
      const common = {
        aud: o.aud ?? (version === 2 ? ENTRA_API_CLIENT_ID : ENTRA_APP_ID_URI),
        iss: idp.entraIssuer(tid, version),
        iat,
        nbf: o.nbf ?? iat,
        exp: now() + (o.expiresIn ?? 3600),
        aio: randomBytes(32).toString('base64url'),
        name: 'Alice Example',
        oid: o.oid ?? ENTRA_USER_OID,
        rh: '0.AAAA',
        ...(o.roles === undefined ? {} : { roles: o.roles }),
        scp: o.scp ?? 'Deputy.Read Deputy.Write',
        sub: randomBytes(32).toString('base64url').slice(0, 43),
        tid,
        uti: randomBytes(16).toString('base64url'),
      };
      const versioned =
        version === 2
          ? { azp: clientId, azpacr: '0', preferred_username: username, ver: '2.0' }
          : { appid: clientId, appidacr: '0', upn: username, unique_name: username, amr: ['pwd'], ipaddr: '192.0.2.1', ver: '1.0' };
      const signOptions: SignOptions = { ...o.sign, header: { x5t: (o.sign?.key && isMockKey(o.sign.key) ? o.sign.key : active).kid, ...o.sign?.header } };
      return sign(merge({ ...common, ...versioned }, split(o, [...TIME_KEYS, 'version', 'tid', 'oid', 'scp', 'roles', 'aud', 'clientId', 'username'])), signOptions);
    },

    entraIdToken(o = {}) {
      const version = o.version ?? 2;
      const tid = o.tid ?? ENTRA_TENANT;
      const iat = o.iat ?? now();
      const username = o.username ?? 'alice@contoso.example';
      const claims = {
        aud: o.aud ?? ENTRA_CLIENT_APP_ID,
        iss: idp.entraIssuer(tid, version),
        iat,
        nbf: o.nbf ?? iat,
        exp: now() + (o.expiresIn ?? 3600),
        aio: randomBytes(32).toString('base64url'),
        name: 'Alice Example',
        oid: o.oid ?? ENTRA_USER_OID,
        rh: '0.AAAA',
        sid: randomUUID(),
        sub: randomBytes(32).toString('base64url').slice(0, 43),
        tid,
        uti: randomBytes(16).toString('base64url'),
        ...(version === 2 ? { preferred_username: username, ver: '2.0' } : { upn: username, unique_name: username, amr: ['pwd'], ver: '1.0' }),
      };
      return sign(merge(claims, split(o, [...TIME_KEYS, 'version', 'tid', 'oid', 'aud', 'username'])), o.sign);
    },

    oidcToken(o = {}) {
      const claims = {
        iss: oidcIssuer,
        sub: o.sub ?? 'user-1234',
        aud: o.aud ?? OIDC_AUDIENCE,
        ...times(o, now()),
        jti: randomUUID(),
        scope: o.scope ?? 'openid deputy.read',
      };
      return sign(merge(claims, split(o, [...TIME_KEYS, 'sub', 'aud', 'scope'])), o.sign);
    },

    oidcIdToken(o = {}) {
      const claims = {
        iss: oidcIssuer,
        sub: o.sub ?? 'user-1234',
        aud: o.aud ?? OIDC_CLIENT_ID,
        ...times(o, now()),
        auth_time: now() - 60,
        email: 'bob@example.org',
      };
      return sign(merge(claims, split(o, [...TIME_KEYS, 'sub', 'aud'])), o.sign);
    },

    createKey(keyAlg = alg) {
      return newKey(keyAlg);
    },

    publishJwk(jwk) {
      extraJwks.unshift(jwk);
    },

    async rotate(rotateOptions = {}) {
      const previous = active;
      const current = await newKey(alg);
      const keepOld = rotateOptions.keepOld ?? options.keepOldKeysOnRotate ?? false;
      published = keepOld ? [current, ...published] : [current];
      active = current;
      return { previous, current };
    },

    publicKeyPem(key = active) {
      return exportSPKI(key.publicKey);
    },

    setUnavailable(what) {
      unavailable = what;
    },

    issuerConfig(preset, overrides) {
      const common = { id: preset, preset, allowInsecureHttp: true, jwksCooldownSeconds: 0 };
      const defaults: Record<FederationPreset, Record<string, unknown>> = {
        okta: { issuer: oktaIssuer, audience: OKTA_AUDIENCE, idToken: { clientId: OKTA_CLIENT_ID } },
        entra: { issuer: entraTemplate, tenants: [ENTRA_TENANT], v1Issuer: entraV1Template, audience: [ENTRA_API_CLIENT_ID, ENTRA_APP_ID_URI], idToken: { clientId: ENTRA_CLIENT_APP_ID } },
        oidc: { issuer: oidcIssuer, audience: OIDC_AUDIENCE, idToken: { clientId: OIDC_CLIENT_ID } },
      };
      return { ...common, ...defaults[preset], ...overrides } as unknown as Extract<TrustedIssuerConfigInput, { preset: typeof preset }>;
    },

    close() {
      return new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      });
    },
  };
  return idp;
}

/** HMAC secret bytes of a string (e.g. a PEM), for algorithm-confusion tests. */
export function secretOf(text: string): Uint8Array {
  return encoder.encode(text);
}
