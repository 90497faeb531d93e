'use strict';
// The "cluster" peer: Node's cluster module with BENCH_WORKERS workers
// (default 2) running app/app.js on BENCH_LISTEN, no proxy. Node's default
// scheduling on Linux (round-robin: the primary accepts and hands out
// connections) is kept.
const cluster = require('cluster');
const path = require('path');

if (cluster.isPrimary) {
  const n = Number(process.env.BENCH_WORKERS || 2);
  for (let i = 0; i < n; i++) cluster.fork();
  process.on('SIGTERM', () => {
    for (const id in cluster.workers) cluster.workers[id].kill('SIGTERM');
    process.exit(0);
  });
} else {
  require(path.join(__dirname, 'app', 'app.js'));
}
