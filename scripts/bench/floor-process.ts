/**
 * The HTTP floor: a bare Koa app answering a small JSON body with no work, in its own process.
 * Whatever Deputy does costs on top of this. A `POST /evaluation` has its body read and parsed as JSON first
 * (what any JSON endpoint must do, and all an AuthZEN request needs before a cached answer), so
 * the PDP's figures can also be read against a floor that receives a request of the same size.
 */
import Koa from 'koa';
import type { AddressInfo } from 'node:net';

const app = new Koa();
app.use(async (ctx) => {
  if (ctx.method === 'POST' && ctx.path === '/evaluation') {
    const chunks: Buffer[] = [];
    for await (const chunk of ctx.req) chunks.push(chunk as Buffer);
    JSON.parse(Buffer.concat(chunks).toString('utf8'));
  }
  ctx.body = { decision: true };
});
const server = app.listen(0, '127.0.0.1', () => {
  process.stdout.write(`READY http://127.0.0.1:${(server.address() as AddressInfo).port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
