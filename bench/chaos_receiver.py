"""The chaos benchmark's HTTP receiver, in a process of its own: one JSON line per request.

Its own process so the operators' load cannot slow it down (nor its GIL theirs), and a listen
backlog of 1024: with socketserver's default of 5, a second in which hundreds of slots fire drops
connections, and the benchmark would blame the operator for the receiver's refusals.

    python bench/chaos_receiver.py PORT OUT.jsonl

``POST /hook/<name>`` answers 200 at once; ``?sleep=S`` first waits S seconds (a job that runs
long enough to overlap its next slot). Each line: name, slot (``X-Sundial-Slot``), run id
(``X-Sundial-Run``), attempt (``X-Sundial-Attempt`` if sent), the time received and the time its
connection was accepted (Unix seconds).
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit


class Server(ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, port: int, out: IO[str]) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.out = out
        self.lock = threading.Lock()
        self.accepted: dict[int, float] = {}
        """When each connection was accepted: a handler that starts late shows the receiver lagging."""

    def process_request(self, request: Any, client_address: Any) -> None:
        self.accepted[id(request)] = time.time()
        super().process_request(request, client_address)

    def record(self, line: dict[str, object]) -> None:
        text = json.dumps(line) + "\n"
        with self.lock:
            self.out.write(text)
            self.out.flush()


class Handler(BaseHTTPRequestHandler):
    server: Server

    def _answer(self) -> None:
        received = time.time()
        accepted = self.server.accepted.pop(id(self.request), received)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        url = urlsplit(self.path)
        attempt = self.headers.get("X-Sundial-Attempt")
        self.server.record(
            {
                "name": url.path.rsplit("/", 1)[-1],
                "slot": self.headers.get("X-Sundial-Slot", ""),
                "run": self.headers.get("X-Sundial-Run", ""),
                "attempt": int(attempt) if attempt and attempt.isdigit() else None,
                "t": received,
                "accepted": accepted,
            }
        )
        sleep = float(parse_qs(url.query).get("sleep", ["0"])[0])
        if sleep > 0:
            time.sleep(sleep)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "12")
            self.end_headers()
            self.wfile.write(b'{"ok": true}')
        except OSError:
            pass  # the attempt was cancelled (Replace, timeout) and the operator hung up

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    port, path = int(sys.argv[1]), sys.argv[2]
    with open(path, "a", encoding="utf-8") as out:
        server = Server(port, out)

        def stop(signum: int, frame: FrameType | None) -> None:
            threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        print(f"listening on {port}", flush=True)
        server.serve_forever(poll_interval=0.2)
        server.server_close()


if __name__ == "__main__":
    main()
