'use strict';
const express = require('express');
const router = express.Router();

router.get('/', (req, res) => res.json({ app: 'www', pid: process.pid }));

module.exports = router;
