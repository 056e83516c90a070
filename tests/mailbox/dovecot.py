"""A throwaway Dovecot POP3 server for the tests: own config, own dirs, the current user.

Dovecot is the POP3 server most mail hosts run, so testing against it (rather than a fake)
catches real protocol behaviour: UIDL formats, `-ERR [AUTH]` replies, STLS, TLS policy.
Everything lives under one temporary directory; no system path is written.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from sandbox.tls import TlsMaterial, make_tls_material

DOVECOT = "/usr/sbin/dovecot"
USER = "pop.tester@example.test"
PASSWORD = "correct horse battery"


def dovecot_missing_reason() -> str | None:
    """Why Dovecot cannot run here, or None when it can."""
    if not os.access(DOVECOT, os.X_OK):
        return (
            f"{DOVECOT} is not installed (run tests/tools/system_deps.sh or "
            "`apt-get install -y dovecot-core dovecot-pop3d`)"
        )
    if not Path("/usr/lib/dovecot/pop3").exists():
        return "dovecot-pop3d is not installed (`apt-get install -y dovecot-pop3d`)"
    return None


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (Dovecot cannot bind port 0 itself)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class DovecotServer:
    """A running Dovecot with one POP3 user whose Maildir the tests fill directly."""

    root: Path
    tls: TlsMaterial
    pop3_port: int
    pop3s_port: int
    process: subprocess.Popen[bytes] | None = None
    host: str = "127.0.0.1"
    user: str = USER
    password: str = PASSWORD
    _delivered: int = 0

    @property
    def mail_uid(self) -> int:
        """Dovecot refuses mail access as uid 0: as root, the mail belongs to `dovecot`."""
        return pwd.getpwnam("dovecot").pw_uid if os.getuid() == 0 else os.getuid()

    @property
    def mail_gid(self) -> int:
        return pwd.getpwnam("dovecot").pw_gid if os.getuid() == 0 else os.getgid()

    @property
    def maildir(self) -> Path:
        return self.root / "Maildir"

    @property
    def log_file(self) -> Path:
        return self.root / "dovecot.log"

    def deliver(self, raw: bytes) -> Path:
        """Deliver a message the way an MDA does: write to `tmp/`, then rename into `new/`."""
        # Dovecot's own name format (seconds.Mmicros P pid Q n .host): it assigns UIDs in the
        # order of these times, so messages delivered one after another keep their order.
        self._delivered += 1
        now = time.time_ns() // 1000
        name = f"{now // 1_000_000}.M{now % 1_000_000}P{os.getpid()}Q{self._delivered}.test"
        tmp = self.maildir / "tmp" / name
        tmp.write_bytes(raw)
        if os.getuid() == 0:
            os.chown(tmp, self.mail_uid, self.mail_gid)
        target = self.maildir / "new" / name
        os.rename(tmp, target)
        return target

    def message_files(self) -> list[Path]:
        """Every message file in the Maildir (new/ and cur/): what the server still holds."""
        return sorted([*(self.maildir / "new").iterdir(), *(self.maildir / "cur").iterdir()])

    def clear(self) -> None:
        """Empty the Maildir between tests (Dovecot notices on the next session)."""
        for path in self.message_files():
            path.unlink()

    def _config(self) -> str:
        if os.getuid() == 0:
            # Dovecot refuses to run its login processes as root: use the users the Debian
            # package made, keep their chroot, and let them traverse our directory.
            internal, group, login, chroot = "dovecot", "dovecot", "dovenull", "login"
        else:
            internal = login = pwd.getpwuid(os.getuid()).pw_name
            group = grp.getgrgid(os.getgid()).gr_name
            chroot = ""
        root = self.root
        return f"""
protocols = pop3
listen = {self.host}
base_dir = {root}/run
state_dir = {root}/state
log_path = {self.log_file}
info_log_path = {self.log_file}
ssl = required
ssl_cert = <{self.tls.cert_file}
ssl_key = <{self.tls.key_file}
ssl_min_protocol = TLSv1.2
default_internal_user = {internal}
default_internal_group = {group}
default_login_user = {login}
first_valid_uid = 0
first_valid_gid = 0
auth_failure_delay = 0
mail_location = maildir:{self.maildir}
pop3_uidl_format = %08Xu%08Xv
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={self.mail_uid} gid={self.mail_gid} home={root}/home
}}
service pop3-login {{
  chroot = {chroot}
  inet_listener pop3 {{
    address = {self.host}
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    address = {self.host}
    port = {self.pop3s_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot = {"empty" if chroot else ""}
  # no growing penalty after failed logins: the wrong-password tests would slow the others
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""

    def start(self, timeout: float = 20.0) -> None:
        if os.getuid() == 0:
            os.chmod(self.root, 0o755)
        for sub in ("run", "state", "home", "Maildir/new", "Maildir/cur", "Maildir/tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        if os.getuid() == 0:
            for path in [self.root / "home", *self.root.glob("Maildir*"), *self.maildir.iterdir()]:
                os.chown(path, self.mail_uid, self.mail_gid)
        passwd = self.root / "passwd"
        passwd.write_text(f"{self.user}:{{PLAIN}}{self.password}\n")
        os.chmod(passwd, 0o644)  # a throwaway test password; the auth process reads it
        config = self.root / "dovecot.conf"
        config.write_text(self._config())
        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=(self.root / "dovecot.stderr").open("wb"),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dovecot exited at start: {self.diagnostics()}")
            if _accepts(self.host, self.pop3_port) and _accepts(self.host, self.pop3s_port):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"dovecot did not listen within {timeout}s: {self.diagnostics()}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def diagnostics(self) -> str:
        parts = []
        for name in ("dovecot.stderr", "dovecot.log"):
            path = self.root / name
            if path.exists():
                parts.append(f"{name}: {path.read_text(errors='replace')[-2000:]}")
        return "\n".join(parts)


def _accepts(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def start_dovecot(root: Path) -> DovecotServer:
    """Make TLS material under `root`, start Dovecot there on free ports; caller stops it."""
    root.mkdir(parents=True, exist_ok=True)
    tls = make_tls_material(root / "tls")
    server = DovecotServer(root=root, tls=tls, pop3_port=free_port(), pop3s_port=free_port())
    server.start()
    return server


def remove(server: DovecotServer) -> None:
    """Stop the server and delete its directory."""
    server.stop()
    shutil.rmtree(server.root, ignore_errors=True)
