// hello, Bun: GET / -> "Hello, world!" from Bun.serve (uSockets underneath).
//   bun bun.js PORT
Bun.serve({
  hostname: '127.0.0.1',
  port: Number(process.argv[2]),
  fetch() {
    return new Response('Hello, world!', {headers: {'Content-Type': 'text/plain'}});
  },
});
