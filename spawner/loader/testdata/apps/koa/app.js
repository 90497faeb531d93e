// Koa, listening the usual way.
'use strict';
const Koa = require('koa');

const app = new Koa();
app.use(async (ctx) => {
  ctx.body = { app: 'koa', pid: process.pid };
});
app.listen(3000, () => console.log('koa listening on port 3000'));
