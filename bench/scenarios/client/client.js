// The Node side of the client scenario: the same load as client.lua with
// Node's built-in fetch (undici), whose global dispatcher keeps connections
// alive.   node client.js PORT REQUESTS
const port = Number(process.argv[2]), total = Number(process.argv[3]);
const url = `http://127.0.0.1:${port}/`;

async function run(n) {
  let next = 0;
  async function worker() {
    while (next < n) {
      next++;
      const res = await fetch(url);
      if ((await res.text()) !== "Hello, world!") throw new Error("wrong body");
    }
  }
  const cpu0 = process.cpuUsage(), t0 = Date.now();
  await Promise.all(Array.from({ length: 50 }, worker));
  const cpu = process.cpuUsage(cpu0);
  return [(Date.now() - t0) / 1000, (cpu.user + cpu.system) / 1e6];
}

(async () => {
  await run(2000);
  const [wall, cpu] = await run(total);
  console.log(`RESULT ops=${total} wall=${wall.toFixed(3)} cpu=${cpu.toFixed(3)}`);
})();
