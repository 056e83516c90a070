"""Mailbox Sync for Dynamics 365: the one command line (`python run.py`, or `mailbox-sync`).

    serve              the web app and the scheduler in one process (the default)
    sync --once        one messaging sync, then exit (for cron and scripts)
    status [--json]    the last runs and open alerts
    sandbox [--json]   start the sandbox servers, print their URLs and credentials
    configure …        the setup wizard's choices without a browser (exit 2 on bad input)
    doctor [--json]    check the setup read-only and say what is missing (exit 5 if anything)

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
EXIT_FAILED = 1
"""`sync --once`: the run failed (its message says why)."""
EXIT_BAD_INPUT = 2
"""A value given on the command line was refused (the message says which and why)."""
EXIT_DATA_DIR = 3
"""The data directory or its database cannot be used (damaged, not writable, made by a newer
version): the message says which and what to do; nothing was written."""
EXIT_BUSY = 4
"""Another process is syncing (or configuring) the same data: nothing was done."""
EXIT_MISSING = 5
"""`doctor`: something the sync needs is missing (its findings say what and what to do)."""


def _data_dir(args: argparse.Namespace) -> Path:
    from sync.store.db import default_data_dir

    return Path(args.data_dir).expanduser().resolve() if args.data_dir else default_data_dir()


class BadInput(Exception):
    """A command-line value was refused: `main` prints why on one line and exits 2 (raised
    before anything is written)."""


def _close_interrupted(database: Any) -> None:
    """At start-up: runs left "running" by a process that was killed end as interrupted, so
    the dashboard stops showing (and polling for) a sync that is not going on."""
    from sync.runs import close_interrupted_runs

    closed = close_interrupted_runs(database)
    if closed:
        ids = ", ".join(f"#{run_id}" for run_id in closed)
        log.info("Runs %s were left running by a process that ended: marked interrupted", ids)


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

    from sync.sandbox_profile import adopt_sandbox, read_info, write_info
    from sync.scheduler import SyncScheduler
    from sync.settings import get_setting
    from sync.setup.addresses import is_loopback
    from webapp import create_app
    from webapp.access import new_login_token

    data_dir = _data_dir(args)
    with _single_server(data_dir), contextlib.ExitStack() as stack:
        token = new_login_token()
        app = create_app({"DATA_DIR": str(data_dir), "LOGIN_TOKEN": token})
        database = app.extensions["mailbox_sync.database"]
        _close_interrupted(database)
        if args.sandbox_json:
            info = read_info(args.sandbox_json)
            app.config["SANDBOX_INFO"] = info
            adopt_sandbox(database, info, fresh=False)
            print(f"Using the sandbox described in {args.sandbox_json}", flush=True)
        elif get_setting(database, "mode") in (None, "sandbox") and not args.no_sandbox:
            from sandbox.launcher import start_sandbox

            sandbox = stack.enter_context(start_sandbox(data_dir / "sandbox"))
            app.extensions["mailbox_sync.sandbox"] = sandbox
            info = sandbox.describe()
            app.config["SANDBOX_INFO"] = info
            adopt_sandbox(database, info, fresh=True)
            path = write_info(data_dir / "sandbox", info)
            print(f"Sandbox running (no tenant configured): {sandbox.summary()}", flush=True)
            print(f"Sandbox description (URLs, users, tokens): {path}", flush=True)
        scheduler = SyncScheduler(
            app.extensions["mailbox_sync.service"],
            interval=float(get_setting(database, "interval_seconds")),
            offline_interval=float(get_setting(database, "offline_interval_seconds")),
        )
        app.extensions["mailbox_sync.scheduler"] = scheduler
        if not is_loopback(args.host):
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
        for watcher in _start_watchers(app, data_dir, scheduler):
            stack.callback(watcher.stop)  # before the scheduler stops (last in, first out)
        host = "127.0.0.1" if args.host in ("127.0.0.1", "0.0.0.0") else args.host
        # one write, so no log line of another thread lands inside it; last of the start-up
        # lines (the scheduler is quiet unless -v) and set apart, bold on a terminal
        link = f"Open http://{host}:{port}/login?token={token}"
        if sys.stdout.isatty():
            link = f"\033[1m{link}\033[0m"
        sys.stdout.write(
            f"\nMailbox Sync is running. {link}\n"
            "  (a one-time sign-in link for your browser; Ctrl+C stops the app)\n\n"
        )
        sys.stdout.flush()
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    return 0


def _start_watchers(app: Any, data_dir: Path, scheduler: Any) -> list[Any]:
    """The change watchers, mailbox and CRM: a change asks the scheduler for a run at once
    (trigger "change"); the schedule stays the fallback."""
    from sync.connect import ProfileConnector
    from sync.service import MESSAGING
    from sync.setup.profile import Profile
    from sync.watcher import ChangeWatcher
    from webapp import sandbox_info

    database = app.extensions["mailbox_sync.database"]
    connector = ProfileConnector(Profile(database, data_dir), lambda: sandbox_info(app))

    def changed(_kinds: frozenset[str]) -> None:
        scheduler.sync_now(MESSAGING, trigger="change")

    watchers = [
        ChangeWatcher(database, connector.change_stream, changed, name="mailbox"),
        ChangeWatcher(database, connector.crm_change_poll, changed, name="crm"),
    ]
    for watcher in watchers:
        watcher.start()
    return watchers


def _database_url(args: argparse.Namespace) -> str:
    from sync.store.db import sqlite_url

    return os.environ.get("MAILBOX_SYNC_DATABASE_URL") or sqlite_url(_data_dir(args))


def _open_database(args: argparse.Namespace, read_only_ok: bool = False) -> Any:
    """The database; raises DataDirError (exit 3) when it cannot be used. `read_only_ok`: a
    read-only data directory is fine (for `status`, which only reads)."""
    from sync.store.db import open_database

    return open_database(_data_dir(args), _database_url(args), read_only_ok=read_only_ok)


def cmd_sync(args: argparse.Namespace) -> int:
    from sync.connect import messaging_service
    from sync.runs import recent_runs
    from sync.service import MESSAGING

    if not args.once:
        print("`sync` runs one sync and exits: add --once (the server syncs on its own).")
        return EXIT_BAD_INPUT
    from sync.connect import RUN_KINDS

    unknown = sorted(set(args.kind or ()) - set(RUN_KINDS))
    if unknown:
        print(
            f"Unknown kind: {', '.join(unknown)}. Kinds: {', '.join(RUN_KINDS)}.", file=sys.stderr
        )
        return EXIT_BAD_INPUT
    data_dir = _data_dir(args)
    info = _running_sandbox(args)
    database = _open_database(args)
    _close_interrupted(database)
    from sync.progress import draw_bar

    bar = draw_bar if sys.stderr.isatty() else None
    service = messaging_service(database, data_dir, lambda: info, args.kind, bar)
    from sync.store.lock import Busy

    try:
        # held around the run (which takes it again): waiting here, not skipping there
        with service.holding(MESSAGING, "sync --once", wait=args.wait):
            run_id = service.run(MESSAGING, "cli")
    except Busy as busy:
        print(f"{busy} (waited {args.wait:g} s; see --wait)", file=sys.stderr)
        return EXIT_BUSY
    if bar is not None:
        print(file=sys.stderr)  # end the bar's line
    run = next(r for r in recent_runs(database, limit=5) if r.id == run_id)
    print(f"Run {run.id}: {run.outcome}" + (f" — {run.message}" if run.message else ""))
    return EXIT_FAILED if run.outcome == "failed" else 0


def _iso(value: Any) -> str | None:
    """A stored (naive UTC) moment as ISO 8601 to the second: `2026-12-04T08:10:35Z`."""
    return value.replace(microsecond=0).isoformat() + "Z" if value is not None else None


def cmd_status(args: argparse.Namespace) -> int:
    from sync.dashboard_data import kind_statuses, workload_statuses
    from sync.progress import as_json as run_progress_json
    from sync.runs import INTERRUPTED, open_alerts, process_gone, recent_runs
    from sync.settings import all_settings

    database = _open_database(args, read_only_ok=True)
    runs = recent_runs(database, limit=10)
    settings = all_settings(database)
    status = {
        "data_dir": str(_data_dir(args)),
        "mode": settings.get("mode"),
        "messaging_enabled": settings.get("messaging_enabled") is not False,
        "kinds": [
            {
                "kind": k.kind,
                "state": k.state,
                "last_run_at": _iso(k.last_run_at),
                "to_crm": k.to_crm,
                "to_mailbox": k.to_mailbox,
                "errors": k.errors,
                "conflicts": k.conflicts,
                "in_sync": k.in_sync,
                # email (issue 8): counts that are no write on a side, and sums over all runs
                "other": k.other,
                "totals": k.totals,
                "message": k.message,
            }
            for k in kind_statuses(database, settings.get("kinds") or [])
        ],
        "runs": [
            {
                "id": r.id,
                "job": r.job,
                "trigger": r.trigger,
                "started_at": _iso(r.started_at),
                "finished_at": _iso(r.finished_at),
                # as the next serve or sync will mark it (status leaves runs alone)
                "outcome": INTERRUPTED if r.outcome == "running" and process_gone(r) else r.outcome,
                "message": r.message,
                "message_id": r.message_msg,  # ui-messages: {id, params} to translate, or None
                "counts": r.counts,
                "progress": run_progress_json(r.progress),  # ui-dashboard: sync/progress.py
            }
            for r in runs
        ],
        "workloads": [  # ui-dashboard: as the dashboard's Mailbox status (English)
            {
                "workload": w.key,
                "state": w.state,
                "reason": str(w.reason) if w.reason else None,
                "fix": str(w.fix) if w.fix else None,
                "at": _iso(w.at),
            }
            for w in workload_statuses(
                database, settings.get("kinds") or [], runs, open_alerts(database)
            )
        ],
        "alerts": [
            {  # ui-messages: English text, and the message ids ({title, message, action})
                "code": a.code,
                "severity": a.severity,
                "title": a.title,
                "message": a.message,
                "action": a.action,
                "message_ids": a.texts,
            }
            for a in open_alerts(database)
        ],
    }
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        print(f"Data: {status['data_dir']}  mode: {status['mode'] or 'not set up'}")
        for k in status["kinds"]:
            changes = ", ".join(
                f"{n} {action} → {side}"
                for side, key in (("mailbox", "to_mailbox"), ("CRM", "to_crm"))
                for action, n in k[key].items()
            )
            print(f"  {k['kind']:<13} {k['state']:<8} {changes}")
        for r in status["runs"]:
            print(
                f"  #{r['id']} {r['job']:<9} {r['started_at']}  {r['outcome']}  {r['message'] or ''}"
            )
        for a in status["alerts"]:
            print(f"  ALERT [{a['severity']}] {a['title']} — {a['action']}")
    return 0


def cmd_sandbox(args: argparse.Namespace) -> int:
    from sandbox.launcher import start_sandbox
    from sync.sandbox_profile import write_info

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with start_sandbox(
        _data_dir(args) / "sandbox", port=args.port or 0, faults=args.faults, lenient=args.lenient
    ) as sandbox:
        path = write_info(_data_dir(args) / "sandbox", sandbox.describe())
        if args.json:
            print(json.dumps(sandbox.describe()), flush=True)
        else:
            print(sandbox.human_summary(), flush=True)
            print(f"Description for --sandbox-json: {path}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """Every setup check, read-only: the findings, then exit 0 (all fine) or 5."""
    from sync.setup.doctor import any_missing, run_doctor
    from sync.setup.profile import Profile

    data_dir = _data_dir(args)
    info = _running_sandbox(args)
    findings = run_doctor(Profile(_open_database(args, read_only_ok=True), data_dir), info)
    if args.json:
        print(json.dumps({"findings": [f.as_dict() for f in findings]}, indent=2))
    else:
        marks = {"ok": "ok     ", "missing": "MISSING", "info": "info   "}
        for finding in findings:
            print(f"{marks.get(finding.status, finding.status)}  {finding.message}")
            if finding.action and finding.status != "ok":
                print(f"         → {finding.action}")
    return EXIT_MISSING if any_missing(findings) else 0


def _secret_from_env(name: str | None) -> str:
    """A password is named by an environment variable, never typed on the command line."""
    if not name:
        return ""
    value = os.environ.get(name)
    if value is None:
        raise BadInput(f"The environment variable {name} is not set: export it, then run again.")
    return value


def cmd_configure(args: argparse.Namespace) -> int:
    from sync.setup.adapters import default_ports
    from sync.setup.configure import ConfigureOptions, configure
    from sync.setup.instance import clean_instance_name
    from sync.setup.messages import SetupError
    from sync.setup.profile import INSTANCE_NAME, Profile
    from sync.sides import SideError

    data_dir = _data_dir(args)
    # every value read and checked before anything is stored
    try:
        name = clean_instance_name(args.instance_name or "")
    except SetupError as error:
        raise BadInput(error.msg) from None
    password = _secret_from_env(args.password_env)
    smtp_password = _secret_from_env(args.smtp_password_env)
    sandbox = _sandbox_info(args)
    profile = Profile(_open_database(args), data_dir)
    if name:
        profile.set(INSTANCE_NAME, name)
    form = {
        "type": args.mailbox_type,
        "email": args.email or "",
        "ews_url": args.ews_url or "",
        "auth": args.auth,
        "username": args.username or "",
        "password": password,
        "pop3_host": args.pop3_host or "",
        "pop3_port": str(args.pop3_port or ""),
        "pop3_security": args.pop3_security,
        "smtp_host": args.smtp_host or "",
        "smtp_port": str(args.smtp_port or ""),
        "smtp_security": args.smtp_security,
        "smtp_password": smtp_password,
    }
    options = ConfigureOptions(
        org=args.org,
        connected=args.connect or [],
        confirm_org_change=args.confirm_org_change,
        mailbox_form=form,
        set_methods=args.set_methods,
        take_over={"yes": True, "no": False}.get(args.take_over or ""),
        filters=[f for f in args.filters.split(",") if f] if args.filters is not None else None,
        own_filters=args.add_filter,
        tracking=args.tracking,
        interval_seconds=args.interval,
        track_sent_items=args.track_sent_items,  # [h1a] email
        track_days_back=args.track_days_back,
        send_crm_email=args.send_crm_email,
    )
    from sync.store.lock import Busy, hold, lock_directory

    lock_dir = lock_directory(profile.database.url)
    try:
        with (
            hold(lock_dir, "messaging", args.wait, "configure"),
            hold(lock_dir, "offline", args.wait, "configure"),
        ):
            ports = default_ports(profile, sandbox)
            for line in configure(profile, ports, options):
                print(line)
    except Busy as busy:
        print(f"error: {busy}", file=sys.stderr)
        return EXIT_BUSY
    except SetupError as error:
        print(f"error: {error.msg}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except SideError as error:
        print(f"error: {error.message or type(error).__name__}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print("Setup complete.")
    return 0


def _running_sandbox(args: argparse.Namespace) -> dict[str, Any] | None:
    """The sandbox named by --sandbox-json (it must be there), else the one `serve` started
    in the data directory, if it has been started."""
    from sync.sandbox_profile import INFO_FILE, read_info

    info_file = (
        Path(args.sandbox_json) if args.sandbox_json else _data_dir(args) / "sandbox" / INFO_FILE
    )
    return read_info(info_file) if args.sandbox_json or info_file.exists() else None


def cmd_signin(args: argparse.Namespace) -> int:
    """Sign in without a browser on this computer: the device code flow."""
    from sync.auth import EncryptionUnavailable
    from sync.setup.signin import device_sign_in, microsoft_config, sandbox_config
    from sync.sides import SideError

    info = None if args.client_id else _running_sandbox(args)
    try:
        if args.client_id:
            config = microsoft_config(args.client_id, args.tenant)
        elif info is not None:
            config = sandbox_config(info)
        else:
            raise BadInput(
                "Give --client-id (your app registration's application ID) to sign in to a "
                "Microsoft tenant, or --sandbox-json to sign in to a running sandbox."
            )
    except ValueError as error:
        raise BadInput(str(error)) from None
    if args.user and config["provider"] != "sandbox":
        raise BadInput("--user signs in by itself on the sandbox only; a tenant asks you.")
    password = _secret_from_env(args.password_env) if args.user else ""
    if args.user and not password:
        raise BadInput("--user needs --password-env naming the variable that holds the password.")
    config["plaintext"] = bool(args.allow_plaintext_cache)
    approve = _sandbox_approver(args.user, password) if args.user else None
    database = _open_database(args)
    try:
        account = device_sign_in(
            database, _data_dir(args), config, info, lambda text: print(text, flush=True), approve
        )
    except EncryptionUnavailable as error:
        print(
            f"error: the token cache cannot be encrypted here ({error.reason}). Run again with "
            "--allow-plaintext-cache to keep it unencrypted in the data folder (readable by "
            "your user only).",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    except SideError as error:
        print(f"error: {error.message or type(error).__name__}", file=sys.stderr)
        return EXIT_FAILED
    print(f"Signed in as {account.username}.")
    return 0


def _sandbox_approver(upn: str, password: str) -> Any:
    """Answers the sandbox's code page as the user would (scripts and tests; the sandbox only:
    its page is on this computer)."""

    def approve(flow: Any) -> None:
        import requests

        from sync.urls import is_loopback, split_url

        page = split_url(str(flow.get("verification_uri", "")))
        if page is None or not is_loopback(page.hostname):
            raise BadInput("The sandbox's sign-in page is not on this computer.")
        form = {"user_code": flow["user_code"], "upn": upn, "password": password}
        answer = requests.post(page.geturl(), data={**form, "action": "sign-in"}, timeout=30)
        if answer.status_code != 200:
            raise BadInput(f"The sandbox refused the sign-in of {upn} (HTTP {answer.status_code}).")

    return approve


def _sandbox_info(args: argparse.Namespace) -> dict[str, Any] | None:
    """The sandbox's describe() JSON (`run.py sandbox --json` output saved to a file)."""
    from sync.sandbox_profile import read_info

    return read_info(args.sandbox_json) if args.sandbox_json else None


def _fault_spec(spec: str) -> str:
    """argparse type of --faults: a bad spec is a usage error (exit 2), not a traceback."""
    from sandbox.faults import Fault

    try:
        Fault.parse(spec)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return spec


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", help="where the local database and keys live")
    common.add_argument(
        "--port",
        type=int,
        default=None,
        help="serve: the port to listen on (default 8765, 0: any free); sandbox: the port of "
        "its first server (0: any free); other commands: not used",
    )
    common.add_argument(
        "-v", "--verbose", action="store_true", help="log in detail (every library, DEBUG)"
    )

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
    serve.add_argument(
        "--sandbox-json", help="use an already running sandbox (`run.py sandbox --json` output)"
    )
    serve.set_defaults(func=cmd_serve)

    sync = commands.add_parser("sync", parents=[common], help="one messaging sync, then exit")
    sync.add_argument(
        "--once", action="store_true", help="run one sync, then exit (required: for cron)"
    )
    sync.add_argument(
        "--kind",
        action="append",
        help="only this kind of the chosen ones (repeatable): contacts, appointments, tasks, "
        "email (tracking), outgoing (CRM email sent through the mailbox)",
    )
    sync.add_argument("--sandbox-json", help="the sandbox to use (`run.py sandbox --json` output)")
    sync.add_argument(
        "--wait",
        type=float,
        default=120,
        metavar="SECONDS",
        help="wait this long for another process's sync of the same data to end, then exit 4 "
        "(default 120)",
    )
    sync.set_defaults(func=cmd_sync)

    status = commands.add_parser("status", parents=[common], help="last runs and alerts")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(func=cmd_status)

    sandbox = commands.add_parser("sandbox", parents=[common], help="start the sandbox servers")
    sandbox.add_argument("--json", action="store_true", help="print one JSON object")
    sandbox.add_argument(
        "--faults",
        action="append",
        default=[],
        type=_fault_spec,
        help="fault profile, e.g. 429:every=5,delay=2 (repeatable)",
    )
    sandbox.add_argument(
        "--lenient",
        action="store_true",
        help="for demos: Dataverse does not refuse missing privileges or untracked tables "
        "(strict, as the service, by default)",
    )
    sandbox.set_defaults(func=cmd_sandbox)

    doctor = commands.add_parser(
        "doctor", parents=[common], help="check the setup read-only, say what is missing"
    )
    doctor.add_argument("--json", action="store_true", help="print one JSON object")
    doctor.add_argument(
        "--sandbox-json", help="the sandbox to use (`run.py sandbox --json` output)"
    )
    doctor.set_defaults(func=cmd_doctor)

    signin = commands.add_parser(
        "signin",
        parents=[common],
        help="sign in without a browser here: prints a page and a code (device code flow)",
    )
    signin.add_argument("--client-id", help="your app registration's application (client) ID")
    signin.add_argument("--tenant", default="organizations", help="tenant ID or domain")
    signin.add_argument("--sandbox-json", help="sign in to this running sandbox")
    signin.add_argument("--user", help="sandbox only: sign in as this user without a browser")
    signin.add_argument("--password-env", help="the variable holding --user's password")
    signin.add_argument(
        "--allow-plaintext-cache",
        action="store_true",
        help="keep the tokens unencrypted (mode 0600) when this computer has no keyring",
    )
    signin.set_defaults(func=cmd_signin)

    conf = commands.add_parser(
        "configure", parents=[common], help="the setup wizard's choices, without a browser"
    )
    conf.add_argument("--org", required=True, help="unique name of the synchronizing organization")
    conf.add_argument("--connect", action="append", help="a connected organization (repeatable)")
    conf.add_argument("--confirm-org-change", action="store_true", help="agree to a new sync org")
    conf.add_argument(
        "--mailbox-type",
        choices=["exchange", "graph", "pop3"],
        required=True,
        help="Exchange through EWS, Exchange Online through Microsoft Graph (contacts and "
        "tasks), or a POP3 account with its SMTP server",
    )
    conf.add_argument("--email", required=True, help="the mailbox address")
    conf.add_argument("--ews-url", help="EWS endpoint (empty: autodiscover)")
    conf.add_argument(
        "--auth",
        choices=["oauth", "basic", "ntlm"],
        default="oauth",
        help="Exchange sign-in: your Microsoft sign-in (oauth), or on premises a user name "
        "and password (basic) or a Windows account (ntlm)",
    )
    conf.add_argument("--username", help="basic/ntlm or POP3 user name (POP3: default the address)")
    conf.add_argument("--password-env", help="environment variable holding the password")
    conf.add_argument("--pop3-host", help="POP3 server name")
    conf.add_argument("--pop3-port", type=int, help="POP3 port (default 995 with ssl)")
    conf.add_argument(
        "--pop3-security", choices=["ssl", "starttls"], default="ssl", help="POP3 encryption"
    )
    conf.add_argument("--smtp-host", help="SMTP server name (POP3 accounts send through it)")
    conf.add_argument("--smtp-port", type=int, help="SMTP port (default 587 with starttls)")
    conf.add_argument(
        "--smtp-security",
        choices=["ssl", "starttls"],
        default="starttls",
        help="SMTP encryption",
    )
    conf.add_argument("--smtp-password-env", help="environment variable of the SMTP password")
    conf.add_argument(
        "--set-methods",
        action="store_true",
        help="set the CRM mailbox's appointments, contacts and tasks method to this client "
        "(the email methods are left as they are)",
    )
    conf.add_argument(
        "--take-over", choices=["yes", "no"], help="when another computer synchronizes"
    )
    conf.add_argument("--instance-name", help="the name other computers show for this one")
    conf.add_argument("--filters", help="comma-separated filter ids, e.g. my-active-contacts")
    conf.add_argument(
        "--add-filter",
        action="append",
        default=[],
        metavar="KIND:NAME:CONDITIONS",
        help="a filter of one's own (repeatable), e.g. "
        "'tasks:Due this week:_ownerid_value eq me;scheduledend le today+7'",
    )
    # [h1a] email: Dynamics' personal tracking options, Sent Items, the days back, sending
    conf.add_argument(
        "--tracking",
        default=None,
        choices=["none", "all", "replies", "records", "email_enabled"],
        help="track email automatically: none, all, replies (to CRM email), records (from "
        "contacts, leads, accounts), email_enabled (from any email-enabled record); any but "
        "none sets Incoming Email to this client (default: as stored; none the first time)",
    )
    conf.add_argument(
        "--track-sent-items",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="track Sent Items too (default: yes)",
    )
    conf.add_argument(
        "--track-days-back",
        type=int,
        default=0,
        metavar="N",
        help="also track the messages of the last N days (default 0: from now on)",
    )
    conf.add_argument(
        "--send-crm-email",
        action="store_true",
        help="send CRM email in Pending Send through this mailbox (sets Outgoing Email to "
        "this client)",
    )
    conf.add_argument("--interval", type=int, default=300, help="seconds between syncs")
    conf.add_argument("--sandbox-json", help="file with `run.py sandbox --json` output")
    conf.add_argument(
        "--wait",
        type=float,
        default=120,
        metavar="SECONDS",
        help="wait this long for a running sync of the same data to end, then exit 4",
    )
    conf.set_defaults(func=cmd_configure)

    from sync.offline import cli as offline_cli  # issue 12: go offline / online from scripts

    offline_cli.add_parser(commands, parents=[common])
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
    from sync.redaction import protect_all_handlers

    protect_all_handlers()  # no token or password in any log line, whatever the level
    if not args.verbose:
        # migrations and HTTP clients speak at INFO on every start: keep the terminal for us
        for noisy in ("alembic", "httpx", "exchangelib", "werkzeug", "apscheduler"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    if getattr(args, "port", None) is None and args.command == "serve":
        args.port = DEFAULT_PORT
    from sqlalchemy.exc import DBAPIError

    from sync.sandbox_profile import SandboxInfoError, read_info
    from sync.store.db import DataDirError, database_problem, ensure_data_dir

    try:
        if getattr(args, "sandbox_json", None):  # refused before anything is created
            read_info(args.sandbox_json)
        if args.command not in ("status", "doctor"):  # every other command writes there
            ensure_data_dir(_data_dir(args))
        result: int = args.func(args)
    except (BadInput, SandboxInfoError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except DataDirError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_DATA_DIR
    except DBAPIError as error:  # found damaged (or unwritable) while working: no traceback
        problem = database_problem(_database_url(args), error)
        if problem is None:
            raise
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_DATA_DIR
    return result


if __name__ == "__main__":
    sys.exit(main())
