"""Demo data per mailbox: contacts, calendar items (two recurring), tasks and 30 messages in the
Inbox and Sent Items with real Internet headers, some replies referencing earlier ones.

Deterministic per mailbox (seeded by the address), so screenshots and demos look the same.
"""

from __future__ import annotations

import random
from datetime import timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from sandbox.ews.items import fields_from_element, new_item
from sandbox.ews.ops.items import deliver
from sandbox.ews.recurrence import align_master
from sandbox.ews.store import Mailbox, iso, now
from sandbox.ews.xml import T, parse

if TYPE_CHECKING:
    from sandbox.ews.server import EwsServer

PEOPLE = [
    ("Nadia", "Haddad", "Northwind Traders", "Buyer"),
    ("Tom", "Becker", "Adventure Works", "CFO"),
    ("Lena", "Fischer", "Tailspin Toys", "Marketing lead"),
    ("Raj", "Patel", "Wide World Importers", "Operations"),
    ("Emma", "Dubois", "Litware", "Account manager"),
]
SUBJECTS = [
    "Quote for Q3 order",
    "Meeting notes",
    "Invoice 2041",
    "Delivery schedule",
    "Contract renewal",
    "Product samples",
    "Price list update",
    "Support ticket follow-up",
    "Trade fair invitation",
    "Partnership proposal",
]


def _item(mbx: Mailbox, kind: str, body: str, folder: str) -> None:
    node = parse(f'<t:{kind} xmlns:t="{T}">{body}</t:{kind}>'.encode())
    fields, attachments = fields_from_element(node)
    item = new_item(mbx, kind, fields)
    align_master(item)
    item.attachments = attachments
    mbx.add_item(mbx.dist(folder), item)


def _contacts(mbx: Mailbox) -> None:
    for first, last, company, title in PEOPLE:
        address = f"{first.lower()}.{last.lower()}@{company.split()[0].lower()}.example"
        _item(
            mbx,
            "Contact",
            f"<t:Body BodyType='Text'>Demo contact at {escape(company)}</t:Body>"
            "<t:Categories><t:String>Customer</t:String></t:Categories>"
            f"<t:DisplayName>{first} {last}</t:DisplayName><t:GivenName>{first}</t:GivenName>"
            f"<t:CompanyName>{escape(company)}</t:CompanyName>"
            f"<t:EmailAddresses><t:Entry Key='EmailAddress1'>{address}</t:Entry></t:EmailAddresses>"
            "<t:PhoneNumbers><t:Entry Key='BusinessPhone'>+1 555 0100</t:Entry></t:PhoneNumbers>"
            f"<t:JobTitle>{escape(title)}</t:JobTitle><t:Surname>{last}</t:Surname>",
            "contacts",
        )


def _calendar(mbx: Mailbox) -> None:
    base = now().replace(hour=9, minute=0, second=0) + timedelta(days=1)
    singles = [("Project kickoff", 0, "Room 1"), ("Customer call", 2, "Teams")]
    for subject, day, location in singles:
        start = base + timedelta(days=day)
        _item(
            mbx,
            "CalendarItem",
            f"<t:Subject>{subject}</t:Subject><t:Body BodyType='Text'>Agenda to follow</t:Body>"
            "<t:ReminderIsSet>true</t:ReminderIsSet>"
            "<t:ReminderMinutesBeforeStart>15</t:ReminderMinutesBeforeStart>"
            f"<t:Start>{iso(start)}</t:Start><t:End>{iso(start + timedelta(hours=1))}</t:End>"
            f"<t:Location>{location}</t:Location>",
            "calendar",
        )
    weekly = (
        "<t:WeeklyRecurrence><t:Interval>1</t:Interval><t:DaysOfWeek>Monday</t:DaysOfWeek>"
        "</t:WeeklyRecurrence>"
        f"<t:NoEndRecurrence><t:StartDate>{base.date().isoformat()}Z</t:StartDate></t:NoEndRecurrence>"
    )
    monthly = (
        "<t:RelativeMonthlyRecurrence><t:Interval>1</t:Interval><t:DaysOfWeek>Friday</t:DaysOfWeek>"
        "<t:DayOfWeekIndex>Last</t:DayOfWeekIndex></t:RelativeMonthlyRecurrence>"
        f"<t:NumberedRecurrence><t:StartDate>{base.date().isoformat()}Z</t:StartDate>"
        "<t:NumberOfOccurrences>12</t:NumberOfOccurrences></t:NumberedRecurrence>"
    )
    for subject, pattern in (("Weekly team sync", weekly), ("Monthly review", monthly)):
        _item(
            mbx,
            "CalendarItem",
            f"<t:Subject>{subject}</t:Subject>"
            f"<t:Start>{iso(base)}</t:Start><t:End>{iso(base + timedelta(minutes=30))}</t:End>"
            f"<t:Recurrence>{pattern}</t:Recurrence>",
            "calendar",
        )


def _tasks(mbx: Mailbox) -> None:
    today = now().date()
    for i, (subject, status, pct) in enumerate(
        [
            ("Send the revised quote", "NotStarted", 0),
            ("Prepare the trade fair", "InProgress", 50),
            ("Renew the support contract", "WaitingOnOthers", 25),
            ("Archive last year's invoices", "Completed", 100),
        ]
    ):
        due = today + timedelta(days=3 + i * 4)
        _item(
            mbx,
            "Task",
            f"<t:Subject>{subject}</t:Subject><t:Importance>{'High' if i == 0 else 'Normal'}</t:Importance>"
            f"<t:DueDate>{due.isoformat()}T00:00:00Z</t:DueDate>"
            f"<t:PercentComplete>{pct}</t:PercentComplete><t:Status>{status}</t:Status>",
            "tasks",
        )


def _messages(mbx: Mailbox) -> None:
    rng = random.Random(mbx.upn)
    when = now() - timedelta(days=20)
    threads: list[tuple[str, str, str]] = []  # (message id, subject, counterpart address)
    domain = mbx.upn.split("@")[1]
    for n in range(30):
        first, last, company, _title = rng.choice(PEOPLE)
        other = f"{first.lower()}.{last.lower()}@{company.split()[0].lower()}.example"
        when += timedelta(hours=rng.randint(3, 15))
        outgoing = n % 3 == 1
        reply_to = threads[-1] if threads and n % 4 == 3 else None
        subject = f"RE: {reply_to[1]}" if reply_to else rng.choice(SUBJECTS)
        msg = EmailMessage()
        me = f"{mbx.display_name} <{mbx.upn}>"
        them = f"{first} {last} <{other}>"
        msg["From"], msg["To"] = (me, them) if outgoing else (them, me)
        msg["Subject"] = subject
        msg["Date"] = format_datetime(when)
        message_id = f"<demo-{n}-{rng.randrange(10**8)}@{domain if outgoing else 'mail.example'}>"
        msg["Message-ID"] = message_id
        if reply_to:
            msg["In-Reply-To"] = reply_to[0]
            msg["References"] = reply_to[0]
        msg.set_content(f"Hello,\n\nAbout {subject.lower()}: see below.\n\nRegards")
        item_id = deliver(mbx, msg.as_bytes(), "sentitems" if outgoing else "inbox")
        mbx.items[item_id].created = when
        threads.append((message_id, subject.removeprefix("RE: "), other))


def seed_demo(server: EwsServer, mbx: Mailbox) -> None:
    """Contacts, calendar items, tasks and messages for one mailbox."""
    with mbx.lock:
        _contacts(mbx)
        _calendar(mbx)
        _tasks(mbx)
        _messages(mbx)
