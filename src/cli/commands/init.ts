/**
 * `deputy init`: everything a first deployment needs to be administered — an admin client key
 * pair (private part in a credentials file, mode 0600; public part in the configuration) and a
 * deployment configuration using it, with commented trusted-issuer templates for Okta, Entra ID
 * and a generic OIDC provider. Refuses to overwrite either file without `--force`.
 *
 * The key generation (jose) and the YAML writer load when `init` runs, not at the CLI's start.
 *
 * @module
 */
import { existsSync, writeFileSync } from 'node:fs';
import { Command } from 'commander';
import { CliError, EXIT } from '../errors.js';
import { baseOf, DEFAULT_URL, globals, insecureAllowed, printJson, type Io } from '../shared.js';

interface InitOptions {
  config: string;
  clientId: string;
  issuer: string;
  force?: boolean;
}

/** `deputy init`. */
export function initCommand(io: Io, done: (code: number) => void): Command {
  return new Command('init')
    .description('create an admin client key pair and a deployment configuration using it (refuses to overwrite without --force)')
    .option('--config <file>', 'the configuration to write', 'deputy.local.yaml')
    .option('--client-id <id>', 'the admin client id', 'deputy-admin')
    .option('--issuer <url>', "Deputy's public URL (its OAuth issuer)", DEFAULT_URL)
    .option('--force', 'overwrite existing files')
    .action(async (o: InitOptions, c: Command) => {
      const g = globals(c, io);
      insecureAllowed(o.issuer);
      const existing = [o.config, g.credentials].filter((f) => existsSync(f));
      if (existing.length && !o.force) throw new CliError(`${existing.join(' and ')} already exist${existing.length === 1 ? 's' : ''}; nothing written (--force overwrites)`);
      const [{ newKeyPair, writeSecretJson }, { deploymentConfig }] = await Promise.all([import('../credentials.js'), import('../deployment-config.js')]);
      const { privateJwk, publicJwk } = await newKeyPair();
      const issuer = baseOf(o.issuer);
      writeSecretJson(g.credentials, { client_id: o.clientId, issuer, private_jwk: privateJwk });
      writeFileSync(o.config, deploymentConfig({ clientId: o.clientId, issuer, publicJwk }), { mode: 0o644 });
      if (g.json) printJson(io, { config: o.config, credentials: g.credentials, client_id: o.clientId, issuer, kid: publicJwk.kid });
      else io.out(nextSteps(o.config, g.credentials, o.clientId, issuer));
      done(EXIT.ok);
    });
}

function nextSteps(config: string, credentials: string, clientId: string, issuer: string): string {
  return `wrote ${config}        (deployment configuration; admin client "${clientId}")
wrote ${credentials}   (its private key, mode 0600 — keep it out of version control)

Next:
  DEPUTY_CONFIG=${config} npm start        # Deputy on ${issuer}
  ./bin/deputy.mjs token                    # an admin token (deputy:admin)
  ./bin/deputy.mjs agents list              # the admin API, authenticated with ${credentials}
  edit ${config}: trustedIssuers (Okta, Entra ID, OIDC templates inside), agents
Or try everything locally first: npm run dev
`;
}
