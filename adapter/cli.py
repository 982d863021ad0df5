"""The ``carethread`` command: a thin shell over the pipeline, the store and the services.

    carethread serve    [--host H] [--http-port P] [--mllp-port P] [--db PATH]
    carethread sandbox  [same] [--no-seed]                      # seeded with the story on first start
    carethread sandbox  send [--host H] [--mllp-port P] FILE... # HL7 v2 over MLLP; prints each ACK
    carethread sandbox  reset [--db PATH]                       # delete the sandbox's database and state
    carethread ingest   --source maternity|health-visiting|gp [--db PATH] [--practice ODS] PATH...
    carethread replay   [--db PATH] (--list [--status AR|AE] | ID... | --all-rejected)
    carethread validate [--profile URL] FILE...
    carethread convert  --source maternity [--db PATH] FILE      # dry run: Bundle on stdout, trace on stderr
    carethread linkage  evaluate [--index sqlite|memory] FILE    # identity matching figures on labelled records
    carethread linkage  train FILE OUT --version V               # estimate the matching model from labelled records

Exit status: 0 success; 1 some messages were not accepted (ingest/replay) or the service failed;
2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections import Counter
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from adapter import __version__
from adapter.errors import ConfigError
from adapter.inbound.er7 import split_batch
from adapter.settings import Settings

__all__ = ["main"]

SOURCES = ("maternity", "health-visiting", "gp")


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", type=Path, help="SQLite database file (default .carethread/carethread.sqlite3)")
    p.add_argument("--mappings", type=Path, default=argparse.SUPPRESS,
                   help="site mapping overlay directory, layered over mappings/")


def _add_service(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="listen address (default 127.0.0.1)")
    p.add_argument("--http-port", type=int, help="HTTP port for the FHIR API and POST /hl7v2 (default 8080)")
    p.add_argument("--mllp-port", type=int, help="MLLP port (default 2575)")
    _add_db(p)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carethread", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"carethread {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO (locations and codes only)")
    parser.add_argument("--mappings", type=Path, help="site mapping overlay directory, layered over mappings/ "
                        "(also accepted after the command; setting CARETHREAD_MAPPINGS_DIR)")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_service(sub.add_parser("serve", help="run the FHIR API, POST /hl7v2 and the MLLP listener"))
    sandbox = sub.add_parser("sandbox", help="serve, with a synthetic maternity scenario loaded")
    _add_service(sandbox)
    sandbox.add_argument("--no-seed", action="store_true", help="do not load the synthetic story")
    ssub = sandbox.add_subparsers(dest="sandbox_command", required=False, metavar="{send,reset}")
    send = ssub.add_parser("send", help="send HL7 v2 files over MLLP to a running sandbox; print each ACK")
    send.add_argument("--host", help="the sandbox's address (default 127.0.0.1)")
    send.add_argument("--mllp-port", type=int, help="the sandbox's MLLP port (default 2575)")
    send.add_argument("files", nargs="+", type=Path, metavar="FILE")
    reset = ssub.add_parser("reset", help="delete the sandbox's database and state: the next start seeds the "
                            "story again")
    reset.add_argument("--db", type=Path, help="SQLite database file (default .carethread/carethread.sqlite3)")
    ingest = sub.add_parser("ingest", help="ingest files: HL7 v2 (maternity), exports (health-visiting), "
                            "GP Connect bundles (gp)")
    ingest.add_argument("--source", required=True, choices=SOURCES)
    ingest.add_argument("--practice", help="gp: the practice's ODS code, for bundles that do not name it")
    _add_db(ingest)
    ingest.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    replay = sub.add_parser("replay", help="list or re-process archived messages")
    _add_db(replay)
    replay.add_argument("--list", action="store_true", help="list archived messages (default: rejected ones)")
    replay.add_argument("--status", choices=("AR", "AE", "AA", "duplicate", "ignored"),
                        help="with --list: only this status (default: AR and AE)")
    replay.add_argument("--all-rejected", action="store_true", help="replay every AR/AE message not yet accepted")
    replay.add_argument("ids", nargs="*", type=int, metavar="ID")
    convert = sub.add_parser("convert", help="print the FHIR Bundle a file would store, without storing it")
    convert.add_argument("--source", required=True, choices=("maternity",))  # exports and bundles: not yet
    _add_db(convert)
    convert.add_argument("path", type=Path, metavar="FILE")
    linkage = sub.add_parser("linkage", help="identity matching: evaluate on labelled records, train the model")
    lsub = linkage.add_subparsers(dest="linkage_command", required=True)
    evaluate = lsub.add_parser("evaluate", help="ingest labelled person records through the matching path and "
                               "print precision, recall, mixed identities, review rate and latency")
    evaluate.add_argument("--index", choices=("sqlite", "memory"), default="sqlite",
                          help="candidate index: the store's blocking tables (the live path; default) or in memory")
    evaluate.add_argument("--as-of", type=date.fromisoformat, help="the date ages are taken on (default today)")
    evaluate.add_argument("file", type=Path, metavar="FILE")
    train = lsub.add_parser("train", help="estimate the Fellegi-Sunter model (m/u, term frequencies) from "
                            "labelled records and write the versioned model file")
    train.add_argument("file", type=Path, metavar="FILE")
    train.add_argument("out", type=Path, metavar="OUT")
    train.add_argument("--version", required=True)
    rules = sub.add_parser("rules", help="safeguarding rules (adapter.rules)")
    rsub = rules.add_subparsers(dest="rules_command", required=True)
    daily = rsub.add_parser("run-daily", help="evaluate the clock rules (at 18, continuity ends, handover gap) now")
    _add_db(daily)
    daily.add_argument("--today", type=date.fromisoformat, help="evaluate as of this day (YYYY-MM-DD, UTC noon)")
    validate = sub.add_parser("validate", help="validate FHIR R4 JSON resources or Bundles against the profiles")
    validate.add_argument("--profile", help="profile URL (default: each resource's meta.profile, else ours)")
    validate.add_argument("paths", nargs="+", type=Path, metavar="FILE")
    return parser


def _settings(args: argparse.Namespace, **defaults: object) -> Settings:
    values: dict[str, object] = dict(defaults)
    for name, key in (("host", "host"), ("http_port", "http_port"), ("mllp_port", "mllp_port"), ("db", "db"),
                      ("mappings", "mappings_dir")):
        value = getattr(args, name, None)
        if value is not None:
            values[key] = value
    return Settings(**values)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr)
    try:
        if args.command == "sandbox" and getattr(args, "sandbox_command", None) == "send":
            return _sandbox_send(args)
        if args.command == "sandbox" and getattr(args, "sandbox_command", None) == "reset":
            return _sandbox_reset(args)
        if args.command in ("serve", "sandbox"):
            return _serve(args)
        if args.command == "ingest":
            return _ingest(args)
        if args.command == "convert":
            return _convert(args)
        if args.command == "linkage":
            return _linkage(args)
        if args.command == "rules":
            return _rules(args)
        if args.command == "validate":
            from adapter.conformance.cli import run_validate

            return run_validate(args.paths, args.profile)
        return _replay(args)
    except ConfigError as exc:  # a bad mapping, profile or setting: refuse to start, say where
        where = f"{exc.location}: " if exc.location and exc.location not in exc.message else ""
        print(f"carethread: configuration error: {where}{exc.message}", file=sys.stderr)
        return 2


def _rules(args: argparse.Namespace) -> int:
    from adapter.rules import run_daily
    from adapter.service import open_pipeline

    pipeline = open_pipeline(_settings(args))
    now = datetime.now(UTC) if args.today is None else datetime.combine(args.today, time(12), tzinfo=UTC)
    try:
        count = run_daily(pipeline.store, pipeline.rules, now)
    finally:
        pipeline.store.close()
    print(f"rules run-daily: {count} identities evaluated as of {now.date().isoformat()}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from adapter.service import open_pipeline, run_services

    settings = _settings(args)
    if args.command != "sandbox":
        return asyncio.run(run_services(settings, open_pipeline(settings), label="carethread"))
    from adapter import sandbox as sb

    if settings.organisations is not None:  # every organisation's endpoint: its receiver in /sandbox/inbox
        base = settings.organisations
        if not base.is_absolute() and not base.exists() and (sb.ROOT / base).exists():
            base = sb.ROOT / base
        target, _ = sb.inbox_organisations(base, settings.db.parent / "sandbox-organisations.yaml",
                                           settings.host, settings.http_port)
        settings = settings.model_copy(update={"organisations": target})
    pipeline = open_pipeline(settings)
    state = sb.read_state(settings.db)
    done = {"state": state is not None}

    def before_ready(http_port: int, mllp_port: int) -> None:
        clock = pipeline.clock
        if state is not None:  # seeded before: the clock resumes where the last run left it
            saved = datetime.fromisoformat(state["clock"])
            if saved > clock():
                clock.start_at(saved)  # type: ignore[attr-defined]
            print(f"sandbox: story seeded before; clock at {clock().isoformat(timespec='seconds')} "
                  "(carethread sandbox reset to start again)", flush=True)
            return
        if args.no_seed:
            return
        ok = sb.seed(clock, settings.host, http_port, mllp_port,  # type: ignore[arg-type]
                     out=lambda line: print(line, flush=True))
        done["state"] = True
        if not ok:
            print("sandbox: some story inputs were not accepted (see above)", flush=True)
        print(f"sandbox: story seeded; clock at {clock().isoformat(timespec='seconds')}", flush=True)

    try:
        return asyncio.run(run_services(settings, pipeline, label="carethread sandbox", before_ready=before_ready,
                                        sandbox=True))
    finally:
        if done["state"]:  # the clock's time at this stop (never earlier than a saved one: a failed start)
            now = pipeline.clock()
            if state is not None:
                now = max(now, datetime.fromisoformat(state["clock"]))
            sb.write_state(settings.db, now)


def _sandbox_send(args: argparse.Namespace) -> int:
    from adapter.inbound.mllp import MLLPClient

    missing = [str(p) for p in args.files if not p.is_file()]
    if missing:
        print(f"carethread sandbox send: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    host = args.host or Settings().host
    port = args.mllp_port or Settings().mllp_port
    all_accepted = True
    try:
        with MLLPClient(host, port) as client:
            for path in args.files:
                for payload in split_batch(path.read_bytes()):
                    ack = client.send(payload)
                    print(ack.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n").rstrip("\n"),
                          flush=True)
                    all_accepted &= b"\rMSA|AA|" in ack.replace(b"\n", b"\r")
    except OSError as exc:
        print(f"carethread sandbox send: cannot reach {host}:{port} ({type(exc).__name__})", file=sys.stderr)
        return 1
    return 0 if all_accepted else 1


def _sandbox_reset(args: argparse.Namespace) -> int:
    from adapter.sandbox import reset

    db = _settings(args).db
    gone = reset(db)
    print(f"sandbox reset: {len(gone)} files deleted under {db.parent}; the next `carethread sandbox` seeds "
          "the story again", flush=True)
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from adapter.service import open_pipeline

    allowed = (lambda p: p.exists()) if args.source == "health-visiting" else (lambda p: p.is_file() or
                                                                              args.source == "gp" and p.is_dir())
    missing = [str(p) for p in args.paths if not allowed(p)]
    if missing:
        print(f"carethread ingest: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    # Bulk loads commit in batches: NORMAL is safe here (no ACK is sent; a crashed run is re-run).
    pipeline = open_pipeline(_settings(args, sqlite_synchronous="NORMAL"), bulk=True)
    counts: Counter[str] = Counter()
    try:
        if args.source == "health-visiting":
            _ingest_exports(pipeline, args.paths, counts)
        elif args.source == "gp":
            _ingest_bundles(pipeline, args.paths, counts, args.practice)
        else:
            _ingest_messages(pipeline, args.paths, counts)
    finally:
        pipeline.store.close()
    summary = {"accepted": counts["AA"], "errors": counts["AE"], "rejected": counts["AR"],
               "duplicates": counts["duplicate"]}
    if counts["ignored"]:
        print(f"ignored {counts['ignored']} acknowledgement messages", flush=True)
    print(json.dumps(summary), flush=True)
    return 0 if not (counts["AE"] or counts["AR"]) else 1


def _ingest_messages(pipeline: Any, paths: list[Path], counts: Counter[str]) -> None:
    for path in paths:
        messages = list(split_batch(path.read_bytes()))
        file_counts = Counter(p.outcome.status for p in _with_progress(pipeline.process_many(messages),
                                                                        len(messages), path.name))
        counts.update(file_counts)
        print(f"{path}: {len(messages)} messages, " + ", ".join(f"{k} {v}" for k, v in sorted(file_counts.items())),
              flush=True)


def _issue_line(where: str, status: str, issue: Any) -> str:
    """One rejected row or bundle entry: where, what status, which code at which location; never a value."""
    at = f" at {issue.location}" if issue.location else ""
    return f"{where}: {status} {issue.code}{at}: {issue.message}"


def _ingest_exports(pipeline: Any, paths: list[Path], counts: Counter[str]) -> None:
    from adapter.inbound.export import open_export

    for path in paths:
        file_counts: Counter[str] = Counter()
        for result in _with_progress(pipeline.ingest_export(open_export(path)), None, path.name):
            o = result.outcome
            file_counts[o.status] += 1
            for issue in o.errors:
                print(_issue_line(f"{result.file}:{result.line}", o.status, issue), flush=True)
        counts.update(file_counts)
        print(f"{path}: {sum(file_counts.values())} rows, " +
              ", ".join(f"{k} {v}" for k, v in sorted(file_counts.items())), flush=True)


def _ingest_bundles(pipeline: Any, paths: list[Path], counts: Counter[str], practice: str | None) -> None:
    files = [f for p in paths for f in (sorted(p.rglob("*.json")) if p.is_dir() else [p])]
    for path in _with_progress(files, len(files), "bundles"):
        result = pipeline.process_bundle(path.read_bytes(), channel="file", practice=practice)
        o = result.outcome
        counts[o.status] += 1
        for issue in o.issues:
            if issue.severity == "E":
                print(_issue_line(str(path), o.status, issue), flush=True)
        print(f"{path}: {o.status}, {len(o.resources)} resources, {o.changed} versions written", flush=True)


def _convert(args: argparse.Namespace) -> int:
    import tempfile

    from adapter.convert import trace_of, transaction_bundle
    from adapter.service import open_pipeline

    if not args.path.is_file():
        print(f"carethread convert: no such file: {args.path}", file=sys.stderr)
        return 2
    settings = _settings(args)
    with tempfile.TemporaryDirectory() as empty:
        # merge against the given (or default) database if it exists; never create one for a dry run
        db = settings.db if settings.db.exists() else Path(empty) / "dry-run.sqlite3"
        pipeline = open_pipeline(settings.model_copy(update={"db": db}))
        try:
            results, resources = pipeline.dry_run(list(split_batch(args.path.read_bytes())))
        finally:
            pipeline.store.close()
    print(json.dumps(transaction_bundle(resources), indent=2))
    for processed in results:
        print(json.dumps(trace_of(processed)), file=sys.stderr)
    return 0 if all(p.outcome.status in ("AA", "duplicate", "ignored") for p in results) else 1


def _linkage(args: argparse.Namespace) -> int:
    import contextlib
    import tempfile

    from adapter.reconcile.evaluate import EvaluationError, evaluate
    from adapter.reconcile.train import train

    if not args.file.is_file():
        print(f"carethread linkage: no such file: {args.file}", file=sys.stderr)
        return 2
    try:
        if args.linkage_command == "train":
            model = train(args.file, args.out, version=args.version)
            print(json.dumps({"version": model["version"], "out": str(args.out)}))
            return 0
        with contextlib.ExitStack() as stack:
            factory = None
            if args.index == "sqlite":  # the live path: the store's identity tables, one transaction
                from adapter.identity import TxIndex
                from adapter.store.sqlite import SqliteStore

                tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="carethread-linkage-")))
                store = stack.enter_context(SqliteStore(tmp / "linkage.sqlite3", synchronous="OFF",
                                                        writer_cache_mb=256))
                tx = stack.enter_context(store.transaction())

                def factory() -> TxIndex:
                    return TxIndex(tx)
            evaluate(args.file, **({"index_factory": factory} if factory else {}), as_of=args.as_of,
                     out=lambda line: print(line, flush=True))
        return 0
    except EvaluationError as exc:
        print(f"carethread linkage: {exc}", file=sys.stderr)
        return 2


def _with_progress(items, total: int | None, label: str):  # type: ignore[no-untyped-def]
    if not sys.stderr.isatty():
        yield from items
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    # on stderr, so stdout stays the machine-readable summary
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(label, total=total)
        for item in items:
            progress.advance(task)
            yield item


def _replay(args: argparse.Namespace) -> int:
    from adapter.service import open_pipeline

    pipeline = open_pipeline(_settings(args))
    try:
        store = pipeline.store
        if args.list or not (args.ids or args.all_rejected):
            statuses = [args.status] if args.status else ["AR", "AE"]
            for status in statuses:
                for rec in store.list_inbound(status=status, limit=10_000):
                    print(json.dumps({"id": rec.id, "source": rec.source, "status": rec.status, "channel": rec.channel,
                                      "received_at": rec.received_at, "control_id": rec.control_id,
                                      "error_code": rec.error_code, "error_location": rec.error_location}))
            return 0
        ids = list(args.ids)
        if args.all_rejected:
            ids += [r.id for s in ("AR", "AE") for r in store.list_inbound(status=s, limit=100_000)]
        failed = 0
        for archive_id in ids:
            try:
                processed = pipeline.replay(archive_id)
            except KeyError:
                print(json.dumps({"id": archive_id, "error": "no such archived message"}))
                failed += 1
                continue
            o = processed.outcome
            print(json.dumps({"id": archive_id, "replay_archive_id": o.archive_id, "status": o.status,
                              "issues": [{"code": i.code, "location": i.location} for i in o.issues]}))
            failed += o.status in ("AE", "AR")
        return 1 if failed else 0
    finally:
        pipeline.store.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
