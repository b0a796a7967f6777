"""A tiny HTTP/1.1 keep-alive backend for the proxy tests: `python backend.py HOST PORT NAME`.

GET /slow waits SLOW seconds (env, default 2) before answering; every other path answers NAME at
once. It prints "ready" once it listens. On SIGTERM it stops listening, finishes the requests it
has and exits (what the app contract asks). With HOLD=1 it first waits for a line on stdin,
so a test can start it ahead and have it listen at an exact moment.
"""

import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path.startswith("/slow"):
            time.sleep(float(os.environ.get("SLOW", "2")))
        body = sys.argv[3].encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for the requests being served
    request_queue_size = 128


if __name__ == "__main__":
    if os.environ.get("HOLD"):
        print("held", flush=True)
        sys.stdin.readline()
    server = Server((sys.argv[1], int(sys.argv[2])), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print("ready", flush=True)
    server.serve_forever()
    server.server_close()
