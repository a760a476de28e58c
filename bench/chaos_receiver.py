"""The chaos benchmark's HTTP receiver, in a process of its own: one JSON line per request.

Its own process, so the operators' load cannot slow it down (nor its GIL theirs); asyncio
(aiohttp), not a thread per request, which on two busy cores queued requests for a second; and a
listen backlog of 1024: with socketserver's default of 5, a second in which hundreds of slots fire
drops connections, and the benchmark would blame the operator for the receiver's refusals.

    python bench/chaos_receiver.py PORT OUT.jsonl

``POST /hook/<name>`` answers 200 at once; ``?sleep=S`` first waits S seconds (a job that runs
long enough to overlap its next slot). Each line: name, slot (``X-Sundial-Slot``), run id
(``X-Sundial-Run``), attempt (``X-Sundial-Attempt`` if sent) and the time received (Unix seconds).
On SIGTERM it writes ``OUT.stats.json``: its own event-loop lag (how late a 50 ms timer fired, the
delay any request waited for the receiver itself) and its CPU time.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import sys
import time
from typing import IO

from aiohttp import web

TICK = 0.05


class Receiver:
    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.lags: list[float] = []
        self.requests = 0

    async def hook(self, request: web.Request) -> web.Response:
        received = time.time()
        await request.read()
        attempt = request.headers.get("X-Sundial-Attempt")
        line = {
            "name": request.match_info["name"],
            "slot": request.headers.get("X-Sundial-Slot", ""),
            "run": request.headers.get("X-Sundial-Run", ""),
            "attempt": int(attempt) if attempt and attempt.isdigit() else None,
            "t": received,
        }
        self.out.write(json.dumps(line) + "\n")
        self.requests += 1
        sleep = float(request.query.get("sleep", "0"))
        if sleep > 0:
            await asyncio.sleep(sleep)
        return web.json_response({"ok": True})

    async def watch_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(TICK)
            self.lags.append(loop.time() - before - TICK)
            self.out.flush()

    def stats(self) -> dict[str, object]:
        lags = sorted(self.lags) or [0.0]
        cpu = os.times()
        return {
            "requests": self.requests,
            "loop_lag_ms": {
                "p50": round(statistics.median(lags) * 1000, 1),
                "p99": round(lags[int(0.99 * (len(lags) - 1))] * 1000, 1),
                "max": round(lags[-1] * 1000, 1),
            },
            "cpu_seconds": round(cpu.user + cpu.system, 1),
        }


async def serve(port: int, receiver: Receiver) -> None:
    app = web.Application()
    app.router.add_route("*", "/hook/{name}", receiver.hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    lag = asyncio.create_task(receiver.watch_lag())
    print(f"listening on {port}", flush=True)
    await stop.wait()
    lag.cancel()
    await runner.cleanup()


def main() -> None:
    port, path = int(sys.argv[1]), sys.argv[2]
    with open(path, "a", encoding="utf-8") as out:
        receiver = Receiver(out)
        asyncio.run(serve(port, receiver))
    with open(path.removesuffix(".jsonl") + ".stats.json", "w", encoding="utf-8") as stats:
        json.dump(receiver.stats(), stats)


if __name__ == "__main__":
    main()
