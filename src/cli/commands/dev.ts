/**
 * `deputy dev` (also `npm run dev`): the development environment of src/dev/environment.ts,
 * until Ctrl-C. DEVELOPMENT ONLY.
 *
 * @module
 */
import { Command, Option } from 'commander';
// The lock module alone (node:fs only): the store drivers load with the dev environment, on use.
import { DataDirLocked } from '../../store/lock.js';
import { CliError, EXIT, UsageError } from '../errors.js';
import type { Io } from '../shared.js';

const port = (name: string) => (v: string): number => {
  if (!/^\d{1,5}$/.test(v) || Number(v) > 65535) throw new UsageError(`${name} must be a port number (0 = any free port)`);
  return Number(v);
};

/** `deputy dev`. */
export function devCommand(io: Io, done: (code: number) => void): Command {
  return new Command('dev')
    .description('DEVELOPMENT ONLY: Deputy + a development IdP + a sample agent and connection, with ready-to-paste commands (Ctrl-C stops)')
    .addOption(new Option('--port <port>', "Deputy's port").argParser(port('--port')).default(3000))
    .addOption(new Option('--idp-port <port>', "the development IdP's port").argParser(port('--idp-port')).default(3001))
    .option('--dir <folder>', 'where the dev keys and credentials files go (rewritten at every start)', '.deputy-dev')
    .action(async (o: { port: number; idpPort: number; dir: string }) => {
      // Loaded on use: the server's modules (oidc-provider…) are not needed by the other commands.
      const { startDevEnvironment } = await import('../../dev/environment.js');
      const env = await startDevEnvironment({ port: o.port, idpPort: o.idpPort, dir: o.dir }).catch((err: unknown) => {
        if (err instanceof DataDirLocked) throw new CliError(`${err.message}\nFor deputy dev: stop that one first, or give this one a folder of its own (--dir); nothing was written.`);
        if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
          throw new CliError(`a port is in use (Deputy ${o.port}, IdP ${o.idpPort}): choose others with --port / --idp-port (0 = any free port)`);
        }
        throw err;
      });
      io.out(env.instructions);
      io.out(`\nDeputy dev is ready on ${env.deputy.issuer}\n`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await env.close();
      done(EXIT.ok);
    });
}
