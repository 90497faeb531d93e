// Selects a server explicitly after auto-install already served another.
'use strict';
const http = require('node:http');
http.createServer().listen(3000); // auto-installed
http.createServer().listen('berth'); // too late
