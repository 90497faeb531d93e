// Fastify 5: listen({port}) with the default host (localhost), for which
// Fastify opens a server per address localhost resolves to.
'use strict';
const fastify = require('fastify')({ logger: true });

fastify.get('/', async () => ({ app: 'fastify', pid: process.pid }));

fastify.listen({ port: 3000 }).catch((err) => {
  fastify.log.error(err);
  process.exit(1);
});
