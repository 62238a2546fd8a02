// websocket, Node: echo with the ws package from npm (bufferutil beside it
// masks and unmasks natively). ws hands each message over whole, and its
// echo goes back as one frame.
//   node node.js PORT
const { WebSocketServer } = require('ws');

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: Number(process.argv[2]),
  maxPayload: 1024 * 1024 * 1024, // as rill's ws_echo.lua
  perMessageDeflate: false,       // ws's default for servers; said here
});

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
