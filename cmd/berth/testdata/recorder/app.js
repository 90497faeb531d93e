// Test app for the hostile-input suite: logs every request it sees (one
// SAW line of JSON) and answers with the same JSON; /big sends 8 MiB.
const http = require('http');
const big = Buffer.alloc(8 << 20, 'b');
http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (d) => chunks.push(d));
  req.on('end', () => {
    const seen = {m: req.method, u: req.url, h: req.headers, b: Buffer.concat(chunks).toString('latin1')};
    console.log('SAW ' + JSON.stringify(seen));
    if (req.url === '/big') {
      res.setHeader('Content-Length', big.length);
      res.end(big);
      return;
    }
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify(seen));
  });
}).listen(3000, () => console.log('recorder listening'));
