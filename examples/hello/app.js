// A plain Node.js app: it knows nothing about berth and listens on port 3000.
// Under berth, that listen() lands on the worker's private socket instead.
const http = require('http');

const server = http.createServer((req, res) => {
  res.setHeader('Content-Type', 'text/plain');
  res.end(`hello from pid ${process.pid} (${req.method} ${req.url})\n`);
});

server.listen(3000, () => {
  console.log(`hello listening on port 3000, pid ${process.pid}`);
});
