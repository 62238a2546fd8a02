// upload, Node: PUT/POST /count answers the body's length, read as it arrives.
//   node node.js PORT
const http = require('http');

http.createServer((req, res) => {
  if (req.url !== '/count' || (req.method !== 'PUT' && req.method !== 'POST')) {
    res.writeHead(404, {'Content-Length': 0});
    return res.end();
  }
  let n = 0;
  req.on('data', (chunk) => { n += chunk.length; });
  req.on('end', () => {
    res.writeHead(200, {'Content-Type': 'text/plain'});
    res.end(n + '\n');
  });
}).listen(Number(process.argv[2]), '127.0.0.1');
