// A socket.io client with the default transports (long polling, then the
// upgrade to websocket) that keeps cookies (withCredentials: in Node the
// client has a cookie jar), as a browser does: connects to $1, emits
// 'echo' over polling and again after the upgrade, and prints both
// acknowledgements as JSON.
'use strict';
const { io } = require('socket.io-client');

const socket = io(process.argv[2], { withCredentials: true, reconnection: false, timeout: 10000 });
const fail = (what) => (err) => {
  console.error(what + ': ' + (err && err.message));
  process.exit(1);
};
socket.on('connect_error', fail('connect_error'));
// The session opens over long polling: the handshake and the connect
// packet are separate HTTP requests that must reach one worker, and so
// must the upgrade that follows.
let opened = '';
socket.io.on('open', () => {
  opened = socket.io.engine.transport.name;
});
socket.on('disconnect', (reason) => {
  if (reason !== 'io client disconnect') fail('disconnect')(new Error(reason));
});
// transport is the one the message was sent over (the ack may come after
// the upgrade).
const echo = (msg) => new Promise((resolve, reject) => {
  const transport = socket.io.engine.transport.name;
  socket.timeout(10000).emit('echo', msg, (err, reply) => (err ? reject(err) : resolve({ transport, ...reply })));
});
socket.on('connect', async () => {
  try {
    const polling = await echo('hello over polling');
    if (socket.io.engine.transport.name !== 'websocket') {
      await new Promise((resolve) => socket.io.engine.once('upgrade', resolve));
    }
    const upgraded = await echo('hello after the upgrade');
    console.log(JSON.stringify({ opened, polling, upgraded }));
    socket.close();
  } catch (err) {
    fail('echo')(err);
  }
});
