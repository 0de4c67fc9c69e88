// The Node flags of a package.json start script (`[exec] node <flags> <entry>`), for the tools that start
// Deputy as the product does without going through npm: scripts/ci/start-check.mjs and the bench
// (scripts/bench/process.ts). One parser for both, so they cannot disagree.
//
// Only the shapes a script can hold without a shell's help are understood: `--name` and
// `--name=value`, and the `--import tsx` pair (or `--import=tsx`) (the source start's loader, which each tool adds
// itself). Anything else — a flag whose value is a separate word (`--env-file .env`, `-r x`), a
// quote, a second entry — throws naming the word: read one word off, the flag would take the next
// word (the entry, or a tool's own flag) as its value, and the start would run with flags other
// than the product's.

/**
 * The flags between `node` and `entry` in `script`, `--import tsx` left out.
 *
 * @param {string} script a package.json script, e.g. `node --max-semi-space-size=64 dist/main.js`
 * @param {string} entry the script's entry file, e.g. `dist/main.js`
 * @returns {string[]}
 * @throws {Error} when the script is not `node <flags> <entry>` in the shapes above
 */
export function nodeFlagsOf(script, entry) {
  // A leading `exec`: the script's shell becomes node, so the SIGTERM npm passes on reaches Deputy.
  const words = script.trim().split(/\s+/);
  if (words[0] === 'exec') words.shift();
  if (words[0] !== 'node' || words.at(-1) !== entry) throw new Error(`start script "${script}" is not "node <flags> ${entry}"`);
  const flags = [];
  for (let i = 1; i < words.length - 1; i += 1) {
    const word = words[i];
    if (word === '--import=tsx') continue;
    if (word === '--import' && words[i + 1] === 'tsx') {
      i += 1;
      continue;
    }
    if (!/^--[a-z0-9][a-z0-9-]*(=[^'"`\\$]+)?$/i.test(word) || word === '--import') {
      throw new Error(`start script "${script}": "${word}" is not a self-contained --flag or --flag=value`);
    }
    flags.push(word);
  }
  return flags;
}
