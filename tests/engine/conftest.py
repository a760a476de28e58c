"""Fixtures of the fast engine tests: a cluster of in-process replicas on a manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from sundial.jobs import registry
from tests.engine import handlers
from tests.engine.harness import Cluster


@pytest_asyncio.fixture(loop_scope="function")
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    registry.load(["sundial.examples", "tests.engine.handlers"])
    c = Cluster(tmp_path)
    handlers.CALLS.clear()
    handlers.CLOCK = c.clock
    yield c
    await c.close()
    handlers.CLOCK = None
