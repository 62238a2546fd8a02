// router, Node: GET /users/:id -> {"id":"42","name":"user 42"}, routed by hand.
//   node node.js PORT
const http = require('http');

const route = /^\/users\/([^/?]+)(?:\?|$)/;

http.createServer((req, res) => {
  const m = req.method === 'GET' && route.exec(req.url);
  if (!m) {
    res.writeHead(404, {'Content-Length': 0});
    return res.end();
  }
  const id = decodeURIComponent(m[1]);
  const body = JSON.stringify({id, name: 'user ' + id});
  res.writeHead(200, {'Content-Type': 'application/json',
                      'Content-Length': Buffer.byteLength(body)});
  res.end(body);
}).listen(Number(process.argv[2]), '127.0.0.1');
