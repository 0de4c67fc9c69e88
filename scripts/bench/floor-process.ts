/**
 * The HTTP floor: a bare Koa app answering a small JSON body with no work, in its own process.
 * Whatever Deputy does costs on top of this.
 */
import Koa from 'koa';
import type { AddressInfo } from 'node:net';

const app = new Koa();
app.use((ctx) => {
  ctx.body = { decision: true };
});
const server = app.listen(0, '127.0.0.1', () => {
  process.stdout.write(`READY http://127.0.0.1:${(server.address() as AddressInfo).port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
