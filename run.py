"""Mailbox Sync for Dynamics 365: the one command line (`python run.py`, or `mailbox-sync`).

    serve              the web app and the scheduler in one process (the default)
    sync --once        one messaging sync, then exit (for cron and scripts)
    status [--json]    the last runs and open alerts
    sandbox [--json]   start the sandbox servers, print their URLs and credentials

Every command takes --data-dir and --port.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("mailbox_sync")

DEFAULT_PORT = 8765


def _data_dir(args: argparse.Namespace) -> Path:
    from sync.store.db import default_data_dir

    return Path(args.data_dir).expanduser().resolve() if args.data_dir else default_data_dir()


@contextlib.contextmanager
def _single_server(data_dir: Path) -> Iterator[None]:
    """Hold the data dir's server lock: two servers on one data dir would sync twice."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle: IO[str] = open(data_dir / "server.lock", "w")  # noqa: SIM115 (held for the process)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise SystemExit(
            f"Another Mailbox Sync server is already running on {data_dir}. "
            "Open its link, or stop it first."
        ) from None
    try:
        yield
    finally:
        handle.close()


def cmd_serve(args: argparse.Namespace) -> int:
    from werkzeug.serving import make_server

    from sync.scheduler import SyncScheduler
    from sync.settings import get_setting
    from webapp import create_app
    from webapp.access import new_login_token

    data_dir = _data_dir(args)
    with _single_server(data_dir), contextlib.ExitStack() as stack:
        token = new_login_token()
        app = create_app({"DATA_DIR": str(data_dir), "LOGIN_TOKEN": token})
        database = app.extensions["mailbox_sync.database"]
        if get_setting(database, "mode") in (None, "sandbox") and not args.no_sandbox:
            from sandbox.launcher import start_sandbox

            sandbox = stack.enter_context(start_sandbox(data_dir / "sandbox"))
            app.extensions["mailbox_sync.sandbox"] = sandbox
            print(f"Sandbox running (no tenant configured): {sandbox.summary()}", flush=True)
        scheduler = SyncScheduler(
            app.extensions["mailbox_sync.service"],
            interval=float(get_setting(database, "interval_seconds")),
            offline_interval=float(get_setting(database, "offline_interval_seconds")),
        )
        app.extensions["mailbox_sync.scheduler"] = scheduler
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            print(
                f"WARNING: listening on {args.host}: anyone who can reach this address and "
                "holds the link can use the app.",
                file=sys.stderr,
            )
            app.config["TRUSTED_HOSTS"] = [*app.config["TRUSTED_HOSTS"], args.host]
        server = make_server(args.host, args.port, app, threaded=True)
        port = server.socket.getsockname()[1]
        scheduler.start()
        stack.callback(scheduler.shutdown)
        host = "127.0.0.1" if args.host in ("127.0.0.1", "0.0.0.0") else args.host
        print(f"Mailbox Sync is running. Open http://{host}:{port}/login?token={token}", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    return 0


def _open_database(args: argparse.Namespace) -> Any:
    from sync.store.db import open_database

    return open_database(_data_dir(args), os.environ.get("MAILBOX_SYNC_DATABASE_URL"))


def cmd_sync(args: argparse.Namespace) -> int:
    from sync.runs import recent_runs
    from sync.service import MESSAGING, SyncService

    if not args.once:
        print("`sync` runs one sync and exits: add --once (the server syncs on its own).")
        return 2
    database = _open_database(args)
    service = SyncService(database)
    run_id = service.run(MESSAGING, "cli")
    run = next(r for r in recent_runs(database, limit=5) if r.id == run_id)
    print(f"Run {run.id}: {run.outcome}" + (f" — {run.message}" if run.message else ""))
    return 1 if run.outcome == "failed" else 0


def _iso(value: Any) -> str | None:
    return value.isoformat() + "Z" if value is not None else None


def cmd_status(args: argparse.Namespace) -> int:
    from sync.runs import open_alerts, recent_runs
    from sync.settings import all_settings

    database = _open_database(args)
    runs = recent_runs(database, limit=10)
    status = {
        "data_dir": str(_data_dir(args)),
        "mode": all_settings(database).get("mode"),
        "runs": [
            {
                "id": r.id,
                "job": r.job,
                "trigger": r.trigger,
                "started_at": _iso(r.started_at),
                "finished_at": _iso(r.finished_at),
                "outcome": r.outcome,
                "message": r.message,
                "counts": r.counts,
            }
            for r in runs
        ],
        "alerts": [
            {"code": a.code, "severity": a.severity, "title": a.title, "action": a.action}
            for a in open_alerts(database)
        ],
    }
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        print(f"Data: {status['data_dir']}  mode: {status['mode'] or 'not set up'}")
        for r in status["runs"]:
            print(
                f"  #{r['id']} {r['job']:<9} {r['started_at']}  {r['outcome']}  {r['message'] or ''}"
            )
        for a in status["alerts"]:
            print(f"  ALERT [{a['severity']}] {a['title']} — {a['action']}")
    return 0


def cmd_sandbox(args: argparse.Namespace) -> int:
    from sandbox.launcher import start_sandbox

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with start_sandbox(
        _data_dir(args) / "sandbox", port=args.port or 0, faults=args.faults
    ) as sandbox:
        if args.json:
            print(json.dumps(sandbox.describe()), flush=True)
        else:
            print(sandbox.human_summary(), flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", help="where the local database and keys live")
    common.add_argument("--port", type=int, default=None, help="port to listen on (0: any free)")
    common.add_argument("-v", "--verbose", action="store_true")

    parser = argparse.ArgumentParser(
        prog="mailbox-sync",
        description=__doc__,
        parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command")

    serve = commands.add_parser("serve", parents=[common], help="web app + scheduler (default)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--no-sandbox", action="store_true", help="do not start the sandbox")
    serve.set_defaults(func=cmd_serve)

    sync = commands.add_parser("sync", parents=[common], help="one messaging sync, then exit")
    sync.add_argument("--once", action="store_true")
    sync.add_argument("--kind", action="append", help="only this kind (repeatable)")
    sync.set_defaults(func=cmd_sync)

    status = commands.add_parser("status", parents=[common], help="last runs and alerts")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    sandbox = commands.add_parser("sandbox", parents=[common], help="start the sandbox servers")
    sandbox.add_argument("--json", action="store_true", help="print one JSON object")
    sandbox.add_argument(
        "--faults",
        action="append",
        default=[],
        help="fault profile, e.g. 429:every=5,delay=2 (repeatable)",
    )
    sandbox.set_defaults(func=cmd_sandbox)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["serve", *(argv if argv is not None else sys.argv[1:])])
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if getattr(args, "port", None) is None and args.command == "serve":
        args.port = DEFAULT_PORT
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
