"""A minimal web app, Python standard library only, that knows nothing of zdd-tui.

- listens on $PORT (default 8000), on every address of the host unless $HOST says otherwise;
- GET /health -> 200 "ok"; GET / -> JSON {"app": "minimal", "version": $APP_VERSION, "id": ...};
  GET /slow?seconds=N -> the same after N seconds (at most 30): a request that stays in flight;
- SIGTERM (or SIGINT): stops accepting connections (within 0.2 s), finishes the requests in flight,
  exits 0.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

VERSION = os.environ.get("APP_VERSION", "dev")
INSTANCE = uuid.uuid4().hex[:12]
_lock = threading.Lock()
_in_flight = 0


class Handler(BaseHTTPRequestHandler):
    # One request per connection: on SIGTERM no idle keep-alive connection holds the exit up.
    protocol_version = "HTTP/1.0"
    server_version = "minimal"

    def do_GET(self) -> None:
        global _in_flight
        with _lock:
            _in_flight += 1
        try:
            url = urlsplit(self.path)
            if url.path == "/health":
                self._send(200, "text/plain", b"ok\n")
            elif url.path in ("/", "/slow"):
                if url.path == "/slow":
                    try:
                        seconds = float(parse_qs(url.query).get("seconds", ["1"])[0])
                    except ValueError:
                        seconds = 1.0
                    time.sleep(min(max(seconds, 0.0), 30.0))
                body = json.dumps({"app": "minimal", "version": VERSION, "id": INSTANCE}).encode()
                self._send(200, "application/json", body)
            else:
                self._send(404, "text/plain", b"not found\n")
        finally:
            with _lock:
                _in_flight -= 1

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # a line per request would flood the container's log


class Server(ThreadingHTTPServer):
    # Non-daemon request threads: server_close() waits for each to finish (daemon ones it would
    # not wait for, and the exit would cut them off).
    daemon_threads = False


def main() -> int:
    port = int(os.environ.get("PORT", "8000"))
    server = Server((os.environ.get("HOST", ""), port), Handler)
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        if not stopping.is_set():
            stopping.set()
            # shutdown() waits for serve_forever(), which runs in this (the main) thread.
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"minimal {VERSION} ({INSTANCE}) listening on port {port}", flush=True)
    server.serve_forever(poll_interval=0.2)
    with _lock:
        busy = _in_flight
    t0 = time.monotonic()
    server.server_close()  # closes the listening socket, then joins the requests in flight
    print(f"minimal {VERSION}: stopped; {busy} request(s) in flight finished in "
          f"{time.monotonic() - t0:.2f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
