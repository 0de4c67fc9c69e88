/**
 * `npx tsx scripts/bench/receipt-writer-micro.ts [--clients 8] [--per 100] [--rounds 3]` — one
 * agent's receipt group writer under a closed loop of `clients` concurrent appenders (the token
 * exchange's c8 bench point is one agent's exchanges): statements per append, and the writer's
 * serial cycle split into the time inside its statements and the time between one statement's
 * return and the next one's send (signing the next group, JS) — the part the seventh round's
 * signing ahead (`ReceiptService` `#presignNext`) takes off the serial path. CPU per append of this
 * process, and of the PostgreSQL backend when `DATABASE_URL` names a server on this machine.
 * On PGlite (memory) by default. Issue 16, seventh round.
 *
 * @module
 */
import { parseArgs } from './options.js';
import { ReceiptService } from '../../src/audit/receipts.js';
import { generateSigningKey } from '../../src/keys/keystore.js';
import { migrate, type Store } from '../../src/store/index.js';
import { backendCpuUs, withMicroStore } from './micro-store.js';

const { values } = parseArgs(import.meta.url, { options: { clients: { type: 'string', default: '8', value: 'positive integer' }, per: { type: 'string', default: '100', value: 'positive integer' }, rounds: { type: 'string', default: '3', value: 'positive integer' } } });
const CLIENTS = Number(values.clients);
const PER = Number(values.per);
const ROUNDS = Number(values.rounds);

/** `base`, counting the receipt appends' statements and timing them (inside, and between two). */
function timed(base: Store) {
  const t = { statements: 0, betweenUs: 0, insideUs: 0, lastEnd: 0n };
  const query: Store['query'] = async (sql, params, options) => {
    if (!sql.includes('INSERT INTO receipts')) return base.query(sql, params, options);
    t.statements += 1;
    const start = process.hrtime.bigint();
    if (t.lastEnd) t.betweenUs += Number(start - t.lastEnd) / 1e3;
    try {
      return await base.query(sql, params, options);
    } finally {
      t.lastEnd = process.hrtime.bigint();
      t.insideUs += Number(t.lastEnd - start) / 1e3;
    }
  };
  const store = new Proxy(base, { get: (target, prop) => (prop === 'query' ? query : Reflect.get(target, prop, target)) });
  return { store, t, reset: () => Object.assign(t, { statements: 0, betweenUs: 0, insideUs: 0, lastEnd: 0n }) };
}

async function main(): Promise<void> {
  await withMicroStore('deputy_wmicro', async (base, backend) => {
    await migrate(base);
    const { store, t, reset } = timed(base);
    const key = await generateSigningKey('ES256');
    for (let r = 0; r < ROUNDS; r++) {
      const service = new ReceiptService({ store, issuer: 'https://deputy.example.com', key });
      const agent = `micro-${r}`;
      const input = (i: number) => ({ agent, chain: [agent], event: 'gateway_call' as const, action: 'invoke', resource: `https://api.example.com/${i}`, decision: 'permit' as const });
      reset();
      const cpu = process.cpuUsage();
      const server = backendCpuUs(backend);
      await Promise.all(Array.from({ length: CLIENTS }, async (_, c) => {
        for (let i = 0; i < PER; i++) await service.append(input(c * PER + i));
      }));
      const n = CLIENTS * PER;
      const used = process.cpuUsage(cpu);
      const pgUs = backend === undefined ? '' : `, ${((backendCpuUs(backend) - server) / n).toFixed(0)} µs backend`;
      console.log(`${base.kind} · round ${r + 1}: ${(t.statements / n).toFixed(2)} statements/append; between statements ${(t.betweenUs / Math.max(1, t.statements - 1)).toFixed(0)} µs, inside one ${(t.insideUs / t.statements).toFixed(0)} µs; ${((used.user + used.system) / n).toFixed(0)} µs CPU/append${pgUs}`);
    }
  });
}

await main();
