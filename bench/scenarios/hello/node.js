// hello, Node: GET / -> "Hello, world!" from the http module.
//   node node.js PORT
const http = require('http');

const body = 'Hello, world!';
http.createServer((req, res) => {
  res.writeHead(200, {'Content-Type': 'text/plain', 'Content-Length': body.length});
  res.end(body);
}).listen(Number(process.argv[2]), '127.0.0.1');
