/**
 * Tokens by hand, for scripts and curl users:
 *
 * - `deputy token`: an admin (`deputy:admin`) or PEP (`authzen:evaluate`) token through
 *   `client_credentials` with `private_key_jwt` (RFC 6749 §4.4, RFC 7523), optionally DPoP-bound.
 * - `deputy exchange`: an agent's RFC 8693 token exchange, always DPoP-bound (RFC 9449); the
 *   DPoP key lives in a file so later proofs can be made with it.
 * - `deputy dpop-proof`: one DPoP proof for one request (`htm`, `htu`, `ath`), to paste in a
 *   curl `DPoP:` header.
 * - `deputy call`: one request with a DPoP-bound token, proof and nonce retry included.
 *
 * Tokens are printed on stdout and nowhere else (never logged).
 *
 * @module
 */
import { Command, Option } from 'commander';
import { randomUUID } from 'node:crypto';
import type * as client from 'openid-client';
import { CliError, EXIT, UsageError } from '../errors.js';
import { baseOf, globals, insecureAllowed, printJson, resolveUrl, type Io } from '../shared.js';

/**
 * What these commands run on — openid-client, jose, the CLI's OAuth and credentials helpers —
 * loaded when one of them runs: the CLI's start (`--help`, offline commands) does not pay for it.
 */
async function load() {
  const [oauth, credentials, openidClient, jose] = await Promise.all([import('../oauth.js'), import('../credentials.js'), import('openid-client'), import('jose')]);
  return { ...oauth, ...credentials, client: openidClient, SignJWT: jose.SignJWT };
}

interface TokenOptions {
  scope: string;
  resource?: string;
  dpopKey?: string;
}

/** `deputy token`. */
export function tokenCommand(io: Io, done: (code: number) => void): Command {
  return new Command('token')
    .description('an admin or PEP access token via client_credentials (private_key_jwt); prints the token, or with --json the token response')
    .addOption(new Option('--scope <scope>', 'deputy:admin (admin API) or authzen:evaluate (PDP)').choices(['deputy:admin', 'authzen:evaluate']).default('deputy:admin'))
    .option('--resource <url>', 'resource (audience); default <issuer>/admin or <issuer>/access by scope')
    .option('--dpop-key <file>', 'bind the token to this DPoP key (created when missing); use it with deputy dpop-proof')
    .action(async (o: TokenOptions, c: Command) => {
      const g = globals(c, io);
      const url = resolveUrl(g, io);
      const { discover, readCredentials, dpopKey, clientCredentialsToken, client } = await load();
      const config = await discover(url, readCredentials(g.credentials));
      const key = o.dpopKey ? await dpopKey(o.dpopKey, true) : undefined;
      const tokens = await clientCredentialsToken(config, o.scope, {
        ...(o.resource ? { resource: o.resource } : {}),
        ...(key ? { dpop: client.getDPoPHandle(config, key) } : {}),
      });
      if (g.json) printJson(io, { ...tokenView(tokens), ...(key ? { dpop_key: o.dpopKey, dpop_jkt: key.jkt } : {}) });
      else io.out(`${tokens.access_token}\n`);
      done(EXIT.ok);
    });
}

function tokenView(t: client.TokenEndpointResponse): Record<string, unknown> {
  return {
    access_token: t.access_token,
    token_type: t.token_type,
    expires_in: t.expires_in,
    ...(t.scope !== undefined ? { scope: t.scope } : {}),
    ...(t.issued_token_type !== undefined ? { issued_token_type: t.issued_token_type } : {}),
  };
}

interface ExchangeOptions {
  subjectToken: string;
  subjectTokenType: string;
  resource?: string;
  audience?: string;
  scope?: string;
  dpopKey: string;
}

/** `deputy exchange`. */
export function exchangeCommand(io: Io, done: (code: number) => void): Command {
  return new Command('exchange')
    .description("an agent's token exchange (RFC 8693) with DPoP: --credentials is the agent's credentials file; prints the agent token")
    .requiredOption('--subject-token <token>', "the user's token (or an agent token to exchange again)")
    .addOption(new Option('--subject-token-type <type>', 'subject token type').choices(['access_token', 'id_token', 'jwt']).default('access_token'))
    .option('--resource <url>', 'the API the token is for (e.g. <issuer>/gw/<connection>)')
    .option('--audience <aud>', 'a logical audience (e.g. urn:deputy:agent:<id> for a handoff)')
    .option('--scope <scopes>', 'space-separated scopes')
    .requiredOption('--dpop-key <file>', "the agent's DPoP key (created when missing): the token is useless without it")
    .action(async (o: ExchangeOptions, c: Command) => {
      const g = globals(c, io);
      const { discover, readCredentials, dpopKey, exchangeToken, client } = await load();
      const config = await discover(resolveUrl(g, io), readCredentials(g.credentials));
      const key = await dpopKey(o.dpopKey, true);
      const tokens = await exchangeToken(config, client.getDPoPHandle(config, key), {
        subjectToken: o.subjectToken,
        subjectTokenType: o.subjectTokenType,
        ...(o.resource ? { resource: o.resource } : {}),
        ...(o.audience ? { audience: o.audience } : {}),
        ...(o.scope ? { scope: o.scope } : {}),
      });
      if (g.json) printJson(io, { ...tokenView(tokens), dpop_key: o.dpopKey, dpop_jkt: key.jkt });
      else io.out(`${tokens.access_token}\n`);
      done(EXIT.ok);
    });
}

/** `deputy client-assertion`. */
export function clientAssertionCommand(io: Io, done: (code: number) => void): Command {
  return new Command('client-assertion')
    .description("print a private_key_jwt client assertion (RFC 7523 §2.2: iss = sub = client id, aud = Deputy's issuer, 60 s, single use) for a curl client_assertion parameter")
    .action(async (_o: unknown, c: Command) => {
      const g = globals(c, io);
      const { readCredentials, privateKey, SignJWT } = await load();
      const credentials = readCredentials(g.credentials);
      const url = resolveUrl(g, io);
      insecureAllowed(url);
      const key = await privateKey(credentials.private_jwk, `private_jwk of ${credentials.client_id}`);
      const assertion = await new SignJWT({ jti: randomUUID() })
        .setProtectedHeader({ alg: credentials.private_jwk.alg ?? 'ES256', ...(credentials.private_jwk.kid ? { kid: credentials.private_jwk.kid } : {}) })
        .setIssuer(credentials.client_id)
        .setSubject(credentials.client_id)
        .setAudience(baseOf(url))
        .setIssuedAt()
        .setExpirationTime('60s')
        .sign(key);
      io.out(`${assertion}\n`);
      done(EXIT.ok);
    });
}

interface ProofOptions {
  key: string;
  htm: string;
  htu: string;
  token?: string;
  nonce?: string;
}

/** `deputy dpop-proof`. */
export function dpopProofCommand(io: Io, done: (code: number) => void): Command {
  return new Command('dpop-proof')
    .description('print a DPoP proof (RFC 9449 §4.2) for one request, for a curl "DPoP:" header; each proof is good once')
    .requiredOption('--key <file>', 'the DPoP private key (a JWK file, as deputy exchange / deputy token --dpop-key write)')
    .requiredOption('--htm <method>', 'the request method (GET, POST, …)')
    .requiredOption('--htu <url>', 'the request URL (query and fragment are dropped)')
    .option('--token <access-token>', 'the access token sent with the request (adds ath)')
    .option('--nonce <nonce>', 'the DPoP-Nonce the server sent')
    .action(async (o: ProofOptions) => {
      if (!/^[A-Za-z]+$/.test(o.htm)) throw new UsageError('--htm must be an HTTP method');
      try {
        new URL(o.htu);
      } catch {
        throw new UsageError('--htu must be an absolute URL');
      }
      const { dpopKey, dpopProof } = await load();
      const key = await dpopKey(o.key, false);
      io.out(`${await dpopProof(key, o.htm, o.htu, { ...(o.token ? { accessToken: o.token } : {}), ...(o.nonce ? { nonce: o.nonce } : {}) })}\n`);
      done(EXIT.ok);
    });
}

interface CallOptions {
  token: string;
  dpopKey: string;
  data?: string;
  header: string[];
}

/** `deputy call`. */
export function callCommand(io: Io, done: (code: number) => void): Command {
  return new Command('call')
    .description('one request with a DPoP-bound token (e.g. through the gateway): proof made and nonce answered; prints the response body. Exit 3 on an error status')
    .argument('<method>', 'GET, POST, …')
    .argument('<url>', 'the URL, e.g. <issuer>/gw/<connection>/<path>')
    .requiredOption('--token <access-token>', 'a DPoP-bound access token')
    .requiredOption('--dpop-key <file>', 'the DPoP key the token is bound to')
    .option('-d, --data <body>', 'request body')
    .option('-H, --header <name: value>', 'an extra request header (repeatable)', (v: string, all: string[]) => [...all, v], [] as string[])
    .action(async (method: string, url: string, o: CallOptions, c: Command) => {
      const g = globals(c, io);
      const insecure = insecureAllowed(url);
      const [{ dpopKey, asCliError, client }, { peekIssuer }] = await Promise.all([load(), import('../../federation/issuer.js')]);
      const iss = requireIssuer(peekIssuer(o.token));
      const key = await dpopKey(o.dpopKey, false);
      const config = new client.Configuration({ issuer: iss }, 'deputy-cli');
      if (insecure) client.allowInsecureRequests(config);
      const headers = new Headers();
      for (const h of o.header) {
        const i = h.indexOf(':');
        if (i < 1) throw new UsageError(`--header "${h}": use "Name: value"`);
        headers.append(h.slice(0, i).trim(), h.slice(i + 1).trim());
      }
      let res: Response;
      try {
        res = await client.fetchProtectedResource(config, o.token, new URL(url), method.toUpperCase(), o.data ?? null, headers, { DPoP: client.getDPoPHandle(config, key) });
      } catch (err) {
        if (err instanceof client.WWWAuthenticateChallengeError) {
          const ch = err.cause[0];
          throw new CliError(`${err.status} ${ch?.parameters.error ?? 'unauthorized'}${ch?.parameters.error_description ? `: ${ch.parameters.error_description}` : ''}`, EXIT.refused);
        }
        throw asCliError(err, url);
      }
      const body = await res.text();
      if (g.json) printJson(io, { status: res.status, headers: Object.fromEntries(res.headers), body: parseMaybe(body) });
      else {
        io.err(`${res.status} ${res.statusText}\n`);
        io.out(body.endsWith('\n') || body === '' ? body : `${body}\n`);
      }
      done(res.ok ? EXIT.ok : EXIT.refused);
    });
}

/** The `iss` of `--token` (read unverified: it only names where to send the request). */
function requireIssuer(iss: string | undefined): string {
  if (iss === undefined) throw new UsageError('--token is not a JWT access token with an "iss" claim');
  return iss;
}

function parseMaybe(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
