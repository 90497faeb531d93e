// hapi: the port is given when the server is created.
'use strict';
const Hapi = require('@hapi/hapi');

const init = async () => {
  const server = Hapi.server({ port: 3000 });
  server.route({ method: 'GET', path: '/', handler: () => ({ app: 'hapi', pid: process.pid }) });
  await server.start();
  console.log('hapi running on %s', server.info.uri);
};

process.on('unhandledRejection', (err) => {
  console.log(err);
  process.exit(1);
});
init();
