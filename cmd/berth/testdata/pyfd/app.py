"""A non-Node worker: takes its socket as fd 3 by LISTEN_FDS, as gunicorn
--bind fd://3 or uvicorn --fd 3 would, and reports READY=1 by sd_notify."""
import os
import socket
from http.server import BaseHTTPRequestHandler, HTTPServer

assert os.environ.get("LISTEN_FDS") == "1", "no LISTEN_FDS"
assert os.environ.get("LISTEN_PID") == str(os.getpid()), "LISTEN_PID is not my pid"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"python pid {os.getpid()} via fd 3\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self):
        return "berth"


server = HTTPServer(("", 0), Handler, bind_and_activate=False)
server.socket = socket.socket(fileno=3)
notify = os.environ.get("NOTIFY_SOCKET")
if notify and not os.environ.get("NO_NOTIFY"):
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(b"READY=1", notify)
print("python worker ready", flush=True)
server.serve_forever()
