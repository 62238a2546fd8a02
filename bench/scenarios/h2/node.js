// h2, Node: hello over HTTP/2 on TLS 1.2 with the tls scenario's suite.
// node node.js PORT CERT KEY
const fs = require("fs");
const http2 = require("http2");
const [port, cert, key] = process.argv.slice(2);
const server = http2.createSecureServer({
  cert: fs.readFileSync(cert),
  key: fs.readFileSync(key),
  maxVersion: "TLSv1.2",
  ciphers: "ECDHE-ECDSA-CHACHA20-POLY1305",
});
server.on("stream", (stream) => {
  stream.respond({ ":status": 200, "content-type": "text/plain" });
  stream.end("Hello, world!");
});
server.listen(Number(port), "127.0.0.1");
