// A socket.io client over websocket only: connects to $1, emits 'echo' and
// prints the acknowledgement as JSON.
'use strict';
const { io } = require('socket.io-client');

const socket = io(process.argv[2], { transports: ['websocket'], reconnection: false, timeout: 10000 });
socket.on('connect_error', (err) => {
  console.error('connect_error: ' + err.message);
  process.exit(1);
});
socket.on('connect', () => {
  socket.timeout(10000).emit('echo', 'hello over websocket', (err, reply) => {
    if (err) {
      console.error('no ack: ' + err.message);
      process.exit(1);
    }
    console.log(JSON.stringify({ transport: socket.io.engine.transport.name, ...reply }));
    socket.close();
  });
});
