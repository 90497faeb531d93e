// /slow answers in two parts, the second 300 ms after the first; / answers
// at once. With APP_SIGTERM=log the app has its own SIGTERM handler; with
// APP_SIGTERM=linger that handler also leaves a timer running.
'use strict';
const http = require('node:http');

http.createServer((req, res) => {
  if (req.url === '/slow') {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.write('first part\n');
    setTimeout(() => res.end('second part\n'), 300);
    return;
  }
  res.end('ok\n');
}).listen(3000);

if (process.env.APP_SIGTERM) {
  process.on('SIGTERM', () => {
    console.log('app SIGTERM handler ran');
    if (process.env.APP_SIGTERM === 'linger') {
      setInterval(() => {}, 1000);
    }
  });
}
