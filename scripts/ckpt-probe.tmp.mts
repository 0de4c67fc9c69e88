import { PGlite } from '@electric-sql/pglite';
import { readdirSync, statSync, rmSync } from 'node:fs';
const dir = process.argv[2];
if (dir !== 'memory://') rmSync(dir, { recursive: true, force: true });
const db = await PGlite.create(dir);
const s = await db.query(`select name, setting, unit from pg_settings where name in ('max_wal_size','min_wal_size','wal_segment_size','checkpoint_timeout','wal_keep_size','wal_recycle','fsync','full_page_writes')`);
console.log(s.rows);
await db.exec(`create table r (id bigserial primary key, a text, b text unique)`);
const walDir = () => dir === 'memory://' ? 0 : readdirSync(dir + '/pg_wal').filter(f => /^[0-9A-F]{24}$/.test(f)).reduce((n, f) => n + statSync(dir + '/pg_wal/' + f).size, 0);
const pending = async () => Number((await db.query<{p:string}>(`select (pg_current_wal_insert_lsn() - (pg_control_checkpoint()).redo_lsn)::text p`)).rows[0]!.p);
let i = 0;
for (const mb of [4, 8, 16, 32, 64]) {
  for (let round = 0; round < 2; round++) {
    while (await pending() < mb * 1048576) { await db.query(`insert into r (a,b) values ($1,$2)`, ['x'.repeat(600), String(i++)]); }
    const before = walDir(); const p = await pending();
    const c0 = process.cpuUsage(); const t0 = performance.now();
    await db.exec('CHECKPOINT');
    const cpu = process.cpuUsage(c0); const wall = performance.now() - t0;
    console.log(JSON.stringify({ mb, pendingMB: (p/1048576).toFixed(1), cpuMs: ((cpu.user+cpu.system)/1000).toFixed(1), wallMs: wall.toFixed(1), walBefore: before, walAfter: walDir(), after: await pending(), rss: (process.memoryUsage().rss/1048576).toFixed(0) }));
  }
}
await db.close();
