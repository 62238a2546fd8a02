// postgres bench, Node with pg (node-postgres, a pg.Pool): GET
// /run?q=add|lookup&n=N&c=C runs N parameterized queries over C concurrent
// clients, then answers "ok N". The harness measures this process's CPU.
//   PG_PORT=5432 node node.js PORT [named]
// With "named", each query is a named prepared statement ({name, text,
// values}: pg parses it once per connection), as rill.pg does by itself.
const http = require('http');
const { Pool } = require('pg');

const pool = new Pool({ host: '127.0.0.1', port: Number(process.env.PG_PORT),
  user: 'postgres', database: 'postgres', max: 64 });
const NAMED = process.argv[3] === 'named';
const QUERIES = {
  add: ['SELECT $1::int + 1 AS v', (i) => i],
  lookup: ['SELECT id, name FROM items WHERE id = $1', (i) => (i % 1000) + 1],
};

async function worker(sql, arg, from, to) {
  const client = await pool.connect();
  try {
    for (let i = from; i <= to; i++) {
      const r = NAMED ? await client.query({ name: sql, text: sql, values: [arg(i)] })
        : await client.query(sql, [arg(i)]);
      if (!r.rows[0]) throw new Error('no row');
    }
  } finally {
    client.release();
  }
}

http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  const q = QUERIES[url.searchParams.get('q') || 'add'];
  const n = Number(url.searchParams.get('n')) || 1000;
  const c = Number(url.searchParams.get('c')) || 16;
  const per = Math.ceil(n / c);
  try {
    const tasks = [];
    for (let k = 0; k < c; k++) {
      tasks.push(worker(q[0], q[1], k * per + 1, Math.min(n, (k + 1) * per)));
    }
    await Promise.all(tasks);
    res.end(`ok ${n}`);
  } catch (e) {
    res.writeHead(500);
    res.end(String(e));
  }
}).listen(Number(process.argv[2]), '127.0.0.1');
