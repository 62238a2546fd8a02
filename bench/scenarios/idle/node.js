// idle, Node: hello's server with keep-alive connections kept for 2 minutes
// (Node's default is 5 s; rill keeps them 60 s, nginx here 120 s).
//   node node.js PORT
const http = require('http');

const body = 'Hello, world!';
const server = http.createServer((req, res) => {
  res.writeHead(200, {'Content-Type': 'text/plain', 'Content-Length': body.length});
  res.end(body);
});
server.keepAliveTimeout = 120000;
server.headersTimeout = 121000;
server.listen(Number(process.argv[2]), '127.0.0.1');
