// Reports what a spawned and a forked child of this app inherit.
'use strict';
const http = require('node:http');
const { execFile, fork } = require('node:child_process');

if (process.argv[2] === 'forked') {
  process.send(probe());
  process.exit(0);
}

function probe() {
  return {
    env: Object.keys(process.env).filter((k) => /^(LISTEN_|BERTH_READY|NOTIFY_SOCKET)/.test(k)),
    execArgv: process.execArgv,
    berthGlobal: typeof globalThis.berth !== 'undefined',
    passengerGlobal: typeof globalThis.PhusionPassenger !== 'undefined',
  };
}

const childScript = `(${probe.toString()})`;

http.createServer((req, res) => {
  execFile(process.execPath, ['-e', `process.stdout.write(JSON.stringify(${childScript}()))`], (err, stdout) => {
    if (err) { res.statusCode = 500; res.end(String(err)); return; }
    const child = fork(__filename, ['forked']);
    child.once('message', (forked) => {
      res.end(JSON.stringify({ self: probe(), spawned: JSON.parse(stdout), forked }));
    });
  });
}).listen(3000);
