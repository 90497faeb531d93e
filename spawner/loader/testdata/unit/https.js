// An https (or http2 secure, $KIND=http2) server: berth talks plain HTTP
// to it over the worker socket.
'use strict';
const fs = require('node:fs');
const tls = { key: fs.readFileSync(process.env.TLS_KEY), cert: fs.readFileSync(process.env.TLS_CERT) };
const handler = (req, res) => res.end(JSON.stringify({ kind: process.env.KIND, encrypted: Boolean(req.socket.encrypted) }));
const server = process.env.KIND === 'http2'
  ? require('node:http2').createSecureServer({ ...tls, allowHTTP1: true }, handler)
  : require('node:https').createServer(tls, handler);
server.listen(443);
