/**
 * `npx tsx scripts/bench/mcp-fetch-micro.ts [--calls N] [--rounds N]` — what one upstream MCP
 * request costs Deputy's process through each `fetch` the SDK's client transport can be given
 * (issue 16, tenth round): the global WHATWG `fetch` (the SDK's default, what Deputy used) and
 * `UpstreamHttp.fetch` (src/mcp/upstream-http.ts, undici's `request`). Each call is what the
 * SDK does for a `tools/call`: a POST of a JSON string with `redirect: 'manual'` and the
 * transport's abort signal, then the SSE answer read through `TextDecoderStream` and
 * `EventSourceParserStream` to its one event. The server (a bare `node:http` answering one SSE
 * event) runs in a child process; the variants alternate round by round in this process, and
 * the medians of CPU time (`process.cpuUsage`), promises created (a V8 promise hook) and heap
 * allocated (heap used + what each GC freed) per call are printed.
 *
 * @module
 */
import { fork } from 'node:child_process';
import { getEventListeners, setMaxListeners } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from './options.js';
import { GCProfiler, promiseHooks } from 'node:v8';
import { EventSourceParserStream } from 'eventsource-parser/stream';
import { UpstreamHttp } from '../../src/mcp/upstream-http.js';

const ANSWER = `event: message\ndata: ${JSON.stringify({ result: { content: [{ type: 'text', text: 'bench' }] }, jsonrpc: '2.0', id: 1 })}\n\n`;
const MESSAGE = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: { text: 'bench' } } });

function serve(): void {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' }).end(ANSWER));
  });
  server.listen(0, '127.0.0.1', () => process.send!((server.address() as AddressInfo).port));
}

/** One SDK-shaped request through `fetchFn`, its SSE answer read to the end. */
async function call(fetchFn: typeof fetch, url: URL, signal: AbortSignal): Promise<void> {
  const headers = new Headers({ 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-session-id': 's', 'mcp-protocol-version': '2025-06-18', authorization: 'Bearer bench' });
  const res = await fetchFn(url, { method: 'POST', headers, body: MESSAGE, signal, redirect: 'manual' });
  const reader = res.body!.pipeThrough(new TextDecoderStream()).pipeThrough(new EventSourceParserStream()).getReader();
  let events = 0;
  for (let r = await reader.read(); !r.done; r = await reader.read()) events += JSON.parse(r.value.data) ? 1 : 0;
  if (events !== 1) throw new Error(`expected one event, got ${events}`);
}

async function main(): Promise<void> {
  const { values } = parseArgs(import.meta.url, { options: { calls: { type: 'string', default: '1500', value: 'positive integer' }, rounds: { type: 'string', default: '6', value: 'positive integer' } } });
  const child = fork(new URL(import.meta.url).pathname, ['server'], { execArgv: ['--import', 'tsx'] });
  const port = await new Promise<number>((resolve) => child.once('message', (m) => resolve(m as number)));
  const url = new URL(`http://127.0.0.1:${port}/mcp`);
  const http = new UpstreamHttp();
  // One signal for every request, as the SDK's transport has.
  const signal = new AbortController().signal;
  // The global fetch leaves its abort listener on the signal until its request is collected: no warning here, the count is printed.
  setMaxListeners(0, signal);
  const variants: Record<string, typeof fetch> = { 'global fetch': fetch, 'UpstreamHttp.fetch': http.fetch as typeof fetch };
  let promises = 0;
  promiseHooks.onInit(() => void (promises += 1));
  const n = Number(values.calls);
  for (const f of Object.values(variants)) for (let i = 0; i < 500; i += 1) await call(f, url, signal);
  const results = new Map(Object.keys(variants).map((k) => [k, { cpu: [] as number[], promises: [] as number[], heap: [] as number[], listeners: [] as number[] }]));
  for (let round = 0; round < Number(values.rounds); round += 1) {
    for (const [name, f] of Object.entries(variants)) {
      const gc = new GCProfiler();
      gc.start();
      const p0 = promises;
      const h0 = process.memoryUsage().heapUsed;
      const l0 = getEventListeners(signal, 'abort').length;
      const c0 = process.cpuUsage();
      for (let i = 0; i < n; i += 1) await call(f, url, signal);
      const cpu = process.cpuUsage(c0);
      results.get(name)!.listeners.push(getEventListeners(signal, 'abort').length - l0);
      const freed = (gc.stop()?.statistics ?? []).reduce((s, g) => s + g.beforeGC.heapStatistics.usedHeapSize - g.afterGC.heapStatistics.usedHeapSize, 0);
      const r = results.get(name)!;
      r.cpu.push((cpu.user + cpu.system) / n);
      r.promises.push((promises - p0) / n);
      r.heap.push((process.memoryUsage().heapUsed - h0 + freed) / n / 1024);
    }
  }
  const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
  process.stdout.write('| fetch | CPU µs / call (median) | promises / call | heap KiB / call | abort listeners left on the signal per round (median) |\n| --- | --- | --- | --- | --- |\n');
  for (const [name, r] of results) process.stdout.write(`| ${name} | ${median(r.cpu).toFixed(0)} | ${median(r.promises).toFixed(1)} | ${median(r.heap).toFixed(1)} | ${median(r.listeners)} |\n`);
  await http.close();
  child.kill();
}

if (process.argv[2] === 'server') serve();
else await main();
