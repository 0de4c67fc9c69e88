/**
 * `npm run keys:rotate [-- --alg=ES256|RS256|EdDSA]`: retire the active token-signing key, add a
 * new active one, and drop retired keys whose tokens have all expired.
 * `npm run keys:rotate -- --receipts [--alg=ES256|EdDSA]`: the same for the receipt-signing key;
 * retired receipt keys stay published for good (receipts are long-lived evidence).
 * Reads the same configuration as the server.
 *
 * Exit codes: 0 rotated, 2 invalid configuration or arguments, 1 key material missing/malformed.
 */
import { cliFail, loadConfigOrExit } from './cli.js';
import { KeyError, rotateReceiptKeys, rotateSigningKeys, ROLLOUT_GRACE_SECONDS, type ReceiptAlg, type SigningAlg } from '../src/keys/keystore.js';

const fail = (code: 1 | 2, message: string): never => cliFail('keys:rotate', code, message);
const config = loadConfigOrExit('keys:rotate');
const receipts = process.argv.includes('--receipts');
const algArg = process.argv.find((a) => a.startsWith('--alg='))?.slice(6);

async function rotate(): Promise<string> {
  if (receipts) {
    const alg = (algArg ?? 'ES256') as ReceiptAlg;
    if (!['ES256', 'EdDSA'].includes(alg)) fail(2, '--alg must be ES256 or EdDSA for receipt keys');
    const kid = await rotateReceiptKeys(config.keys.dir, alg);
    return `new active receipt key: ${kid} (${alg}) in ${config.keys.dir}\nRestart the Deputy instances so they sign receipts with it; every earlier receipt key stays published at /receipts/jwks.\n`;
  }
  const alg = (algArg ?? config.keys.signingAlg) as SigningAlg;
  if (!['ES256', 'RS256', 'EdDSA'].includes(alg)) fail(2, '--alg must be ES256, RS256 or EdDSA');
  const kid = await rotateSigningKeys(config.keys.dir, alg, config.tokens.accessTokenTTL);
  const hours = ROLLOUT_GRACE_SECONDS / 3600;
  return `new active signing key: ${kid} (${alg}) in ${config.keys.dir}\nRestart every Deputy instance within ${hours} hours so they sign with it; the previous key stays published until its tokens expire.\n`;
}

try {
  process.stdout.write(await rotate());
} catch (err) {
  if (!(err instanceof KeyError)) throw err;
  fail(1, err.message);
}
