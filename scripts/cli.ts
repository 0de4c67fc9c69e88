/**
 * What every operator script shares: one way to fail (a `tool: message` line on stderr and an
 * exit code) and configuration loaded exactly as the server loads it (exit 2 when invalid).
 */
import { ConfigError, loadConfig } from '../src/config/load.js';
import type { DeputyConfig } from '../src/config/schema.js';

export function cliFail(tool: string, code: number, message: string): never {
  process.stderr.write(`${tool}: ${message}\n`);
  process.exit(code);
}

export function loadConfigOrExit(tool: string): DeputyConfig {
  try {
    return loadConfig();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return cliFail(tool, 2, err.message);
  }
}
