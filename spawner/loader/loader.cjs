// berth's Node.js loader. berth runs every Node worker as
//
//   node [NODE_ARGS…] --require <this file> <startup file>
//
// and hands it a listening Unix socket as fd 3 (LISTEN_FDS=1,
// LISTEN_PID=<pid>, the sd_listen_fds protocol). This file makes the app's
// server listen on that socket whatever the app asked for ("reverse port
// binding"), tells berth when it is ready, and drains it on SIGTERM.
//
// Without LISTEN_FDS=1 and LISTEN_PID=<our pid> it does nothing at all.
//
// What it does, in order (see README.md beside this file):
//   - reads and deletes LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES,
//     BERTH_READY_SOCKET and NOTIFY_SOCKET from process.env, and drops its own
//     --require from process.execArgv, so nothing the app spawns or forks
//     inherits them;
//   - defines the globals PhusionPassenger and berth (same object) with
//     configure({autoInstall}) for explicit selection;
//   - wraps net.Server.prototype.listen (http, https, http2, tls, net and every
//     framework built on them): the selected server listens on fd 3, every
//     other server listens as it asked;
//   - after the selected server is listening, connects to BERTH_READY_SOCKET,
//     writes "READY=1\n" and keeps the connection: "WATCHDOG=1\n" every
//     500 ms while the event loop turns, and out-of-band work ('oob'
//     listeners) when berth writes "OOB=1\n", answered by "OOB_DONE=1\n";
//   - on SIGTERM stops accepting, closes idle keep-alive connections, lets
//     in-flight requests finish, then exits.
'use strict';

const net = require('node:net');
const { EventEmitter } = require('node:events');

const PREFIX = 'berth loader: ';

// The names an app passes to listen() to select its served server
// explicitly: Passenger's spellings and berth's own.
const SELECT_NAMES = new Set(['passenger', '/passenger', 'berth', '/berth']);

// How long the loader waits, after the served server has drained, for an app
// that handles SIGTERM itself to exit on its own before it exits for it.
const APP_EXIT_GRACE_MS = 3000;

// How often idle keep-alive connections are closed while draining.
const IDLE_SWEEP_MS = 100;

// How often the loader tells berth, on the readiness connection, that its
// event loop turns.
const WATCHDOG_MS = 500;

// Heartbeats are skipped while this many bytes are still unsent (berth is
// not reading the readiness connection).
const MAX_UNSENT = 4096;

// The longest line the loader buffers from berth; longer ones are dropped.
const MAX_LINE = 1024;

function note(msg) {
  try {
    process.stderr.write(PREFIX + msg + '\n');
  } catch (_) {
    // stderr gone: nothing sensible left to do with a note.
  }
}

// takeEnvironment reads the worker contract from the environment and removes
// it, or returns null when this process is not a berth worker.
function takeEnvironment(env) {
  const fds = env.LISTEN_FDS;
  const pid = env.LISTEN_PID;
  if (!fds || !pid) {
    return null;
  }
  if (pid !== String(process.pid)) {
    // The variables were meant for another process (an ancestor that passed
    // them on); they are not ours to use or remove.
    return null;
  }
  const readySocket = env.BERTH_READY_SOCKET;
  for (const name of ['LISTEN_FDS', 'LISTEN_PID', 'LISTEN_FDNAMES', 'BERTH_READY_SOCKET', 'NOTIFY_SOCKET']) {
    delete env[name];
  }
  if (fds !== '1') {
    note(`LISTEN_FDS=${fds}, expected 1; not installing`);
    return null;
  }
  return { fd: 3, readySocket };
}

// dropOwnRequire removes "--require <this file>" (and its -r / = spellings)
// from process.execArgv, which child_process.fork and cluster pass on.
function dropOwnRequire(execArgv, self) {
  const fs = require('node:fs');
  const path = require('node:path');
  const isSelf = (p) => {
    if (typeof p !== 'string') return false;
    try {
      return fs.realpathSync(path.resolve(p)) === self;
    } catch (_) {
      return false;
    }
  };
  for (let i = 0; i < execArgv.length; i++) {
    const a = execArgv[i];
    if ((a === '--require' || a === '-r') && isSelf(execArgv[i + 1])) {
      execArgv.splice(i, 2);
      i--;
    } else if (a.startsWith('--require=') && isSelf(a.slice('--require='.length))) {
      execArgv.splice(i, 1);
      i--;
    }
  }
}

// callSite describes where the app called listen(), for messages: the
// first stack frame outside this file and Node's internals, and when that
// is inside node_modules (a framework's listen), the first frame of the app
// itself too.
function callSite(skip) {
  const holder = {};
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 50;
  Error.captureStackTrace(holder, skip);
  Error.stackTraceLimit = limit;
  const frames = String(holder.stack)
    .split('\n')
    .slice(1)
    .map((l) => l.trim().replace(/^at /, ''))
    .filter((l) => !l.includes(__filename) && !l.includes('(node:') && !l.startsWith('node:'));
  if (frames.length === 0) {
    return '(unknown call site)';
  }
  const app = frames.find((f) => f.includes('/') && !f.includes('/node_modules/'));
  return app === undefined || app === frames[0] ? frames[0] : `${frames[0]}, called from ${app}`;
}

// selects reports whether listen() arguments name the served server
// explicitly: 'passenger', '/passenger', {path:'passenger'},
// {port:'passenger'} and the same with 'berth'.
function selects(args) {
  const first = args[0];
  if (typeof first === 'string') {
    return SELECT_NAMES.has(first);
  }
  if (first !== null && typeof first === 'object') {
    return SELECT_NAMES.has(first.path) || SELECT_NAMES.has(first.port);
  }
  return false;
}

function callbackOf(args) {
  const last = args[args.length - 1];
  return typeof last === 'function' ? last : undefined;
}

// describeListen renders listen() arguments for a note.
function describeListen(args) {
  const parts = [];
  for (const a of args) {
    if (typeof a === 'function') continue;
    if (a !== null && typeof a === 'object') {
      const o = {};
      for (const k of ['port', 'host', 'path', 'fd']) {
        if (a[k] !== undefined) o[k] = a[k];
      }
      parts.push(JSON.stringify(o));
    } else {
      parts.push(JSON.stringify(a));
    }
  }
  return `listen(${parts.join(', ')})`;
}

// socketPath finds the filesystem path of the Unix socket on fd, for
// server.address(); Node cannot tell it for a socket it did not bind.
function socketPath(fd) {
  try {
    const fs = require('node:fs');
    const link = fs.readlinkSync(`/proc/self/fd/${fd}`); // "socket:[12345]"
    const m = /^socket:\[(\d+)\]$/.exec(link);
    if (m) {
      for (const line of fs.readFileSync('/proc/net/unix', 'utf8').split('\n').slice(1)) {
        // Num RefCount Protocol Flags Type St Inode Path
        const f = line.trim().split(/\s+/);
        if (f[6] === m[1] && f[7]) {
          return f[7];
        }
      }
    }
  } catch (_) {
    // Not Linux or /proc not mounted: fall through.
  }
  return `berth-worker-socket-fd${fd}`;
}

// connectBerth connects to BERTH_READY_SOCKET, writes "READY=1\n" and keeps
// the connection open as berth's line to the worker (README.md, "The
// readiness channel"):
//   - it writes "WATCHDOG=1\n" every WATCHDOG_MS from an unref'd timer: a
//     blocked event loop sends nothing, and the timer never keeps the
//     process alive (nor does the connection);
//   - for each "OOB=1\n" berth writes, it runs the app's out-of-band work
//     (runOOB, which returns a promise) and then writes "OOB_DONE=1\n".
// When berth closes the connection, or it fails after connecting, the
// heartbeats stop quietly: no note, no reconnect.
function connectBerth(readySocket, runOOB) {
  if (!readySocket) {
    note('BERTH_READY_SOCKET not set; not reporting readiness');
    return;
  }
  const conn = net.createConnection(readySocket);
  conn.unref();
  let connected = false;
  let heartbeat = null;
  const send = (line) => {
    if (conn.writable) {
      conn.write(line);
    }
  };
  const stop = () => {
    if (heartbeat !== null) {
      clearInterval(heartbeat);
      heartbeat = null;
    }
  };
  conn.on('connect', () => {
    connected = true;
    heartbeat = setInterval(() => {
      // berth not reading: queuing more heartbeats would only grow memory.
      if (conn.writableLength < MAX_UNSENT) {
        send('WATCHDOG=1\n');
      }
    }, WATCHDOG_MS);
    heartbeat.unref();
  });
  conn.on('error', (err) => {
    stop();
    if (!connected) {
      note(`report readiness to ${readySocket}: ${err.message}`);
    }
  });
  conn.on('close', stop);
  conn.write('READY=1\n');

  // Out-of-band work: one run at a time, one OOB_DONE per OOB=1.
  let oobRunning = false;
  let oobQueued = 0;
  const nextOOB = () => {
    if (oobRunning || oobQueued === 0) {
      return;
    }
    oobQueued--;
    oobRunning = true;
    runOOB().then(() => {
      oobRunning = false;
      send('OOB_DONE=1\n');
      nextOOB();
    });
  };
  let pending = ''; // the start of a line
  let tooLong = false; // dropping the rest of a line longer than MAX_LINE
  conn.setEncoding('latin1');
  conn.on('data', (chunk) => {
    pending += chunk;
    let nl;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl).trim();
      pending = pending.slice(nl + 1);
      if (tooLong) {
        tooLong = false;
      } else if (line === 'OOB=1') {
        oobQueued++;
        nextOOB();
      }
      // Other lines are for later versions of the protocol: ignored.
    }
    if (pending.length > MAX_LINE) {
      pending = '';
      tooLong = true;
    }
  });
}

// runOOBListeners calls every 'oob' listener of api with a done callback
// and resolves when all are done (at once when there are none). A
// listener that declares a parameter is done when it calls it; one that
// does not is done when the promise it returns settles, or when it
// returns, if it returns no promise. A listener that throws, rejects, or
// passes an error to done is done too, with a note.
function runOOBListeners(api) {
  const listeners = api.rawListeners('oob'); // once() wrappers remove themselves
  return Promise.all(
    listeners.map(
      (listener) =>
        new Promise((resolve) => {
          let finished = false;
          const done = (err) => {
            if (finished) return;
            finished = true;
            if (err) {
              note(`an 'oob' listener of berth/PhusionPassenger failed: ${(err && err.stack) || err}`);
            }
            resolve();
          };
          const takesDone = (listener.listener || listener).length > 0;
          let ret;
          try {
            ret = listener.call(api, done);
          } catch (err) {
            done(err);
            return;
          }
          if (takesDone) {
            if (ret && typeof ret.then === 'function') {
              ret.then(undefined, (err) => done(err || new Error('rejected')));
            }
          } else if (ret && typeof ret.then === 'function') {
            ret.then(
              () => done(),
              (err) => done(err || new Error('rejected')),
            );
          } else {
            done();
          }
        }),
    ),
  );
}

function isTLSServer(server) {
  // tls.Server (and https.Server, http2 secure servers) registers a
  // 'connection' listener that starts the TLS handshake and emits
  // 'secureConnection' afterwards.
  return typeof server.setSecureContext === 'function' && typeof server.addContext === 'function';
}

// The loader's own state on a served connection's socket, under symbols so
// nothing else sees or clashes with it. adoptSocket creates all four at once
// so every served socket keeps one shape.
const kRequest = Symbol('berth.request'); // the connection's latest request
const kXFF = Symbol('berth.xff'); // the X-Forwarded-For value last parsed
const kAddress = Symbol('berth.address'); // its client address, or null
const kFamily = Symbol('berth.family'); // 'IPv4' or 'IPv6'

// Node's own getters, which read the peer of the socket itself (undefined
// for a Unix socket).
const nodeRemoteAddress = Object.getOwnPropertyDescriptor(net.Socket.prototype, 'remoteAddress').get;
const nodeRemoteFamily = Object.getOwnPropertyDescriptor(net.Socket.prototype, 'remoteFamily').get;

// forwardedPeer parses the client address of socket's latest request, the
// last X-Forwarded-For entry (the one berth appended), and returns whether
// there is a usable one. The result is cached by header value: a connection
// from berth's pool carries many requests, often from the same client.
function forwardedPeer(socket) {
  const req = socket[kRequest];
  const xff = req === null ? undefined : req.headers['x-forwarded-for'];
  if (typeof xff !== 'string') {
    return false;
  }
  if (xff !== socket[kXFF]) {
    const addr = xff.slice(xff.lastIndexOf(',') + 1).trim();
    const v = net.isIP(addr);
    socket[kXFF] = xff;
    socket[kAddress] = v === 0 ? null : addr;
    socket[kFamily] = v === 6 ? 'IPv6' : 'IPv4';
  }
  return socket[kAddress] !== null;
}

// The accessors adoptSocket gives a served socket: the client's address
// when its latest request has a usable X-Forwarded-For, else Node's own
// value. The worker socket is private to berth, so the header is berth's.
const PEER_PROPERTIES = {
  remoteAddress: {
    configurable: true,
    enumerable: true,
    get: function remoteAddress() {
      return forwardedPeer(this) ? this[kAddress] : nodeRemoteAddress.call(this);
    },
  },
  remoteFamily: {
    configurable: true,
    enumerable: true,
    get: function remoteFamily() {
      return forwardedPeer(this) ? this[kFamily] : nodeRemoteFamily.call(this);
    },
  },
};

// adoptSocket prepares a served connection's socket, once, for
// notePeerRequest; it reports false for what is not a net.Socket (an
// HTTP/2 stream's socket proxy), which keeps Node's values.
function adoptSocket(socket) {
  if (!(socket instanceof net.Socket)) {
    return false;
  }
  socket[kRequest] = null;
  socket[kXFF] = undefined;
  socket[kAddress] = null;
  socket[kFamily] = undefined;
  Object.defineProperties(socket, PEER_PROPERTIES);
  return true;
}

// notePeerRequest makes req the request whose X-Forwarded-For gives its
// socket's remoteAddress and remoteFamily (Express's req.ip, socket.io's
// handshake.address); over a Unix socket Node would report undefined.
// Connections are reused across clients, so each request replaces the
// last. This runs for every request: it is one property store, and the
// header is parsed only when the app reads the address.
function notePeerRequest(req) {
  const socket = req.socket;
  if (socket == null) {
    return;
  }
  if (socket[kRequest] === undefined && !adoptSocket(socket)) {
    return;
  }
  socket[kRequest] = req;
}

// serveOnWorkerSocket adapts the served server to connections from berth
// by wrapping its emit (adding listeners would change how Node treats
// 'upgrade' and 'connect', and a second 'request' listener makes every emit
// copy the listener array):
//   - a TLS server takes plain connections: berth terminates TLS (or the
//     client is on the machine) and talks plain HTTP/1.1 over the worker
//     socket, so each accepted connection goes straight to the server's
//     secure-connection handling;
//   - every request gets the client's address (notePeerRequest);
//   - once draining() is true, HTTP/1 responses close their connection.
// The wrapper runs for every event of the server, so it neither copies nor
// spreads arguments: apply(this, arguments) passes them on as they are.
function serveOnWorkerSocket(server, draining) {
  const tls = isTLSServer(server);
  const emit = server.emit;
  server.emit = function (event, a, b) {
    switch (event) {
      case 'request':
      case 'checkContinue':
      case 'checkExpectation':
        notePeerRequest(a);
        if (draining() && b && typeof b.shouldKeepAlive === 'boolean') {
          b.shouldKeepAlive = false; // Node sends "Connection: close"
        }
        break;
      case 'connection':
        if (tls) {
          // http2's secure server falls back to HTTP/1.1 (allowHTTP1) when
          // ALPN chose no protocol.
          a.alpnProtocol = false;
          return emit.call(this, 'secureConnection', a);
        }
        break;
      case 'upgrade':
      case 'connect':
        notePeerRequest(a);
        break;
    }
    return emit.apply(this, arguments);
  };
}

function main() {
  const worker = takeEnvironment(process.env);
  if (worker === null) {
    return;
  }
  dropOwnRequire(process.execArgv, __filename);

  let stopping = false; // SIGTERM received: draining the served server
  const state = {
    autoInstall: true,
    served: null, // the server listening on fd 3
    servedSite: '', // where the served server's listen() was called
    explicitSite: '', // where an explicit selection was made, if any
  };

  const api = new EventEmitter();
  api.configure = function configure(options) {
    if (options && 'autoInstall' in options) {
      if (state.served !== null && options.autoInstall === false && state.explicitSite === '') {
        note(
          `configure({autoInstall:false}) called after a server was already installed (at ${state.servedSite}); ` +
            'call it before any server listens',
        );
      }
      state.autoInstall = Boolean(options.autoInstall);
    }
    return api;
  };
  Object.defineProperty(api, 'options', { get: () => ({ autoInstall: state.autoInstall }) });
  globalThis.PhusionPassenger = api;
  globalThis.berth = api;

  const originalListen = net.Server.prototype.listen;

  function install(server, args, site) {
    state.served = server;
    state.servedSite = site;
    serveOnWorkerSocket(server, () => stopping);
    const path = socketPath(worker.fd);
    server.address = function address() {
      return path;
    };
    const cb = callbackOf(args);
    const options = { fd: worker.fd };
    if (args[0] !== null && typeof args[0] === 'object' && args[0].signal) {
      options.signal = args[0].signal;
    }
    // The worker socket itself failing to listen (fd 3 not a listening
    // socket) is fatal as Node would have it, with a note saying why.
    const onError = (err) => {
      note(`the served server (listen at ${site}) cannot use the worker socket, fd ${worker.fd}: ${err.message}`);
      if (server.listenerCount('error') === 1) {
        throw err;
      }
    };
    server.on('error', onError);
    server.once('listening', () => {
      server.removeListener('error', onError);
      connectBerth(worker.readySocket, () => runOOBListeners(api));
      process.on('SIGTERM', onSIGTERM);
    });
    return cb ? originalListen.call(server, options, cb) : originalListen.call(server, options);
  }

  // listenAsAsked lets a server that berth does not serve bind what it asked
  // for. If that fails (EADDRINUSE: a sibling worker holds the port) and the
  // app does not handle the server's 'error' event, the failure is logged
  // instead of crashing the worker.
  function listenAsAsked(server, args, site) {
    note(`${describeListen(args)} at ${site}: not the served server, listening as asked`);
    const onError = (err) => {
      if (server.listenerCount('error') > 1) {
        return; // the app handles it
      }
      note(`${describeListen(args)} at ${site} failed, the worker keeps running without it: ${err.message}`);
    };
    server.on('error', onError);
    server.once('listening', () => server.removeListener('error', onError));
    return originalListen.apply(server, args);
  }

  // selectionError is an Error whose stack starts at the app's listen().
  function selectionError(message) {
    const err = new Error(message);
    Error.captureStackTrace(err, net.Server.prototype.listen);
    return err;
  }

  net.Server.prototype.listen = function listen(...args) {
    const site = callSite(listen);
    const explicit = selects(args);
    if (explicit) {
      if (state.explicitSite !== '') {
        throw selectionError(
          'berth: two servers selected explicitly for this worker: ' +
            `first at ${state.explicitSite}, again at ${site}; only one listen('berth') / listen('passenger') is allowed`,
        );
      }
      if (state.served !== null) {
        throw selectionError(
          `berth: listen('${args[0] && typeof args[0] === 'object' ? args[0].path || args[0].port : args[0]}') at ${site}, ` +
            `but auto-install already gave the worker socket to the server that listened at ${state.servedSite}; ` +
            'call berth.configure({autoInstall:false}) (or PhusionPassenger.configure) before any server listens',
        );
      }
      state.explicitSite = site;
      return install(this, args, site);
    }
    if (state.served === null && state.autoInstall) {
      return install(this, args, site);
    }
    if (state.served === this) {
      return originalListen.apply(this, args);
    }
    return listenAsAsked(this, args, site);
  };

  function onSIGTERM() {
    if (stopping) {
      return;
    }
    stopping = true;
    const server = state.served;
    const appHandlesSIGTERM = () => process.listeners('SIGTERM').some((l) => l !== onSIGTERM);

    // From now on, requests that still arrive on open keep-alive
    // connections are answered with "Connection: close" (serveOnWorkerSocket).
    const sweep =
      typeof server.closeIdleConnections === 'function'
        ? setInterval(() => server.closeIdleConnections(), IDLE_SWEEP_MS)
        : null;
    if (sweep) sweep.unref();
    const drained = () => {
      if (sweep) clearInterval(sweep);
      if (!appHandlesSIGTERM()) {
        process.exit(0);
      }
      // The app has its own SIGTERM handler: give it time to finish its
      // cleanup and exit by itself; don't keep the process alive for it.
      setTimeout(() => process.exit(0), APP_EXIT_GRACE_MS).unref();
    };
    const wasListening = server.listening; // the app may have closed it
    if (wasListening) {
      server.close(drained);
      if (typeof server.closeIdleConnections === 'function') {
        server.closeIdleConnections();
      }
    }
    try {
      api.emit('exit');
    } catch (err) {
      note(`an 'exit' listener of berth/PhusionPassenger threw: ${(err && err.stack) || err}`);
    }
    if (!wasListening) {
      drained();
    }
  }
}

main();
