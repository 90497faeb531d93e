// An ES module with top-level await before listen().
import http from 'node:http';
import { setTimeout as delay } from 'node:timers/promises';

const greeting = await delay(100, 'hello from esm');
http.createServer((req, res) => res.end(`${greeting} pid ${process.pid}\n`)).listen(3000);
