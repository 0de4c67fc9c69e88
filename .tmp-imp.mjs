const { register } = await import('tsx/esm/api'); register();
const t0 = process.cpuUsage();
const spec = process.argv[2];
await import(spec.startsWith('.') ? new URL(spec, import.meta.url).href : spec);
const u = process.cpuUsage(t0);
console.log(spec, Math.round((u.user + u.system) / 1000), 'ms');
