// Reports the peer address Node gives the request's socket.
'use strict';
require('node:http').createServer((req, res) => {
  res.end(JSON.stringify({
    remoteAddress: req.socket.remoteAddress === undefined ? null : req.socket.remoteAddress,
    remoteFamily: req.socket.remoteFamily === undefined ? null : req.socket.remoteFamily,
  }));
}).listen(3000);
