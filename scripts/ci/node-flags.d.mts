/** See ./node-flags.mjs: the Node flags of a package.json start script, `--import tsx` left out; throws on any other shape. */
export function nodeFlagsOf(script: string, entry: string): string[];
