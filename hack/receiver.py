"""A tiny HTTP receiver for `make demo`: answers 200 to every request and prints one line each."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        item = self.headers.get("X-Sundial-Item")  # fan-out items: the item's key
        print(
            f"receiver {stamp} {self.command} {self.path} slot={self.headers.get('X-Sundial-Slot')}"
            + (f" item={item}" if item else "")
            + f" {body!r}",
            flush=True,
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"ok": true}')

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8765
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
