/**
 * Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document; MCP authorization
 * 2025-11-25 §"Client ID Metadata Documents"): a `client_id` that is an https URL names a JSON
 * document describing the client. Deputy's policy over that mechanism:
 *
 * - **Hosts**: only documents on `oauth.authorizationCode.clientIdMetadataDocuments.allowedHosts`
 *   are fetched (an operator allow-list; empty: none). {@link isAllowedDocumentUrl}.
 * - **Fetch** (by oidc-provider, 9.13.3, `features.clientIdMetadataDocument`): https only, no
 *   redirects (any non-200 is refused), 2.5 s timeout, at most `maxBytes`;
 *   cached by HTTP caching rules (`Cache-Control: max-age`, `Expires`, clamped) in a bounded LRU.
 *   Deputy's fetch ({@link documentFetch}) refuses special-use addresses (private, loopback,
 *   link-local, …) when resolving the host, before connecting, and requires `application/json`.
 * - **Document** (oidc-provider checks `client_id` equals the URL, no shared-secret auth and no
 *   `client_secret`, https URIs): Deputy also requires `redirect_uris`, the code flow only
 *   (`authorization_code` / `refresh_token`, `response_types: ["code"]`), and authentication
 *   `none` (a public client: DPoP then required) or `private_key_jwt` with a `jwks_uri`
 *   ({@link documentProblem}).
 *
 * @module
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { readFileSync } from 'node:fs';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import { Agent, fetch as undiciFetch } from 'undici';
import { InvalidClientMetadata } from '../errors/index.js';
import { isScopeToken } from '../util/scope.js';
import type { Logger } from '../log.js';

/** The options of `oauth.authorizationCode.clientIdMetadataDocuments` this module reads. */
export interface DocumentPolicy {
  allowedHosts: readonly string[];
  allowPrivateAddresses: boolean;
  caFile?: string | undefined;
  /** The largest document read, bytes. */
  maxBytes: number;
}

/** A `client_id` that names a metadata document: an https URL (draft §3). */
export function isDocumentClientId(clientId: string): boolean {
  return clientId.startsWith('https://');
}

/**
 * Whether a document may be fetched from `clientId`: an https URL (no credentials, no fragment)
 * whose host (with its port, if not 443) is allow-listed.
 */
export function isAllowedDocumentUrl(clientId: string, policy: Pick<DocumentPolicy, 'allowedHosts'>): boolean {
  const url = URL.parse(clientId);
  if (!url || url.protocol !== 'https:' || url.username || url.password || url.hash) return false;
  const hosts = new Set(policy.allowedHosts.map((h) => h.toLowerCase()));
  return hosts.has(url.host.toLowerCase());
}

/**
 * The Deputy-private client metadata member that carries a document's `scope` (its ceiling) to
 * Deputy through oidc-provider: oidc-provider checks a client's `scope` against its own supported
 * scopes — Deputy's admin and PDP scopes only — so it refuses any document listing a resource's
 * scopes, and would accept one listing Deputy's own. It never sees `scope` (see {@link providerDocument}).
 */
export const DOCUMENT_SCOPE_MEMBER = 'deputy_document_scope';

/** What Deputy does with a metadata document member. */
export type MemberTreatment = 'honoured' | 'ignored' | 'refused';

/**
 * Deputy's decision for each RFC 7591 §2 member (the MCP TypeScript SDK's `OAuthClientMetadata`
 * lists these) and the draft's forbidden ones. `honoured`: checked, then used; `ignored`: dropped
 * before oidc-provider sees the document (RFC 7591 §2: unknown members are ignored too);
 * `refused`: the document is refused with `invalid_client_metadata` naming the member.
 */
export const DOCUMENT_MEMBERS: Readonly<Record<string, { treatment: MemberTreatment; why: string }>> = {
  client_id: { treatment: 'honoured', why: 'must equal the document URL (draft §4.1)' },
  client_name: { treatment: 'honoured', why: 'shown on the consent page and as the agent name' },
  redirect_uris: { treatment: 'honoured', why: 'at least one; a request must use one exactly' },
  grant_types: { treatment: 'honoured', why: 'authorization_code, optionally refresh_token' },
  response_types: { treatment: 'honoured', why: '["code"] only' },
  token_endpoint_auth_method: { treatment: 'honoured', why: '"none" (public, DPoP-bound) or "private_key_jwt" with jwks_uri' },
  jwks_uri: { treatment: 'honoured', why: 'the keys of a private_key_jwt client' },
  scope: { treatment: 'honoured', why: 'a ceiling: never more than the operator allows, intersected' },
  application_type: { treatment: 'honoured', why: 'native clients may use loopback http and custom-scheme redirect URIs' },
  dpop_bound_access_tokens: { treatment: 'honoured', why: 'RFC 9449 §5.2: DPoP required for this client' },
  client_uri: { treatment: 'ignored', why: 'display only; the consent page names the client by its URL' },
  logo_uri: { treatment: 'ignored', why: 'Deputy\'s consent page loads nothing from a client' },
  tos_uri: { treatment: 'ignored', why: 'display only' },
  policy_uri: { treatment: 'ignored', why: 'display only' },
  contacts: { treatment: 'ignored', why: 'not used (oidc-provider would refuse non-email contacts)' },
  software_id: { treatment: 'ignored', why: 'not used' },
  software_version: { treatment: 'ignored', why: 'not used' },
  software_statement: { treatment: 'ignored', why: 'not verified (RFC 7591 §3.1.1 allows ignoring it)' },
  jwks: { treatment: 'refused', why: 'keys are published at jwks_uri, so they can rotate' },
  client_secret: { treatment: 'refused', why: 'a document is public (draft §4.1)' },
  client_secret_expires_at: { treatment: 'refused', why: 'a document is public (draft §4.1)' },
};

/** Members handed to oidc-provider: the honoured ones (`scope` under {@link DOCUMENT_SCOPE_MEMBER}). */
const PASSED_MEMBERS = Object.keys(DOCUMENT_MEMBERS).filter((m) => DOCUMENT_MEMBERS[m]!.treatment === 'honoured' && m !== 'scope');

const CODE_FLOW_GRANTS = new Set(['authorization_code', 'refresh_token']);
/** The scope values of a document's `scope`; `undefined` when it is not a string of scope tokens. */
function scopeValues(scope: unknown): string[] | undefined {
  if (typeof scope !== 'string') return undefined;
  const values = scope.split(' ').filter(Boolean);
  return values.every((v) => isScopeToken(v)) ? values : undefined;
}

/**
 * The member of a (fetched, parsed) document Deputy refuses, and why: `undefined` when it is
 * fine. Checks only what Deputy honours or refuses ({@link DOCUMENT_MEMBERS}); oidc-provider
 * then checks URIs and `client_id`.
 */
export function documentProblem(doc: Record<string, unknown>): { member: string; reason: string } | undefined {
  const refused = Object.keys(DOCUMENT_MEMBERS).find((m) => DOCUMENT_MEMBERS[m]!.treatment === 'refused' && m in doc);
  if (refused) return { member: refused, reason: `not accepted: ${DOCUMENT_MEMBERS[refused]!.why}` };
  if (!Array.isArray(doc.redirect_uris) || doc.redirect_uris.length === 0 || !doc.redirect_uris.every((u) => typeof u === 'string')) {
    return { member: 'redirect_uris', reason: 'must list at least one redirect URI' };
  }
  const grants = doc.grant_types ?? ['authorization_code'];
  if (!Array.isArray(grants) || !grants.includes('authorization_code') || !grants.every((g) => CODE_FLOW_GRANTS.has(g as string))) {
    return { member: 'grant_types', reason: 'may only list authorization_code and refresh_token' };
  }
  const responses = doc.response_types ?? ['code'];
  if (!Array.isArray(responses) || responses.length !== 1 || responses[0] !== 'code') return { member: 'response_types', reason: 'must be ["code"]' };
  if (doc.scope !== undefined && scopeValues(doc.scope) === undefined) return { member: 'scope', reason: 'must be space-separated scope values (RFC 6749 §3.3)' };
  const method = doc.token_endpoint_auth_method;
  if (method === 'none') return undefined;
  if (method === 'private_key_jwt') return typeof doc.jwks_uri === 'string' ? undefined : { member: 'jwks_uri', reason: 'a private_key_jwt client must publish its keys at jwks_uri' };
  return { member: 'token_endpoint_auth_method', reason: 'must be "none" or "private_key_jwt" (absent means client_secret_basic, which a metadata document may not use)' };
}

/**
 * The document as oidc-provider sees it: the honoured members only, `scope` moved to
 * {@link DOCUMENT_SCOPE_MEMBER}, everything else dropped — so oidc-provider never refuses a
 * member Deputy ignores, nor reads one Deputy did not check.
 * @throws InvalidClientMetadata naming the member Deputy refuses ({@link documentProblem})
 */
export function providerDocument(doc: Record<string, unknown>): Record<string, unknown> {
  const problem = documentProblem(doc);
  if (problem) throw new InvalidClientMetadata(`client metadata document member ${problem.member}: ${problem.reason}`);
  const out: Record<string, unknown> = {};
  for (const m of PASSED_MEMBERS) if (doc[m] !== undefined) out[m] = doc[m];
  // An empty `scope` is as if omitted (RFC 7591 §2: the operator's default set applies).
  const scope = scopeValues(doc.scope);
  if (scope?.length) out[DOCUMENT_SCOPE_MEMBER] = scope.join(' ');
  return out;
}

/**
 * The scope ceiling of a metadata-document client, from its oidc-provider metadata: `undefined`
 * when its document lists no `scope` (the operator's scopes apply unchanged).
 */
export function documentScopeCeiling(metadata: Readonly<Record<string, unknown>>): readonly string[] | undefined {
  const scope = metadata[DOCUMENT_SCOPE_MEMBER];
  return typeof scope === 'string' ? scope.split(' ').filter(Boolean) : undefined;
}

/** `application/json` or a `+json` media type (RFC 6839 §3.1), parameters ignored. */
export function isJsonMediaType(contentType: string | null): boolean {
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  return type === 'application/json' || /^application\/[a-z0-9.+-]+\+json$/.test(type);
}

type FetchOptions = RequestInit & { dispatcher?: unknown };

/**
 * Special-use address blocks (RFC 6890 registries, IANA IPv4/IPv6 Special-Purpose Address
 * Registries) a metadata document is never fetched from: this network, private, shared (CGN),
 * loopback, link-local, documentation, benchmarking, multicast and reserved ranges; IPv6
 * unspecified, loopback, IPv4-mapped/translated, ULA, link-local, documentation, multicast.
 */
const SPECIAL_USE = (() => {
  const list = new BlockList();
  for (const [net, prefix] of [
    ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12], ['192.0.0.0', 24],
    ['192.0.2.0', 24], ['192.88.99.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['198.51.100.0', 24], ['203.0.113.0', 24], ['224.0.0.0', 3],
  ] as const) list.addSubnet(net, prefix, 'ipv4');
  for (const [net, prefix] of [
    // IPv4-mapped (::ffff:0:0/96) is left out: BlockList checks IPv4 addresses against IPv6 rules as
    // mapped addresses, so that rule would match every IPv4 address; mapped ones are checked as IPv4 below.
    ['::', 127], ['64:ff9b::', 96], ['64:ff9b:1::', 48], ['100::', 64], ['2001::', 23], ['2001:db8::', 32], ['2002::', 16],
    ['fc00::', 7], ['fe80::', 10], ['ff00::', 8],
  ] as const) list.addSubnet(net, prefix, 'ipv6');
  return list;
})();

/** Whether `address` (an IP literal) is in a special-use block (for IPv4-mapped IPv6, its IPv4 address too). */
export function isSpecialUseAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return true;
  if (family === 4) return SPECIAL_USE.check(address, 'ipv4');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return SPECIAL_USE.check(address, 'ipv6') || (mapped !== null && SPECIAL_USE.check(mapped[1]!, 'ipv4'));
}

/**
 * A DNS lookup that refuses special-use addresses: the check is made on the addresses the
 * connection will use (no second resolution between check and connect, so no DNS rebinding).
 */
const publicOnlyLookup: LookupFunction = (hostname, options, callback) => {
  dnsLookup(hostname, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
    if (err) return callback(err, '', 0);
    const usable = addresses.filter((a) => !isSpecialUseAddress(a.address));
    if (usable.length === 0) return callback(Object.assign(new Error(`${hostname} resolves to a special-use (private, loopback, link-local…) address`), { code: 'ERR_SPECIAL_USE_ADDRESS' }), '', 0);
    if ((options as { all?: boolean }).all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, usable);
    return callback(null, usable[0]!.address, usable[0]!.family);
  });
};

/**
 * oidc-provider's `fetch` (every outgoing request it makes: metadata documents, client JWKS)
 * with Deputy's additions: JSON responses only for JSON requests; and, only when the operator
 * allowed private addresses (tests), a dispatcher without the SSRF check that trusts `caFile`.
 */
export function documentFetch(policy: DocumentPolicy, logger: Logger): (url: URL | string, options: FetchOptions) => Promise<Response> {
  // Deputy's own dispatcher: addresses checked at resolution (before any connection), and the extra CA.
  const agent = new Agent({
    connect: { ...(policy.caFile ? { ca: readFileSync(policy.caFile, 'utf8') } : {}), ...(policy.allowPrivateAddresses ? {} : { lookup: publicOnlyLookup }) },
  });
  return async (url, options) => {
    let res: Response;
    try {
      // undici's (the package's) fetch, with its Agent; oidc-provider's own dispatcher is replaced.
      res = (await undiciFetch(url, { ...(options as Parameters<typeof undiciFetch>[1]), dispatcher: agent })) as unknown as Response;
    } catch (err) {
      const cause = err instanceof Error && err.cause instanceof Error ? err.cause.message : String(err);
      logger.info({ url: String(url).slice(0, 300), cause }, 'outgoing fetch of oidc-provider failed (client metadata document or JWKS)');
      throw err;
    }
    const accept = new Headers(options.headers).get('accept') ?? '';
    if (res.status === 200 && accept.includes('json') && !isJsonMediaType(res.headers.get('content-type'))) {
      await res.body?.cancel();
      throw new TypeError('the response is not JSON (Content-Type)');
    }
    return isDocumentRequest(url, options) ? asProviderDocument(res, policy.maxBytes) : res;
  };
}

/**
 * Whether oidc-provider is fetching a metadata document (lib/helpers/client_id_metadata_document.js,
 * 9.13.3): the only GET it sends with `redirect: 'manual'` (JWKS and sector fetches follow
 * redirects; its other manual ones are POSTs), to an https `client_id`.
 */
function isDocumentRequest(url: URL | string, options: FetchOptions): boolean {
  return isDocumentClientId(String(url)) && options.redirect === 'manual' && (options.method ?? 'GET').toUpperCase() === 'GET';
}

/**
 * A fetched document's response rewritten to {@link providerDocument}'s: what oidc-provider
 * parses, checks and caches (with the response's caching headers). A response that is no
 * JSON object is handed on as it came, for oidc-provider to refuse.
 * @throws InvalidClientMetadata naming a refused member; TypeError when over `maxBytes`
 */
async function asProviderDocument(res: Response, maxBytes: number): Promise<Response> {
  if (res.status !== 200) return res;
  const text = await readAtMost(res, maxBytes);
  const headers = new Headers(res.headers);
  headers.delete('content-length');
  headers.delete('content-encoding');
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return new Response(text, { status: 200, headers });
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return new Response(text, { status: 200, headers });
  return new Response(JSON.stringify(providerDocument(doc as Record<string, unknown>)), { status: 200, headers });
}

/** The body as text, read only up to `maxBytes` (the fetch fails beyond: nothing larger is buffered). */
async function readAtMost(res: Response, maxBytes: number): Promise<string> {
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (declared > maxBytes) {
    await res.body?.cancel();
    throw new TypeError(`the document is larger than ${maxBytes} bytes`);
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of (res.body ?? []) as AsyncIterable<Uint8Array>) {
    size += chunk.byteLength;
    if (size > maxBytes) throw new TypeError(`the document is larger than ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}
