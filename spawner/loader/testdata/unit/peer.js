// Reports the peer address Node gives the request's socket, for requests
// and for Upgrade requests (answered on the raw socket).
'use strict';
const peer = (req) =>
  JSON.stringify({
    remoteAddress: req.socket.remoteAddress === undefined ? null : req.socket.remoteAddress,
    remoteFamily: req.socket.remoteFamily === undefined ? null : req.socket.remoteFamily,
  });
const server = require('node:http').createServer((req, res) => {
  res.end(peer(req));
});
server.on('upgrade', (req, socket) => {
  const body = peer(req);
  socket.end(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
});
server.listen(3000);
