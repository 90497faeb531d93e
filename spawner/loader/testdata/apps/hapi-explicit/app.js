// hapi with berth's explicit selection: the port names the served server
// ('/berth': hapi takes a string port with a slash as a socket path), and a
// second hapi server (metrics) listens on its own port first.
'use strict';
const Hapi = require('@hapi/hapi');

const underBerth = typeof berth !== 'undefined';
if (underBerth) {
  berth.configure({ autoInstall: false });
}

const init = async () => {
  const metrics = Hapi.server({ port: 0, host: '127.0.0.1' });
  metrics.route({ method: 'GET', path: '/', handler: () => 'metrics of ' + process.pid });
  await metrics.start();

  const server = Hapi.server({ port: underBerth ? '/berth' : 3000 });
  server.route({
    method: 'GET',
    path: '/',
    handler: () => ({ app: 'hapi-explicit', pid: process.pid, metricsPort: metrics.info.port }),
  });
  await server.start();
  console.log('hapi running on %s', server.info.uri);
};

process.on('unhandledRejection', (err) => {
  console.log(err);
  process.exit(1);
});
init();
