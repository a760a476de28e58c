"""The link-local check of http jobs resolves a host once per few seconds, not once per attempt."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sundial.jobs import http
from sundial.jobs.context import JobFailed


async def test_an_ip_literal_is_checked_without_resolving_and_a_name_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[str] = []
    loop = asyncio.get_running_loop()

    async def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        asked.append(host)
        return [(2, 1, 6, "", ("169.254.169.254", 0))]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(http, "_resolved", {})
    for _ in range(100):
        await http.refuse_link_local("http://127.0.0.1:8080/x")
        await http.refuse_link_local("http://[::1]:8080/x")
    with pytest.raises(JobFailed, match=r"link-local address 169\.254\.169\.254"):
        await http.refuse_link_local("http://169.254.169.254/latest/meta-data")
    for _ in range(100):
        with pytest.raises(JobFailed, match=r"metadata\.internal"):
            await http.refuse_link_local("http://metadata.internal/")
    assert asked == ["metadata.internal"]
