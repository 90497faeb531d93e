// socket.io on an http server: 'echo' is acknowledged with the message and
// this worker's pid.
'use strict';
const http = require('http');
const { Server } = require('socket.io');

const server = http.createServer((req, res) => {
  res.setHeader('Content-Type', 'application/json');
  res.end(JSON.stringify({ app: 'socketio', pid: process.pid }));
});
const io = new Server(server);
io.on('connection', (socket) => {
  socket.on('echo', (msg, ack) => ack({ echo: msg, pid: process.pid }));
});
server.listen(3000, () => console.log('socket.io listening on port 3000'));
