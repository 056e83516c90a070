"""`run.py offline --go-offline / --go-online / --status [--json]`: offline for scripts.

`add_parser(subparsers)` adds the command; `main(args)` runs it (exit 0 done, 1 failed,
2 nothing to do / bad input, 4 busy). Long work draws a bar on a terminal.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from sync.progress import draw_bar

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_BUSY = 0, 1, 2, 4


def add_parser(subparsers: Any, parents: list[argparse.ArgumentParser] | None = None) -> None:
    parser = subparsers.add_parser(
        "offline", parents=parents or [], help="go offline / online, or show offline status"
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--go-offline", action="store_true", help="download and work offline")
    what.add_argument("--go-online", action="store_true", help="replay offline changes")
    what.add_argument("--status", action="store_true", help="mode, rows, queued changes")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--sandbox-json", help="the sandbox to use (`run.py sandbox --json`)")
    if parents is None:
        parser.add_argument("--data-dir", help="where the local database and keys live")
    parser.set_defaults(func=main)


def _bar(phase: str, done: int, total: int) -> None:
    draw_bar(done, total, phase, counts=True)


def _sandbox(args: argparse.Namespace, data_dir: Path) -> dict[str, Any] | None:
    from sync.sandbox_profile import INFO_FILE, read_info

    named = getattr(args, "sandbox_json", None)
    info_file = Path(named) if named else data_dir / "sandbox" / INFO_FILE
    return read_info(info_file) if named or info_file.exists() else None


def main(args: argparse.Namespace) -> int:
    from sync.offline.connect import offline_service
    from sync.offline.service import OfflineUnavailable
    from sync.sides import SideError
    from sync.store.db import default_data_dir, open_database
    from sync.store.lock import Busy

    data_dir = Path(args.data_dir).expanduser() if args.data_dir else default_data_dir()
    url = os.environ.get("MAILBOX_SYNC_DATABASE_URL")  # as run.py: the database may be elsewhere
    database = open_database(data_dir, url, read_only_ok=bool(args.status))
    info = _sandbox(args, data_dir) if not args.status else None
    service = offline_service(database, data_dir, lambda: info)
    bar = _bar if sys.stderr.isatty() and not args.json else None
    try:
        if args.status:
            out: dict[str, Any] = service.status().as_json()
        elif args.go_offline:
            result = service.go_offline(bar)
            out = {"mode": "offline", "rows": result.rows, "requests": result.requests}
        else:
            replayed, refreshed = service.go_online(bar)
            out = {
                "mode": "online" if refreshed is not None else "offline",
                "replayed": replayed.done,
                "conflicts": replayed.conflicts,
                "failed": replayed.failed,
                "messages": replayed.messages,
            }
    except OfflineUnavailable as reason:
        print(f"error: {reason}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Busy as busy:
        print(f"error: {busy}", file=sys.stderr)
        return EXIT_BUSY
    except SideError as error:
        print(f"error: the CRM could not be reached or refused: {error}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        database.dispose()
    if bar is not None:
        print(file=sys.stderr)
    if args.json:
        print(json.dumps(out, sort_keys=True))
    else:
        for key, value in out.items():
            print(f"{key}: {value}")
    return EXIT_FAILED if out.get("failed") else EXIT_OK
