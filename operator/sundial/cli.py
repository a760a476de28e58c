"""The ``sundial`` command line: run the operator, migrate, inspect history, trigger, preview, validate."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sundial import cliitems
from sundial.settings import Settings


def _cmd_run(args: argparse.Namespace) -> int:
    """Run the operator; start-up failures end the process from the handlers (crash-only)."""
    import kopf

    import sundial.handlers.cronconfigs  # noqa: F401  (registers the handlers)
    from sundial import app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    if args.verbose:  # sundial's own debug lines (fire/claim timings); kopf's would drown them
        logging.getLogger("sundial").setLevel(logging.DEBUG)
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    try:
        settings = app.read_settings()
    except app.StartupFailed:  # logged as one line
        return 1
    memo = kopf.Memo()
    try:
        asyncio.run(_operate(settings, memo))
    except Exception as err:  # kopf itself failed (a root task crashed): the engine is stopped by now
        logging.getLogger("sundial").error(
            "the operator stopped on an error (exiting): %s: %s", type(err).__name__, app.summarize(err)
        )
        app.exit_process(1)  # past worker threads a hung dependency may still hold
    return 0


async def _operate(settings: Settings, memo: Any) -> None:
    import kopf

    from sundial import app

    try:
        await kopf.operator(
            standalone=True,
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
            memo=memo,
        )
    finally:
        # kopf skips its cleanup handlers if its start-up fails or is cancelled: the engine must not
        # go on heartbeating with nothing feeding it events
        running = getattr(memo, "app", None)
        if isinstance(running, app.App):
            try:
                bound = settings.shutdown_grace_seconds + app.CLEANUP_TIMEOUT_SECONDS
                await asyncio.wait_for(running.stop(), timeout=bound)
            except Exception as err:
                logging.getLogger("sundial").warning("stopping the engine failed: %r", err)


def _cmd_migrate(args: argparse.Namespace) -> int:
    from sundial.store import migrate

    url = args.database_url or Settings().database_url
    migrate.upgrade(url)
    print(f"database at revision {migrate.current_revision(url)}")
    return 0


def _fmt_time(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z" if value else "-"


def _cmd_runs(args: argparse.Namespace) -> int:
    from sundial.models.runs import RunStatus
    from sundial.store.items import RunItems
    from sundial.store.store import RunStore

    store = RunStore(args.database_url or Settings().database_url)
    try:
        records = store.runs(args.namespace, args.name, limit=args.limit)
        run_items = RunItems(store.engine)
        # a fan-out run in progress: its counts now, from the items themselves
        live = {r.id: run_items.counts(r.id) for r in records if r.status == RunStatus.RUNNING}
    finally:
        store.close()
    if not records:
        print(f"no runs recorded for {args.namespace}/{args.name}")
        return 0
    header = (
        "STATUS",
        "TRIGGER",
        "ATTEMPT",
        "SCHEDULED",
        "STARTED",
        "FINISHED",
        "DURATION",
        "REPLICA",
        "ITEMS",
        "REASON/ERROR",
    )
    rows = [header]
    for r in records:
        detail = r.error or r.reason or ""
        items = _item_counts(r, live)
        rows.append(
            (
                str(r.status),
                str(r.trigger),
                str(r.attempt),
                _fmt_time(r.scheduled_for),
                _fmt_time(r.started_at),
                _fmt_time(r.finished_at),
                f"{r.duration_ms}ms" if r.duration_ms is not None else "-",
                r.replica or "-",
                items,
                (detail[:80] + "…") if len(detail) > 80 else detail,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1])
    return 0


def _item_counts(record: Any, live: dict[Any, Any]) -> str:
    """``succeeded/total`` (and dead letters) of a fan-out run; ``-`` for other runs."""
    counts = live.get(record.id)
    if counts is not None and sum(counts.values()):
        total = sum(counts.values())
        done, dead = counts["Succeeded"], counts["DeadLettered"]
        failed = counts["Failed"]
        return (
            f"{done}/{total}" + (f" {failed} retrying" if failed else "") + (f" {dead} dead" if dead else "")
        )
    items = record.result.get("items") if isinstance(record.result, dict) else None
    if not isinstance(items, dict) or "succeeded" not in items:
        return "-"
    dead = items.get("deadLettered") or 0
    return f"{items['succeeded']}/{items['total']}" + (f" {dead} dead" if dead else "")


def _cmd_trigger(args: argparse.Namespace) -> int:
    from kubernetes import client

    from sundial.kube import load_client
    from sundial.models.resource import GROUP, PLURAL, RUN_NOW, VERSION

    value = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"
    api = client.CustomObjectsApi(load_client())
    api.patch_namespaced_custom_object(
        GROUP, VERSION, args.namespace, PLURAL, args.name, {"metadata": {"annotations": {RUN_NOW: value}}}
    )
    print(f"cronconfig {args.namespace}/{args.name}: {RUN_NOW}={value}")
    return 0


def _cmd_next(args: argparse.Namespace) -> int:
    from sundial.scheduling import ScheduleError, preview

    after = datetime.fromisoformat(args.after.replace("Z", "+00:00")) if args.after else datetime.now(UTC)
    if after.tzinfo is None:
        after = after.replace(tzinfo=UTC)
    try:
        times = preview(args.schedule, tz=args.tz, count=args.n, after=after.astimezone(UTC))
    except ScheduleError as err:
        print(f"schedule: {err}", file=sys.stderr)
        return 1
    for t in times:
        print(t.astimezone(UTC).isoformat().replace("+00:00", "Z"))
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    """Check manifests offline: one line per problem, ``FILE: CronConfig NS/NAME: PATH: MESSAGE``.

    Problems exit 1; warnings are printed but do not fail. Handler names are checked only when
    ``SUNDIAL_HANDLERS`` names the modules to import, as for the operator. With ``--server`` the
    API server also validates the Job of each ``template`` (``dryRun=All``: nothing is created).
    """
    import yaml

    from sundial import validation
    from sundial.jobs import registry

    known: list[str] | None = None
    try:
        modules = Settings().handlers
    except ValueError as err:  # a malformed SUNDIAL_* variable must not stop an offline check
        print(f"warning: ignoring the SUNDIAL_ environment: {err}", file=sys.stderr)
        modules = []
    if modules:
        try:
            registry.load(modules)
            known = registry.names()
        except Exception as err:
            print(
                f"warning: cannot import SUNDIAL_HANDLERS ({type(err).__name__}: {err}); "
                "handler names not checked",
                file=sys.stderr,
            )

    server = _ServerCheck(args.namespace) if args.server else None

    def documents(doc: Any) -> list[Any]:
        if isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            return list(doc["items"])
        return [doc]

    failed = False
    checked = 0
    for path in args.files:
        try:
            text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            print(f"{path}: cannot read: {err}")
            failed = True
            continue
        index = 0
        try:
            for doc in yaml.safe_load_all(text):
                for item in documents(doc):
                    index += 1
                    if not isinstance(item, dict) or item.get("kind") != "CronConfig":
                        continue
                    checked += 1
                    raw_meta = item.get("metadata")
                    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
                    name = str(meta.get("name") or f"(document {index})")
                    if meta.get("namespace"):
                        name = f"{meta['namespace']}/{name}"
                    result = validation.validate_object(item, known_handlers=known)
                    for warning in result.warnings:
                        print(f"{path}: CronConfig {name}: warning: {warning}")
                    problems = list(result.problems) if isinstance(result, validation.Invalid) else []
                    if not problems and server is not None:
                        problems = server.check(item)
                    if problems:
                        failed = True
                        for problem in problems:
                            print(f"{path}: CronConfig {name}: {problem}")
        except yaml.YAMLError as err:
            print(f"{path}: not valid YAML: {' '.join(str(err).split())}")
            failed = True
        except RecursionError:
            print(f"{path}: not valid YAML: nested too deeply")
            failed = True
    if not checked and not failed:
        print("no CronConfig documents found", file=sys.stderr)
    if server is not None:
        server.close()
    return 1 if failed else 0


class _ServerCheck:
    """``validate --server``: the API server dry-runs the Job a ``template`` would create."""

    def __init__(self, namespace: str | None) -> None:
        from kubernetes import config

        from sundial.kube import Kube, load_client

        self._namespace = namespace
        if namespace is None:
            try:
                _, context = config.list_kube_config_contexts()  # type: ignore[no-untyped-call]
                self._namespace = (context or {}).get("context", {}).get("namespace")
            except (config.ConfigException, OSError, TypeError):
                self._namespace = None
        self._loop = asyncio.new_event_loop()
        self._kube = Kube(load_client(), component="sundial-validate", replica="cli")

    def check(self, item: dict[str, Any]) -> list[str]:
        from sundial.jobs import dryrun

        meta = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
        namespace = (meta or {}).get("namespace") or self._namespace or "default"
        return self._loop.run_until_complete(dryrun.dry_run(self._kube, item, namespace=str(namespace)))

    def close(self) -> None:
        self._loop.run_until_complete(self._kube.close())
        self._loop.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sundial", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start the operator (current kubeconfig or in-cluster config)")
    run.add_argument("-v", "--verbose", action="store_true", help="debug logs of sundial itself")
    run.set_defaults(fn=_cmd_run)

    mig = sub.add_parser("migrate", help="apply the run-history database migrations")
    mig.add_argument("--database-url", help="default: $SUNDIAL_DATABASE_URL")
    mig.set_defaults(fn=_cmd_migrate)

    runs = sub.add_parser("runs", help="print a CronConfig's run history, newest first")
    runs.add_argument("name")
    runs.add_argument("-n", "--namespace", default="default")
    runs.add_argument("--limit", type=int, default=50)
    runs.add_argument("--database-url", help="default: $SUNDIAL_DATABASE_URL")
    runs.set_defaults(fn=_cmd_runs)

    trig = sub.add_parser("trigger", help="run a CronConfig now (sets the sundial.io/run-now annotation)")
    trig.add_argument("name")
    trig.add_argument("-n", "--namespace", default="default")
    trig.set_defaults(fn=_cmd_trigger)

    nxt = sub.add_parser("next", help="preview fire times, one RFC 3339 UTC instant per line")
    nxt.add_argument("schedule")
    nxt.add_argument("--tz", default="UTC")
    nxt.add_argument("-n", type=int, default=5)
    nxt.add_argument("--after", help="RFC 3339 instant (default: now)")
    nxt.set_defaults(fn=_cmd_next)

    val = sub.add_parser("validate", help="check CronConfig manifests offline; exit 1 on any problem")
    val.add_argument("files", nargs="+")
    val.add_argument(
        "--server",
        action="store_true",
        help="also have the API server (current kubeconfig) dry-run the Job of each template job",
    )
    val.add_argument(
        "-n", "--namespace", help="namespace of manifests that name none (default: kubeconfig's)"
    )
    val.set_defaults(fn=_cmd_validate)

    cliitems.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
