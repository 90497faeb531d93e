// Selects two servers explicitly: an error naming both call sites.
'use strict';
const http = require('node:http');
globalThis.berth.configure({ autoInstall: false });
http.createServer().listen('berth'); // first selection
http.createServer().listen('/passenger'); // second selection
