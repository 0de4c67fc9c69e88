/**
 * `npx tsx scripts/bench/profile-summary.ts FILE.cpuprofile [--top N] [--last-ms N]` — where a server process
 * (`BENCH_CPU_PROF=dir npm run bench …`) spent its CPU: self time grouped by where the code comes
 * from (Deputy's `src/` folders, each package in node_modules, Node internals, WebAssembly,
 * garbage collection, idle), then the top functions by self time. The V8 `.cpuprofile` format
 * (Chrome DevTools Protocol `Profiler.Profile`): nodes with `callFrame` and `hitCount`, samples
 * with `timeDeltas` in microseconds. `--last-ms N` counts only the profile's last N ms (e.g. the
 * last load phase of gateway-probe.ts, without the start-up).
 *
 * @module
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from './options.js';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** The group a frame's self time is booked to. */
export function group(frame: ProfileNode['callFrame']): string {
  const { url, functionName } = frame;
  if (functionName === '(idle)' || functionName === '(program)' || functionName === '(garbage collector)') return functionName;
  if (url.startsWith('wasm://')) return 'WebAssembly (PGlite, Cedar)';
  const nm = url.match(/node_modules\/((?:@[^/]+\/)?[^/]+)/);
  if (nm) return nm[1]!;
  const src = url.match(/\/src\/([^/]+)/);
  if (src) return `src/${src[1]}`;
  if (url.startsWith('node:') || url === '') return functionName === '' ? '(native)' : 'Node internals / native';
  return url.replace(/^.*\//, '');
}

/** Self milliseconds per group and per function, largest first. */
export function summarize(profile: Profile, lastMs = Infinity): { totalMs: number; groups: Array<[string, number]>; functions: Array<[string, number]> } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const groups = new Map<string, number>();
  const functions = new Map<string, number>();
  let total = 0;
  // Sample times (µs from the first); with `lastMs`, only the samples of the profile's last `lastMs` ms count.
  const at: number[] = [];
  profile.timeDeltas.reduce((t, d, i) => (at[i] = t + d), 0);
  const from = (at.at(-1) ?? 0) - lastMs * 1000;
  profile.samples.forEach((id, i) => {
    const node = byId.get(id);
    const us = profile.timeDeltas[i] ?? 0;
    if (!node || at[i]! < from) return;
    total += us;
    const g = group(node.callFrame);
    groups.set(g, (groups.get(g) ?? 0) + us);
    const f = `${node.callFrame.functionName || '(anonymous)'} ${node.callFrame.url.replace(/^.*node_modules\//, '').replace(/^.*\/src\//, 'src/')}:${node.callFrame.lineNumber + 1}`;
    functions.set(f, (functions.get(f) ?? 0) + us);
  });
  const ms = (m: Map<string, number>) => [...m].map(([k, v]) => [k, Math.round(v / 100) / 10] as [string, number]).sort((a, b) => b[1] - a[1]);
  return { totalMs: Math.round(total / 1000), groups: ms(groups), functions: ms(functions) };
}

if (process.argv[1]?.endsWith('profile-summary.ts')) {
  const { values, positionals } = parseArgs(import.meta.url, { allowPositionals: true, options: { top: { type: 'string', default: '25', value: 'positive integer' }, 'last-ms': { type: 'string', value: 'non-negative number' } } });
  for (const file of positionals) {
    const s = summarize(JSON.parse(readFileSync(file, 'utf8')) as Profile, values['last-ms'] ? Number(values['last-ms']) : Infinity);
    const busy = s.totalMs - (s.groups.find(([g]) => g === '(idle)')?.[1] ?? 0);
    process.stdout.write(`${file}: ${s.totalMs} ms sampled, ${Math.round(busy)} ms busy\n\n| self time by origin | ms | % of busy |\n| --- | --- | --- |\n`);
    for (const [g, v] of s.groups.filter(([g]) => g !== '(idle)').slice(0, 20)) process.stdout.write(`| ${g} | ${v} | ${((v / busy) * 100).toFixed(1)} |\n`);
    process.stdout.write(`\n| function (self time) | ms |\n| --- | --- |\n`);
    for (const [f, v] of s.functions.filter(([f]) => !f.startsWith('(idle)')).slice(0, Number(values.top))) process.stdout.write(`| ${f} | ${v} |\n`);
    process.stdout.write('\n');
  }
}
