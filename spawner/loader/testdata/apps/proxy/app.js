// Passenger's http-proxy example, unchanged: a proxy server on 8000 that
// forwards to a second server on $TARGET_PORT (9000 in the original). berth
// serves the proxy (the first server to listen); the target listens on its
// port in whichever worker gets it first.
'use strict';
const http = require('http');
const httpProxy = require('http-proxy');

const targetPort = Number(process.env.TARGET_PORT || 9000);

// Create proxy server
httpProxy.createServer({ target: 'http://127.0.0.1:' + targetPort, headers: { 'x-proxied-by': String(process.pid) } }).listen(8000);

// Create target server
http.createServer(function (req, res) {
  res.writeHead(200, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify({ app: 'proxy-target', pid: process.pid, proxiedBy: req.headers['x-proxied-by'] || null }));
}).listen(targetPort);
