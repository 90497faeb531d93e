'use strict';
module.exports = (req, res) => res.end('hello from bin/www');
