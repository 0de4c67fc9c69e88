/**
 * Microsoft Entra ID: v2.0 (`https://login.microsoftonline.com/{tid}/v2.0`) and v1.0
 * (`https://sts.windows.net/{tid}/`) tokens, single- or multi-tenant.
 *
 * Which version an access token has depends on the API app's `requestedAccessTokenVersion`, not
 * on the endpoint that issued it, so both are accepted unless `acceptV1` is false. Both versions
 * are signed with the keys listed in the v2.0 discovery document.
 *
 * Claims: `tid` (tenant), `oid` (user object id), `scp` (space-separated delegated scopes),
 * `roles` (app roles), `azp` (v2) / `appid` (v1).
 *
 * @see {@link https://learn.microsoft.com/entra/identity-platform/access-tokens Microsoft identity platform access tokens}
 * @see {@link https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference Access token claims reference}
 * @module
 */
import type { JWTPayload, ProtectedHeaderParameters } from 'jose';
import { TENANT_ID, TENANT_PLACEHOLDER, tenantOfIssuerUrl, type EntraIssuerConfig } from '../config.js';
import { refuse } from '../errors.js';
import { commonIdentity, listClaim, requiredStringClaim, stringClaim, withOptional, type PresetIdentity } from '../identity.js';

/** The issuer shapes and tenants one Entra configuration accepts. */
export interface EntraIssuerPatterns {
  /** The v2.0 issuer template, e.g. `https://login.microsoftonline.com/{tenantid}/v2.0`. */
  readonly v2Template: string;
  /** `^…{tenantid}…$` for v2.0 and (when `acceptV1`) v1.0 issuers, the tenant captured. */
  readonly templates: readonly RegExp[];
  /** Allowed tenant ids, lower case. */
  readonly tenants: ReadonlySet<string>;
}

function escapeRegExp(value: string): string {
  return value.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

function templateRegExp(template: string): RegExp {
  const placeholder = escapeRegExp(TENANT_PLACEHOLDER);
  return new RegExp(`^${escapeRegExp(template).replaceAll(placeholder, '([0-9A-Fa-f-]{36})')}$`);
}

/**
 * Builds the issuer patterns of an Entra configuration. A tenant-specific issuer is turned into
 * a template by replacing its tenant id, with that tenant as the only allowed one.
 */
export function entraIssuerPatterns(config: EntraIssuerConfig): EntraIssuerPatterns {
  const tenant = config.issuer.includes(TENANT_PLACEHOLDER) ? undefined : tenantOfIssuerUrl(config.issuer);
  const v2 = tenant === undefined ? config.issuer : config.issuer.replace(tenant, TENANT_PLACEHOLDER);
  const templates = [templateRegExp(v2), ...(config.acceptV1 ? [templateRegExp(config.v1Issuer)] : [])];
  const tenants = tenant === undefined ? (config.tenants ?? []) : [tenant];
  return { v2Template: v2, templates, tenants: new Set(tenants.map((t) => t.toLowerCase())) };
}

/** The tenant id named by `iss` when it has the shape of an accepted v2.0 / v1.0 issuer. */
export function entraTenantOf(patterns: EntraIssuerPatterns, iss: string): string | undefined {
  for (const template of patterns.templates) {
    const tenant = template.exec(iss)?.[1];
    if (tenant !== undefined && TENANT_ID.test(tenant)) return tenant;
  }
  return undefined;
}

/**
 * Refuses, before signature verification, an access token for Microsoft Graph: its JOSE header
 * has a `nonce` member and its signature is computed over a transformed nonce, so only Microsoft
 * can verify it.
 */
export function refuseGraphToken(header: ProtectedHeaderParameters, audience: string | readonly string[]): void {
  if (!('nonce' in header)) return;
  const expected = typeof audience === 'string' ? audience : audience.join(' or ');
  throw refuse(
    'ERR_FEDERATION_UNVERIFIABLE',
    `Entra ID access tokens for Microsoft Graph (header nonce) cannot be verified by third parties; request a token for Deputy's own API (audience ${expected})`,
  );
}

/**
 * Maps verified Entra claims to a {@link PresetIdentity}: `userId` is `entra:{tid}:{oid}`.
 * `tenant` is the tenant named by the (verified) `iss`; `tid` must agree with it.
 */
export function entraIdentity(claims: JWTPayload, issuerId: string, tenant: string): PresetIdentity {
  const tid = requiredStringClaim(claims, 'tid', 'an Entra ID token');
  if (tid.toLowerCase() !== tenant.toLowerCase()) throw refuse('ERR_FEDERATION_CLAIMS', 'the Entra ID token\'s "tid" claim does not match the tenant of its issuer');
  const oid = requiredStringClaim(claims, 'oid', 'an Entra ID token');
  const identity = { ...commonIdentity(claims, issuerId), preset: 'entra' as const, userId: `entra:${tid.toLowerCase()}:${oid}`, tenant: tid, scopes: listClaim(claims, 'scp') };
  return withOptional(identity, {
    email: stringClaim(claims, 'email') ?? stringClaim(claims, 'preferred_username') ?? stringClaim(claims, 'upn'),
    clientId: stringClaim(claims, 'azp') ?? stringClaim(claims, 'appid'),
  });
}
