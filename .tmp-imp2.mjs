const t0 = process.cpuUsage();
const spec = process.argv[2];
await import(spec);
const u = process.cpuUsage(t0);
console.log('no-tsx', spec, Math.round((u.user + u.system) / 1000), 'ms');
