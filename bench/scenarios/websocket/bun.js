// websocket, Bun: echo with Bun.serve's built-in WebSocket (uWebSockets
// underneath). A message is handed over whole and echoed as one frame.
//   bun bun.js PORT
Bun.serve({
  hostname: '127.0.0.1',
  port: Number(process.argv[2]),
  fetch(req, server) {
    if (server.upgrade(req)) return undefined;
    return new Response('WebSocket only\n', {status: 426});
  },
  websocket: {
    maxPayloadLength: 1024 * 1024 * 1024, // as rill's ws_echo.lua
    perMessageDeflate: false,
    idleTimeout: 960, // the longest Bun allows: idle WebSockets are measured
    message(ws, message) {
      ws.send(message);
    },
  },
});
