// Test app for berth's response cache: one route per caching rule. Every
// request the app answers is logged to $COUNT_FILE (one line: the path),
// so a test can count what reached the app across workers. A test kills
// its workers with /pid's answers.
const http = require('http');
const fs = require('fs');
const crypto = require('crypto');

function cookie(req, name) {
  for (const part of (req.headers.cookie || '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return '';
}

const routes = {
  // Shared by everyone for a minute.
  '/public': (req, res) => { res.setHeader('Cache-Control', 'public, max-age=60'); return 'public page'; },
  // Personal: must never be stored.
  '/private': (req, res) => { res.setHeader('Cache-Control', 'private, max-age=60'); return 'private for ' + cookie(req, 'client'); },
  // Says public, but sets a session cookie: must never be stored.
  '/cookie': (req, res) => {
    const sid = crypto.randomBytes(8).toString('hex');
    res.setHeader('Cache-Control', 'public, max-age=60');
    res.setHeader('Set-Cookie', 'sid=' + sid + '; HttpOnly');
    return 'session ' + sid;
  },
  // Varies by a request field.
  '/vary': (req, res) => {
    res.setHeader('Cache-Control', 'max-age=60');
    res.setHeader('Vary', 'X-Client');
    return 'vary for ' + (req.headers['x-client'] || '');
  },
  // Personal by Authorization, without permission to share.
  '/auth': (req, res) => { res.setHeader('Cache-Control', 'max-age=60'); return 'auth for ' + (req.headers.authorization || ''); },
  // Personal by the cookie berth is told to vary on (--cache-vary-cookie user).
  '/user': (req, res) => { res.setHeader('Cache-Control', 'max-age=60'); return 'user ' + cookie(req, 'user'); },
  // Slow and shared: concurrent misses overlap.
  '/slow': (req, res) => new Promise(r => setTimeout(() => { res.setHeader('Cache-Control', 'public, max-age=60'); r('slow page'); }, 500)),
  // Slow, public, with a cookie: every request must reach the app.
  '/slow-cookie': (req, res) => new Promise(r => setTimeout(() => {
    const sid = crypto.randomBytes(8).toString('hex');
    res.setHeader('Cache-Control', 'public, max-age=60');
    res.setHeader('Set-Cookie', 'sid=' + sid);
    r('session ' + sid);
  }, 500)),
  // Fresh for a second, then usable stale for 5 s more if the app fails
  // (s-maxage: no stale use beyond what stale-if-error allows).
  '/sie': (req, res) => { res.setHeader('Cache-Control', 's-maxage=1, stale-if-error=5'); return 'sie page ' + Date.now(); },
  '/pid': (req, res) => String(process.pid),
};

// A worker started while $DOWN_FILE exists fails at once: the app is down.
if (process.env.DOWN_FILE && fs.existsSync(process.env.DOWN_FILE)) {
  throw new Error('the app is down (' + process.env.DOWN_FILE + ' exists)');
}

const server = http.createServer(async (req, res) => {
  const path = new URL(req.url, 'http://x').pathname;
  if (process.env.COUNT_FILE) fs.appendFileSync(process.env.COUNT_FILE, path + '\n');
  const route = routes[path];
  if (!route) { res.statusCode = 404; res.end('not found'); return; }
  const body = await route(req, res);
  res.setHeader('Content-Type', 'text/plain');
  res.end(body);
});

server.listen(3000, () => console.log('cache test app listening'));
