// Listens in the call form named by $FORM and reports what it saw.
'use strict';
const http = require('node:http');

let callbackFired = false;
let listeningFired = false;
const server = http.createServer((req, res) => {
  const addr = server.address();
  res.end(JSON.stringify({
    callback: callbackFired,
    listening: listeningFired,
    addressType: typeof addr,
    mainModule: require.main === module,
  }));
});
server.on('listening', () => { listeningFired = true; });
const cb = () => {
  callbackFired = true;
  // What express-generator's bin/www does with the address.
  const addr = server.address();
  const bind = typeof addr === 'string' ? 'pipe ' + addr : 'port ' + addr.port;
  console.log('Listening on ' + bind);
};

switch (process.env.FORM) {
  case 'port': server.listen(3000, cb); break;
  case 'port-host-backlog-cb': server.listen(3000, '127.0.0.1', 511, cb); break;
  case 'options': server.listen({ port: 3000, host: 'localhost' }, cb); break;
  case 'path': server.listen(process.env.APP_PATH, cb); break;
  case 'none': server.listen(cb); break;
  case 'no-callback':
    server.listen(3000);
    server.on('listening', cb);
    break;
  default: throw new Error('unknown FORM ' + process.env.FORM);
}
