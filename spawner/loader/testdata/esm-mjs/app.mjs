// An ES module with top-level await before it listens.
import http from 'node:http';
import { setTimeout as delay } from 'node:timers/promises';

const greeting = await delay(10, 'hello from app.mjs');
http.createServer((req, res) => res.end(greeting)).listen(3000);
