// Test app: /block blocks the event loop for 30 s (no heartbeat then);
// /oob asks for out-of-band work, which prints a line when it runs.
const http = require('http');

if (globalThis.berth) {
  globalThis.berth.on('oob', () => console.log('out-of-band work done'));
}
const server = http.createServer((req, res) => {
  if (req.url === '/block') {
    console.log('blocking the event loop');
    const end = Date.now() + 30000;
    while (Date.now() < end) {}
  }
  if (req.url === '/oob') {
    res.setHeader('X-Berth-OOB-Work', 'true');
  }
  res.end(JSON.stringify({ pid: process.pid }));
});
server.listen(3000);
