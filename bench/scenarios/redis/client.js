// The Node side of the redis scenario, with ioredis: the same load as
// client.lua.   node client.js PORT MODE SECONDS
const Redis = require("ioredis");

const port = Number(process.argv[2]), mode = process.argv[3];
const seconds = Number(process.argv[4] || 3);
const VALUE = "v".repeat(16);
const KEYS = [];
for (let i = 1; i <= 1000; i++) KEYS.push("key:" + i);

async function single(r, stop) {
  let n = 0, i = 0;
  while (Date.now() < stop) {
    i = (i % 1000) + 1;
    await r.set(KEYS[i - 1], VALUE);
    if ((await r.get(KEYS[i - 1])) !== VALUE) throw new Error("wrong value");
    n += 2;
  }
  return n;
}

async function pipeline(r, stop) {
  let n = 0, i = 0;
  while (Date.now() < stop) {
    const p = r.pipeline();
    for (let k = 0; k < 50; k++) {
      i = (i % 1000) + 1;
      p.set(KEYS[i - 1], VALUE);
      p.get(KEYS[i - 1]);
    }
    const res = await p.exec();
    if (res[99][1] !== VALUE) throw new Error("wrong value");
    n += 100;
  }
  return n;
}

async function run(fn, conns, ms) {
  const clients = [];
  for (let c = 0; c < conns; c++) {
    const r = new Redis({ port, host: "127.0.0.1", lazyConnect: true });
    await r.connect();
    clients.push(r);
  }
  const cpu0 = process.cpuUsage(), t0 = Date.now();
  const stop = t0 + ms;
  const counts = await Promise.all(clients.map((r) => fn(r, stop)));
  const cpu = process.cpuUsage(cpu0), wall = (Date.now() - t0) / 1000;
  for (const r of clients) r.disconnect();
  return [counts.reduce((a, b) => a + b, 0), wall, (cpu.user + cpu.system) / 1e6];
}

(async () => {
  const [fn, conns] = mode === "pipeline" ? [pipeline, 4] : [single, 50];
  await run(fn, conns, 500); // warm-up: JIT, buffers
  const [n, wall, cpu] = await run(fn, conns, seconds * 1000);
  console.log(`RESULT ops=${n} wall=${wall.toFixed(3)} cpu=${cpu.toFixed(3)}`);
})().catch((e) => { console.error(e); process.exit(1); });
