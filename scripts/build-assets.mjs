// `npm run build`, second step: copies what the compiled code reads at run time next to it —
// the SQL migrations (src/store/migrations → dist/store/migrations). config/ stays where it is:
// dist/config/load.js resolves config/deputy.yaml from the package root, as src/ does.
import { cpSync, rmSync } from 'node:fs';

rmSync(new URL('../dist/store/migrations', import.meta.url), { recursive: true, force: true });
cpSync(new URL('../src/store/migrations', import.meta.url), new URL('../dist/store/migrations', import.meta.url), { recursive: true });
