// Passenger's explicit-selection example with Express, plus a metrics
// server that listens first: only the listen('passenger') server is served.
'use strict';
if (typeof(PhusionPassenger) !== 'undefined') {
  PhusionPassenger.configure({ autoInstall: false });
}

const http = require('http');
const express = require('express');

const metrics = http.createServer((req, res) => res.end('metrics of ' + process.pid));
metrics.listen(0, '127.0.0.1');

const app = express();
app.get('/', (req, res) => res.json({ app: 'explicit', pid: process.pid, metricsPort: metrics.address().port }));

if (typeof(PhusionPassenger) !== 'undefined') {
  app.listen('passenger');
} else {
  app.listen(3000);
}
