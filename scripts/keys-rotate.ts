/**
 * `npm run keys:rotate`: retire the active token-signing key, add a new active one, and drop
 * retired keys whose tokens have all expired. Reads the same configuration as the server.
 *
 * Exit codes: 0 rotated, 2 invalid configuration or arguments, 1 key material missing/malformed.
 */
import { ConfigError, loadConfig } from '../src/config/load.js';
import type { DeputyConfig } from '../src/config/schema.js';
import { KeyError, rotateSigningKeys } from '../src/keys/keystore.js';

let config: DeputyConfig;
try {
  config = loadConfig();
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`keys:rotate: ${err.message}\n`);
  process.exit(2);
}
const alg = (process.argv.find((a) => a.startsWith('--alg='))?.slice(6) ?? config.keys.signingAlg) as typeof config.keys.signingAlg;
if (!['ES256', 'RS256', 'EdDSA'].includes(alg)) {
  process.stderr.write(`keys:rotate: --alg must be ES256, RS256 or EdDSA\n`);
  process.exit(2);
}
let kid: string;
try {
  kid = await rotateSigningKeys(config.keys.dir, alg, config.tokens.accessTokenTTL);
} catch (err) {
  if (!(err instanceof KeyError)) throw err;
  process.stderr.write(`keys:rotate: ${err.message}\n`);
  process.exit(1);
}
process.stdout.write(`new active signing key: ${kid} (${alg}) in ${config.keys.dir}\nRestart the Deputy instances so they sign with it; the previous key stays published until its tokens expire.\n`);
