// Test app for the mixed-traffic test: uploads hashed, downloads of any
// size with backpressure, chunked and event-stream answers, slow answers,
// an answer cut off mid-body, and a cacheable one.
const http = require('http');
const crypto = require('crypto');

http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  switch (url.pathname) {
    case '/echo': {
      // The body's length and SHA-256, once it has all arrived.
      const hash = crypto.createHash('sha256');
      let n = 0;
      req.on('data', (d) => { hash.update(d); n += d.length; });
      req.on('end', () => res.end(n + ' ' + hash.digest('hex')));
      return;
    }
    case '/big': {
      const n = Number(url.searchParams.get('n'));
      const chunk = Buffer.alloc(16384, 'x');
      let left = n;
      res.setHeader('Content-Length', n);
      const pump = () => {
        while (left > 0) {
          const k = Math.min(left, chunk.length);
          left -= k;
          if (!res.write(chunk.subarray(0, k))) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
      return;
    }
    case '/chunked':
      res.write('a'.repeat(1000));
      setImmediate(() => { res.write('b'.repeat(3000)); res.end('c'); });
      return;
    case '/events': {
      res.setHeader('Content-Type', 'text/event-stream');
      let i = 0;
      const timer = setInterval(() => {
        res.write('data: ' + i + '\n\n');
        if (++i === 5) { clearInterval(timer); res.end(); }
      }, 2);
      return;
    }
    case '/slow':
      setTimeout(() => res.end('slow'), Number(url.searchParams.get('ms')));
      return;
    case '/cut':
      // Promises 100 bytes, sends 7, and drops the connection.
      res.writeHead(200, { 'Content-Length': 100 });
      res.write('partial');
      setImmediate(() => req.socket.destroy());
      return;
    case '/cached':
      res.setHeader('Cache-Control', 'public, max-age=1');
      res.end('cached ' + url.search);
      return;
  }
  res.end('hello world\n');
}).listen(process.env.PORT || 3000);
