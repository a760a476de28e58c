"""Session-scoped real components: the local control plane, PostgreSQL and Redis.

In CI (`CI=true`) a component that fails to start fails the run with its own error output; it is
never turned into a skipped test. Outside CI the tests that need it are skipped with a message that
says how to get it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import hypothesis  # noqa: F401  (imported here, at a shallow stack: CPython 3.11.7 fails to compile it
import pytest  # when hypothesis' plugin first imports it deep inside pytest's terminal summary)

from tests.support import services

IN_CI = os.environ.get("CI", "").lower() == "true"


def _unavailable(what: str, err: Exception) -> None:
    message = f"{what} could not start: {err}"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(f"{message}\n(run `make deps` or `make test`, which install and build everything)")


@pytest.fixture(scope="session")
def control_plane() -> Iterator[services.ControlPlane]:
    """A real etcd + kube-apiserver + kube-controller-manager; reuse one with SUNDIAL_TEST_KUBECONFIG."""
    reuse = os.environ.get("SUNDIAL_TEST_KUBECONFIG")
    if reuse:
        build = services.HACK / "build-binaries.sh"
        bindir = subprocess.run([str(build)], capture_output=True, text=True, check=True).stdout.strip()
        yield services.ControlPlane(kubeconfig=Path(reuse), bindir=Path(bindir), dir=Path(reuse).parent)
        return
    try:
        cm = services.control_plane()
        plane = cm.__enter__()
    except services.ComponentError as err:
        _unavailable("the local Kubernetes control plane", err)
        raise
    try:
        yield plane
    finally:
        cm.__exit__(None, None, None)


@pytest.fixture(scope="session")
def robfig_next() -> Path:
    """robfig/cron v3 as a program (hack/robfig), the reference for the schedule differential test."""
    from tests.support import robfig

    try:
        return robfig.build()
    except (RuntimeError, OSError, subprocess.SubprocessError) as err:
        _unavailable("robfig-next (hack/build-robfig.sh)", err)
        raise


@pytest.fixture(scope="session")
def kubeconfig(control_plane: services.ControlPlane) -> str:
    return str(control_plane.kubeconfig)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    try:
        cm = services.postgres()
        pg = cm.__enter__()
    except services.ComponentError as err:
        _unavailable("PostgreSQL", err)
        raise
    try:
        yield pg.url
    finally:
        cm.__exit__(None, None, None)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    try:
        cm = services.redis()
        url = cm.__enter__()
    except services.ComponentError as err:
        _unavailable("Redis", err)
        raise
    try:
        yield url
    finally:
        cm.__exit__(None, None, None)
