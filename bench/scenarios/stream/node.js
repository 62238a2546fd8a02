// stream, Node: GET /stream?n=N sends N numbered lines, one res.write each
// (chunked), waiting for 'drain' whenever res.write says the socket is full.
//   node node.js PORT
const http = require('http');

http.createServer((req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (url.pathname !== '/stream') {
    res.writeHead(404, {'Content-Length': 0});
    return res.end();
  }
  const n = Number(url.searchParams.get('n')) || 10;
  res.writeHead(200, {'Content-Type': 'text/plain'});
  let i = 1;
  const pump = () => {
    while (i <= n) {
      const ok = res.write(`line ${i}\n`);
      i++;
      if (!ok) return res.once('drain', pump);
    }
    res.end();
  };
  pump();
}).listen(Number(process.argv[2]), '127.0.0.1');
