'use strict';
// The benchmark app: one file, the same under every peer of `make bench`.
//
//   GET /          12-byte body ("hello world\n")
//   GET /4k        4096-byte body
//   GET /cached    the 12-byte body with Cache-Control: public, max-age=60
//   GET /cached/N  the same with max-age=3600, one cacheable URL per N (the
//                  10,000-entry scenario)
//   GET /download  50 MiB streamed in 64 KiB writes (chunked, honours backpressure)
//   anything else  404 (public/ holds the static-file scenario's file: a
//                  front end that serves static files answers it without the app)
//
// BENCH_LISTEN (a port on 127.0.0.1, or a Unix socket path) is set for the
// direct, cluster and nginx peers. Under berth and Passenger it is unset and
// the app calls listen(3000) as any app does; their loaders redirect it.
// BENCH_READY_DIR: once listening, the process writes an empty file named
// for its pid there, so the harness knows which processes are the app.
const http = require('http');
const fs = require('fs');
const path = require('path');

const hello = Buffer.from('hello world\n');
const body4k = Buffer.alloc(4096, 'x');
const chunk = Buffer.alloc(64 * 1024, 'd');
const downloadChunks = 800; // 800 × 64 KiB = 50 MiB

function download(res) {
  let left = downloadChunks;
  res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
  const pump = () => {
    while (left > 0) {
      left--;
      if (!res.write(chunk)) {
        res.once('drain', pump);
        return;
      }
    }
    res.end();
  };
  res.on('close', () => { left = 0; });
  pump();
}

function handle(req, res) {
  switch (req.url) {
    case '/':
      res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': hello.length });
      res.end(hello);
      return;
    case '/4k':
      res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': body4k.length });
      res.end(body4k);
      return;
    case '/cached':
      res.writeHead(200, {
        'Content-Type': 'text/plain',
        'Content-Length': hello.length,
        'Cache-Control': 'public, max-age=60',
      });
      res.end(hello);
      return;
    case '/download':
      download(res);
      return;
    default:
      if (req.url.startsWith('/cached/')) {
        res.writeHead(200, {
          'Content-Type': 'text/plain',
          'Content-Length': hello.length,
          'Cache-Control': 'public, max-age=3600',
        });
        res.end(hello);
        return;
      }
      res.writeHead(404, { 'Content-Type': 'text/plain', 'Content-Length': 10 });
      res.end('not found\n');
  }
}

const server = http.createServer(handle);

let where = [3000];
const listen = process.env.BENCH_LISTEN;
if (listen && /^\d+$/.test(listen)) {
  where = [Number(listen), '127.0.0.1'];
} else if (listen) {
  try { fs.unlinkSync(listen); } catch (e) { /* not there */ }
  where = [listen];
}

server.listen(...where, () => {
  const dir = process.env.BENCH_READY_DIR;
  if (dir) fs.writeFileSync(path.join(dir, String(process.pid)), '');
});
