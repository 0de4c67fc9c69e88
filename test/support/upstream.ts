/**
 * A local downstream API and OAuth token endpoint over real HTTP (127.0.0.1, random port), for
 * gateway tests and the demo. It records every request (method, path, query, headers, body
 * size) so tests can assert what reached it — and that nothing did.
 *
 * API routes (under any prefix, matched on the last segments):
 * - `GET|POST|… …/echo…` — 200 JSON of what arrived: method, path, query, headers. It echoes the
 *   injected credential on purpose: the gateway must redact it from what the agent gets.
 * - `…/upload` — consumes the body; answers its byte length and SHA-256.
 * - `…/big?bytes=N` — N bytes of `x`, streamed in 64 KiB chunks.
 * - `…/sized` — the JSON echo with its `Content-Length` (a body the gateway may read whole).
 * - `…/truncated` — declares 100 bytes, sends 10, then resets the connection.
 * - `…/gzip` — a gzip-encoded JSON echo (despite `Accept-Encoding: identity`).
 * - `…/headers` — hop-by-hop, cookie, challenge and CORS (credentialed) headers, plus `X-Upstream: kept`.
 * - `…/redirect` — 302 to `…/echo/next` with the request's query (a query-parameter key included).
 * - `…/reflect` — echoes the credential it received (the `Authorization` value, else `X-Api-Key`,
 *   else the `api_key` query parameter) and its bare secret in other encodings (upper-case,
 *   base64, base64url, hex, JSON `\uXXXX`, percent escapes), in response headers and in a body
 *   written a few bytes at a time: the gateway must redact every form.
 * - `…/unauthorized` — 401 with a challenge.
 * - `…/hang` — never answers (timeout tests; closed with the server).
 *
 * Token endpoint `POST /oauth/token` (client authentication `client_secret_basic`):
 * `client_credentials`, RFC 8693 `token-exchange` and Entra OBO `jwt-bearer`; issues opaque
 * tokens `at-<n>`, counts grants by type, and can be told to refuse with an OAuth error.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  headers: Record<string, string | string[] | undefined>;
  bodyBytes: number;
}

export interface TokenGrant {
  grantType: string;
  clientId: string;
  params: Record<string, string>;
  token: string;
}

export interface MockUpstream {
  readonly base: string;
  /** Every API request (not token requests), in arrival order. */
  readonly requests: RecordedRequest[];
  /** Every successful token grant. */
  readonly grants: TokenGrant[];
  /** Tokens the token endpoint issued (valid at the API when `requireToken` is set). */
  readonly issued: Set<string>;
  /** Registers a client of the token endpoint. */
  addClient(clientId: string, secret: string): void;
  /** The next token requests answer this OAuth error (400) until cleared with undefined. */
  refuseTokens(error: string | undefined): void;
  /** Lifetime (`expires_in`) of issued tokens. Default 3600. */
  tokenLifetime: number;
  close(): Promise<void>;
}

export async function startMockUpstream(): Promise<MockUpstream> {
  const requests: RecordedRequest[] = [];
  const grants: TokenGrant[] = [];
  const issued = new Set<string>();
  const clients = new Map<string, string>();
  let refusal: string | undefined;
  let counter = 0;
  const hanging = new Set<ServerResponse>();

  const server = createServer((req, res) => {
    void handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  async function readBody(req: IncomingMessage): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
  }

  async function token(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const form = new URLSearchParams((await readBody(req)).toString('utf8'));
    const basic = /^Basic (.+)$/.exec(req.headers.authorization ?? '');
    const [id, secret] = basic ? Buffer.from(basic[1]!, 'base64').toString('utf8').split(':').map(decodeURIComponent) : [form.get('client_id'), form.get('client_secret')];
    if (!id || clients.get(id) !== secret) return json(res, 401, { error: 'invalid_client' });
    if (refusal) return json(res, 400, { error: refusal, error_description: 'refused by the mock' });
    const grantType = form.get('grant_type') ?? '';
    const known = ['client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange', 'urn:ietf:params:oauth:grant-type:jwt-bearer'];
    if (!known.includes(grantType)) return json(res, 400, { error: 'unsupported_grant_type' });
    if (grantType.endsWith('token-exchange') && !form.get('subject_token')) return json(res, 400, { error: 'invalid_request' });
    if (grantType.endsWith('jwt-bearer') && (!form.get('assertion') || form.get('requested_token_use') !== 'on_behalf_of')) return json(res, 400, { error: 'invalid_request' });
    const value = `at-${++counter}-${randomBytes(12).toString('base64url')}`;
    issued.add(value);
    grants.push({ grantType, clientId: id, params: Object.fromEntries(form), token: value });
    json(res, 200, {
      access_token: value,
      token_type: 'Bearer',
      expires_in: upstream.tokenLifetime,
      ...(grantType.endsWith('token-exchange') ? { issued_token_type: 'urn:ietf:params:oauth:token-type:access_token' } : {}),
    });
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', base);
    if (url.pathname === '/oauth/token' && req.method === 'POST') return token(req, res);
    const body = await readBody(req);
    const record: RecordedRequest = {
      method: req.method ?? '',
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers: { ...req.headers },
      bodyBytes: body.length,
    };
    requests.push(record);
    const last = url.pathname.split('/').filter(Boolean).at(-1) ?? '';
    const echo = { method: record.method, path: record.path, query: record.query, headers: record.headers };
    switch (last) {
      case 'upload':
        return json(res, 200, { bytes: body.length, sha256: createHash('sha256').update(body).digest('hex') });
      case 'big': {
        const total = Number(url.searchParams.get('bytes') ?? '0');
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(total) });
        const chunk = Buffer.alloc(64 * 1024, 'x');
        let sent = 0;
        const pump = () => {
          while (sent < total) {
            const n = Math.min(chunk.length, total - sent);
            sent += n;
            if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void res.once('drain', pump);
          }
          res.end();
        };
        return pump();
      }
      case 'sized': {
        const sized = Buffer.from(JSON.stringify(echo));
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(sized.length) });
        return void res.end(sized);
      }
      case 'truncated':
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100' });
        res.write('0123456789');
        return void setTimeout(() => res.socket?.destroy(), 20);
      case 'gzip':
        res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
        return void res.end(gzipSync(JSON.stringify(echo)));
      case 'headers':
        res.writeHead(200, {
          'content-type': 'text/plain',
          connection: 'x-hop-secret, keep-alive',
          'x-hop-secret': 'hop',
          'keep-alive': 'timeout=99, max=7',
          'set-cookie': 'upstream_session=abc; Path=/',
          'www-authenticate': 'Bearer realm="upstream"',
          'x-upstream': 'kept',
          'strict-transport-security': 'max-age=1',
          'dpop-nonce': 'upstream-nonce',
          'access-control-allow-origin': 'https://evil.example',
          'access-control-allow-credentials': 'true',
        });
        return void res.end('ok');
      case 'redirect':
        res.writeHead(302, { location: `${base}${url.pathname.replace(/redirect$/, 'echo/next')}${url.search}` });
        return void res.end();
      case 'reflect': {
        const value = String(req.headers.authorization ?? req.headers['x-api-key'] ?? url.searchParams.get('api_key') ?? '');
        const forms = reflections(value);
        res.writeHead(200, {
          'content-type': 'application/json',
          'x-reflect-upper': forms.upper,
          'x-reflect-base64': forms.base64,
          'x-reflect-hex': forms.hex,
          'x-reflect-percent': forms.percent,
        });
        // JSON with every character of the value as a `\uXXXX` escape (JSON.stringify would not).
        const escaped = [...value].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join('');
        const text = `${JSON.stringify(forms).slice(0, -1)},"json":"${escaped}"}`;
        for (let i = 0; i < text.length; i += 7) res.write(text.slice(i, i + 7));
        return void res.end();
      }
      case 'unauthorized':
        res.writeHead(401, { 'www-authenticate': 'Bearer error="invalid_token"', 'content-type': 'text/plain' });
        return void res.end('bad key');
      case 'hang':
        hanging.add(res);
        return;
      default:
        return json(res, 200, echo, { 'x-upstream': 'kept' });
    }
  }

  const upstream: MockUpstream = {
    base,
    requests,
    grants,
    issued,
    tokenLifetime: 3600,
    addClient: (id, secret) => void clients.set(id, secret),
    refuseTokens: (error) => {
      refusal = error;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const r of hanging) r.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return upstream;
}

/** A credential value and its bare secret (after the scheme) in the encodings of `…/reflect`. */
export function reflections(value: string): Record<string, string> {
  const secret = value.replace(/^\S+ /, '');
  const bytes = Buffer.from(value);
  return {
    upper: value.toUpperCase(),
    base64: bytes.toString('base64'),
    base64url: Buffer.from(secret).toString('base64url'),
    hex: Buffer.from(secret).toString('hex').toUpperCase(),
    percent: [...bytes].map((b) => `%${b.toString(16).padStart(2, '0')}`).join(''),
    form: new URLSearchParams({ v: value }).toString(),
  };
}
