// Express 5, listening the usual way.
'use strict';
const express = require('express');

const app = express();
app.get('/', async (req, res) => {
  await Promise.resolve(); // Express 5 awaits async handlers
  res.json({ app: 'express5', pid: process.pid });
});
app.get('/users/:id', (req, res) => res.json({ app: 'express5', pid: process.pid, id: req.params.id }));

app.listen(3000, (err) => {
  if (err) throw err;
  console.log('express5 listening on port 3000');
});
