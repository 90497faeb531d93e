// Selects its served server explicitly, in the way named by $SELECT, after
// another server has already listened.
'use strict';
const api = process.env.API === 'passenger' ? globalThis.PhusionPassenger : globalThis.berth;
if (typeof api !== 'undefined') {
  api.configure({ autoInstall: false });
}
const http = require('node:http');

const other = http.createServer((req, res) => res.end('other'));
other.listen(0, '127.0.0.1');

const served = http.createServer((req, res) => {
  res.end(JSON.stringify({ served: true, otherPort: other.address().port }));
});
const forms = {
  name: [process.env.NAME],
  path: [{ path: process.env.NAME }],
  port: [{ port: process.env.NAME }],
};
served.listen(...forms[process.env.FORM], () => console.log('served server listening'));
