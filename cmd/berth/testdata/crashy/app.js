// Test app: /crash throws in its handler (an uncaught exception kills the
// worker), /leak keeps 32 MiB more each call; anything else answers.
const http = require('http');

const kept = [];
const server = http.createServer((req, res) => {
  if (req.url === '/crash') {
    throw new Error('crash requested by ' + req.url);
  }
  if (req.url === '/leak') {
    kept.push(Buffer.alloc(32 << 20, 1));
  }
  res.setHeader('Content-Type', 'application/json');
  res.end(JSON.stringify({ pid: process.pid, kept: kept.length }));
});

server.listen(3000);
