// workers, Node: GET / -> "Hello, world!" in N processes.
//   node node.js PORT N      (N > 1: the cluster module, a primary and N workers)
const cluster = require('cluster');
const http = require('http');

const port = Number(process.argv[2]);
const n = Number(process.argv[3] || 1);
const body = 'Hello, world!';

if (n > 1 && cluster.isPrimary) {
  for (let i = 0; i < n; i++) cluster.fork();
} else {
  http.createServer((req, res) => {
    res.writeHead(200, {'Content-Type': 'text/plain', 'Content-Length': body.length});
    res.end(body);
  }).listen(port, '127.0.0.1');
}
