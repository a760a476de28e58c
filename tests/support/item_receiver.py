"""The fan-out tests' item endpoint, in a process of its own: what the item handler saw.

    python -m tests.support.item_receiver PORT

``POST /item/<key>?ms=N`` waits N ms and answers 200, or 500 while the key is poisoned; it counts
the calls and the 200s per key and the most requests it ever had in flight at once (the
parallelism as the receiving end measures it). ``GET /stats`` returns them as JSON;
``POST /poison`` with a JSON list of keys replaces the poisoned set. aiohttp with a listen
backlog of 1024, so a burst is never refused by the receiver itself.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter

from aiohttp import web


class Items:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.ok: Counter[str] = Counter()
        self.in_flight = 0
        self.peak = 0
        self.poisoned: set[str] = set()
        self.idempotency_keys_missing = 0

    async def item(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        if request.headers.get("X-Sundial-Item") != key:
            self.idempotency_keys_missing += 1
        self.calls[key] += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await request.read()
            await asyncio.sleep(float(request.query.get("ms", "0")) / 1000)
        finally:
            self.in_flight -= 1
        if key in self.poisoned:
            return web.json_response({"error": f"{key} is poisoned"}, status=500)
        self.ok[key] += 1
        return web.json_response({"ok": True})

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "calls": self.calls,
                "ok": self.ok,
                "peak": self.peak,
                "inFlight": self.in_flight,
                "missingItemHeader": self.idempotency_keys_missing,
            }
        )

    async def poison(self, request: web.Request) -> web.Response:
        self.poisoned = set(json.loads(await request.read()))
        return web.json_response(sorted(self.poisoned))


def main() -> None:
    items = Items()
    app = web.Application()
    app.add_routes(
        [
            web.post("/item/{key}", items.item),
            web.get("/stats", items.stats),
            web.post("/poison", items.poison),
        ]
    )
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), backlog=1024, print=None, access_log=None)


if __name__ == "__main__":
    main()
