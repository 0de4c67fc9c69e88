/**
 * The admin API as the CLI calls it: one `deputy:admin` token per command (client_credentials,
 * audience `<issuer>/admin`), then plain JSON requests. An error answer becomes
 * {@link ServerRefused} (exit 3) carrying its `error` and `error_description`.
 *
 * @module
 */
import { readCredentials } from './credentials.js';
import { asCliError, clientCredentialsToken, discover } from './oauth.js';
import { ServerRefused } from './errors.js';
import { baseOf } from './shared.js';

export interface AdminClient {
  readonly issuer: string;
  /** JSON request to `path` under the issuer; the parsed body (text for non-JSON answers). */
  request(method: string, path: string, body?: unknown): Promise<unknown>;
  /** The raw response of a GET (for streamed exports). @throws ServerRefused on an error status. */
  stream(path: string): Promise<Response>;
}

/** Authenticates as the admin client in `credentialsFile` at `url`. */
export async function adminClient(url: string, credentialsFile: string): Promise<AdminClient> {
  const credentials = readCredentials(credentialsFile);
  const config = await discover(url, credentials);
  const issuer = baseOf(config.serverMetadata().issuer);
  const token = (await clientCredentialsToken(config, 'deputy:admin')).access_token;
  const send = async (method: string, path: string, body?: unknown): Promise<Response> => {
    let res: Response;
    try {
      res = await fetch(`${issuer}${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, accept: 'application/json', ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    } catch (err) {
      throw asCliError(err, issuer);
    }
    if (!res.ok) throw await refusal(res);
    return res;
  };
  return {
    issuer,
    async request(method, path, body) {
      const res = await send(method, path, body);
      const text = await res.text();
      if (!text) return null;
      return (res.headers.get('content-type') ?? '').includes('json') ? (JSON.parse(text) as unknown) : text;
    },
    stream: (path) => send('GET', path),
  };
}

async function refusal(res: Response): Promise<ServerRefused> {
  const text = await res.text().catch(() => '');
  try {
    const doc = JSON.parse(text) as { error?: string; error_description?: string };
    if (typeof doc.error === 'string') return new ServerRefused(res.status, doc.error, doc.error_description);
  } catch {
    // not JSON: the status says it
  }
  return new ServerRefused(res.status, res.statusText || 'error');
}
