// websocket, Node: echo with the ws package from npm (bufferutil beside it
// masks and unmasks natively). ws hands each message over whole, and its
// echo goes back as one frame.
//   node node.js PORT
// On /deflate the same echo with permessage-deflate, at the settings rill's
// examples/ws_echo.lua uses there: level 1, memLevel 8, windowBits 15, the
// server's context kept, every message compressed (threshold 0; ws's
// default is 1024 bytes), the client's offer (client_no_context_takeover)
// accepted.
const http = require('http');
const { WebSocketServer } = require('ws');

const plain = new WebSocketServer({
  noServer: true,
  maxPayload: 1024 * 1024 * 1024, // as rill's ws_echo.lua
  perMessageDeflate: false,       // ws's default for servers; said here
});
const deflate = new WebSocketServer({
  noServer: true,
  maxPayload: 1024 * 1024 * 1024,
  perMessageDeflate: {
    zlibDeflateOptions: { level: 1, memLevel: 8, windowBits: 15 },
    zlibInflateOptions: { windowBits: 15 },
    serverNoContextTakeover: false,
    threshold: 0,
  },
});

for (const wss of [plain, deflate]) {
  wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
}

const server = http.createServer((req, res) => {
  res.writeHead(426);
  res.end('WebSocket only\n');
});
server.on('upgrade', (req, socket, head) => {
  const wss = req.url === '/deflate' ? deflate : plain;
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
});
server.listen(Number(process.argv[2]), '127.0.0.1');
