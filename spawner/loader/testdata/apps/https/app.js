// An https server (key and certificate from $TLS_KEY, $TLS_CERT). berth
// serves it in plain HTTP over the worker socket.
'use strict';
const fs = require('fs');
const https = require('https');

const options = { key: fs.readFileSync(process.env.TLS_KEY), cert: fs.readFileSync(process.env.TLS_CERT) };
https.createServer(options, (req, res) => {
  res.setHeader('Content-Type', 'application/json');
  res.end(JSON.stringify({ app: 'https', pid: process.pid }));
}).listen(8443, () => console.log('https listening on port 8443'));
