"""A secret cut in half where a message or a response body is truncated leaves no prefix behind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest_asyncio
from aiohttp import web

from sundial.jobs.base import JobEnvironment
from sundial.jobs.context import MAX_MESSAGE, Capture, JobContext, RunInfo
from sundial.jobs.http import MAX_BODY, HttpJobType
from sundial.models.spec import HttpJob
from sundial.settings import Settings

SECRET = "tok-0123456789abcdef"


def _context(secrets: dict[str, str]) -> JobContext:
    async def read_secret(name: str, key: str) -> str:
        return secrets[f"{name}/{key}"]

    run = RunInfo("r", "u", "ns", "n", 1, datetime(2026, 1, 1, tzinfo=UTC), 1, "Schedule")
    return JobContext(run=run, context={}, capture=Capture(), read_secret=read_secret)


async def test_a_capture_message_cut_through_a_secret_keeps_no_prefix() -> None:
    ctx = _context({"s/k": SECRET})
    await ctx.secret("s", "k")
    ctx.capture.info("x" * (MAX_MESSAGE - 8) + SECRET)
    message = ctx.capture.export()[0]["message"]
    assert SECRET[:6] not in message and len(message) <= MAX_MESSAGE


@pytest_asyncio.fixture(loop_scope="function")
async def echo_url() -> AsyncIterator[str]:
    async def echo(request: web.Request) -> web.Response:
        return web.Response(text="y" * (MAX_BODY - 8) + request.headers["Authorization"])

    app = web.Application()
    app.router.add_post("/", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/"
    await runner.cleanup()


async def test_a_response_body_cut_through_a_secret_keeps_no_prefix(echo_url: str) -> None:
    job_type = HttpJobType()
    await job_type.open(JobEnvironment(settings=Settings()))
    try:
        spec = HttpJob.model_validate(
            {
                "url": echo_url,
                "headersFrom": [{"name": "Authorization", "secretKeyRef": {"name": "s", "key": "k"}}],
            }
        )
        result = await job_type.run(spec, _context({"s/k": SECRET}))
    finally:
        await job_type.close()
    assert SECRET[:6] not in result["body"]
    assert result["body"].endswith("***")
