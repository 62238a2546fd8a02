// A websocket over HTTP/2 (RFC 8441) with Node's http2 client, for
// spec/h2_websocket_spec.lua: node ws_node.js PORT [CA_FILE]. With CA_FILE,
// over TLS to a.test (h2 by ALPN). Waits for the server's
// SETTINGS_ENABLE_CONNECT_PROTOCOL, echoes a message on /echo, closes.
const http2 = require('http2');
const crypto = require('crypto');

function frame(op, payload) { // masked, under 126 bytes
  const mask = crypto.randomBytes(4);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i] ^= mask[i % 4];
  return Buffer.concat([Buffer.from([0x80 | op, 0x80 | body.length]), mask, body]);
}

const fs = require('fs');
const ca = process.argv[3];
const client = ca
  ? http2.connect('https://127.0.0.1:' + process.argv[2],
    {ca: fs.readFileSync(ca), servername: 'a.test'})
  : http2.connect('http://127.0.0.1:' + process.argv[2]);
client.setTimeout(10000, () => { console.log('timeout'); process.exit(1); });
client.on('remoteSettings', (s) => {
  console.log('enableConnectProtocol', s.enableConnectProtocol);
  if (!s.enableConnectProtocol) process.exit(1);
  const req = client.request({':method': 'CONNECT', ':protocol': 'websocket', ':path': '/echo',
    ':scheme': 'http', ':authority': 'localhost', 'sec-websocket-version': '13'});
  req.on('response', (h) => {
    console.log('status', h[':status']);
    req.write(frame(1, 'hello node'));
  });
  let buf = Buffer.alloc(0);
  req.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 2 && buf.length >= 2 + (buf[1] & 127)) {
      const op = buf[0] & 15, n = buf[1] & 127;
      const payload = buf.slice(2, 2 + n);
      buf = buf.slice(2 + n);
      if (op === 1) {
        console.log('text', payload.toString());
        req.write(frame(8, Buffer.from([3, 0xe8])));
      } else if (op === 8) {
        console.log('close', payload.readUInt16BE(0));
        req.end();
      }
    }
  });
  req.on('close', () => {
    console.log('closed', req.rstCode);
    client.close();
  });
});
