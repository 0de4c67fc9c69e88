/**
 * Configuration of one trusted enterprise IdP: the issuers whose tokens Deputy accepts as
 * RFC 8693 `subject_token`s.
 *
 * Each entry is validated at boot (`trustedIssuerSchema.parse`); bad entries fail the start with
 * a message naming the option. Example (YAML):
 *
 * ```yaml
 * trustedIssuers:
 *   - id: okta
 *     preset: okta
 *     issuer: https://example.okta.com/oauth2/default
 *     audience: api://deputy
 *     idToken:                      # optional: accept OIDC ID tokens as subject tokens
 *       clientId: 0oa1clientid2345678
 *       scopes: [calendar.read]     # what an ID-token subject may delegate (default: nothing)
 *   - id: entra
 *     preset: entra
 *     issuer: https://login.microsoftonline.com/{tenantid}/v2.0
 *     tenants: [72f988bf-86f1-41af-91ab-2d7cd011db47]
 *     audience: [api://deputy, 6e74172b-be56-4843-9ff4-e66a39bb12e3]
 * ```
 *
 * @module
 */
import { z } from 'zod';
import { signInClientSchema } from '../signin/config.js';
import { DEFAULT_IDP_TOKEN_ALGS, IDP_TOKEN_ALGS } from '../util/algorithms.js';
import { SCOPE_TOKEN } from '../util/scope.js';

/** `{tenantid}`: the placeholder Entra ID uses in multi-tenant issuer templates. */
export const TENANT_PLACEHOLDER = '{tenantid}';

/** An Entra tenant id (a GUID, as in the `tid` claim). */
export const TENANT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Asymmetric JWS algorithms (RFC 7518 §3, RFC 8037). Symmetric `HS*` and `none` are never allowed. */

function parseUrl(value: string): URL | undefined {
  try {
    return new URL(value);
  } catch {
    return undefined;
  }
}

/** An absolute http(s) URL without query or fragment, kept as written (issuers compare as strings). */
const urlString = (label: string) =>
  z.string().refine(
    (value) => {
      const url = parseUrl(value);
      return url !== undefined && /^https?:$/.test(url.protocol) && url.search === '' && url.hash === '' && !value.includes('#');
    },
    { message: `${label} must be an absolute http(s) URL without query or fragment` },
  );

const seconds = (label: string, max: number) =>
  z.number({ error: `${label} must be a number of seconds` }).int(`${label} must be a whole number of seconds`).min(0).max(max);

/** Options shared by every preset. */
const common = {
  /** Short name of this issuer; appears in logs, receipts and `FederatedIdentity.issuerId`. */
  id: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'id must be 1-64 characters of A-Z a-z 0-9 . _ -'),
  /**
   * The issuer identifier, compared exactly with the token's `iss` (RFC 7519 §4.1.1,
   * OpenID Connect Discovery §4.3). Entra only: may contain `{tenantid}` (multi-tenant template).
   */
  issuer: urlString('issuer'),
  /**
   * The discovery document URL (must contain `/.well-known/`). Defaults to
   * `{issuer}/.well-known/openid-configuration`; for an Entra template, to the same URL with
   * `{tenantid}` replaced by `common`.
   */
  metadataUrl: urlString('metadataUrl')
    .refine((value) => value.includes('/.well-known/'), { message: 'metadataUrl must be a discovery document URL containing /.well-known/' })
    .optional(),
  /** The audience Deputy requires in tokens (`aud`, RFC 7519 §4.1.3); the token must name one of these. */
  audience: z.union([z.string().min(1, 'audience must not be empty'), z.array(z.string().min(1)).min(1, 'audience must list at least one value')]),
  /**
   * OpenID Connect ID tokens (OIDC Core §2) as subject tokens. Absent: `id_token` subject tokens
   * from this issuer are refused. An ID token's `aud` is the OIDC client id it was issued to —
   * a different setting from the API `audience` access tokens carry, and the main defence
   * against token-type confusion (RFC 8725 §3.11–3.12).
   */
  idToken: z
    .strictObject({
      /** The OIDC client id(s) ID tokens must be issued to (`aud`). */
      clientId: z.union([z.string().min(1, 'idToken.clientId must not be empty'), z.array(z.string().min(1)).min(1, 'idToken.clientId must list at least one value')]),
      /**
       * The scopes an ID-token subject may delegate. An ID token is proof of authentication,
       * not an authorization: it carries no delegated scope, so by default it delegates none.
       * The agent's allowed scopes and the `delegate` policy still narrow this.
       */
      scopes: z.array(z.string().regex(SCOPE_TOKEN, 'idToken.scopes must list scope tokens (RFC 6749 §3.3)')).default([]),
    })
    .optional(),
  /** Accepted JWS algorithms, checked before signature verification. */
  algorithms: z.array(z.enum(IDP_TOKEN_ALGS, { error: 'algorithms may only list asymmetric JWS algorithms (never HS* or none)' })).min(1).default([...DEFAULT_IDP_TOKEN_ALGS]),
  /** Leeway for `exp` / `nbf` / `iat` comparisons. */
  clockToleranceSeconds: seconds('clockToleranceSeconds', 300).default(30),
  /** How long a fetched JWKS is used before it is fetched again. */
  jwksCacheMaxAgeSeconds: seconds('jwksCacheMaxAgeSeconds', 86_400).min(1).default(600),
  /**
   * Minimum time between two JWKS refetches triggered by an unknown `kid` (and between two
   * discovery attempts after a failure). Other fetches (first use, cache expiry) do not count:
   * a key published just after one verifies at once. 0 disables the limit (tests only).
   */
  jwksCooldownSeconds: seconds('jwksCooldownSeconds', 3600).default(30),
  /**
   * DANGEROUS, tests only: accept `http:` issuer, metadata and JWKS URLs. Keys fetched over
   * plain HTTP can be replaced by anyone on the path.
   */
  allowInsecureHttp: z.boolean().default(false),
  /**
   * Deputy as an OpenID Connect relying party of this IdP (users sign in here before a connect
   * flow or Deputy's authorization endpoint): src/signin/config.ts. Absent: no sign-in here.
   */
  signIn: signInClientSchema.optional(),
};

const oktaSchema = z.strictObject({ ...common, preset: z.literal('okta') });
const oidcSchema = z.strictObject({ ...common, preset: z.literal('oidc') });
const entraSchema = z.strictObject({
  ...common,
  preset: z.literal('entra'),
  /** Multi-tenant only (issuer contains `{tenantid}`), and then required: the allowed tenant ids. */
  tenants: z.array(z.string().regex(TENANT_ID, 'tenants must list tenant ids (GUIDs)')).min(1, 'tenants must list at least one tenant id').optional(),
  /** Also accept v1.0 access tokens (`iss` = the `v1Issuer` template for the token's tenant). */
  acceptV1: z.boolean().default(true),
  /** The v1.0 issuer template. Configurable so tests can point it at a mock IdP. */
  v1Issuer: z
    .string()
    .refine((value) => value.includes(TENANT_PLACEHOLDER), { message: 'v1Issuer must contain {tenantid}' })
    .pipe(urlString('v1Issuer'))
    .default('https://sts.windows.net/{tenantid}/'),
});

type Issue = { message: string; path: string[] };

/** Entra: a template needs an allow-list; a tenant-specific issuer names its tenant and has none. */
function entraIssues(config: z.infer<typeof entraSchema>): Issue[] {
  if (config.issuer.includes(TENANT_PLACEHOLDER)) {
    return config.tenants === undefined
      ? [{ message: 'tenants is required when issuer contains {tenantid} (multi-tenant): list the allowed tenant ids', path: ['tenants'] }]
      : [];
  }
  const issues: Issue[] = [];
  if (tenantOfIssuerUrl(config.issuer) === undefined) {
    issues.push({ message: 'an entra issuer must contain its tenant id (GUID) or {tenantid}', path: ['issuer'] });
  }
  if (config.tenants !== undefined) {
    issues.push({ message: 'tenants applies only to multi-tenant issuers containing {tenantid}', path: ['tenants'] });
  }
  return issues;
}

/** Checks that apply to every preset. */
function commonIssues(config: z.infer<typeof trustedIssuerUnion>): Issue[] {
  const issues: Issue[] = [];
  if (config.preset !== 'entra' && config.issuer.includes(TENANT_PLACEHOLDER)) {
    issues.push({ message: '{tenantid} in issuer is only supported by the entra preset', path: ['issuer'] });
  }
  const urls: [string, string | undefined][] = [['issuer', config.issuer], ['metadataUrl', config.metadataUrl]];
  if (config.preset === 'entra' && config.acceptV1) urls.push(['v1Issuer', config.v1Issuer]);
  for (const [path, value] of urls) {
    if (value?.startsWith('http:') && !config.allowInsecureHttp) {
      issues.push({ message: `${path} uses http:, which is refused unless allowInsecureHttp is true (tests only); use https:`, path: [path] });
    }
  }
  return issues;
}

/** The first path segment of an issuer URL that is a tenant id, e.g. `login.microsoftonline.com/{tid}/v2.0`. */
export function tenantOfIssuerUrl(issuer: string): string | undefined {
  const url = parseUrl(issuer);
  return url?.pathname.split('/').find((segment) => TENANT_ID.test(segment));
}

const trustedIssuerUnion = z.discriminatedUnion('preset', [oktaSchema, entraSchema, oidcSchema], {
  error: 'preset must be one of "okta", "entra", "oidc"',
});

/**
 * One trusted issuer of subject tokens (RFC 8693 §2.1 `subject_token`).
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc8693#section-2.1 RFC 8693 §2.1}
 * @see {@link https://openid.net/specs/openid-connect-discovery-1_0.html OpenID Connect Discovery 1.0}
 */
export const trustedIssuerSchema = trustedIssuerUnion.superRefine((config, ctx) => {
  const issues = [...commonIssues(config), ...(config.preset === 'entra' ? entraIssues(config) : [])];
  for (const issue of issues) ctx.addIssue({ code: 'custom', message: issue.message, path: issue.path });
});

/** A validated trusted issuer, defaults applied. */
export type TrustedIssuerConfig = z.infer<typeof trustedIssuerSchema>;

/** A trusted issuer as written in configuration, before defaults. */
export type TrustedIssuerConfigInput = z.input<typeof trustedIssuerSchema>;

/** The Entra variant of {@link TrustedIssuerConfig}. */
export type EntraIssuerConfig = Extract<TrustedIssuerConfig, { preset: 'entra' }>;

/** The `idToken` option of a trusted issuer, when set. */
export type IdTokenConfig = NonNullable<TrustedIssuerConfig['idToken']>;

/** The preset names. */
export type FederationPreset = TrustedIssuerConfig['preset'];
