// A .js ES module ("type": "module") with top-level await.
import { createServer } from 'node:http';

const greeting = await Promise.resolve('hello from a type:module app');
createServer((req, res) => res.end(greeting)).listen(3000);
