// The first server is served; later ones listen as asked: one on a free
// port, one on a port already taken (as by a sibling worker) without an
// 'error' handler, one on the taken port with its own 'error' handler.
'use strict';
const http = require('node:http');
const net = require('node:net');

const state = { second: 0, handledError: '' };

http.createServer((req, res) => res.end(JSON.stringify(state))).listen(3000);

const second = http.createServer((req, res) => res.end('second'));
second.listen(0, '127.0.0.1', () => { state.second = second.address().port; });

const takenPort = Number(process.env.TAKEN_PORT);
net.createServer().listen(takenPort, '127.0.0.1');

const handled = net.createServer();
handled.on('error', (err) => { state.handledError = err.code; });
handled.listen({ port: takenPort, host: '127.0.0.1' });
