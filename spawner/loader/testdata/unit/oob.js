// The readiness channel's app side. OOB_LISTENERS names the out-of-band
// work listeners to register (comma-separated): callback (calls done after
// 200 ms), promise (an async listener, 300 ms), sync, throws, once.
// /events lists what the listeners did; /block blocks the event loop for
// 3 s and answers when it ran; /close answers, then closes the server.
'use strict';
const http = require('node:http');

const events = [];
const listeners = (process.env.OOB_LISTENERS || '').split(',');
if (listeners.includes('callback')) {
  berth.on('oob', (done) => {
    events.push('callback start');
    setTimeout(() => {
      events.push('callback done');
      done();
    }, 200);
  });
}
if (listeners.includes('promise')) {
  PhusionPassenger.on('oob', async () => {
    events.push('promise start');
    await new Promise((resolve) => setTimeout(resolve, 300));
    events.push('promise done');
  });
}
if (listeners.includes('sync')) {
  berth.on('oob', () => events.push('sync'));
}
if (listeners.includes('throws')) {
  berth.on('oob', () => {
    throw new Error('oob listener failed on purpose');
  });
}
if (listeners.includes('once')) {
  berth.once('oob', () => events.push('once'));
}

const server = http.createServer((req, res) => {
  switch (req.url) {
    case '/events':
      res.end(JSON.stringify(events));
      return;
    case '/block': {
      const start = Date.now();
      while (Date.now() - start < 3000) {
        // A request that keeps the event loop busy.
      }
      res.end(JSON.stringify({ start, end: Date.now() }));
      return;
    }
    case '/close':
      res.setHeader('Connection', 'close');
      res.end('closing', () => server.close());
      return;
  }
  res.end('ok');
});
server.listen(3000);
