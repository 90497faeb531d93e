"""A worker with one event loop, speaking the Node loader's readiness
protocol: READY=1 on BERTH_READY_SOCKET, then WATCHDOG=1 every 200 ms from
the loop (none while it is blocked), and OOB_DONE=1 for every OOB=1.
/block blocks the loop for 30 s; /oob asks for out-of-band work."""
import os
import select
import socket
import time
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/block":
            print("blocking the event loop", flush=True)
            time.sleep(30)
        body = f"pid {os.getpid()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        if self.path == "/oob":
            self.send_header("X-Berth-OOB-Work", "true")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = HTTPServer(("", 0), Handler, bind_and_activate=False)
server.socket = socket.socket(fileno=3)
ready = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
ready.connect(os.environ["BERTH_READY_SOCKET"])
ready.sendall(b"READY=1\n")
last = 0.0
while True:
    r, _, _ = select.select([server.socket, ready], [], [], 0.1)
    if server.socket in r:
        server.handle_request()
    if ready in r:
        msg = ready.recv(100)
        if not msg:
            break
        if b"OOB=1" in msg:
            print("out-of-band work done", flush=True)
            ready.sendall(b"OOB_DONE=1\n")
    if time.monotonic() - last >= 0.2:
        ready.sendall(b"WATCHDOG=1\n")
        last = time.monotonic()
