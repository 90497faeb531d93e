// Test app: reports what it sees of the request, and can be slow on demand.
const http = require('http');

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  const reply = () => {
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify({
      pid: process.pid,
      worker: process.env.BERTH_WORKER || '',
      url: req.url,
      host: req.headers.host,
      xff: req.headers['x-forwarded-for'] || '',
      xfproto: req.headers['x-forwarded-proto'] || '',
      xfhost: req.headers['x-forwarded-host'] || '',
      remoteAddress: req.socket.remoteAddress === undefined ? null : req.socket.remoteAddress,
      listenFds: process.env.LISTEN_FDS || '',
      execArgv: process.execArgv,
      greeting: process.env.GREETING || '',
      fromEnvFile: process.env.FROM_ENV_FILE || '',
    }));
  };
  if (url.pathname === '/crash') {
    console.log('crashing on purpose');
    process.exit(1);
  }
  if (url.pathname === '/trace') {
    // One write of several lines: berth must keep it one record.
    console.error(new Error('boom in handler').stack);
    console.log('after the trace');
  }
  if (url.pathname === '/slow') {
    console.log('slow request started');
    setTimeout(reply, Number(url.searchParams.get('ms') || 2000));
    return;
  }
  reply();
});

server.listen(3000, () => console.log('echo app listening'));
