/**
 * `npx tsx scripts/bench/heap-summary.ts FILE.heapprofile… [--top N] [--calls N]` — where a server
 * process allocated (`BENCH_HEAP_PROF=dir`, counters.ts): the sampled bytes of a V8 sampling heap
 * profile (Chrome DevTools Protocol `HeapProfiler.SamplingHeapProfile`: a tree of call frames with
 * `selfSize` in bytes), grouped three ways — by the origin of the allocating function (as
 * profile-summary.ts groups CPU), by function, and by the **nearest Deputy frame** on the
 * allocation's stack (the `src/` function whose call led to it, so a library's allocations are
 * booked to the Deputy call site that asked for them). `--calls N` also divides by N (the
 * requests of the window: bytes per call). Sampled bytes estimate allocation (V8 scales each
 * sample by its interval); profiles taken with garbage kept (`includeObjectsCollectedBy…GC`)
 * count what was collected too.
 *
 * @module
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from './options.js';
import { group } from './profile-summary.js';

interface HeapNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: HeapNode[];
}

/** `name file:line`, node_modules and src prefixes trimmed. */
function label(frame: HeapNode['callFrame']): string {
  return `${frame.functionName || '(anonymous)'} ${frame.url.replace(/^.*node_modules\//, '').replace(/^.*\/src\//, 'src/')}:${frame.lineNumber + 1}`;
}

function isDeputy(frame: HeapNode['callFrame']): boolean {
  return /\/src\//.test(frame.url) && !frame.url.includes('node_modules');
}

/** Bytes by origin, by function, and by the nearest Deputy frame (or `(no Deputy frame)`), largest first. */
export function summarizeHeap(head: HeapNode): { total: number; groups: Array<[string, number]>; functions: Array<[string, number]>; deputy: Array<[string, number]> } {
  const groups = new Map<string, number>();
  const functions = new Map<string, number>();
  const deputy = new Map<string, number>();
  let total = 0;
  const add = (m: Map<string, number>, k: string, v: number) => m.set(k, (m.get(k) ?? 0) + v);
  const walk = (node: HeapNode, nearest: string) => {
    const here = isDeputy(node.callFrame) ? label(node.callFrame) : nearest;
    if (node.selfSize > 0) {
      total += node.selfSize;
      add(groups, group(node.callFrame), node.selfSize);
      add(functions, label(node.callFrame), node.selfSize);
      add(deputy, here, node.selfSize);
    }
    for (const child of node.children) walk(child, here);
  };
  walk(head, '(no Deputy frame)');
  const sorted = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]);
  return { total, groups: sorted(groups), functions: sorted(functions), deputy: sorted(deputy) };
}

if (process.argv[1]?.endsWith('heap-summary.ts')) {
  const { values, positionals } = parseArgs(import.meta.url, { allowPositionals: true, options: { top: { type: 'string', default: '25', value: 'positive integer' }, calls: { type: 'string', value: 'positive integer' } } });
  const calls = values.calls ? Number(values.calls) : undefined;
  const size = (bytes: number) => (calls ? `${(bytes / calls / 1024).toFixed(2)} KiB/call` : `${(bytes / 2 ** 20).toFixed(2)} MiB`);
  for (const file of positionals) {
    const s = summarizeHeap((JSON.parse(readFileSync(file, 'utf8')) as { head: HeapNode }).head);
    process.stdout.write(`${file}: ${size(s.total)} sampled\n`);
    const table = (title: string, rows: Array<[string, number]>, n: number) => {
      process.stdout.write(`\n| ${title} | bytes | % |\n| --- | --- | --- |\n`);
      for (const [k, v] of rows.slice(0, n)) process.stdout.write(`| ${k} | ${size(v)} | ${((v / s.total) * 100).toFixed(1)} |\n`);
    };
    table('allocated by origin (self)', s.groups, 20);
    table('allocated under the nearest Deputy frame', s.deputy, Number(values.top));
    table('allocating function (self)', s.functions, Number(values.top));
    process.stdout.write('\n');
  }
}
