/**
 * Comparing HTTP(S) URLs the way RFC 9449 §4.3 (DPoP `htu`) asks: exact, but after RFC 3986
 * §6.2.2 syntax-based and §6.2.3 scheme-based normalization. One helper, used at `/token`, the
 * gateway, the PDP and the admin API, so every surface accepts and refuses the same spellings.
 *
 * @module
 */

/** RFC 3986 Appendix B: the generic-syntax split of a URI reference. */
const URI_REFERENCE = /^(?:([^:/?#]+):)?(?:\/\/([^/?#]*))?([^?#]*)(?:\?[^#]*)?(?:#.*)?$/s;
/** RFC 3986 §3.1. */
const SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*$/;
/** RFC 3986 §2.3: characters that never need percent-encoding (and are decoded when they are). */
const UNRESERVED = /[A-Za-z0-9\-._~]/;
/** Characters that may stand for themselves in a path (RFC 3986 §3.3 `pchar` and `/`), `%` excluded. */
const PATH_CHAR = /[A-Za-z0-9\-._~!$&'()*+,;=:@/]/;
/** RFC 3986 §6.2.3 default ports. */
const DEFAULT_PORTS: Readonly<Record<string, string>> = { http: '80', https: '443' };

/** The longest resource or audience value accepted, in a request (`resource`, `audience`) or an agent's registration. */
export const MAX_RESOURCE_URI = 2048;

/**
 * An absolute URI without a fragment (RFC 3986 §4.3 `absolute-URI`; RFC 8707 §2: a resource
 * indicator "MUST be an absolute URI … MUST NOT include a fragment component"): a scheme, then
 * only characters a URI may hold (unreserved, reserved but `#`, and `%` escapes), at most
 * {@link MAX_RESOURCE_URI} characters — no space, control character or non-ASCII text.
 */
const ABSOLUTE_URI = /^[A-Za-z][A-Za-z0-9+.-]*:(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?[\]]|%[0-9A-Fa-f]{2})+$/;

/** Whether `value` is an RFC 8707 §2 resource indicator: an absolute URI without a fragment, at most {@link MAX_RESOURCE_URI} characters. */
export function isResourceIndicator(value: string): boolean {
  return value.length <= MAX_RESOURCE_URI && ABSOLUTE_URI.test(value);
}

/**
 * The normal form of an absolute `http` / `https` URL without its query and fragment
 * (RFC 9449 §4.3 step 9 ignores both), or `undefined` when `value` is not one.
 *
 * Normalization (RFC 3986 §6.2.2 and §6.2.3): scheme and host lower-cased; a default or empty
 * port removed; percent-encodings upper-cased and those of unreserved characters decoded; other
 * characters that cannot appear raw in a path percent-encoded as UTF-8; dot segments removed
 * (§5.2.4); an empty path becomes `/`. Anything else is kept, so a different path — a trailing
 * slash, `%2F` for `/` — stays different. User information is refused: no request URL carries it.
 *
 * @param value an absolute URL as a client wrote it (e.g. a DPoP proof's `htu`)
 * @returns `scheme://host[:port]/path`, or `undefined` when `value` is malformed
 */
export function normalizeHttpUrl(value: string): string | undefined {
  const m = URI_REFERENCE.exec(value);
  if (!m) return undefined;
  const [, rawScheme, authority, rawPath] = m;
  if (rawScheme === undefined || !SCHEME.test(rawScheme) || authority === undefined) return undefined;
  const scheme = rawScheme.toLowerCase();
  const defaultPort = DEFAULT_PORTS[scheme];
  if (defaultPort === undefined) return undefined;
  const hostPort = normalizeAuthority(authority, defaultPort);
  if (hostPort === undefined) return undefined;
  const path = normalizePercentEncoding(rawPath ?? '', PATH_CHAR);
  if (path === undefined) return undefined;
  return `${scheme}://${hostPort}${removeDotSegments(path) || '/'}`;
}

/** `host[:port]`, lower-cased, without a default or empty port; `undefined` when malformed. */
function normalizeAuthority(authority: string, defaultPort: string): string | undefined {
  if (authority.includes('@')) return undefined;
  const m = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]]*)(?::(\d*))?$/.exec(authority);
  if (!m) return undefined;
  // Lower-cased around the `%XX` sequences, whose hex digits stay upper-case (§6.2.2.1).
  const host = normalizePercentEncoding(m[1]!, /[A-Za-z0-9\-._~!$&'()*+,;=[\]:]/)?.replace(/%[0-9A-F]{2}|[^%]+/g, (s) => (s.startsWith('%') ? s : s.toLowerCase()));
  if (!host) return undefined;
  const digits = m[2] ?? '';
  const port = digits === '' ? '' : String(Number(digits));
  if (port !== '' && Number(port) > 65535) return undefined;
  return port === '' || port === defaultPort ? host : `${host}:${port}`;
}

/**
 * RFC 3986 §6.2.2.1-2: `%xx` upper-cased, decoded when it encodes an unreserved character;
 * characters outside `allowed` (and not `%`) encoded as UTF-8 `%XX`. A `%` not followed by two
 * hex digits makes the whole value malformed.
 */
function normalizePercentEncoding(value: string, allowed: RegExp): string | undefined {
  let out = '';
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === '%') {
      const hex = value.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return undefined;
      const decoded = String.fromCharCode(parseInt(hex, 16));
      out += UNRESERVED.test(decoded) ? decoded : `%${hex.toUpperCase()}`;
      i += 2;
    } else if (allowed.test(c)) {
      out += c;
    } else {
      const cp = value.codePointAt(i)!;
      const char = String.fromCodePoint(cp);
      if (char.length === 2) i++;
      if (cp >= 0xd800 && cp <= 0xdfff) return undefined; // a lone surrogate has no UTF-8 form
      out += [...Buffer.from(char, 'utf8')].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join('');
    }
  }
  return out;
}

/** RFC 3986 §5.2.4 `remove_dot_segments`. */
function removeDotSegments(path: string): string {
  let input = path;
  let output = '';
  while (input.length > 0) {
    if (input.startsWith('../')) input = input.slice(3);
    else if (input.startsWith('./')) input = input.slice(2);
    else if (input.startsWith('/./')) input = input.slice(2);
    else if (input === '/.') input = '/';
    else if (input.startsWith('/../')) {
      input = input.slice(3);
      output = output.slice(0, Math.max(0, output.lastIndexOf('/')));
    } else if (input === '/..') {
      input = '/';
      output = output.slice(0, Math.max(0, output.lastIndexOf('/')));
    } else if (input === '.' || input === '..') input = '';
    else {
      const next = input.indexOf('/', input.startsWith('/') ? 1 : 0);
      const segment = next === -1 ? input : input.slice(0, next);
      output += segment;
      input = input.slice(segment.length);
    }
  }
  return output;
}
