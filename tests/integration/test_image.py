"""The operator image, as far as it can be checked without a Docker engine.

The Dockerfile's shape is checked statically. The slow test then does what its two stages do: build
the sundial wheel from exactly the build context the Dockerfile copies (through .dockerignore), and
install it with its dependencies from wheels only (`--no-index`) into a clean virtualenv, whose
`sundial` entry point must run and find the CRD and the migrations inside the installed package.

Dependency wheels are cached in ~/.cache/sundial/wheelhouse/<hash of the dependency list>/ (PyPI is
only asked when the dependency list changes).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.support.services import ROOT

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check"]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def stages() -> dict[str, list[tuple[str, str]]]:
    """Instructions per stage name (`FROM image AS name`)."""
    result: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for keyword, args in instructions():
        if keyword == "FROM":
            current = []
            result[args.split()[-1]] = current
        current.append((keyword, args))
    return result


def ignored(path: str) -> bool:
    """Whether the build context leaves `path` out, by .dockerignore's rules (last match wins)."""
    verdict = False
    for raw in DOCKERIGNORE.read_text().splitlines():
        rule = raw.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if pattern.startswith("**/"):
            matched = any(fnmatch.fnmatch(part, pattern[3:]) for part in parts)
        else:
            matched = any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes)
        if matched:
            verdict = not negate
    return verdict


def build_context_sources() -> list[str]:
    """The sources of the build stage's COPY instructions."""
    sources: list[str] = []
    for keyword, args in stages()["build"]:
        if keyword == "COPY":
            *srcs, _dest = shlex.split(args)
            sources += [s.rstrip("/") for s in srcs if not s.startswith("--")]
    return sources


def test_dockerfile_is_multi_stage_slim_non_root_with_sundial_entrypoint() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", text, re.M)
    by_stage = stages()
    assert list(by_stage) == ["build", "runtime"]
    for name, steps in by_stage.items():
        assert steps[0] == ("FROM", f"${{PYTHON_IMAGE}} AS {name}")
    build, runtime = by_stage["build"], by_stage["runtime"]
    assert any(k == "RUN" and "pip wheel --wheel-dir /wheels ." in a for k, a in build)
    install = next(a for k, a in runtime if k == "RUN" and "pip install" in a)
    assert "--mount=type=bind,from=build,source=/wheels" in install
    assert "--no-index --find-links=/wheels sundial" in install
    assert "--uid 10001" in install
    assert not any(k == "COPY" for k, _ in runtime), "the runtime stage gets nothing but the installed wheels"
    assert ("USER", "10001:10001") in runtime
    assert runtime[-2:] == [("ENTRYPOINT", '["sundial"]'), ("CMD", '["run"]')]
    assert ("WORKDIR", "/var/lib/sundial") in runtime  # the chart mounts a volume there (embedded SQLite)


def test_dockerignore_lets_through_exactly_what_the_build_copies() -> None:
    sources = build_context_sources()
    assert sorted(sources) == ["README.md", "operator", "pyproject.toml"]
    for source in sources:
        assert not ignored(source), source
    for path in (".venv", ".git", ".cluster", "tests", "charts", "operator/sundial/__pycache__", "bench"):
        assert ignored(path), path
    assert not ignored("operator/sundial/store/migrations/versions/0001_initial.py")


def _copy_build_context(dest: Path) -> None:
    for source in build_context_sources():
        src = ROOT / source
        if src.is_dir():
            shutil.copytree(
                src,
                dest / source,
                ignore=lambda d, names: [n for n in names if ignored(f"{Path(d).relative_to(ROOT)}/{n}")],
            )
        else:
            shutil.copy2(src, dest / source)


def _wheelhouse() -> Path:
    """Wheels of sundial's dependencies (stage 1's /wheels minus sundial), built once per dependency list."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    key = hashlib.sha256(f"{sys.version_info[:2]}{sorted(deps)}".encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sundial" / "wheelhouse"
    target = cache / key
    if not target.is_dir():
        staging = cache / f"{key}.tmp-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        subprocess.run([*PIP, "wheel", "-q", "--wheel-dir", str(staging), *deps], check=True, timeout=900)
        staging.rename(target)
    return target


@pytest.mark.slow
def test_wheel_builds_from_the_build_context_and_runs_in_a_clean_venv(tmp_path: Path) -> None:
    context, dist, venv = tmp_path / "context", tmp_path / "dist", tmp_path / "venv"
    context.mkdir()
    _copy_build_context(context)

    # Stage 1: the wheel, from the build context only.
    subprocess.run(
        [*PIP, "wheel", "-q", "--no-deps", "--wheel-dir", str(dist), str(context)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = dist.glob("sundial-*.whl")
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert wheel.name == f"sundial-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert (
            archive.read("sundial/crd/cronconfigs.sundial.io.yaml")
            == (ROOT / "crds" / "cronconfigs.sundial.io.yaml").read_bytes()
        )
    package = ROOT / "operator" / "sundial"
    shipped = [
        p
        for p in (package / "store" / "migrations").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ]
    assert shipped
    for path in shipped:
        assert f"sundial/{path.relative_to(package).as_posix()}" in names, f"{path} is not in the wheel"

    # Stage 2: a clean environment, dependencies from wheels only.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    subprocess.run(
        [
            *PIP,
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "-q",
            "--no-index",
            "--no-compile",
            "--find-links",
            str(_wheelhouse()),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "VIRTUAL_ENV"} and not k.startswith("SUNDIAL_")
    }
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"

    def sundial(*args: str) -> str:
        proc = subprocess.run(
            [str(venv / "bin" / "sundial"), *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, f"sundial {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    assert "run" in sundial("--help") and "migrate" in sundial("--help")
    located = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sundial; print(sundial.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert located.startswith(str(venv)), f"sundial imported from {located}, not from the clean venv"
    # The migrations are usable from the installed package (what the chart's migration Job runs).
    assert "revision" in sundial("migrate", "--database-url", f"sqlite:///{tmp_path / 'history.db'}")
    assert len(sundial("next", "*/5 * * * *", "-n", "2").split()) == 2
