"""The POP3 and SMTP settings of a stored POP3 mailbox choice, read the same way wherever they are
needed (the wizard's mailbox test and the running sync's connection)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from sync.mailbox.pop3 import Pop3Settings
from sync.mailbox.server_settings import Security
from sync.mailbox.smtp import SmtpSettings
from sync.setup.ports import MailboxConfig
from sync.setup.profile import MAILBOX_PASSWORD, SMTP_PASSWORD


def pop3_account(
    config: MailboxConfig, secrets: Mapping[str, str], ca_file: str | None = None
) -> tuple[Pop3Settings, SmtpSettings]:
    """Reading and sending settings of one account.

    Both log in with `username` (the address when none is given); SMTP uses the mailbox password
    unless a separate SMTP password is stored, and sends from the account's address. An unknown
    security value raises ValueError (the settings check it)."""
    username = config.username or config.email
    password = secrets.get(MAILBOX_PASSWORD, "")
    pop3 = Pop3Settings(
        host=config.pop3_host,
        username=username,
        password=password,
        port=config.pop3_port,
        security=cast(Security, config.pop3_security),
        ca_file=ca_file,
    )
    smtp = SmtpSettings(
        host=config.smtp_host,
        username=username,
        password=secrets.get(SMTP_PASSWORD) or password,
        port=config.smtp_port,
        security=cast(Security, config.smtp_security),
        ca_file=ca_file,
        sender=config.email,
    )
    return pop3, smtp
