// download, Node: GET /download?blocks=N sends N blocks of 64 KiB, waiting
// for 'drain' whenever res.write says the socket is full, under a Content-Length.
//   node node.js PORT
const http = require('http');

const block = Buffer.alloc(65536, 'x');

http.createServer((req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (url.pathname !== '/download') {
    res.writeHead(404, {'Content-Length': 0});
    return res.end();
  }
  let left = Number(url.searchParams.get('blocks')) || 1;
  res.writeHead(200, {'Content-Type': 'application/octet-stream',
                      'Content-Length': left * block.length});
  const pump = () => {
    while (left > 0) {
      left--;
      if (!res.write(block)) return res.once('drain', pump);
    }
    res.end();
  };
  pump();
}).listen(Number(process.argv[2]), '127.0.0.1');
